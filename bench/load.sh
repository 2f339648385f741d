#!/usr/bin/env bash
# The purchase-flow figures of docs/BENCHMARKS.md: a fresh server per backend, then
# `chepiao load` (on the same machine) for peak orders/s, full purchases/s, latency at half of
# the peak, and the hot-run rush; each run ends with the invariant audit.
#   bench/load.sh                 # SQLite (embedded default)
#   BACKEND=postgres bench/load.sh   # PostgreSQL at $PG_URL (default postgres://postgres@127.0.0.1:5432)
set -euo pipefail
cd "$(dirname "$0")/.."
backend=${BACKEND:-sqlite}
port=${PORT:-18091}
orders=${ORDERS:-40000}
cargo build --release --quiet
dir=$(mktemp -d)
db_flags=()
if [ "$backend" = postgres ]; then
  pg=${PG_URL:-postgres://postgres@127.0.0.1:5432}
  db="chepiao_bench_$$"
  psql "$pg/postgres" -qc "CREATE DATABASE $db" >/dev/null
  db_flags=(--database-url "$pg/$db")
  # mockpay is off on PostgreSQL unless configured: the --pay runs pay through it.
  export CHEPIAO_MOCKPAY=true
fi
# The throughput runs measure the order path, not the risk policy: a few users place thousands
# of orders each from one IP, so the per-user and per-IP limits and the purchase rules (one
# unpaid order a user, no passenger on two trips at once) are lifted for them.
CHEPIAO_RISK_RATE_PER_S=100000 CHEPIAO_RISK_BURST=100000 CHEPIAO_IP_RATE_PER_S=10000000 CHEPIAO_IP_BURST=10000000 \
CHEPIAO_RULE_ONE_UNPAID_ORDER=false CHEPIAO_RULE_NO_OVERLAPPING_TRIPS=false CHEPIAO_RULE_CANCELLATIONS_PER_DAY_MAX=0 \
./target/release/chepiao serve --data-dir "$dir" --listen "127.0.0.1:$port" "${db_flags[@]}" >"$dir/server.log" 2>&1 &
pid=$!
cleanup() {
  kill $pid 2>/dev/null; wait $pid 2>/dev/null || true; rm -rf "$dir"
  [ "$backend" = postgres ] && psql "$pg/postgres" -qc "DROP DATABASE IF EXISTS $db" >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
load() { ./target/release/chepiao load --url "http://127.0.0.1:$port" --data-dir "$dir" "${db_flags[@]}" "$@" 2>&1 | grep -v '^\s*$' | grep -v 'registering\|ordering'; }

echo "== $backend: peak orders/s (hold + order, durable), 128 in flight"
peak=$(load --users 50 --orders "$orders" --concurrency 128 | tee /dev/stderr | awk '/^  created/ {print $4}')
echo "== $backend: full purchases (order, pay, notify, outbox, tickets), 64 in flight"
load --users 50 --orders $((orders / 2)) --concurrency 64 --pay
half=$((peak / 2))
echo "== $backend: order latency at half of the peak ($half orders/s)"
load --users 50 --orders $((half * 10)) --concurrency 128 --rate "$half"
echo "== $backend: the rush: everyone on G1 tomorrow, second class"
load --users 50 --orders 3000 --concurrency 128 --mode hot
