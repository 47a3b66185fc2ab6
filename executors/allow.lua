-- builtin/allow.lua - the `http_allow` host patterns of the built-in
-- executors. The host runs this file with the setting's list and passes
-- the function it returns to the other built-in files as
-- conf.host_allowed(host).
--
-- "*.example.com" matches any name below example.com; "*" matches any
-- host; other patterns match the host exactly; case does not matter. An
-- empty list allows every host.
local patterns = ... or {}

return function(host)
  if #patterns == 0 then return true end
  if type(host) ~= "string" or host == "" then return false end
  host = host:lower()
  for _, p in ipairs(patterns) do
    p = p:lower()
    if p == "*" or p == host then return true end
    if p:sub(1, 2) == "*." then
      local suffix = p:sub(2) -- ".example.com"
      if #host > #suffix and host:sub(-#suffix) == suffix then return true end
    end
  end
  return false
end
