-- builtin/http.lua - snailJobHttpExecutor, the console's built-in HTTP job,
-- written against the public `sj` API only (lua-api.md). Compiled into the
-- host; declared when the setting `builtins` names "http" (or "all").
--
-- jobParams, as the console writes it (shared/builtins.md §1):
--   {"method":"POST","url":"","headers":{},"body":"","mediaType":
--    "application/json","timeout":60}
-- Behaviour follows the Java client's SnailJobHttpExecutor (builtins.md §2):
-- a URL without a scheme gets "http://"; the method defaults to GET and is
-- upper-cased; POST/PUT/DELETE send the body ("{}" when empty) with
-- mediaType as Content-Type (application/json for a JSON body when none is
-- given); other methods (PATCH, HEAD, ...) are sent as GET, without a body;
-- the workflow context goes out as headers (a value with CJK characters as
-- Base64); timeout is in seconds (null: 60) for connect and transfer;
-- status 200 succeeds with the body as result, any other status fails with
-- "HTTP request failed"; a transport failure fails with "[snail-job] HTTP
-- internal executor failed". Fixed Java/Python bugs: a missing method is
-- GET (Java: NullPointerException); "httpbin.org/get" gets its "http://"
-- (Java: only names not starting with "http" do); the timeout is logged in
-- seconds; every log line goes to the task log; the request is stopped at
-- once on stop or timeout.
--
-- The host passes one argument: { enabled = {...}, http_allow = {...},
-- host_allowed = fn } (host/sj_builtins.h).
-- A non-empty http_allow limits the hosts the executor may reach (also on
-- each redirect, which this file follows itself for that reason).
local sj = require "snailjob"

local conf = ... or {}
local allow = conf.http_allow or {}

local host_allowed = conf.host_allowed or function() return true end

-- scheme, host (lower-case, no port, no brackets), rest
local function split_url(url)
  local scheme, rest = url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil end
  local authority = rest:match("^([^/?#]*)")
  local hostport = authority:gsub("^.*@", "")
  local host = hostport:match("^%[([^%]]*)%]") or hostport:match("^([^:]*)")
  return scheme:lower(), host:lower(), authority
end

-- Location relative to `base`.
local function resolve(base, loc)
  if loc:match("^%a[%w+.-]*://") then return loc end
  local scheme, _, authority = split_url(base)
  if loc:sub(1, 2) == "//" then return scheme .. ":" .. loc end
  if loc:sub(1, 1) == "/" then return scheme .. "://" .. authority .. loc end
  local dir = base:match("^(.*/)[^/]*$") or (base .. "/")
  return dir .. loc
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = {}
    for k = 3, 0, -1 do
      local v = (n >> (6 * k)) & 63
      q[#q + 1] = B64:sub(v + 1, v + 1)
    end
    if not b then q[3], q[4] = "=", "="
    elseif not c then q[4] = "=" end
    out[#out + 1] = table.concat(q)
  end
  return table.concat(out)
end

-- Does `s` hold a character in U+4E00..U+9FA5 (Java's CJK check)?
local function has_cjk(s)
  local ok, found = pcall(function()
    for _, c in utf8.codes(s) do
      if c >= 0x4E00 and c <= 0x9FA5 then return true end
    end
    return false
  end)
  return ok and found
end

local function header_value(v)
  if type(v) ~= "string" then v = sj.json.encode(v) end
  if has_cjk(v) then v = base64(v) end
  return v
end

local function is_json(text)
  if text == nil or text == "" then return false end
  return sj.json.decode(text) ~= nil
end

local function empty(s)
  return s == nil or s == sj.json.null or s == ""
end

local function run(args)
  local p = sj.json.decode(args.job_params or "")
  if type(p) ~= "table" then
    sj.log.warn("HttpParams is null or not a JSON object: %s", args.job_params)
    return sj.failure("HttpParams is null.")
  end
  local url = p.url
  if empty(url) or type(url) ~= "string" then
    return sj.failure("URL cannot be empty.")
  end
  if not url:lower():match("^https?://") then url = "http://" .. url end

  local method = empty(p.method) and "GET" or tostring(p.method):upper()
  local body = (not empty(p.body)) and p.body or nil
  if body ~= nil and type(body) ~= "string" then body = sj.json.encode(body) end
  local media = (not empty(p.mediaType)) and p.mediaType or nil
  if method ~= "GET" then
    if body == nil then
      sj.log.warn("[snail-job] Using default request body: {}")
      body = "{}"
    end
    if media == nil and is_json(body) then
      sj.log.warn("[snail-job] Using 'application/json' as media type")
      media = "application/json"
    end
  end
  local timeout = tonumber(p.timeout)
  if timeout == nil or p.timeout == sj.json.null then timeout = 60 end
  sj.log.info("[snail-job] Request URL: %s\nUsing request method: %s\n" ..
              "Request timeout: %s seconds", url, method, timeout)

  local verb = (method == "POST" or method == "PUT" or method == "DELETE")
    and method or "GET"
  local headers = {}
  if type(p.headers) == "table" then
    for k, v in pairs(p.headers) do headers[tostring(k)] = header_value(v) end
  end
  for k, v in pairs(args.wf_context or {}) do
    headers[tostring(k)] = header_value(v)
  end
  if verb ~= "GET" and media ~= nil then headers["Content-Type"] = media end

  local target, res = url, nil
  for _ = 1, 10 do
    local _, host = split_url(target)
    if host == nil or not host_allowed(host) then
      sj.log.error("[snail-job] %s: host '%s' is not in http_allow (%s)",
                   target, tostring(host), table.concat(allow, ","))
      return sj.failure("[snail-job] HTTP internal executor failed: host '" ..
                        tostring(host) .. "' is not allowed by http_allow")
    end
    local ok, r = pcall(sj.http.request, {
      url = target, method = verb, headers = headers,
      body = verb ~= "GET" and body or nil,
      timeout = timeout, connect_timeout = timeout,
      follow_redirects = false,
    })
    if not ok then
      sj.log.error("[snail-job] %s", tostring(r))
      return sj.failure("[snail-job] HTTP internal executor failed")
    end
    res = r
    local loc = r.headers.location
    if not (r.status >= 300 and r.status < 400 and loc) then break end
    target = resolve(target, loc)
    if r.status == 303 then verb = "GET" end
  end

  if res.status ~= 200 then
    sj.log.error("%s request to URL: %s failed with code: %d, response " ..
                 "body: %s", method, url, res.status, res.body)
    return sj.failure("HTTP request failed")
  end
  return sj.success(res.body)
end

if conf.enabled == nil or conf.enabled.http then
  sj.job("snailJobHttpExecutor", run)
end
