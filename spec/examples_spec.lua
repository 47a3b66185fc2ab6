-- Executor specs: one per example of examples/, written the way an author
-- would write them, with snailjob.testing. Each runs the real binary's
-- `snailjob-lua run --json` (the embedded server emulation, the same
-- dispatch path and state machine as production).

local t = require "snailjob.testing"

local src = os.getenv("SJ_SOURCE_DIR") or "."
local examples = src .. "/examples"

local function run(o)
  o.files = examples
  return t.run(o)
end

describe("commandJob", function()
  it("runs a program and streams its output", function()
    local r = run{ executor = "commandJob", params = "echo hello world" }
    assert.are.equal("SUCCESS", r.status)
    assert.are.same({ code = 0, lines = 1 }, t.decode(r.result))
    local seen = false
    for _, m in ipairs(t.messages(r)) do
      seen = seen or m:find("hello world", 1, true) ~= nil
    end
    assert.is_true(seen)
  end)

  it("fails with the exit code", function()
    local r = run{ executor = "commandJob", params = "false" }
    assert.are.equal(1, r.exit_code)
    assert.are.equal("FAIL", r.status)
  end)
end)

describe("a built-in executor that is not enabled", function()
  it("is refused, naming the setting", function()
    local ok, err = pcall(run, { executor = "snailJobShellJobExecutor" })
    assert.is_false(ok)
    assert.truthy(err:find("(exit 1)", 1, true), err)
    assert.truthy(err:find("SNAIL_BUILTINS=shell", 1, true), err)
  end)
end)

describe("httpCheckJob", function()
  it("fails naming the URL it cannot reach", function()
    local r = run{ executor = "httpCheckJob",
                   params = "http://127.0.0.1:1/nothing-listens" }
    assert.are.equal(1, r.exit_code)
    assert.are.equal("FAIL", r.status)
    assert.truthy(r.tasks[1].message:find("127.0.0.1:1/nothing-listens", 1,
      true), r.tasks[1].message)
  end)
end)

describe("testJobExecutor", function()
  it("runs its steps and succeeds", function()
    local r = run{ executor = "testJobExecutor", params = "1" }
    assert.are.equal("SUCCESS", r.status)
    assert.are.equal("all 1 steps done", r.result)
    assert.are.same({ "testJobExecutor started, job_params: 1",
                      "step 1 of 1" }, t.messages(r))
  end)

  it("is stopped by its timeout", function()
    local r = run{ executor = "testJobExecutor", timeout = 1 }
    assert.are.equal(1, r.exit_code)
    assert.are.equal("STOP", r.status)
  end)
end)

describe("testJobExecutorFailed", function()
  it("fails with its message", function()
    local r = run{ executor = "testJobExecutorFailed", params = "x" }
    assert.are.equal(1, r.exit_code)
    assert.are.equal("FAIL", r.status)
    assert.are.equal("testJobExecutorFailed: failed on purpose",
      r.tasks[1].message)
  end)
end)

describe("testShardingJobExecutor", function()
  it("gives each shard its element", function()
    local r = run{ executor = "testShardingJobExecutor", type = "sharding",
                   params = { "north", "south", "east" } }
    assert.are.equal("SUCCESS", r.status)
    local items = {}
    for _, task in ipairs(r.tasks) do
      local res = t.decode(task.result)
      items[res.shard + 1] = res.item
      assert.are.equal(3, res.total)
    end
    assert.are.same({ "north", "south", "east" }, items)
  end)

  it("runs one shard alone", function()
    local r = t.stage{ files = examples, executor = "testShardingJobExecutor",
                       params = "west", sharding_index = 3,
                       sharding_total = 4 }
    assert.are.same({ item = "west", shard = 3, total = 4 },
      t.decode(r.result))
  end)
end)

describe("testWorkflowExecutor", function()
  it("reads and appends the workflow context", function()
    local r = run{ executor = "testWorkflowExecutor",
                   wf_context = { orders = 3 } }
    assert.are.equal("SUCCESS", r.status)
    assert.are.equal(4, r.wf_context.orders)
    assert.are.equal("testWorkflowExecutor", r.wf_context.checkedBy)
  end)

  it("counts on through a workflow chain", function()
    local r = t.workflow{ files = examples, wf_context = { orders = 0 },
      { executor = "testWorkflowExecutor" },
      { executor = "testWorkflowExecutor" } }
    assert.are.equal("SUCCESS", r.status)
    assert.are.equal(2, r.wf_context.orders)
  end)
end)

describe("testMyMapExecutor", function()
  it("fans out four sub-tasks", function()
    local r = run{ executor = "testMyMapExecutor" }
    assert.are.equal("SUCCESS", r.status)
    assert.are.same({ "1", "2", "3", "4" }, t.decode(r.result))
  end)

  it("asks for TWO_MAP sub-tasks at ROOT_MAP", function()
    local r = t.stage{ files = examples, executor = "testMyMapExecutor" }
    assert.are.equal("TWO_MAP", r.mr_do_map.task_name)
    assert.are.same({ "1", "2", "3", "4" }, r.mr_do_map.list)
  end)
end)

describe("testMapReduceJobExecutor", function()
  it("sums the doubled 1..6 to 42 with 1, 2 or 3 reduce tasks", function()
    for shards = 1, 3 do
      local r = run{ executor = "testMapReduceJobExecutor", shards = shards }
      assert.are.equal("SUCCESS", r.status)
      assert.are.equal("42", r.result)
    end
  end)

  it("doubles one month in MONTH_MAP", function()
    local r = t.stage{ files = examples, executor = "testMapReduceJobExecutor",
                       task_name = "MONTH_MAP", map_result = 21 }
    assert.are.equal("42", r.result)
  end)

  it("reduces and merges hand-made inputs", function()
    local r = t.stage{ files = examples, executor = "testMapReduceJobExecutor",
                       map_result = { 2, 4, 6 } }
    assert.are.equal("12", r.result)
    r = t.stage{ files = examples, executor = "testMapReduceJobExecutor",
                 reduces = { "12", "30" } }
    assert.are.equal("42", r.result)
  end)
end)
