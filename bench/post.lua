-- wrk script for bench/load.py: POST one JSON body, a distinct Idempotency-Key per request,
-- and count the answers by status (2xx, 503, other), so only successes are reported.
--   wrk ... -s bench/post.lua URL -- BODY KEY_PREFIX [AUTHORIZATION]
-- The last line it prints is `WRK name=value ...`, which bench/load.py reads.

local threads = {}

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.body = args[1]
  wrk.headers["Content-Type"] = "application/json"
  if args[3] and args[3] ~= "" then
    wrk.headers["Authorization"] = args[3]
  end
  -- The prefix is random per run, the thread id tells threads apart, the counter requests.
  key_prefix = args[2] .. "-" .. thread_id .. "-"
  counter = 0
  ok, refused, other = 0, 0, 0
end

function request()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = key_prefix .. counter
  return wrk.format()
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  elseif status == 503 then
    refused = refused + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local ok_total, refused_total, other_total = 0, 0, 0
  for _, thread in ipairs(threads) do
    ok_total = ok_total + thread:get("ok")
    refused_total = refused_total + thread:get("refused")
    other_total = other_total + thread:get("other")
  end
  local errors = summary.errors
  io.write(string.format(
    "WRK ok=%d refused=%d other=%d requests=%d duration_us=%d socket_errors=%d p50_us=%d p99_us=%d\n",
    ok_total, refused_total, other_total, summary.requests, summary.duration,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99)
  ))
end
