-- http.lua - an HTTP job: GET the URL given as the job parameter and
-- succeed when it answers 2xx; the result is the status and the body size.
-- sj.http is a cancellation point: a stop from the console or the executor
-- timeout aborts the transfer at once (lua-api.md "Talking to the world").
--
--   snailjob-lua run httpCheckJob --params https://example.com/
local sj = require "snailjob"

sj.job("httpCheckJob", function(args)
  local url = args.job_params ~= "" and args.job_params
              or "https://example.com/"
  -- refused, DNS, TLS and timeouts are errors; any status is a response
  local ok, r = pcall(sj.http.get, url, { timeout = 10 })
  if not ok then
    return sj.failure(r)
  end
  sj.log.info("%s answered %d (%d bytes, %s)", url, r.status, #r.body,
              r.headers["content-type"] or "no content-type")
  if r.status < 200 or r.status > 299 then
    return sj.failure("HTTP " .. r.status .. " from " .. url)
  end
  return sj.success({ status = r.status, bytes = #r.body })
end)
