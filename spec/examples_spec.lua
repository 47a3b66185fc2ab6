-- Executor specs: every example of examples/ runs end to end through the
-- real binary's `snailjob-lua run --json` (the embedded server emulation,
-- the same dispatch path and state machine as production) and gives the
-- result the example promises. Ids are compared as text, never decoded:
-- cjson would round them through a double.

local cjson = require "cjson"

local bin = os.getenv("SJ_BINARY")
local src = os.getenv("SJ_SOURCE_DIR") or "."

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

-- Run `snailjob-lua run ARGS... --json`; returns the decoded report, the
-- exit status and the raw text.
local function run(...)
  local args = { ... }
  for i, a in ipairs(args) do args[i] = shell_quote(a) end
  local cmd = string.format(
    "cd %s && SNAIL_EXECUTORS=examples SNAIL_LOG_LEVEL=ERROR %s run %s --json 2>/dev/null",
    shell_quote(src), shell_quote(bin), table.concat(args, " "))
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  local _, _, code = p:close()
  local ok, report = pcall(cjson.decode, out)
  return ok and report or nil, code, out
end

local function results_of(report)
  local v = {}
  for _, t in ipairs(report.tasks) do v[#v + 1] = t end
  return v
end

describe("the examples, run locally", function()
  it("have a binary to run", function()
    assert.is_string(bin, "SJ_BINARY is not set")
  end)

  it("commandJob runs a program and streams its output", function()
    local r, code, out = run("commandJob", "--params", "echo hello world")
    assert.are.equal(0, code)
    assert.are.equal("SUCCESS", r.status)
    assert.are.same({ code = 0, lines = 1 }, cjson.decode(r.result))
    assert.truthy(out:find("hello world", 1, true))
  end)

  it("commandJob fails with the exit code", function()
    local r, code = run("commandJob", "--params", "false")
    assert.are.equal(1, code)
    assert.are.equal("FAIL", r.status)
  end)

  it("a built-in that is not enabled names the setting", function()
    local p = assert(io.popen(string.format(
      "cd %s && SNAIL_EXECUTORS=examples %s run snailJobShellJobExecutor 2>&1",
      shell_quote(src), shell_quote(bin))))
    local out = p:read("a")
    local _, _, code = p:close()
    assert.are.equal(1, code)
    assert.truthy(out:find("SNAIL_BUILTINS=shell", 1, true), out)
  end)

  it("httpCheckJob fails naming the URL it cannot reach", function()
    local r, code, out = run("httpCheckJob", "--params",
      "http://127.0.0.1:1/nothing-listens")
    assert.are.equal(1, code)
    assert.are.equal("FAIL", r.status)
    assert.truthy(out:find("127.0.0.1:1/nothing-listens", 1, true))
  end)

  it("testJobExecutor runs its steps and succeeds", function()
    local r, code = run("testJobExecutor", "--params", "1")
    assert.are.equal(0, code)
    assert.are.equal("SUCCESS", r.status)
    assert.are.equal("all 1 steps done", r.result)
  end)

  it("testJobExecutor is stopped by its timeout", function()
    local r, code = run("testJobExecutor", "--timeout", "1")
    assert.are.equal(1, code)
    assert.are.equal("STOP", r.status)
  end)

  it("testJobExecutorFailed fails with its message", function()
    local r, code, out = run("testJobExecutorFailed")
    assert.are.equal(1, code)
    assert.are.equal("FAIL", r.status)
    assert.truthy(out:find("failed on purpose", 1, true))
  end)

  it("testShardingJobExecutor gives each shard its element", function()
    local r, code = run("testShardingJobExecutor", "--type", "sharding",
      "--params", '["north","south","east"]')
    assert.are.equal(0, code)
    assert.are.equal("SUCCESS", r.status)
    local items = {}
    for _, t in ipairs(results_of(r)) do
      local res = cjson.decode(t.result)
      items[res.shard + 1] = res.item
      assert.are.equal(3, res.total)
    end
    assert.are.same({ "north", "south", "east" }, items)
  end)

  it("testWorkflowExecutor reads and appends the workflow context", function()
    local r, code = run("testWorkflowExecutor", "--wf-context",
      '{"orders":3}')
    assert.are.equal(0, code)
    assert.are.equal("SUCCESS", r.status)
    assert.are.equal(4, r.wf_context.orders)
    assert.are.equal("testWorkflowExecutor", r.wf_context.checkedBy)
  end)

  it("testMyMapExecutor fans out four sub-tasks", function()
    local r, code = run("testMyMapExecutor")
    assert.are.equal(0, code)
    assert.are.equal("SUCCESS", r.status)
    assert.are.same({ "1", "2", "3", "4" }, cjson.decode(r.result))
  end)

  it("testMapReduceJobExecutor sums the doubled 1..6 to 42", function()
    for _, shards in ipairs({ "1", "2", "3" }) do
      local r, code = run("testMapReduceJobExecutor", "--shards", shards)
      assert.are.equal(0, code)
      assert.are.equal("SUCCESS", r.status)
      assert.are.equal("42", r.result)
    end
  end)
end)
