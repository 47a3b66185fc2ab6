--- snailjob.testing: test executors from busted (or any Lua 5.4 script).
--
-- It drives the real host: every call runs `snailjob-lua run --json` (the
-- production worker pool, endpoint and reporting, with an embedded SnailJob
-- server emulation) and decodes its report. Nothing of the host is
-- reimplemented here. The binary is $SNAILJOB_LUA_BIN, else $SJ_BINARY (the
-- build tree's tests set it), else `snailjob-lua` on PATH.
--
--   local t = require "snailjob.testing"
--   local r = t.run{ files = "jobs.lua", executor = "hello", params = "x" }
--   assert.are.equal("SUCCESS", r.status)
--
-- JSON is decoded here, not by lua-cjson: 64-bit ids stay exact integers
-- (cjson turns them into floats). JSON null is t.null.
local M = {}

---------------------------------------------------------------------------
-- JSON
---------------------------------------------------------------------------

M.null = setmetatable({}, { __tostring = function() return "null" end,
                            __name = "snailjob.testing.null" })

local escapes = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b",
                  f = "\f", n = "\n", r = "\r", t = "\t" }

local function decode_error(text, pos, what)
  error(string.format("snailjob.testing: bad JSON at byte %d: %s near %q",
    pos, what, text:sub(pos, pos + 20)), 0)
end

local decode_value

local function skip(text, pos)
  return text:find("[^ \t\r\n]", pos) or #text + 1
end

