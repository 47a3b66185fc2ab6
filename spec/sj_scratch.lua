-- A scratch directory for specs that write executor files (not a spec:
-- busted runs only *_spec.lua). Used as `local scratch = require
-- "sj_scratch"(); local path = scratch.write("e.lua", text)`; a
-- teardown calls scratch.remove().
return function()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p '" .. dir .. "'"))
  local s = { dir = dir }
  function s.write(name, text)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
    return dir .. "/" .. name
  end
  function s.remove()
    os.execute("rm -rf '" .. dir .. "'")
  end
  return s
end
