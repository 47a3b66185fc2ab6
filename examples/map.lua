-- map.lua - the seed's dynamic sharding (Map) example.
--
--   snailjob-lua run testMyMapExecutor
local sj = require "snailjob"

local m = sj.map("testMyMapExecutor")

-- ROOT_MAP: split the work into four sub-tasks named TWO_MAP.
m:map(function(args)
  assert(args.task_name == sj.ROOT_MAP)
  sj.log.info("ROOT_MAP: fanning out 4 sub-tasks")
  return sj.mr_do_map({ "1", "2", "3", "4" }, "TWO_MAP")
end)

-- TWO_MAP: each sub-task gets its element as map_result.
m:map("TWO_MAP", function(args)
  sj.log.info("TWO_MAP: processing %s", args.map_result)
  return sj.success(args.map_result)
end)
