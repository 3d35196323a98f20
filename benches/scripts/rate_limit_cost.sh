#!/usr/bin/env bash
# What does rate limiting cost a cache hit? Two release proxies in front of one ERP simulator,
# identical but for protection.rate_limit (on, with every hit charged and limits far above the
# load, vs off), are driven with wrk in alternating rounds; prints each round's hits/s and the
# medians and their ratio.
#
#   benches/scripts/rate_limit_cost.sh [ROUNDS] [SECONDS] [CONNECTIONS]
#
# Needs wrk (apt-get install wrk). Loopback only; every process it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-5}; SECS=${2:-5}; CONNS=${3:-50}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
cargo build --release -q --workspace
BIN=target/release/knitcache
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ERP=$(free_port)
target/release/erp-sim --listen "127.0.0.1:$ERP" --time-scale 0.01 >/dev/null 2>&1 & pids+=($!)

start_proxy() { # name rate_limit_enabled
  local port admin
  port=$(free_port); admin=$(free_port)
  cat >"$WORK/$1.yaml" <<YAML
listen: "127.0.0.1:$port"
admin_listen: "127.0.0.1:$admin"
upstream: { address: "127.0.0.1:$ERP" }
cache: { dir: "$WORK/$1-cache", memory_mib: 64, disk_mib: 256 }
server: { threads: 1, grace_period_secs: 0, pid_file: "$WORK/$1.pid", upgrade_sock: "$WORK/$1.sock" }
protection:
  rate_limit: { enabled: $2, requests_per_sec: 1000000, burst: 1000000 }
routes:
  - name: kpis
    exact: /api/comprehensive-kpis
    ttl_secs: 3600
    rate_limit_hits: true
YAML
  "$BIN" --log error run -c "$WORK/$1.yaml" >/dev/null 2>&1 & pids+=($!)
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/api/comprehensive-kpis" && break; sleep 0.1; done
  echo "$port"
}
ON=$(start_proxy on true)
OFF=$(start_proxy off false)

rps() { wrk -t1 -c"$CONNS" -d"${SECS}s" "http://127.0.0.1:$1/api/comprehensive-kpis" | awk '/Requests\/sec/ {print $2}'; }
on=(); off=()
for r in $(seq "$ROUNDS"); do
  a=$(rps "$OFF"); b=$(rps "$ON"); off+=("$a"); on+=("$b")
  echo "round $r: off $a hits/s, on $b hits/s"
done
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
m_off=$(median "${off[@]}"); m_on=$(median "${on[@]}")
echo "median: off $m_off hits/s, on $m_on hits/s, on/off = $(python3 -c "print(round($m_on/$m_off, 3))")"
