-- POST /Users with a userName no request has used before.
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local counter = 0
local run = os.getenv("BENCH_RUN") or "run"
local path = os.getenv("BENCH_PATH")
function request()
  counter = counter + 1
  local name = string.format("%s-t%d-%d@bench.example", run, thread_index, counter)
  local body = '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"' .. name ..
    '","name":{"givenName":"Bench","familyName":"User"},"emails":[{"primary":true,"value":"' .. name ..
    '","type":"work"}],"displayName":"Bench User","active":true}'
  return wrk.format("POST", path, headers, body)
end