local function decode_string(text, pos)
  local out, i = {}, pos + 1
  while true do
    local j = text:find('["\\]', i)
    if j == nil then decode_error(text, pos, "unterminated string") end
    out[#out + 1] = text:sub(i, j - 1)
    if text:sub(j, j) == '"' then return table.concat(out), j + 1 end
    local c = text:sub(j + 1, j + 1)
    if c == "u" then
      local hex = text:sub(j + 2, j + 5)
      local cp = tonumber(hex, 16)
      if cp == nil or #hex < 4 then decode_error(text, j, "bad \\u escape") end
      i = j + 6
      if cp >= 0xD800 and cp <= 0xDBFF and text:sub(i, i + 1) == "\\u" then
        local lo = tonumber(text:sub(i + 2, i + 5), 16)
        if lo and lo >= 0xDC00 and lo <= 0xDFFF then
          cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
          i = i + 6
        end
      end
      out[#out + 1] = utf8.char(cp)
    elseif escapes[c] then
      out[#out + 1] = escapes[c]
      i = j + 2
    else
      decode_error(text, j, "bad escape")
    end
  end
end

local function decode_number(text, pos)
  local s, e = text:find("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
  if s == nil then decode_error(text, pos, "unexpected character") end
  local lit = text:sub(s, e)
  local n
  if lit:find("^-?%d+$") then
    n = math.tointeger(tonumber(lit)) -- exact for 64-bit ids
  end
  n = n or tonumber(lit)
  if n == nil then decode_error(text, pos, "bad number") end
  return n, e + 1
end

function decode_value(text, pos)
  pos = skip(text, pos)
  local c = text:sub(pos, pos)
  if c == "{" then
    local obj = {}
    pos = skip(text, pos + 1)
    if text:sub(pos, pos) == "}" then return obj, pos + 1 end
    while true do
      if text:sub(pos, pos) ~= '"' then decode_error(text, pos, "key") end
      local k
      k, pos = decode_string(text, pos)
      pos = skip(text, pos)
      if text:sub(pos, pos) ~= ":" then decode_error(text, pos, "':'") end
      obj[k], pos = decode_value(text, pos + 1)
      pos = skip(text, pos)
      c = text:sub(pos, pos)
      if c == "}" then return obj, pos + 1 end
      if c ~= "," then decode_error(text, pos, "',' or '}'") end
      pos = skip(text, pos + 1)
    end
  elseif c == "[" then
    local arr, n = {}, 0
    pos = skip(text, pos + 1)
    if text:sub(pos, pos) == "]" then return arr, pos + 1 end
    while true do
      n = n + 1
      arr[n], pos = decode_value(text, pos)
      pos = skip(text, pos)
      c = text:sub(pos, pos)
      if c == "]" then return arr, pos + 1 end
      if c ~= "," then decode_error(text, pos, "',' or ']'") end
      pos = pos + 1
    end
  elseif c == '"' then
    return decode_string(text, pos)
  elseif text:sub(pos, pos + 3) == "true" then
    return true, pos + 4
  elseif text:sub(pos, pos + 4) == "false" then
    return false, pos + 5
  elseif text:sub(pos, pos + 3) == "null" then
    return M.null, pos + 4
  end
  return decode_number(text, pos)
end

--- Decode JSON text: integers stay integers (64-bit exact), null is t.null.
-- Returns nil, message on bad input.
function M.decode(text)
  if type(text) ~= "string" then
    return nil, "snailjob.testing.decode: expected a string, got " ..
        type(text)
  end
  local ok, v, pos = pcall(decode_value, text, 1)
  if not ok then return nil, v end
  if skip(text, pos) <= #text then
    return nil, string.format("snailjob.testing: bad JSON at byte %d: " ..
      "trailing text", pos)
  end
  return v
end

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(ch)
    local e = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n",
                ["\r"] = "\\r", ["\t"] = "\\t" }
    return e[ch] or string.format("\\u%04x", ch:byte())
  end) .. '"'
end

local function is_array(v)
  local n = #v
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
  end
  return true
end

--- Encode a Lua value as JSON (object keys sorted; integers exact).
function M.encode(v)
  local tv = type(v)
  if v == nil or v == M.null then return "null" end
  if tv == "boolean" then return tostring(v) end
  if tv == "number" then
    if math.type(v) == "integer" then return string.format("%d", v) end
    if v ~= v or v == math.huge or v == -math.huge then
      error("snailjob.testing.encode: cannot encode " .. tostring(v), 2)
    end
    return string.format("%.17g", v)
  end
  if tv == "string" then return encode_string(v) end
  if tv == "table" then
    local parts = {}
    if next(v) ~= nil and is_array(v) then
      for i = 1, #v do parts[i] = M.encode(v[i]) end
      return "[" .. table.concat(parts, ",") .. "]"
    end
    local keys = {}
    for k in pairs(v) do
      if type(k) ~= "string" then
        error("snailjob.testing.encode: object key " .. tostring(k) ..
          " is not a string", 2)
      end
      keys[#keys + 1] = k
    end
    table.sort(keys)
    for i, k in ipairs(keys) do
      parts[i] = encode_string(k) .. ":" .. M.encode(v[k])
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  error("snailjob.testing.encode: cannot encode a " .. tv, 2)
end

---------------------------------------------------------------------------
-- running the host
---------------------------------------------------------------------------

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- The snailjob-lua binary these functions run.
function M.binary()
  return os.getenv("SNAILJOB_LUA_BIN") or os.getenv("SJ_BINARY") or
      "snailjob-lua"
end

local function text_arg(name, v)
  if v == nil then return nil end
  if type(v) == "table" then return M.encode(v) end
  if type(v) == "string" or type(v) == "number" then return tostring(v) end
  error(string.format("snailjob.testing: %s must be a string or a table, " ..
    "got %s", name, type(v)), 3)
end

-- files: a path or a list of paths (files, directories or globs).
local function files_spec(files)
  if type(files) == "string" then return files end
  if type(files) == "table" and #files > 0 then
    return table.concat(files, ":")
  end
  error("snailjob.testing: files = a path or a list of executor paths " ..
    "is required", 3)
end

-- Run the binary with `args` (a list) and decode its JSON report. Raises
-- with the host's own message when there is no report (bad usage, a file
-- that does not load, no such executor).
local function invoke(opts, args)
  local env = { "SNAIL_EXECUTORS=" .. quote(files_spec(opts.files)) }
  for k, v in pairs(opts.env or {}) do
    env[#env + 1] = k .. "=" .. quote(v)
  end
  local errfile = os.tmpname()
  local cmd = { "env" }
  for _, e in ipairs(env) do cmd[#cmd + 1] = e end
  cmd[#cmd + 1] = quote(M.binary())
  if opts.config then
    cmd[#cmd + 1] = "-c"
    cmd[#cmd + 1] = quote(opts.config)
  end
  for _, a in ipairs(args) do cmd[#cmd + 1] = quote(a) end
  cmd[#cmd + 1] = "--json 2>" .. quote(errfile)
  local p = assert(io.popen(table.concat(cmd, " ")))
  local out = p:read("a")
  local _, _, code = p:close()
  local ef = io.open(errfile)
  local err = ef and ef:read("a") or ""
  if ef then ef:close() end
  os.remove(errfile)
  local report = out ~= "" and M.decode(out) or nil
  if type(report) ~= "table" then
    error(string.format("snailjob.testing: %s failed (exit %s): %s",
      args[1], tostring(code), err ~= "" and err:gsub("%s+$", "") or
      "no output"), 3)
  end
  report.exit_code = code
  report.stderr = err
  return report
end

-- Append `flag value` to args unless v is nil.
local function opt(args, flag, v)
  if v ~= nil then
    args[#args + 1] = flag
    args[#args + 1] = tostring(v)
  end
end

-- The run options of one executor (also one workflow node).
local function node_args(o, args)
  if type(o.executor) ~= "string" then
    error("snailjob.testing: executor = NAME is required", 3)
  end
  args[#args + 1] = o.executor
  opt(args, "--type", o.type)
  opt(args, "--params", text_arg("params", o.params))
  opt(args, "--shards", o.shards)
  opt(args, "--nodes", o.nodes)
  return args
end

local function common_args(o, args)
  opt(args, "--wf-context", text_arg("wf_context", o.wf_context))
  opt(args, "--timeout", o.timeout)
  return args
end

--- Run one executor end to end: t.run{files=, executor=, type=, params=,
-- shards=, nodes=, wf_context=, timeout=, config=, env=}. `params` and
-- `wf_context` may be tables (sent as JSON). Returns what `run --json`
-- prints, as a table: status, result (text, as the server stores it),
-- tasks, logs, wf_context, wf_changed, mr_do_map, logs_dropped, and
-- exit_code. Raises when the host could not run it at all.
function M.run(o)
  return invoke(o, common_args(o, node_args(o, { "run" })))
end

--- Run one stage alone with crafted input: t.stage{files=, executor=,
-- task_name=, map_result=, reduces=, params=, wf_context=, sharding_index=,
-- sharding_total=, stage=}. The stage is `stage` ("map", "reduce",
-- "merge") or follows from the input: reduces -> merge; task_name -> that
-- map task (map_result its element); map_result alone -> reduce (the list
-- of map results); sharding_index -> that shard; nothing -> ROOT_MAP.
-- Returns the report of t.run plus: task (the one task), mr_do_map (the
-- {task_name=, list=} the stage asked for, or nil).
function M.stage(o)
  local args = common_args(o, node_args(o, { "run" }))
  local stage = o.stage
  if stage == nil then
    if o.reduces ~= nil then stage = "merge"
    elseif o.task_name ~= nil then stage = "map"
    elseif o.map_result ~= nil then stage = "reduce"
    elseif o.sharding_index == nil then stage = "map" end
  end
  opt(args, "--stage", stage)
  opt(args, "--task-name", o.task_name)
  if o.map_result ~= nil then
    opt(args, "--map-result", M.encode(o.map_result))
  end
  if o.reduces ~= nil then opt(args, "--reduces", M.encode(o.reduces)) end
  if o.sharding_index ~= nil then
    opt(args, "--sharding-index", o.sharding_index)
    opt(args, "--sharding-total", o.sharding_total or o.sharding_index + 1)
  end
  local r = invoke(o, args)
  r.task = r.tasks and r.tasks[1]
  r.mr_do_map_calls = r.mr_do_map
  r.mr_do_map = r.mr_do_map and r.mr_do_map[1]
  return r
end

--- Run a workflow chain: t.workflow{ {executor=, params=, type=, ...}, ...,
-- files=, wf_context=, timeout= }. Each node runs after the previous one
-- succeeded, with the context the server would pass on. Returns status
-- (of the last node that ran), wf_context (the final one) and nodes (one
-- t.run report per node that ran).
function M.workflow(o)
  if #o == 0 then
    error("snailjob.testing.workflow: list at least one node " ..
      "({executor=...})", 2)
  end
  local args = { "run" }
  for i, node in ipairs(o) do
    if i > 1 then args[#args + 1] = "--then" end
    node_args(node, args)
  end
  return invoke(o, common_args(o, args))
end

--- Rerun a recorded dispatch: t.replay{file=, files=, timeout=}. Returns
-- the same report as t.run.
function M.replay(o)
  if type(o.file) ~= "string" then
    error("snailjob.testing.replay: file = PATH is required", 2)
  end
  local args = { "replay", o.file }
  opt(args, "--timeout", o.timeout)
  return invoke(o, args)
end

--- The messages of a report's log lines (optionally of one task name).
function M.messages(report, task_name)
  local out = {}
  for _, l in ipairs(report.logs or {}) do
    if task_name == nil or l.task_name == task_name then
      out[#out + 1] = l.message
    end
  end
  return out
end

return M
