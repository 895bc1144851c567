-- wrk script: replays a file of prepared requests, each thread its own slice; checks every
-- answer; optionally paces each connection with a random pause of the given mean.
-- args: <requests file> <expected body substring> <delay ms per request, 0 = flat out> <threads>
--       <first request (0-based)> <fresh: 1 = send each request once and stop when they run out,
--       0 = cycle through them>
-- file format, one request per line: METHOD \t PATH \t header:value|header:value \t BODY

local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("tid", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

function init(args)
  requests = {}
  for line in io.lines(args[1]) do
    local method, path, headers_text, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    local headers = {}
    for pair in headers_text:gmatch("[^|]+") do
      local k, v = pair:match("^([^:]+):(.*)$")
      headers[k] = v
    end
    if body == "" then body = nil end
    table.insert(requests, wrk.format(method, path, headers, body))
  end
  expected = args[2]
  pause = tonumber(args[3])
  counter = 0
  math.randomseed(os.time() + tid * 7919)
  bad = 0
  wrapped = 0
  stride = tonumber(args[4])
  first = tonumber(args[5])
  fresh = args[6] == "1"
end

function request()
  local index = first + counter * stride + tid
  counter = counter + 1
  if index >= #requests then
    if fresh then
      -- Every prepared request was sent once: this thread is done (its last answers still count).
      wrk.thread:stop()
    end
    wrapped = wrapped + 1
  end
  return requests[(index % #requests) + 1]
end

-- A random pause around the mean (uniform, 0 to twice the mean): connections drift apart, so the
-- paced run sends independent requests instead of bursts of all connections at once.
function delay()
  if pause == 0 then return 0 end
  return math.random(0, 2 * pause)
end

function response(status, headers, body)
  if status < 200 or status > 299 or (expected ~= "" and not string.find(body, expected, 1, true)) then
    bad = bad + 1
    if bad <= 3 then io.stderr:write("unexpected answer " .. status .. ": " .. string.sub(body or "", 1, 200) .. "\n") end
  end
end

function done(summary, latency, requests_)
  local bad_total, wrapped_total = 0, 0
  for _, t in ipairs(threads) do
    bad_total = bad_total + t:get("bad")
    wrapped_total = wrapped_total + t:get("wrapped")
  end
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"bad":%d,"socket_errors":%d,"reused":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    bad_total + e.status, e.connect + e.read + e.write + e.timeout, wrapped_total))
end
