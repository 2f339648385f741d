#!/usr/bin/env bash
# Full purchases over HTTP: a fresh release server on an empty data directory, then
# `chepiao load --pay` (order, payment, pay page, signed notify, tickets) and the I1/I2 audit.
# RUNS (3), ORDERS (10000); BIN to compare another build (default ./target/release/chepiao).
set -uo pipefail
bin=${BIN:-./target/release/chepiao}
runs=${RUNS:-3}
orders=${ORDERS:-10000}
for r in $(seq 1 $runs); do
  dir=$(mktemp -d); port=$((18500 + r))
  CHEPIAO_RISK_RATE_PER_S=100000 CHEPIAO_RISK_BURST=100000 CHEPIAO_IP_RATE_PER_S=10000000 CHEPIAO_IP_BURST=10000000 \
  CHEPIAO_RULE_ONE_UNPAID_ORDER=false CHEPIAO_RULE_NO_OVERLAPPING_TRIPS=false CHEPIAO_RULE_CANCELLATIONS_PER_DAY_MAX=0 \
    $bin serve --data-dir "$dir" --listen "127.0.0.1:$port" >"$dir/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
  $bin load --url "http://127.0.0.1:$port" --data-dir "$dir" --users 50 --orders $orders --concurrency 64 --pay 2>&1 | grep -E "full purchases|created|audit: I1|VIOLATION|Error"
  kill $pid; wait $pid 2>/dev/null; rm -rf "$dir"
done
