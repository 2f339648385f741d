#!/usr/bin/env bash
# The cluster's figures on this machine (docs/BENCHMARKS.md, "Several nodes"), all in one run:
#  1. holds/s through the engine's log on a 3-server NATS JetStream cluster (R3), engine API
#     directly, against the local fdatasync'ed log (`chepiao bench replicated`), with 1 and 3
#     engine replicas in the process;
#  2. HTTP orders/s (durable, PostgreSQL) on 1 node and on 3 nodes (`chepiao load`, users spread
#     over the nodes), and search req/s on 1 node and on 3 (wrk on each node at once).
# Everything runs on loopback on the same cores, so 3 nodes show what the cluster costs here,
# not what it gains on three machines. Needs nats-server, wrk, PostgreSQL and Redis.
#   bench/cluster.sh                  # PG=postgres://postgres@127.0.0.1:5432/test
#   ORDERS=20000 SECS=10 bench/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
pg=${PG:-postgres://postgres@127.0.0.1:5432/test}
redis=${REDIS:-redis://127.0.0.1:6379}
orders=${ORDERS:-20000}
secs=${SECS:-10}
holds=${HOLDS:-200000}
cargo build --release --quiet
bin=./target/release/chepiao
root=$(mktemp -d)
db="chepiao_bench_cluster_$$"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$pg" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  rm -rf "$root"
}
trap cleanup EXIT

# Three NATS servers, JetStream on each, routed to each other.
nats_urls=""
for i in 1 2 3; do
  routes=""
  for j in 1 2 3; do [ "$j" != "$i" ] && routes="$routes,nats://127.0.0.1:1925$j"; done
  nats-server -js -a 127.0.0.1 -p "1924$i" -n "b$i" -sd "$root/nats-$i" --cluster_name bench \
    --cluster "nats://127.0.0.1:1925$i" --routes "${routes#,}" >"$root/nats-$i.log" 2>&1 &
  pids+=($!)
  nats_urls="$nats_urls,nats://127.0.0.1:1924$i"
done
nats_urls=${nats_urls#,}
sleep 3

echo "== 1. holds through the replicated log (engine API), against the local log"
for replicas in 1 3; do
  $bin bench replicated --nats "$nats_urls" --replicas "$replicas" --holds "$holds"
done
# The latency replication adds when the log is not queueing: one caller, then 128.
$bin bench replicated --nats "$nats_urls" --holds 3000 --callers 1
$bin bench replicated --nats "$nats_urls" --holds 50000 --callers 128

echo "== 2. HTTP on 1 node and on 3 (PostgreSQL, NATS, Redis; cluster = true)"
psql "$pg" -qc "CREATE DATABASE $db"
key() { head -c 32 /dev/zero | tr '\0' "$1" | base64; }
export CHEPIAO_CLUSTER=true CHEPIAO_DATABASE_URL="${pg%/*}/$db" CHEPIAO_NATS_URL="$nats_urls" \
  CHEPIAO_REDIS_URL="$redis" CHEPIAO_ENGINE_STREAM="BENCHENGINE$$" CHEPIAO_NATS_STREAM="BENCHEVENTS$$" \
  CHEPIAO_ENGINE_SHARDS=2 CHEPIAO_ENGINE_LOG_BYTES_MAX=$((4 << 30)) \
  CHEPIAO_JWT_SECRET="$(key j)" CHEPIAO_PII_KEY="$(key p)" CHEPIAO_QUEUE_SECRET="$(key q)" \
  CHEPIAO_TICKET_KEY="$(key t)" CHEPIAO_MOCKPAY=true CHEPIAO_MOCKPAY_SECRET=mockpay-secret-bench-cluster \
  CHEPIAO_IP_RATE_PER_S=10000000 CHEPIAO_IP_BURST=10000000 \
  CHEPIAO_RULE_ONE_UNPAID_ORDER=false CHEPIAO_RULE_NO_OVERLAPPING_TRIPS=false
start_node() {
  $bin serve --data-dir "$root/node-$1" --listen "127.0.0.1:1926$1" >"$root/node-$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:1926$1/healthz" >/dev/null && return; sleep 0.2; done
  echo "node $1 did not start" >&2; exit 1
}
date=$(TZ=Asia/Shanghai date -d tomorrow +%F)
search() { echo "http://127.0.0.1:1926$1/api/v1/trains?from=VNP&to=AOH&date=$date"; }
rps() {
  wrk -t1 -c"${CONNS:-32}" -d"${secs}s" "$1" \
    | awk '/Non-2xx/ {bad = $NF} /Requests\/sec/ {r = $2} END {if (bad) {print "non-2xx answers: " bad > "/dev/stderr"; exit 1} print r}'
}
orders_per_s() {
  $bin load --orders "$orders" --users 200 --concurrency 128 --no-audit "$@" \
    | grep -o '[0-9.]* orders/s' | head -n1
}
start_node 1
one_hello=$(rps "http://127.0.0.1:19261/healthz")
one_search=$(rps "$(search 1)")
one_orders=$(orders_per_s --url http://127.0.0.1:19261)
start_node 2
start_node 3
wrks=()
for n in 1 2 3; do rps "$(search "$n")" >"$root/search-$n" & wrks+=($!); done
wait "${wrks[@]}"
three_search=$(cat "$root"/search-* | awk '{s += $1} END {print s}')
three_orders=$(orders_per_s --url http://127.0.0.1:19261 --url http://127.0.0.1:19262 --url http://127.0.0.1:19263)
echo "one node:    healthz $one_hello req/s, search $one_search req/s, orders $one_orders"
echo "three nodes: search $three_search req/s (sum of three wrk at once), orders $three_orders"
awk -v a="$one_search" -v b="$three_search" 'BEGIN { printf "search, 3 nodes / 1 node: %.2f\n", b / a }'
