-- command.lua - a command job: run the program given as the job parameter
-- (words split on blanks; no shell), its output streamed to the task log
-- line by line while it runs. A stop from the console or the executor
-- timeout ends it and everything it started (its process group).
--
--   snailjob-lua run commandJob --params 'df -h /'
local sj = require "snailjob"

sj.job("commandJob", function(args)
  local argv = {}
  local line = args.job_params ~= "" and args.job_params or "uname -a"
  for word in line:gmatch("%S+") do
    argv[#argv + 1] = word
  end
  argv.timeout = 300 -- seconds; the call's own limit (a catchable error)
  local r = sj.exec(argv)
  if r.code ~= 0 then
    return sj.failure(string.format("%s ended with %s", argv[1],
      r.code and ("exit code " .. r.code) or ("signal " .. r.signal)))
  end
  local n = 0
  for _ in r.stdout:gmatch("[^\n]+") do n = n + 1 end
  return sj.success({ code = r.code, lines = n })
end)
