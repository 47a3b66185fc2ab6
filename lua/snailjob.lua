-- snailjob.lua - the Lua half of the `snailjob` module (lua-api.md).
--
-- Executors get it with `local sj = require "snailjob"`. The host compiles
-- this file into its binary and puts it in package.preload; the C half is
-- `snailjob.core` (host/sj_lualib.c), also preloaded. This file only keeps
-- the declarative API and the result markers; everything that touches the
-- host (registry, logging, sleeping, JSON, map reports) lives in the core.
--
-- Contract with snailjob.core:
--   core.register(name, kind, spec)  kind "job" | "map" | "map_reduce";
--       spec = { job = fn } for jobs, { map = { [task_name] = fn },
--       reduce = fn|nil, merge = fn|nil } otherwise. The core keeps `spec`
--       and reads it when routing, so handlers added later to a declared
--       map executor are seen. Raises on a duplicate name.
--   core.set_result_mt(mt)           the metatable of sj.success/sj.failure
--       results, so the host can tell a result marker from a plain value.
--   core.mr_do_map(list, next_task_name)  reports sub-tasks; raises on error.
--   core.log, core.hostlog, core.sleep, core.json, core.http (sj_http.h),
--   core.exec (sj_exec.h): exported as they are.

local core = require "snailjob.core"

local M = {}

M.ROOT_MAP = "ROOT_MAP"

-- Result markers ---------------------------------------------------------

local Result = { __name = "snailjob.result" }
Result.__index = Result

function Result:__tostring()
  if self.status == "success" then
    return "sj.success(" .. tostring(self.value) .. ")"
  end
  return "sj.failure(" .. self.message .. ")"
end

core.set_result_mt(Result)

--- sj.success([value]): the task succeeded with `value` (any JSON value).
function M.success(value)
  return setmetatable({ status = "success", value = value }, Result)
end

--- sj.failure([message]): the task failed with `message`.
function M.failure(message)
  local t = type(message)
  if message == nil then
    message = "Task execution failed"
  elseif t == "number" then
    message = tostring(message)
  elseif t ~= "string" then
    error("sj.failure: message must be a string, got " .. t, 2)
  end
  return setmetatable({ status = "failure", message = message }, Result)
end

--- True when `v` is a value made by sj.success or sj.failure.
function M.is_result(v)
  return getmetatable(v) == Result
end

-- Declarations -------------------------------------------------------------

-- `level` is the error level of the user's call site, as seen from here.
-- The public functions below avoid tail calls so that levels stay exact.
local function check_name(fname, name, level)
  if type(name) ~= "string" then
    error(fname .. ": executor name must be a string, got " .. type(name),
      level)
  end
  if name == "" then
    error(fname .. ": executor name must not be empty", level)
  end
end

local function check_handler(fname, fn, level)
  if type(fn) ~= "function" then
    error(fname .. ": handler must be a function, got " .. type(fn), level)
  end
end

--- sj.job(name, fn): a plain job executor.
function M.job(name, fn)
  check_name("sj.job", name, 3)
  check_handler("sj.job", fn, 3)
  core.register(name, "job", { job = fn })
end

-- The spec of each map / map_reduce object, kept out of the object itself so
-- that its methods cannot be shadowed and users see no internals.
local specs = setmetatable({}, { __mode = "k" })

local Map = { __name = "snailjob.map" }
Map.__index = Map
local MapReduce = { __name = "snailjob.map_reduce" }
MapReduce.__index = MapReduce

local function spec_of(self, method)
  local spec = specs[self]
  if spec == nil then
    error(method .. ": call it as a method (obj:" .. method
      .. "(...)) on an object made by sj.map or sj.map_reduce", 4)
  end
  return spec
end

local function add_map(self, task_name, fn)
  local spec = spec_of(self, "map")
  if fn == nil and type(task_name) == "function" then
    task_name, fn = M.ROOT_MAP, task_name
  end
  local who = spec.fname .. " '" .. spec.name .. "'"
  if type(task_name) ~= "string" or task_name == "" then
    error(who .. ":map: task name must be a non-empty string", 3)
  end
  check_handler(who .. ":map", fn, 4)
  if spec.map[task_name] ~= nil then
    error(who .. ": map handler for task '" .. task_name
      .. "' declared twice", 3)
  end
  spec.map[task_name] = fn
  return self
end

local function add_stage(self, stage, fn)
  local spec = spec_of(self, stage)
  local who = spec.fname .. " '" .. spec.name .. "'"
  check_handler(who .. ":" .. stage, fn, 4)
  if spec[stage] ~= nil then
    error(who .. ": " .. stage .. " handler declared twice", 3)
  end
  spec[stage] = fn
  return self
end

--- m:map([task_name,] fn): the handler of the map stage named task_name
--- (ROOT_MAP when omitted).
function Map:map(task_name, fn)
  local obj = add_map(self, task_name, fn)
  return obj
end

MapReduce.map = Map.map

function MapReduce:reduce(fn)
  local obj = add_stage(self, "reduce", fn)
  return obj
end

function MapReduce:merge(fn)
  local obj = add_stage(self, "merge", fn)
  return obj
end

local function declare(fname, kind, mt, name)
  check_name(fname, name, 4)
  -- `fname` and `name` are for messages only; the core reads map, reduce
  -- and merge.
  local spec = { map = {}, fname = fname, name = name }
  core.register(name, kind, spec)
  local obj = setmetatable({}, mt)
  specs[obj] = spec
  return obj
end

--- sj.map(name): a dynamic-sharding executor; add handlers with :map.
function M.map(name)
  local obj = declare("sj.map", "map", Map, name)
  return obj
end

--- sj.map_reduce(name): add handlers with :map, :reduce and :merge.
function M.map_reduce(name)
  local obj = declare("sj.map_reduce", "map_reduce", MapReduce, name)
  return obj
end

-- Runtime ------------------------------------------------------------------

--- sj.mr_do_map(list, next_task_name): report `list` as sub-tasks.
function M.mr_do_map(list, next_task_name)
  core.mr_do_map(list, next_task_name)
  return M.success()
end

M.log = core.log
M.hostlog = core.hostlog
M.sleep = core.sleep
M.json = core.json
M.http = core.http
M.exec = core.exec

return M
