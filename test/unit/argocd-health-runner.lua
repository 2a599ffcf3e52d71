-- Runs deploy/argocd/health.lua the way Argo CD does: the object as the global `obj` (JSON null
-- becomes nil, as in Argo CD's Go-to-Lua conversion), only the safe base functions and the
-- string, table and math libraries in scope. Reads the object as JSON on stdin, prints the result.
local cjson = require("cjson")

local function strip(v)
  if v == cjson.null then
    return nil
  end
  if type(v) == "table" then
    local out = {}
    for k, x in pairs(v) do
      out[k] = strip(x)
    end
    return out
  end
  return v
end

local env = {
  obj = strip(cjson.decode(io.read("*a"))),
  ipairs = ipairs, pairs = pairs, next = next, type = type, tostring = tostring, tonumber = tonumber,
  select = select, unpack = unpack, pcall = pcall, error = error, assert = assert,
  string = string, table = table, math = math,
}
local chunk = assert(loadfile(arg[1]))
setfenv(chunk, env)
local hs = chunk()
io.write(cjson.encode(hs))
