#!/usr/bin/env bash
# The web console's CI: build it, check the committed build (web/dist, web/src/api/schema.d.ts)
# is what the sources build to, and run its browser tests against a chepiao binary.
#
#   .ci/console.sh target/release/chepiao
#
# Installs Debian's chromium and a CJK font when /usr/bin/chromium is missing. Screenshots and
# the server's log end up in web/tests/screenshots/ (keep it as the job's artifact).
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 PATH_TO_CHEPIAO_BINARY" >&2
  exit 2
fi
if [[ ! -f $1 || ! -x $1 ]]; then
  echo "console.sh: no executable chepiao binary at $1" >&2
  exit 2
fi
bin=$(realpath "$1") # before leaving the caller's directory
root=$(realpath "$(dirname "$0")/..")
cd "$root"

# Each step says how long it took, also the one that failed.
started=$SECONDS
step_name=""
step_start=$SECONDS
step_end() {
  if [[ -n $step_name ]]; then echo "--- ${step_name}: $((SECONDS - step_start)) s"; fi
  step_name=""
}
step() {
  step_end
  step_name=$1
  step_start=$SECONDS
  echo "=== $1"
}
finish() {
  local status=$?
  step_end
  if [[ $status -eq 0 ]]; then
    echo "console.sh: passed in $((SECONDS - started)) s (screenshots in web/tests/screenshots/)"
  else
    echo "console.sh: FAILED (exit $status) after $((SECONDS - started)) s (screenshots and server.log in web/tests/screenshots/)" >&2
  fi
}
trap finish EXIT

step "chromium and fonts"
if [[ ! -x /usr/bin/chromium ]]; then
  sudo=""
  if [[ $(id -u) -ne 0 ]]; then sudo=sudo; fi
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends chromium fonts-noto-cjk
else
  echo "/usr/bin/chromium is there: $(/usr/bin/chromium --version 2>/dev/null || echo '?')"
fi

cd "$root/web"
step "npm ci"
npm ci --no-audit --no-fund

step "npm run build"
npm run build

# The server embeds web/dist as committed, so the committed build must be the one these sources
# give. That check needs a deterministic build (same sources, same bytes and file names): a
# second build, elsewhere, must equal the first.
step "build is deterministic"
again=$(mktemp -d)
npx vite build --logLevel warn --outDir "$again" --emptyOutDir
if ! diff -r dist "$again" >/dev/null; then
  echo "console.sh: two builds of the same sources differ, so the committed build cannot be checked:" >&2
  diff -rq dist "$again" | sed 's/^/  /' >&2 || true
  rm -rf "$again"
  exit 1
fi
rm -rf "$again"
echo "a second build is byte for byte the same"

step "committed build = fresh build"
changed=$(cd "$root" && git status --porcelain -- web/dist web/src/api/schema.d.ts)
if [[ -n $changed ]]; then
  echo "console.sh: the committed web console build differs from a fresh build of its sources:" >&2
  echo "$changed" | sed 's/^/  /' >&2
  echo "Run \`cd web && npm ci && npm run build\` and commit web/dist and web/src/api/schema.d.ts." >&2
  exit 1
fi
echo "web/dist and web/src/api/schema.d.ts match the sources"

step "browser tests"
CHEPIAO_BIN=$bin npm run test:e2e
