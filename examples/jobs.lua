-- jobs.lua - the seed's plain-job examples, ported from the SnailJob
-- Python client's demo executors (lua-api.md "Declaring executors").
--
--   snailjob-lua run testJobExecutor --params 3
--   snailjob-lua run testJobExecutor --timeout 3     (stopped by the timeout)
--   snailjob-lua run testShardingJobExecutor --params '["a","b","c"]'
--   snailjob-lua run testWorkflowExecutor --wf-context '{"orders":3}'
local sj = require "snailjob"

-- A long job: 40 steps of one second (or as many as a numeric job
-- parameter says). The Python seed polls a stop event between sleeps; here
-- sj.sleep is the interruption point: a stop from the console or the
-- executor timeout ends the handler right there, with no check to write.
-- What must be undone either way goes in a to-be-closed variable: its
-- __close runs when the handler returns, raises or is interrupted (within
-- the cleanup_budget setting, 1 s by default).
sj.job("testJobExecutor", function(args)
  local steps = math.tointeger(tonumber(args.job_params)) or 40
  sj.log.info("testJobExecutor started, job_params: %s", args.job_params)
  local step = 0
  local progress <close> = setmetatable({}, {
    __close = function(_, err)
      if err ~= nil then -- interrupted (or failed) at this step
        sj.log.warn("cleaning up after step %d of %d", step, steps)
      end
    end,
  })
  for i = 1, steps do
    step = i
    sj.log.info("step %d of %d", i, steps)
    sj.sleep(1)
  end
  return sj.success(string.format("all %d steps done", steps))
end)

-- A job that always fails: its message is what the console shows.
sj.job("testJobExecutorFailed", function(args)
  sj.log.error("this executor fails on purpose (job_params: %s)",
    args.job_params)
  return sj.failure("testJobExecutorFailed: failed on purpose")
end)

-- Static sharding: the job parameter is a JSON list of strings on the
-- server; each shard receives its own element as job_params.
sj.job("testShardingJobExecutor", function(args)
  sj.log.info("shard %s of %s: %s", tostring(args.sharding_index),
    tostring(args.sharding_total), args.job_params)
  return sj.success({
    shard = args.sharding_index,
    total = args.sharding_total,
    item = args.job_params,
  })
end)

-- A workflow node: reads the workflow context and appends to it; the next
-- node of the workflow sees the keys appended here.
sj.job("testWorkflowExecutor", function(args)
  local orders = tonumber(args:get_wf_context("orders")) or 0
  sj.log.info("workflow context orders = %d", orders)
  args:append_context("orders", orders + 1)
  args:append_context("checkedBy", "testWorkflowExecutor")
  return sj.success({ orders = orders + 1 })
end)
