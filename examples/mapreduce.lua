-- mapreduce.lua - the seed's MapReduce example: double 1..6, sum = 42.
--
--   snailjob-lua run testMapReduceJobExecutor --shards 2
local sj = require "snailjob"

local mr = sj.map_reduce("testMapReduceJobExecutor")

mr:map(function(args)
  return sj.mr_do_map({ 1, 2, 3, 4, 5, 6 }, "MONTH_MAP")
end)

mr:map("MONTH_MAP", function(args)
  local doubled = tonumber(args.map_result) * 2
  sj.log.info("MONTH_MAP: %s doubled is %d", tostring(args.map_result),
    doubled)
  return sj.success(doubled)
end)

-- args.map_result: this reduce task's share of the map results, as the
-- server delivers them (strings).
mr:reduce(function(args)
  local sum = 0
  for _, x in ipairs(args.map_result) do sum = sum + tonumber(x) end
  sj.log.info("REDUCE: %d map results sum to %d", #args.map_result, sum)
  return sj.success(sum)
end)

-- args.reduces: every reduce task's result (only with more than one).
mr:merge(function(args)
  local sum = 0
  for _, x in ipairs(args.reduces) do sum = sum + tonumber(x) end
  sj.log.info("MERGE: %d reduce results sum to %d", #args.reduces, sum)
  return sj.success(sum)
end)
