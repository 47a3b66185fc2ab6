-- Unit specs of lua/snailjob.lua, the declarative half of the `snailjob`
-- module. The C half (`snailjob.core`) is replaced by a fake that records
-- what the Lua half hands it; tests/c/test_vm.c covers the real one.

local function fake_core()
  local core = { registered = {}, order = {}, maps = {} }
  function core.register(name, kind, spec)
    if core.registered[name] then
      error("executor '" .. name .. "' declared twice", 2)
    end
    core.registered[name] = { kind = kind, spec = spec }
    core.order[#core.order + 1] = name
  end
  function core.set_result_mt(mt)
    core.result_mt = mt
  end
  -- sj.failure is core.failure (C, so that a bad argument names the
  -- caller's line; spec/errors_spec.lua runs the real one).
  function core.failure(message)
    if message == nil then message = "Task execution failed" end
    return setmetatable({ status = "failure", message = tostring(message) },
      core.result_mt)
  end
  function core.mr_do_map(list, name)
    core.maps[#core.maps + 1] = { list = list, name = name }
  end
  core.log = { info = function() end }
  core.hostlog = { info = function() end }
  core.sleep = function() end
  core.json = { encode = function() end, decode = function() end }
  return core
end

local function load_sj()
  local core = fake_core()
  package.loaded["snailjob"] = nil
  package.loaded["snailjob.core"] = nil
  package.preload["snailjob.core"] = function()
    return core
  end
  local sj = require "snailjob"
  return sj, core
end

describe("snailjob (Lua half)", function()
  local sj, core

  before_each(function()
    sj, core = load_sj()
  end)

  after_each(function()
    package.preload["snailjob.core"] = nil
    package.loaded["snailjob"] = nil
    package.loaded["snailjob.core"] = nil
  end)

  it("exports the fixed names", function()
    assert.equal("ROOT_MAP", sj.ROOT_MAP)
    for _, k in ipairs { "job", "map", "map_reduce", "success", "failure",
      "mr_do_map", "sleep" } do
      assert.equal("function", type(sj[k]), k)
    end
    assert.equal(core.log, sj.log)
    assert.equal(core.hostlog, sj.hostlog)
    assert.equal(core.json, sj.json)
  end)

  it("is not a global", function()
    assert.is_nil(rawget(_G, "snailjob"))
    assert.is_nil(rawget(_G, "sj"))
  end)

  describe("result markers", function()
    it("sj.success carries its value", function()
      local r = sj.success({ a = 1 })
      assert.equal("success", r.status)
      assert.same({ a = 1 }, r.value)
      assert.equal(core.result_mt, getmetatable(r))
      assert.is_true(sj.is_result(r))
    end)

    it("sj.success() has no value", function()
      local r = sj.success()
      assert.equal("success", r.status)
      assert.is_nil(r.value)
    end)

    it("sj.failure carries its message", function()
      local r = sj.failure("boom")
      assert.equal("failure", r.status)
      assert.equal("boom", r.message)
      assert.equal(core.result_mt, getmetatable(r))
      assert.equal("sj.failure(boom)", tostring(r))
    end)

    it("sj.failure() has the default message", function()
      assert.equal("Task execution failed", sj.failure().message)
      assert.equal("42", sj.failure(42).message)
    end)

    it("plain values are not results", function()
      assert.is_false(sj.is_result({ status = "success" }))
      assert.is_false(sj.is_result("x"))
    end)
  end)

  describe("sj.job", function()
    it("registers a job spec", function()
      local fn = function() end
      sj.job("a", fn)
      assert.same({ kind = "job", spec = { job = fn } }, core.registered.a)
    end)

    it("checks its arguments, blaming the caller", function()
      local ok, err = pcall(sj.job, "a", 1)
      assert.is_false(ok)
      assert.matches("sj.job: handler must be a function, got number", err,
        1, true)
      assert.has_error(function() sj.job("", function() end) end,
        "sj.job: executor name must not be empty")
      assert.has_error(function() sj.job(nil, function() end) end,
        "sj.job: executor name must be a string, got nil")
      -- the position is the caller's line, not snailjob.lua's
      local _, e = pcall(function() sj.job("x") end)
      assert.matches("snailjob_spec.lua:%d+: sj.job: handler", e)
    end)

    it("passes duplicates to the core, which refuses them", function()
      sj.job("a", function() end)
      assert.has_error(function() sj.job("a", function() end) end)
    end)
  end)

  describe("sj.map", function()
    it("collects named and unnamed map handlers", function()
      local root, two = function() end, function() end
      local m = sj.map("m")
      assert.equal(m, m:map(root))
      m:map("TWO_MAP", two)
      local reg = core.registered.m
      assert.equal("map", reg.kind)
      assert.equal(root, reg.spec.map.ROOT_MAP)
      assert.equal(two, reg.spec.map.TWO_MAP)
      assert.is_nil(m.reduce)
    end)

    it("refuses a handler declared twice", function()
      local m = sj.map("m")
      m:map(function() end)
      assert.has_error(function() m:map("ROOT_MAP", function() end) end,
        "sj.map 'm': map handler for task 'ROOT_MAP' declared twice")
    end)

    it("checks its arguments", function()
      local m = sj.map("m")
      assert.has_error(function() m:map("X") end,
        "sj.map 'm':map: handler must be a function, got nil")
      assert.has_error(function() m:map("", function() end) end,
        "sj.map 'm':map: task name must be a non-empty string")
      assert.has_error(function() m.map(function() end) end)
      local _, e = pcall(function() m.map(function() end) end)
      assert.matches("snailjob_spec.lua:%d+: map: call it as a method", e)
      assert.has_error(function() sj.map("") end,
        "sj.map: executor name must not be empty")
    end)

    it("hides its spec from the object", function()
      local m = sj.map("m")
      assert.is_nil(next(m))
    end)
  end)

  describe("sj.map_reduce", function()
    it("collects map, reduce and merge", function()
      local f1, f2, f3, f4 = function() end, function() end,
        function() end, function() end
      local mr = sj.map_reduce("mr")
      mr:map(f1):map("MONTH_MAP", f2)
      mr:reduce(f3)
      mr:merge(f4)
      local reg = core.registered.mr
      assert.equal("map_reduce", reg.kind)
      assert.equal(f1, reg.spec.map.ROOT_MAP)
      assert.equal(f2, reg.spec.map.MONTH_MAP)
      assert.equal(f3, reg.spec.reduce)
      assert.equal(f4, reg.spec.merge)
    end)

    it("refuses a second reduce or merge", function()
      local mr = sj.map_reduce("mr")
      mr:reduce(function() end)
      mr:merge(function() end)
      assert.has_error(function() mr:reduce(function() end) end,
        "sj.map_reduce 'mr': reduce handler declared twice")
      assert.has_error(function() mr:merge(function() end) end,
        "sj.map_reduce 'mr': merge handler declared twice")
      assert.has_error(function() mr:merge(1) end,
        "sj.map_reduce 'mr':merge: handler must be a function, got number")
    end)

    it("is not a map object", function()
      local m = sj.map("m")
      assert.is_nil(m.reduce)
      assert.is_nil(m.merge)
    end)
  end)

  describe("sj.mr_do_map", function()
    it("reports through the core and returns success", function()
      local r = sj.mr_do_map({ 1, 2 }, "TWO")
      assert.same({ { list = { 1, 2 }, name = "TWO" } }, core.maps)
      assert.equal("success", r.status)
      assert.is_nil(r.value)
    end)

    it("lets the core's errors through", function()
      core.mr_do_map = function() error("refused", 0) end
      assert.has_error(function() sj.mr_do_map({ 1 }, "X") end, "refused")
    end)
  end)
end)
