-- agent_latency.lua — wrk script for bench/agent_bench.py: prints the median
-- latency in microseconds (wrk's own table rounds to 10 us), the number of
-- requests and of errors, on one line the benchmark parses.
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
                 + summary.errors.status + summary.errors.timeout
  io.write(string.format("agent-bench p50_us=%.1f requests=%d errors=%d\n",
                         latency:percentile(50), summary.requests, errors))
end
