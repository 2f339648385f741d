#!/usr/bin/env bash
# Run every fuzz target for SECONDS (default 600) on its corpus, one after another, and print
# each one's last status line. Build first: `cargo +nightly fuzz build -O` (from the repo root).
# New inputs that reach new code are added to fuzz/corpus/<target>; a crash lands in
# fuzz/artifacts/<target>/ and stops the script with its name.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-600}
bin=target/x86_64-unknown-linux-gnu/release
for t in qr notify queue_token jwt gate_state config; do
  mkdir -p "corpus/$t" "artifacts/$t"
  log="artifacts/$t.log"
  if ! "$bin/$t" "corpus/$t" -max_total_time="$seconds" -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
    echo "$t: CRASH, see fuzz/artifacts/$t/ and $log"; tail -30 "$log"; exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  echo "$t: ${seconds}s, $runs runs, no crash; corpus $(ls "corpus/$t" | wc -l) inputs; last: $last"
done
