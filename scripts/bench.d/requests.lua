-- wrk script: replays a file of prepared requests, each thread its own slice; checks every
-- answer; optionally paces each connection with a random pause of the given mean.
-- args: <requests file> <expected body substring> <mean pause ms per request, 0 = flat out> <threads>
--       <first request (0-based)> <fresh: 1 = send each request once and stop when they run out,
--       0 = cycle through them>
-- file format, one request per line: METHOD \t PATH \t header:value|header:value \t BODY

local threads = {}
local thread_count = 0

-- A clock for when requests were in flight: wrk's own duration is the whole -d, also when the
-- prepared requests of a fresh run ran out before it ended.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *now);
]]
local clock_now = ffi.new("bench_timespec")
local function now_us()
  ffi.C.clock_gettime(1, clock_now) -- CLOCK_MONOTONIC
  return tonumber(clock_now.tv_sec) * 1e6 + tonumber(clock_now.tv_nsec) / 1e3
end

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
  first_sent_us = 0
  last_answer_us = 0
end

function request()
  if first_sent_us == 0 then first_sent_us = now_us() end
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
-- paced run sends independent requests instead of bursts of all connections at once. wrk waits
-- whole milliseconds, so the pause is rounded up or down at random, in proportion: its mean stays
-- the one asked for, also below a millisecond.
function delay()
  if pause == 0 then return 0 end
  local wanted = math.random() * 2 * pause
  local whole = math.floor(wanted)
  if math.random() < wanted - whole then whole = whole + 1 end
  return whole
end

function response(status, headers, body)
  last_answer_us = now_us()
  if status < 200 or status > 299 or (expected ~= "" and not string.find(body, expected, 1, true)) then
    bad = bad + 1
    if bad <= 3 then io.stderr:write("unexpected answer " .. status .. ": " .. string.sub(body or "", 1, 200) .. "\n") end
  end
end

function done(summary, latency, requests_)
  local bad_total, wrapped_total, first_us, last_us = 0, 0, math.huge, 0
  for _, t in ipairs(threads) do
    bad_total = bad_total + t:get("bad")
    wrapped_total = wrapped_total + t:get("wrapped")
    local sent = t:get("first_sent_us")
    if sent > 0 then first_us = math.min(first_us, sent) end
    last_us = math.max(last_us, t:get("last_answer_us"))
  end
  local active_us = last_us > first_us and last_us - first_us or summary.duration
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"active_us":%d,"min_us":%d,"p50_us":%d,"p99_us":%d,"bad":%d,"socket_errors":%d,"reused":%d}\n',
    summary.requests, summary.duration, active_us, latency.min, latency:percentile(50), latency:percentile(99),
    bad_total + e.status, e.connect + e.read + e.write + e.timeout, wrapped_total))
end
