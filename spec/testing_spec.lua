-- snailjob.testing drives the real binary (`snailjob-lua run --json` and
-- `replay`): every job type, one stage with crafted input, a workflow
-- chain, a replayed dispatch, and its JSON decoder's exactness.

local t = require "snailjob.testing"

local scratch = require "sj_scratch"()
local dir, write = scratch.dir, scratch.write

local files = write("t.lua", [[
local sj = require "snailjob"
sj.job("echo", function(args)
  sj.log.info("echo %s", args.job_params)
  return sj.success({ params = args.job_params, z = 1, a = 2, r = 0.1,
                      shard = args.sharding_index,
                      total = args.sharding_total })
end)
sj.job("bump", function(args)
  local n = tonumber(args:get_wf_context("n")) or 0
  args:append_context("n", n + 1)
  args:append_context("by_" .. args.job_params, true)
  return sj.success(n + 1)
end)
sj.job("fail", function() return sj.failure("no luck") end)
local m = sj.map("fan")
m:map(function() return sj.mr_do_map({ "a", "b", "c" }, "LEAF") end)
m:map("LEAF", function(args) return sj.success(args.map_result .. "!") end)
local mr = sj.map_reduce("count")
mr:map(function() return sj.mr_do_map({ "x y", "y z z" }, "LINE") end)
mr:map("LINE", function(args)
  local n = 0
  for _ in args.map_result:gmatch("%S+") do n = n + 1 end
  sj.log.info("line of %d words", n)
  return sj.success(n)
end)
mr:reduce(function(args)
  local s = 0
  for _, x in ipairs(args.map_result) do s = s + tonumber(x) end
  return sj.success(s)
end)
mr:merge(function(args)
  local s = 0
  for _, x in ipairs(args.reduces) do s = s + tonumber(x) end
  return sj.success(s)
end)
]])

