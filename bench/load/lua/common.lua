-- Shared by the scenarios: each wrk thread gets an index, ids come from a file, headers from the environment.
local threads = {}
function setup(thread)
  thread:set("thread_index", #threads)
  table.insert(threads, thread)
end

function read_lines(path)
  local lines = {}
  if path == nil then return lines end
  for line in io.lines(path) do table.insert(lines, line) end
  return lines
end

-- A value to substitute with gsub: "%" is special in a replacement string, and encoded URLs are full of it.
function literal(value)
  return (string.gsub(value, "%%", "%%%%"))
end

headers = {["Content-Type"] = "application/scim+json"}
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then headers["Authorization"] = "Bearer " .. token end
