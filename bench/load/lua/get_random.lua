-- GET BENCH_PATH with {} replaced by a random line of BENCH_IDS (an id, or an encoded filter value).
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local ids
local template = os.getenv("BENCH_PATH")
function init(args)
  ids = read_lines(os.getenv("BENCH_IDS"))
  math.randomseed(os.time() + thread_index)
end
function request()
  local path = string.gsub(template, "{}", literal(ids[math.random(#ids)]), 1)
  return wrk.format("GET", path, headers)
end
