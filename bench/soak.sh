#!/usr/bin/env bash
# The sale-day soak of docs/BENCHMARKS.md (issue 13): the peak order rate on a fresh server, then
# a fresh server soaked for DURATION (20m) at half that rate with payments, cancellations,
# expiries and refunds mixed in (`chepiao load --scenario soak`), reporting p50/p99 and the
# server's memory per 5-minute window, then the invariant audit.
#   bench/soak.sh                     # DURATION=20m ORDERS=40000 (for the peak)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${DURATION:-20m}
orders=${ORDERS:-40000}
cargo build --release --quiet
bin=./target/release/chepiao
# As bench/load.sh: the throughput runs measure the order path, not the risk policy or the
# purchase rules (a few users place thousands of orders each from one address).
export CHEPIAO_RISK_RATE_PER_S=100000 CHEPIAO_RISK_BURST=100000 CHEPIAO_IP_RATE_PER_S=10000000 \
  CHEPIAO_IP_BURST=10000000 CHEPIAO_RULE_ONE_UNPAID_ORDER=false CHEPIAO_RULE_NO_OVERLAPPING_TRIPS=false \
  CHEPIAO_RULE_CANCELLATIONS_PER_DAY_MAX=0
pid=""; dir=""
start() {
  dir=$(mktemp -d); port=$1
  $bin serve --data-dir "$dir" --listen "127.0.0.1:$port" >"$dir/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.2; done
}
stop() { kill $pid 2>/dev/null; wait $pid 2>/dev/null || true; rm -rf "$dir"; }
trap stop EXIT
start 18291
echo "== peak orders/s (hold + order, durable), 128 in flight"
peak=$($bin load --url http://127.0.0.1:18291 --data-dir "$dir" --users 50 --orders "$orders" --concurrency 128 2>&1 \
  | grep -v 'registering\|ordering' | tee /dev/stderr | awk '/^  created/ {print $4}')
stop
rate=$(( ${peak%.*} / 2 ))
start 18292
echo "== soak: $duration at $rate orders/s (half the peak)"
$bin load --scenario soak --url http://127.0.0.1:18292 --data-dir "$dir" --users 200 --duration "$duration" \
  --rate "$rate" --window 5m --concurrency 256 2>&1 | grep -v 'registering'
