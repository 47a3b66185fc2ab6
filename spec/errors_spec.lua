-- Error messages an executor author sees, through the real binary
-- (snailjob.testing): table error values, sj.failure misuse, duplicate
-- executors, a directory as SNAIL_LUA_PATH, and each command's --help.

local t = require "snailjob.testing"

local scratch = require "sj_scratch"()
local dir, write = scratch.dir, scratch.write
assert(os.execute("mkdir -p '" .. dir .. "/mods'"))

local files = write("e.lua", [[
local sj = require "snailjob"
sj.job("tbl", function() error({ code = 7, why = "nope" }) end)
sj.job("tostr", function()
  error(setmetatable({}, { __tostring = function() return "custom!" end }))
end)
sj.job("fn", function() error({ f = print }) end)
sj.job("badfail", function()
  return sj.failure({ 1 })
end)
sj.job("okfail", function() return sj.failure(42) end)
]])

local function message(executor)
  local r = t.run{ files = files, executor = executor }
  assert.are.equal("FAIL", r.status)
  return r.tasks[1].message
end

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1"))
  local out = p:read("a")
  p:close()
  return out
end

describe("error messages", function()
  it("show a table error value as JSON", function()
    assert.are.equal('{"code":7,"why":"nope"}', message("tbl"))
  end)

  it("use __tostring when the error value has one", function()
    assert.are.equal("custom!", message("tostr"))
  end)

  it("say why a table cannot be shown", function()
    local m = message("fn")
    assert.truthy(m:find("(error object is a table value: ", 1, true), m)
    assert.truthy(m:find("function", 1, true), m)
  end)

  it("name the caller's file:line for a bad sj.failure argument", function()
    assert.are.equal(files .. ":8: sj.failure: message must be a string, " ..
      "got table", message("badfail"))
    assert.are.equal("42", message("okfail"))
  end)

  it("name both files of a duplicate executor, no internal prefix", function()
    local dup = write("dup.lua", [[
local sj = require "snailjob"
sj.job("tbl", function() end)
]])
    local ok, err = pcall(t.run, { files = { dup, files }, executor = "tbl" })
    assert.is_false(ok)
    assert.truthy(err:find("executor 'tbl' is declared twice: first at " ..
      dup .. ":2, again at " .. files .. ":2", 1, true), err)
    assert.is_nil(err:find("snailjob.lua:", 1, true), err)
  end)

  it("explain the ?.lua template for a directory as SNAIL_LUA_PATH", function()
    local ok, err = pcall(t.run, { files = files, executor = "okfail",
                                   env = { SNAIL_LUA_PATH = dir .. "/mods" } })
    assert.is_false(ok)
    assert.truthy(err:find("SNAIL_LUA_PATH: '" .. dir .. "/mods' has no '?'",
      1, true), err)
    assert.truthy(err:find(dir .. "/mods/?.lua;" .. dir .. "/mods/?/init.lua",
      1, true), err)
  end)
end)

describe("each command's --help", function()
  local bin = "'" .. t.binary() .. "'"

  it("run --help documents run, stages and chains only", function()
    local out = sh(bin .. " run --help")
    assert.truthy(out:find("usage: snailjob-lua [-c FILE] run EXECUTOR", 1,
      true), out)
    assert.truthy(out:find("--stage reduce", 1, true))
    assert.truthy(out:find("--then", 1, true))
    assert.is_nil(out:find("check: validate", 1, true))
  end)

  it("check --help and replay --help have their own text", function()
    local check = sh(bin .. " check --help")
    assert.truthy(check:find("usage: snailjob-lua [-c FILE] check", 1, true))
    assert.is_nil(check:find("--stage", 1, true))
    local replay = sh(bin .. " replay --help")
    assert.truthy(replay:find("record_dir", 1, true))
    assert.is_nil(replay:find("usage: snailjob-lua [-c FILE] check", 1, true))
  end)
end)

describe("run's text output", function()
  teardown(scratch.remove) -- the last describe of this file
  local bin = "'" .. t.binary() .. "'"
  local env = "SNAIL_EXECUTORS='" .. files .. "' "

  it("shows a stage's mr_do_map call and where a chain stopped", function()
    local chain = write("chain.lua", [[
local sj = require "snailjob"
sj.job("one", function(args) args:append_context("k", 1) end)
local m = sj.map("fan")
m:map(function() return sj.mr_do_map({ "a", "b" }, "LEAF") end)
]])
    local e = "SNAIL_EXECUTORS='" .. chain .. ":" .. files .. "' "
    local out = sh(e .. bin .. " run fan --stage map")
    assert.truthy(out:find('mr_do_map ["a","b"] -> LEAF', 1, true), out)
    out = sh(e .. bin .. " run one --then okfail --then one")
    assert.truthy(out:find("== workflow node 2 of 3: okfail ==", 1, true), out)
    assert.truthy(out:find("workflow  FAIL at node 2 of 3 (okfail); the " ..
      "rest did not run", 1, true), out)
    assert.is_nil(out:find("node 3 of 3", 1, true), out)
  end)

  it("refuses --reduces without --stage merge, naming both", function()
    local out = sh(env .. bin .. " run okfail --reduces '[1]'")
    assert.truthy(out:find("--reduces: needs --stage merge", 1, true), out)
  end)
end)