describe("snailjob.testing", function()
  teardown(scratch.remove)

  describe("JSON", function()
    it("keeps 64-bit integers exact", function()
      local v = t.decode('{"id":1234567890123456789,"f":1.5,"n":[1,null]}')
      assert.are.equal(1234567890123456789, v.id)
      assert.are.equal("integer", math.type(v.id))
      assert.are.equal(1.5, v.f)
      assert.are.equal(t.null, v.n[2])
      assert.are.equal(2, #v.n)
    end)

    it("decodes escapes and reports bad input", function()
      assert.are.equal("a\"\n\u{e9}\u{1F600}",
        t.decode('"a\\"\\n\\u00e9\\ud83d\\ude00"'))
      local v, err = t.decode('{"a":}')
      assert.is_nil(v)
      assert.truthy(err:find("bad JSON at byte 6", 1, true))
      assert.is_nil((t.decode("[1] x")))
    end)

    it("encodes with sorted keys", function()
      assert.are.equal('{"a":[1,2],"b":{"c":"x\\n"},"z":null}',
        t.encode({ z = t.null, a = { 1, 2 }, b = { c = "x\n" } }))
      assert.are.equal("9007199254740993", t.encode(9007199254740993))
    end)
  end)

  describe("run", function()
    it("runs a cluster job: status, result, logs, exact ids", function()
      local r = t.run{ files = files, executor = "echo", params = "hi" }
      assert.are.equal("SUCCESS", r.status)
      assert.are.equal(0, r.exit_code)
      -- keys sorted on the way to the server, whatever Lua's table order,
      -- and 0.1 written as sj.json.encode writes it
      assert.are.equal('{"a":2,"params":"hi","r":0.1,"z":1}', r.result)
      assert.are.equal("integer", math.type(r.tasks[1].id))
      assert.is_true(r.tasks[1].id > 1000000000000000000)
      assert.are.same({ "echo hi" }, t.messages(r))
      assert.are.equal(0, r.logs_dropped)
    end)

    it("runs a broadcast on every simulated node", function()
      local r = t.run{ files = files, executor = "echo", type = "broadcast",
                       nodes = 3, params = "b" }
      assert.are.equal("SUCCESS", r.status)
      assert.are.equal(3, #r.tasks)
    end)

    it("runs a static sharding job, one task per element", function()
      local r = t.run{ files = files, executor = "echo", type = "sharding",
                       params = { "p", "q" } }
      assert.are.equal("SUCCESS", r.status)
      assert.are.equal(2, #r.tasks)
      local second = t.decode(r.tasks[2].result)
      assert.are.equal("q", second.params)
      assert.are.equal(1, second.shard)
      assert.are.equal(2, second.total)
    end)

    it("runs a map job to its leaves", function()
      local r = t.run{ files = files, executor = "fan" }
      assert.are.equal("SUCCESS", r.status)
      assert.are.same({ "a!", "b!", "c!" }, t.decode(r.result))
      assert.are.equal("LEAF", r.mr_do_map[1].task_name)
    end)

    it("runs a mapreduce job through reduce and merge", function()
      local r = t.run{ files = files, executor = "count", shards = 2 }
      assert.are.equal("SUCCESS", r.status)
      assert.are.equal("5", r.result)
    end)

    it("reports a failure and its exit status", function()
      local r = t.run{ files = files, executor = "fail" }
      assert.are.equal("FAIL", r.status)
      assert.are.equal(1, r.exit_code)
      assert.are.equal("no luck", r.tasks[1].message)
    end)

    it("raises with the host's message when nothing ran", function()
      local ok, err = pcall(t.run, { files = files, executor = "ecko" })
      assert.is_false(ok)
      assert.truthy(err:find("did you mean 'echo'", 1, true))
    end)
  end)

  describe("the loading model (docs/lua-api.md)", function()
    it("keeps module state between tasks of one worker", function()
      local counter = write("counter.lua", [[
local sj = require "snailjob"
local loads = 0
loads = loads + 1 -- top-level code: once per worker state
local calls = 0
sj.job("counter", function()
  calls = calls + 1
  return sj.success({ calls = calls, loads = loads })
end)
]])
      local r = t.run{ files = counter, executor = "counter",
                       type = "broadcast", nodes = 3,
                       env = { SNAIL_WORKERS = "1" } }
      assert.are.equal("SUCCESS", r.status)
      local calls = {}
      for _, task in ipairs(r.tasks) do
        local v = t.decode(task.result)
        assert.are.equal(1, v.loads)
        calls[#calls + 1] = v.calls
      end
      table.sort(calls)
      assert.are.same({ 1, 2, 3 }, calls)
    end)
  end)

  describe("stage", function()
    it("runs ROOT_MAP alone and returns its mr_do_map call", function()
      local r = t.stage{ files = files, executor = "count" }
      assert.are.equal("SUCCESS", r.status)
      assert.are.equal(1, #r.tasks)
      assert.are.equal("ROOT_MAP", r.task.name)
      assert.are.same({ task_name = "LINE", list = { "x y", "y z z" },
                        parent_id = r.task.id }, r.mr_do_map)
    end)

    it("runs one named map task with its element", function()
      local r = t.stage{ files = files, executor = "count", task_name = "LINE",
                         map_result = "one two three four" }
      assert.are.equal("4", r.result)
      assert.are.same({ "line of 4 words" }, t.messages(r))
      assert.is_nil(r.mr_do_map)
    end)

    it("runs a reduce with hand-made map results", function()
      local r = t.stage{ files = files, executor = "count",
                         map_result = { 1, "2", 39 } }
      assert.are.equal("REDUCE", r.task.stage)
      assert.are.equal("42", r.result)
    end)

    it("runs a merge with hand-made reduce results", function()
      local r = t.stage{ files = files, executor = "count",
                         reduces = { "40", "2" } }
      assert.are.equal("MERGE", r.task.stage)
      assert.are.equal("42", r.result)
    end)

    it("runs one shard of a sharding job", function()
      local r = t.stage{ files = files, executor = "echo", params = "s",
                         sharding_index = 2, sharding_total = 5 }
      local v = t.decode(r.result)
      assert.are.equal(2, v.shard)
      assert.are.equal(5, v.total)
    end)

    it("refuses a reduce stage of a plain job", function()
      local ok, err = pcall(t.stage, { files = files, executor = "echo",
                                       map_result = { 1 } })
      assert.is_false(ok)
      assert.truthy(err:find("map_reduce executors", 1, true))
    end)
  end)

  describe("workflow", function()
    it("passes the merged context from node to node", function()
      local r = t.workflow{ files = files, wf_context = { n = 10 },
        { executor = "bump", params = "first" },
        { executor = "bump", params = "second" },
        { executor = "bump", params = "third" } }
      assert.are.equal("SUCCESS", r.status)
      assert.are.equal(3, #r.nodes)
      assert.are.equal(13, r.wf_context.n)
      assert.is_true(r.wf_context.by_first)
      assert.is_true(r.wf_context.by_third)
      assert.are.same({ by_second = true, n = 12 }, r.nodes[2].wf_changed)
      assert.are.equal("12", r.nodes[2].result)
    end)

    it("stops at the first node that fails", function()
      local r = t.workflow{ files = files,
        { executor = "bump", params = "a" },
        { executor = "fail" },
        { executor = "bump", params = "c" } }
      assert.are.equal("FAIL", r.status)
      assert.are.equal(2, #r.nodes)
      assert.are.equal(1, r.exit_code)
    end)
  end)

  describe("replay", function()
    it("reruns a recorded dispatch: its stage, input and context", function()
      local rec = write("dispatch.json", t.encode({
        format = "snailjob-lua dispatch 1",
        uri = "/job/dispatch/v1",
        headers = { ["SJ-TOKEN"] = "***" },
        body = { {
          executorInfo = "count", taskType = 5, mrStage = 2,
          taskName = "REDUCE_TASK", taskBatchId = 1234567890123456789,
          taskId = 1234567890123456790, jobId = 7, executorTimeout = 30,
          argsStr = t.encode({ jobParams = "p", maps = { "1", "2" } }),
          wfContext = '{"k":"v"}', workflowTaskBatchId = 3,
          workflowNodeId = 4,
        } },
      }))
      local r = t.replay{ files = files, file = rec }
      assert.are.equal("SUCCESS", r.status)
      assert.are.equal("REDUCE", r.task and r.task.stage or r.tasks[1].stage)
      assert.are.equal("3", r.result)
      assert.are.equal("v", r.wf_context.k)
    end)

    it("names a file that is not a record", function()
      local bad = write("bad.json", '{"body": 1}')
      local ok, err = pcall(t.replay, { files = files, file = bad })
      assert.is_false(ok)
      assert.truthy(err:find("not a recorded dispatch", 1, true))
    end)
  end)
end)
