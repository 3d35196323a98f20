-- wrk script for the load suite (benches/load.rs writes the plan file and parses what
-- `done` prints). Debian's wrk embeds LuaJIT, so the FFI gives a monotonic clock.
--
-- Plan file (path in KC_PLAN), one directive per line:
--   tab <period_ms> <path> <path> ...   a browser tab: its refresh set, then a pause
--   zipf <weight> <path>                one key of the zipf read mix (weights need not sum to 1)
-- Thread i (one connection per thread) plays tab number i, cycling through the tabs; with no
-- tab lines every thread draws from the zipf mix. One connection per thread is what lets
-- request() and response() pair up, so each response's latency is known and can be filed
-- under the Cache-Status it carried (hit, miss or other).
--
-- Output: a "KR" line per response and "KC" summary lines (see parse_wrk in
-- benches/load/report.rs).

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } kc_timespec;
  int clock_gettime(int clk, kc_timespec *tp);
]]
local ts = ffi.new("kc_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local counter = 0

function setup(thread)
  thread:set("kc_id", counter)
  counter = counter + 1
end

local tabs, zipf_paths, zipf_cdf = {}, {}, {}
local my_tab, step, pending_delay, t0 = nil, 1, 0, 0
local function load_plan(path)
  local total = 0
  for line in io.lines(path) do
    local kind, rest = line:match("^(%S+)%s+(.*)$")
    if kind == "tab" then
      local words = {}
      for w in rest:gmatch("%S+") do table.insert(words, w) end
      local period = tonumber(table.remove(words, 1))
      table.insert(tabs, { period = period, paths = words })
    elseif kind == "zipf" then
      local w, p = rest:match("^(%S+)%s+(%S+)$")
      total = total + tonumber(w)
      table.insert(zipf_paths, p)
      table.insert(zipf_cdf, total)
    end
  end
  for i = 1, #zipf_cdf do zipf_cdf[i] = zipf_cdf[i] / total end
end

function init(args)
  load_plan(os.getenv("KC_PLAN"))
  local id = kc_id or 0
  math.randomseed(1000 + id)
  if #tabs > 0 then
    my_tab = tabs[(id % #tabs) + 1]
    -- tabs do not start in lockstep: begin at a random point of the first period
    pending_delay = math.random(0, my_tab.period)
  end
end

local function zipf_path()
  local r = math.random()
  local lo, hi = 1, #zipf_cdf
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    if zipf_cdf[mid] < r then lo = mid + 1 else hi = mid end
  end
  return zipf_paths[lo]
end

function delay()
  local d = pending_delay
  pending_delay = 0
  return d
end

function request()
  local path
  if my_tab then
    path = my_tab.paths[step]
    step = step + 1
    if step > #my_tab.paths then
      step = 1
      -- 10% jitter, as browsers' timers drift
      pending_delay = math.floor(my_tab.period * (0.95 + math.random() * 0.1))
    end
  else
    path = zipf_path()
  end
  t0 = now_us()
  return wrk.format("GET", path)
end

function response(status, headers, body)
  local us = now_us() - t0
  local cs = headers["cache-status"] or headers["Cache-Status"] or ""
  local class = "o"
  if cs:find("; hit", 1, true) then
    class = "h"
  elseif cs:find("fwd=", 1, true) then
    class = "m"
  end
  if us < 1 then us = 1 end
  -- one line per response (stdout is buffered; wrk's thread:get crashes on large tables):
  -- class, latency bucket (2 % wide: floor(ln(us) * 50)), status class
  -- one string, one fwrite: the threads share stdout and must not interleave within a line
  io.write("KR " .. class .. " " .. math.floor(math.log(us) * 50) .. " " .. math.floor(status / 100) .. "\n")
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "KC summary requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout))
  io.write(string.format("KC wrk_latency p50=%d p95=%d p99=%d p999=%d max=%d\n",
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
