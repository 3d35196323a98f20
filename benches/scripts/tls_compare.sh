#!/usr/bin/env bash
# Cache hits over TLS, HTTP/1.1 and HTTP/2, next to nginx: a release knitcache (listen_tls) and
# nginx (proxy_cache, `listen ... ssl http2`) in front of one ERP simulator, with the same
# certificate (an EC P-256 key made here with openssl) and TLS 1.2/1.3 defaults, are driven with
# h2load in alternating rounds: a 2 KB hit (/api/factory-floor-ai-dashboard), every connection
# opened once (the handshake is in the figure, amortised over the requests). Prints each
# round's requests/s and the medians and ratios.
#
#   benches/scripts/tls_compare.sh [ROUNDS] [REQUESTS] [CONNECTIONS] [STREAMS]
#
# STREAMS is h2load's -m for HTTP/2 (concurrent streams per connection; HTTP/1.1 has one).
# Needs h2load (apt-get install nghttp2-client), nginx (nginx-light) and openssl. Loopback
# only; every process it starts is stopped on exit. Set CARGO_TARGET_DIR to use another target
# directory.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}; REQUESTS=${2:-100000}; CONNS=${3:-50}; STREAMS=${4:-10}
for tool in h2load nginx openssl; do
  command -v "$tool" >/dev/null || { echo "$tool not found (apt-get install nghttp2-client nginx-light openssl)" >&2; exit 1; }
done
cargo build --release -q --workspace
TARGET=${CARGO_TARGET_DIR:-target}/release
WORK=$(mktemp -d)
chmod 755 "$WORK" # nginx's workers run as nobody when started by root
pids=()
cleanup() {
  [ -f "$WORK/nginx/nginx.pid" ] && kill "$(cat "$WORK/nginx/nginx.pid")" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PATH_2K=/api/factory-floor-ai-dashboard
ERP=$(free_port)
"$TARGET/erp-sim" --listen "127.0.0.1:$ERP" --time-scale 0.01 >/dev/null 2>&1 & pids+=($!)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

# knitcache: one route for the hit, TLS on a port of its own.
KC_PLAIN=$(free_port); KC_TLS=$(free_port); KC_ADMIN=$(free_port)
cat >"$WORK/knitcache.yaml" <<YAML
listen: "127.0.0.1:$KC_PLAIN"
listen_tls: "127.0.0.1:$KC_TLS"
admin_listen: "127.0.0.1:$KC_ADMIN"
tls: { cert_file: "$WORK/cert.pem", key_file: "$WORK/key.pem" }
upstream: { address: "127.0.0.1:$ERP" }
cache: { dir: "$WORK/kc-cache", memory_mib: 64, disk_mib: 256 }
server: { grace_period_secs: 0, pid_file: "$WORK/kc.pid", upgrade_sock: "$WORK/kc.sock" }
routes:
  - name: dashboard
    exact: $PATH_2K
    ttl_secs: 3600
YAML
"$TARGET/knitcache" --log error run -c "$WORK/knitcache.yaml" >/dev/null 2>&1 & pids+=($!)

# nginx: the load suite's settings, with TLS and HTTP/2.
NG_TLS=$(free_port)
mkdir -p "$WORK/nginx/cache"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx/nginx.pid;
error_log stderr error;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush off;
    keepalive_requests 1000000;
    client_body_temp_path $WORK/nginx/client_body;
    proxy_temp_path $WORK/nginx/proxy_temp;
    fastcgi_temp_path $WORK/nginx/fastcgi_temp;
    uwsgi_temp_path $WORK/nginx/uwsgi_temp;
    scgi_temp_path $WORK/nginx/scgi_temp;
    proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=kc:16m max_size=1g inactive=1h use_temp_path=off;
    upstream erp { server 127.0.0.1:$ERP; keepalive 16; }
    server {
        listen 127.0.0.1:$NG_TLS ssl http2;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://erp;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache kc;
            proxy_cache_valid 200 3600s;
            proxy_ignore_headers Cache-Control Expires;
            proxy_cache_lock on;
        }
    }
}
CONF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf"

for port in "$KC_TLS" "$NG_TLS"; do
  for _ in $(seq 100); do curl -skf -o /dev/null "https://127.0.0.1:$port$PATH_2K" && break; sleep 0.1; done
  curl -skf -o /dev/null "https://127.0.0.1:$port$PATH_2K" # the fill, then hits
done

# rps PORT h1|h2: requests/s of one h2load run (every request must succeed).
rps() {
  local flags=(-n "$REQUESTS" -c "$CONNS" -t 1)
  if [ "$2" = h1 ]; then flags+=(--h1); else flags+=(-m "$STREAMS"); fi
  h2load "${flags[@]}" "https://127.0.0.1:$1$PATH_2K" >"$WORK/h2load.out" 2>&1
  grep -q "status codes: $REQUESTS 2xx" "$WORK/h2load.out" || { cat "$WORK/h2load.out" >&2; exit 1; }
  awk '/^finished in/ {print $4}' "$WORK/h2load.out"
}
declare -A runs
for r in $(seq "$ROUNDS"); do
  line="round $r:"
  for proto in h1 h2; do
    # Alternate which goes first, so drift over a round falls on both.
    if [ $((r % 2)) = 1 ]; then order=("$KC_TLS:knitcache" "$NG_TLS:nginx"); else order=("$NG_TLS:nginx" "$KC_TLS:knitcache"); fi
    for t in "${order[@]}"; do
      v=$(rps "${t%%:*}" "$proto")
      runs["${t##*:}-$proto"]+="$v "
      line+=" ${t##*:} $proto $v,"
    done
  done
  echo "${line%,}"
done
median() { printf '%s\n' $1 | sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
for proto in h1 h2; do
  k=$(median "${runs[knitcache-$proto]}"); n=$(median "${runs[nginx-$proto]}")
  echo "$proto median req/s: knitcache $k, nginx $n, knitcache/nginx = $(python3 -c "print(round($k/$n, 3))")"
done
