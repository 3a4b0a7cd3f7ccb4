dofile(os.getenv("BENCH_LUA") .. "/common.lua")
function request()
  return wrk.format("POST", "/insert", headers, '{"attributes":{"userName":"x"},"active":true}')
end
