-- builtin/script.lua - the console's built-in script jobs:
-- snailJobShellJobExecutor, snailJobCMDJobExecutor and
-- snailJobPowerShellJobExecutor, written against the public `sj` API only
-- (lua-api.md). Compiled into the host; each is declared when the setting
-- `builtins` names it ("shell", "cmd", "powershell", or "all").
--
-- jobParams, as the console writes it (shared/builtins.md §1):
--   {"method":"LOCAL_SCRIPT","scriptParams":"","charset":""}
-- method: LOCAL_SCRIPT (scriptParams is a path on this host), SCRIPT_CODE
-- (scriptParams is the script), DOWNLOAD (scriptParams is a URL).
--
-- As the Java client (builtins.md §3.1): files shell_<jobId>.sh,
-- cmd_<jobId>.bat, powershell_<jobId>.ps1, mode 755; argv `sh <path>`; exit 0
-- succeeds with "Script executed successfully.", anything else fails with
-- "Script execution failed."; the same failure messages for a missing file
-- and an unknown method. Not as its bugs: the script runs once; its stdout
-- (INFO) and stderr (WARN) reach the task log line by line as they are
-- written; on stop or timeout the whole process group gets SIGTERM, then
-- SIGKILL after 5 s (sj.exec), and the host reports what it reports for any
-- interrupted job; the file goes to a fresh private directory (mode 0700)
-- and is removed after the run, also when it is interrupted; DOWNLOAD goes
-- through sj.http with a size cap (MAX_DOWNLOAD) and a non-2xx status fails.
-- stdin is empty (/dev/null), the working directory is the host's.
-- CMD fails on Linux with a message; PowerShell runs `pwsh` when it is on
-- PATH and fails naming it otherwise.
local sj = require "snailjob"

local conf = ... or {}
local enabled = conf.enabled or { shell = true, cmd = true, powershell = true }
local allow = conf.http_allow or {}
local host_allowed = conf.host_allowed or function() return true end

local MAX_DOWNLOAD = 16 * 1024 * 1024
local KILL_GRACE = 5

local function empty(s)
  return s == nil or s == sj.json.null or s == ""
end

-- A fresh private directory (mktemp -d makes it 0700), removed with its
-- one file when the returned value is closed, or else when it is
-- collected: an interrupted handler's state is closed by the host right
-- after the run, which collects it.
local Workspace = {}
Workspace.__index = Workspace
Workspace.__close = function(self)
  if self.file then os.remove(self.file) end
  if self.dir then os.remove(self.dir) end
  self.file, self.dir = nil, nil
end
Workspace.__gc = Workspace.__close

local function workspace()
  local r = sj.exec { "mktemp", "-d", "-t", "snailjob-script.XXXXXXXX",
                      log = false }
  local dir = r.code == 0 and r.stdout:match("^(.-)%s*$") or ""
  if dir == "" then
    error("cannot create a private script directory: " .. (r.stderr or ""))
  end
  return setmetatable({ dir = dir }, Workspace)
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

local function write_file(path, text)
  local f, err = io.open(path, "wb")
  if not f then error("cannot write " .. path .. ": " .. tostring(err)) end
  f:write(text)
  f:close()
end

local function on_path(name)
  for dir in (os.getenv("PATH") or ""):gmatch("[^:]+") do
    local f = io.open(dir .. "/" .. name, "rb")
    if f then
      f:close()
      return dir .. "/" .. name
    end
  end
  return nil
end

