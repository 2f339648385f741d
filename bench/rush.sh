#!/usr/bin/env bash
# The hot-sale figures of docs/BENCHMARKS.md: a fresh server with one sale (G1 tomorrow, its
# waiting room admitting $ADMIT_PER_S a second), then `chepiao load --scenario rush`: $USERS
# users join at once (the storm), are admitted and buy; the run ends with the invariant audit.
#   bench/rush.sh                      # waiting room in memory
#   QUEUE=redis bench/rush.sh          # waiting room in Redis at $REDIS_URL
#   OPENS_IN_S=60 bench/rush.sh        # everyone queues before the opening (pure joins first)
set -euo pipefail
cd "$(dirname "$0")/.."
users=${USERS:-100000}
port=${PORT:-18093}
rate=${ADMIT_PER_S:-5000}
# Connections of the join storm, and requests in flight afterwards.
concurrency=${CONCURRENCY:-128}
# Seconds from the server start to the opening: users who join before it only queue (as on
# 12306, where the queue forms before the sale opens); 0 opens at once.
opens_in_s=${OPENS_IN_S:-0}
cargo build --release --quiet
dir=$(mktemp -d)
tomorrow=$(TZ=Asia/Shanghai date -d tomorrow +%Y%m%d)
cat >"$dir/chepiao.toml" <<TOML
[[sales]]
sale_id = "spring-rush"
opens_at = "$(date -u -d "+$opens_in_s seconds" +%Y-%m-%dT%H:%M:%SZ)"
run_ids = ["G1-$tomorrow"]
admit_per_s = $rate
TOML
flags=(--config "$dir/chepiao.toml" --data-dir "$dir")
if [ "${QUEUE:-memory}" = redis ]; then
  redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
  redis-cli -u "$redis_url" --scan --pattern 'chepiao:q:{spring-rush}*' | xargs -r redis-cli -u "$redis_url" del >/dev/null
  flags+=(--redis-url "$redis_url")
fi
./target/release/chepiao serve "${flags[@]}" --listen "127.0.0.1:$port" >"$dir/server.log" 2>&1 &
pid=$!
cleanup() { kill $pid 2>/dev/null; wait $pid 2>/dev/null || true; rm -rf "$dir"; }
trap cleanup EXIT
for _ in $(seq 1 120); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.5; done
./target/release/chepiao load --scenario rush --users "$users" --concurrency "$concurrency" \
  --url "http://127.0.0.1:$port" "${flags[@]}"
