#!/usr/bin/env bash
# Headline figures next to a baseline measured in the same run (issue 17): a fresh server on the
# embedded defaults and an axum JSON hello-world of the same build (`chepiao bench hello`), then
# for each figure, three rounds of hello-world then figure (A B A B A B); each figure is printed
# with its ratio to the hello-world round just before it, and the median ratio. This box's
# speed swings by half within minutes: quote the ratios first (docs/BENCHMARKS.md).
#   bench/compare.sh                # needs wrk (apt-get install wrk)
#   ROUNDS=5 SECS=10 bench/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
rounds=${ROUNDS:-3}
secs=${SECS:-10}
conns=${CONNS:-64}
orders=${ORDERS:-30000}
purchases=${PURCHASES:-10000}
cargo build --release --quiet
bin=./target/release/chepiao
dir=$(mktemp -d)
hello_port=18180
port=18181
# As bench/load.sh: the throughput runs measure the order path, not the risk policy or the
# purchase rules (a few users place thousands of orders each from one address).
CHEPIAO_RISK_RATE_PER_S=100000 CHEPIAO_RISK_BURST=100000 CHEPIAO_IP_RATE_PER_S=10000000 CHEPIAO_IP_BURST=10000000 \
CHEPIAO_RULE_ONE_UNPAID_ORDER=false CHEPIAO_RULE_NO_OVERLAPPING_TRIPS=false CHEPIAO_RULE_CANCELLATIONS_PER_DAY_MAX=0 \
  $bin serve --data-dir "$dir" --listen "127.0.0.1:$port" >"$dir/server.log" 2>&1 &
server=$!
$bin bench hello --listen "127.0.0.1:$hello_port" >"$dir/hello.log" 2>&1 &
hello=$!
trap 'kill $server $hello 2>/dev/null; wait $server $hello 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && curl -sf "http://127.0.0.1:$hello_port/" >/dev/null && break; sleep 0.2; done

# Requests/s of 200 answers only: a run with any other answer is not a figure.
wrk_rps() {
  wrk -t2 -c"$conns" -d"${secs}s" "$1" \
    | awk '/Non-2xx/ {bad = $NF} /Requests\/sec/ {r = $2} END {if (bad) {print "non-2xx answers: " bad > "/dev/stderr"; exit 1} print r}'
}
hello_rps() { wrk_rps "http://127.0.0.1:$hello_port/"; }
load() { $bin load --url "http://127.0.0.1:$port" --data-dir "$dir" --users 50 "$@" 2>&1; }
date=$(TZ=Asia/Shanghai date -d tomorrow +%F)
search_rps() { wrk_rps "http://127.0.0.1:$port/api/v1/trains?from=VNP&to=AOH&date=$date"; }
orders_ps() { load --orders "$orders" --concurrency 128 | awk '/^  created/ {print $4}'; }
purchases_ps() { load --orders "$purchases" --concurrency 64 --pay | awk '/^full purchases/ {print $(NF-1)}'; }
direct_ps() { load --orders "$purchases" --concurrency 64 --pay --pay-as-provider | awk '/^full purchases/ {print $(NF-1)}'; }

echo "chepiao $(git rev-parse --short HEAD), $(nproc) cores, $(date -u +%FT%TZ); rounds of hello-world (wrk -t2 -c$conns -d${secs}s) then the figure"
printf '%-44s %12s %12s %8s\n' figure value hello ratio
summary=()
for figure in search_rps orders_ps purchases_ps direct_ps; do
  ratios=()
  for r in $(seq 1 "$rounds"); do
    h=$(hello_rps)
    v=$($figure)
    ratio=$(awk -v v="$v" -v h="$h" 'BEGIN { printf "%.4f", v / h }')
    ratios+=("$ratio")
    printf '%-44s %12.0f %12.0f %8s\n' "$figure (round $r)" "$v" "$h" "$ratio"
  done
  median=$(printf '%s\n' "${ratios[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  summary+=("$(printf '%-44s median ratio %s' "$figure" "$median")")
done
echo
echo "search_rps: 余票 search 北京南 → 上海虹桥 req/s; orders_ps: hold + order, durable, 128 in flight;"
echo "purchases_ps: order → pay page → notify → tickets, 64 in flight; direct_ps: the same, the load signing the notify"
printf '%s\n' "${summary[@]}"
