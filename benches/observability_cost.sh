#!/usr/bin/env bash
# What do metrics, statistics and the access log cost a cache hit? Runs a release build of
# knitcache in front of the simulator on loopback (ports 16006/16007/16009) and drives cache hits
# with wrk, alternating runs with observability.stats and observability.access_log on and off.
# Prints hits/s and the proxy's CPU per hit (utime+stime from /proc over the run, divided by the
# requests wrk completed), which is steadier than hits/s on a shared machine.
#
#   cargo build --release --workspace && benches/observability_cost.sh [rounds] [seconds] [connections]
#
# Needs wrk and curl. Prometheus metrics are always on; their cost is in `cargo bench --bench
# observe`.
set -euo pipefail
ROUNDS=${1:-5} SECS=${2:-8} CONNS=${3:-4}
BIN=$(cd "$(dirname "$0")/.." && pwd)/target/release/knitcache
SIM_BIN=$(dirname "$BIN")/erp-sim
WORK=$(mktemp -d)
TCK=$(getconf CLK_TCK)
trap 'kill $SIM 2>/dev/null; rm -rf "$WORK"' EXIT
for mode in on off; do
  v=$([ $mode = on ] && echo true || echo false)
  cat > "$WORK/$mode.yaml" <<YAML
listen: "127.0.0.1:16006"
admin_listen: "127.0.0.1:16009"
upstream:
  address: "127.0.0.1:16007"
cache:
  dir: "$WORK/cache-$mode"
  memory_mib: 64
  disk_mib: 128
server:
  threads: 2
  pid_file: "$WORK/$mode.pid"
  upgrade_sock: "$WORK/$mode.sock"
observability:
  access_log: $v
  stats: $v
routes:
  - name: kpis
    exact: /api/comprehensive-kpis
    ttl_secs: 3600
YAML
done
"$SIM_BIN" --listen 127.0.0.1:16007 --time-scale 0.01 >"$WORK/sim.log" 2>&1 &
SIM=$!
sleep 1
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
for round in $(seq 1 "$ROUNDS"); do
  for mode in on off; do
    "$BIN" run -c "$WORK/$mode.yaml" >"$WORK/proxy-$mode.log" 2>&1 &
    P=$!
    for _ in $(seq 1 50); do curl -s -o /dev/null 127.0.0.1:16006/api/comprehensive-kpis && break; sleep 0.1; done
    curl -s -o /dev/null 127.0.0.1:16006/api/comprehensive-kpis
    c0=$(cpu $P)
    out=$(wrk -t1 -c"$CONNS" -d"${SECS}s" http://127.0.0.1:16006/api/comprehensive-kpis)
    c1=$(cpu $P)
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    us=$(awk -v c=$((c1 - c0)) -v t="$TCK" -v n="$n" 'BEGIN {printf "%.1f", c / t * 1e6 / n}')
    echo "round $round observability=$mode hits/s=$rps cpu_us_per_hit=$us"
    kill $P; wait $P 2>/dev/null || true
  done
done