-- The script text for method/scriptParams, or nil, failure.
local function script_text(p)
  local method, sp = p.method, p.scriptParams
  if method == "LOCAL_SCRIPT" then
    local text = type(sp) == "string" and read_file(sp) or nil
    if text == nil then
      return nil, sj.failure("File not found: {" .. tostring(sp) .. "}")
    end
    return text
  elseif method == "SCRIPT_CODE" then
    if type(sp) ~= "string" then sp = "" end
    return sp
  elseif method == "DOWNLOAD" then
    local url = type(sp) == "string" and sp or ""
    local host = url:match("^%a[%w+.-]*://%[?([^/?#:%]]*)")
    if not host_allowed(host) then
      sj.log.error("[snail-job] %s: host '%s' is not in http_allow (%s)", url,
                   tostring(host), table.concat(allow, ","))
      return nil, sj.failure("[snail-job] Script download failed")
    end
    local ok, r = pcall(sj.http.get, url, {
      connect_timeout = 5, timeout = 300, max_body = MAX_DOWNLOAD,
      follow_redirects = #allow == 0,
    })
    if not ok then
      sj.log.error("[snail-job] %s", tostring(r))
      return nil, sj.failure("[snail-job] Script download failed")
    end
    if r.status < 200 or r.status > 299 then
      sj.log.error("[snail-job] downloading %s: HTTP status %d", url, r.status)
      return nil, sj.failure("[snail-job] Script download failed")
    end
    return r.body
  end
  return nil, sj.failure("[snail-job] Please correctly choose the script " ..
                         "execution method.")
end

-- kind: { prefix=, ext=, argv = function(path) -> argv or nil, failure }
local function script_executor(kind)
  return function(args)
    sj.log.info("ScriptProcessor start to process, params: %s", args.job_params)
    local p = sj.json.decode(args.job_params or "")
    if type(p) ~= "table" then
      sj.log.warn("ScriptParams is null or not a JSON object")
      return sj.failure("ScriptParams is null.")
    end
    local argv_of, failure = kind.argv()
    if not argv_of then return failure end
    if not empty(p.charset) and not tostring(p.charset):lower():match("^utf%-?8$") then
      sj.log.warn("charset '%s': the script is written as the job gives " ..
                  "it (UTF-8)", tostring(p.charset))
    end
    local text, fail = script_text(p)
    if text == nil then return fail end

    local ws <close> = workspace()
    ws.file = ws.dir .. "/" .. kind.prefix .. "_" .. tostring(args.job_id) ..
              kind.ext
    write_file(ws.file, text)
    sj.log.info("Generate executable file successfully, path: %s", ws.file)
    sj.exec { "chmod", "755", ws.file, log = false }
    sj.log.info("chmod 755 authorization complete, ready to start execution~")

    local r = sj.exec(argv_of(ws.file))
    if r.code == 0 then
      return sj.success("Script executed successfully.")
    end
    sj.log.error("script ended with %s", r.code and ("exit code " .. r.code)
                                         or ("signal " .. tostring(r.signal)))
    return sj.failure("Script execution failed.")
  end
end

local kinds = {
  shell = {
    name = "snailJobShellJobExecutor", prefix = "shell", ext = ".sh",
    argv = function()
      return function(path)
        return { "sh", path, capture = false, kill_grace = KILL_GRACE }
      end
    end,
  },
  cmd = {
    name = "snailJobCMDJobExecutor", prefix = "cmd", ext = ".bat",
    argv = function()
      return nil, sj.failure("snailJobCMDJobExecutor runs cmd.exe, which " ..
        "exists only on Windows; this host is not Windows (use " ..
        "snailJobShellJobExecutor)")
    end,
  },
  powershell = {
    name = "snailJobPowerShellJobExecutor", prefix = "powershell", ext = ".ps1",
    argv = function()
      local pwsh = on_path("pwsh")
      if not pwsh then
        return nil, sj.failure("snailJobPowerShellJobExecutor needs " ..
          "PowerShell: 'pwsh' was not found on PATH (" ..
          (os.getenv("PATH") or "") .. ")")
      end
      return function(path)
        return { pwsh, "-NoProfile", "-NonInteractive", "-ExecutionPolicy",
                 "Bypass", "-File", path, capture = false,
                 kill_grace = KILL_GRACE }
      end
    end,
  },
}

for key, kind in pairs(kinds) do
  if enabled[key] then sj.job(kind.name, script_executor(kind)) end
end
