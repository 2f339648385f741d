#!/usr/bin/env bash
# Train search 北京南 → 上海虹桥 over HTTP, against the same server's plain JSON route (/healthz)
# in the same run. Needs wrk (Debian: apt-get install wrk). Results go in docs/BENCHMARKS.md.
#   bench/search.sh                 # 2 wrk threads, 64 connections, 10 s per route
#   CONNS=128 SECS=20 bench/search.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
conns=${CONNS:-64}
secs=${SECS:-10}
port=${PORT:-18090}

cargo build --release --quiet
dir=$(mktemp -d)
# One address sends everything: lift the per-IP limit, or wrk would count 429 answers.
CHEPIAO_IP_RATE_PER_S=10000000 CHEPIAO_IP_BURST=10000000 \
  ./target/release/chepiao serve --data-dir "$dir" --listen "127.0.0.1:$port" >"$dir/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done

date=$(TZ=Asia/Shanghai date -d tomorrow +%F)
search="http://127.0.0.1:$port/api/v1/trains?from=VNP&to=AOH&date=$date"
trains=$(curl -sf "$search" | grep -o '"run_id"' | wc -l)
bytes=$(curl -sf "$search" | wc -c)
echo "search answer: $trains trains, $bytes bytes; wrk -t2 -c$conns -d${secs}s"

# Requests/s of 200 answers only: a run with any other answer is not a figure.
rps() {
  wrk -t2 -c"$conns" -d"${secs}s" --latency "$1" | tee /dev/stderr \
    | awk '/Non-2xx/ {bad = $NF} /Requests\/sec/ {r = $2} END {if (bad) {print "non-2xx answers: " bad > "/dev/stderr"; exit 1} print r}'
}
hello=$(rps "http://127.0.0.1:$port/healthz")
found=$(rps "$search")
awk -v h="$hello" -v s="$found" 'BEGIN { printf "healthz %.0f req/s, search %.0f req/s, ratio %.2f\n", h, s, s / h }'
