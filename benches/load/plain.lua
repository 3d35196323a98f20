-- wrk script for throughput runs (benches/load.rs): one fixed URL, no per-response Lua, so wrk
-- spends its CPU on the connection and not in the script. Prints the same "KC " summary lines
-- as mix.lua.

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "KC summary requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout))
  io.write(string.format("KC wrk_latency p50=%d p95=%d p99=%d p999=%d max=%d\n",
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
