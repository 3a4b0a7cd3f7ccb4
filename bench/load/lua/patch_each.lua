-- PATCH, each request on the next id of this thread's share of BENCH_IDS, with BENCH_BODY ({} = the id).
dofile(os.getenv("BENCH_LUA") .. "/common.lua")
local ids
local position
local template_path = os.getenv("BENCH_PATH")
local template_body = os.getenv("BENCH_BODY")
local stride = tonumber(os.getenv("BENCH_THREADS") or "2")
function init(args)
  ids = read_lines(os.getenv("BENCH_IDS"))
  position = thread_index + 1
end
function request()
  local id = ids[((position - 1) % #ids) + 1]
  position = position + stride
  local path = string.gsub(template_path, "{}", literal(id), 1)
  local body = string.gsub(template_body, "{}", literal(id))
  return wrk.format("PATCH", path, headers, body)
end
