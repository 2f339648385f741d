#!/usr/bin/env bash
# Property-based API test: schemathesis against the OpenAPI spec a running chepiao serves.
#
#   .ci/schemathesis.sh BINARY        (BINARY: a built `chepiao`, e.g. target/debug/chepiao)
#
# Starts BINARY on a free loopback port with a fresh data dir and throwaway secrets, seeds it (users,
# passengers, a ticketed order, a paid waitlist wish, a sale with a waiting room) and hands the ids to
# the generator, so requests reach the handlers instead of 404s, then runs schemathesis with the
# checks: no 5xx, and every response conforms to the spec (status code, content type, headers, body
# schema), also along the spec's links (the stateful phase). Exits non-zero on any failure. Logout and
# password change end the caller's token, so they run last, each as a user of its own.
#
# Knobs (environment): ST_MAX_EXAMPLES (default 100 per operation), ST_SEED (20261127),
# ST_WORKERS (1: deterministic order; the server's state depends on it), ST_VENV (where schemathesis is
# installed, default ~/.cache/chepiao/schemathesis-venv), ST_WORK (reports and server log; default a
# new /tmp dir, kept after the run).
set -euo pipefail

if [ $# -ne 1 ] || [ ! -x "$1" ]; then
    echo "usage: $0 BINARY  (an executable chepiao server binary)" >&2
    exit 2
fi
BIN=$(realpath "$1")
ST_PIN="schemathesis==4.32.5"
ST_VENV=${ST_VENV:-$HOME/.cache/chepiao/schemathesis-venv}
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-100}
SEED=${ST_SEED:-20261127}
WORKERS=${ST_WORKERS:-1}
WORK=${ST_WORK:-$(mktemp -d /tmp/chepiao-schemathesis.XXXXXX)}
mkdir -p "$WORK"
started=$(date +%s)
section() { printf '\n== schemathesis: %s (%ss)\n' "$1" "$(( $(date +%s) - started ))"; }

section "install ($ST_PIN in $ST_VENV)"
if [ "$("$ST_VENV/bin/schemathesis" --version 2>/dev/null || true)" != "schemathesis, version ${ST_PIN#*==}" ]; then
    rm -rf "$ST_VENV"
    python3 -m venv "$ST_VENV"
    "$ST_VENV/bin/pip" install --quiet --disable-pip-version-check "$ST_PIN"
fi
ST="$ST_VENV/bin/schemathesis"
"$ST" --version

section "start $BIN"
ADMIN_KEY="st-admin-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
GATE_KEY="st-gate-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
# Runs are dated in China time; three days ahead keeps every seeded ticket outside its check-in window
# (it opens 24 h before departure), so a generated check-in never depends on the hour the job runs at.
RUN_DATE=$(TZ=Asia/Shanghai date -d '+3 day' +%F)
SALE_RUN="G105-${RUN_DATE//-/}"
cat > "$WORK/server.toml" <<EOF
[[sales]]
sale_id = "st-sale"
opens_at = "$(date -u -d '-1 hour' +%FT%TZ)"
run_ids = ["$SALE_RUN"]
admit_per_s = 1000
EOF
rm -rf "$WORK/data"
: > "$WORK/server.out"
: > "$WORK/server.log"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 1 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK/data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The fuzzer sends everything from one IP as fast as it can: lift the per-IP and risk buckets.
CHEPIAO_ADMIN_KEY="$ADMIN_KEY" CHEPIAO_GATE_KEYS="g1=$GATE_KEY" \
    CHEPIAO_MOCKPAY_SECRET="st-mockpay-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    CHEPIAO_RISK_RATE_PER_S=100000 CHEPIAO_RISK_BURST=100000 \
    CHEPIAO_IP_RATE_PER_S=10000000 CHEPIAO_IP_BURST=10000000 \
    "$BIN" serve --config "$WORK/server.toml" --data-dir "$WORK/data" --listen 127.0.0.1:0 \
    > "$WORK/server.out" 2> "$WORK/server.log" &
SERVER_PID=$!
BASE=""
for _ in $(seq 1 240); do
    BASE=$(sed -n 's/^chepiao is serving at \(http:[^ ]*\).*/\1/p' "$WORK/server.out")
    [ -n "$BASE" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -n 30 "$WORK/server.log" >&2; echo "server exited" >&2; exit 1; }
    sleep 0.25
done
[ -n "$BASE" ] || { tail -n 30 "$WORK/server.log" >&2; echo "server did not start in 60 s" >&2; exit 1; }
BASE=${BASE%/}
for _ in $(seq 1 120); do curl -sf "$BASE/readyz" >/dev/null && break; sleep 0.25; done
curl -sf "$BASE/readyz" >/dev/null || { echo "$BASE/readyz is not 200" >&2; exit 1; }
echo "serving at $BASE (log: $WORK/server.log)"

section "seed users, passengers, an order, a wish"
python3 - "$BASE" "$WORK" "$RUN_DATE" "$SALE_RUN" <<'PY'
"""Seed the server and write WORK/schemathesis.toml, whose dictionaries feed the real ids to the generator."""
import json, sys, time, urllib.error, urllib.request

base, out, date, sale_run = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]


def call(method, path, body=None, token=None, expect=(200, 201, 202)):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(path if path.startswith("http") else base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    if status not in expect:
        sys.exit(f"seed: {method} {path} -> {status} {raw[:300]!r}")
    return json.loads(raw) if raw else None


def id_card(seq):
    """An 18-character resident ID number with a valid GB 11643 check digit."""
    body = f"1101051990010{seq:03d}1"[:17]
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]


def user(name, password):
    call("POST", "/api/v1/auth/register", {"username": name, "password": password}, expect=(201,))
    return call("POST", "/api/v1/auth/login", {"username": name, "password": password})["token"]


def pay(path, token):
    started = call("POST", path, {"channel": "mockpay"}, token, (201,))
    call("POST", started["pay_url"], expect=(202,))
    return started["payment_no"]


token = user("st_main", "st-main-password")
password2 = "st-other-password"
token_password = user("st_password", password2)  # for POST /auth/password, which ends its tokens
token_logout = user("st_logout", "st-logout-password")  # for POST /auth/logout
pids = [call("POST", "/api/v1/passengers", {"name": n, "id_type": "ID_CARD", "id_no": id_card(i)}, token,
             (201,))["passenger_id"] for i, n in enumerate(["张三", "李四", "王五"], start=11)]
runs = [r["run_id"] for r in call("GET", f"/api/v1/trains?from=VNP&to=AOH&date={date}") if r["run_id"] != sale_run]
if len(runs) < 2:
    sys.exit(f"seed: fewer than two VNP-AOH runs on {date}")

# A ticketed order of two passengers: its tickets are there to read, refund, rebook and check in.
leg = {"run_id": runs[0], "from": "VNP", "to": "AOH", "class": "SECOND", "passenger_ids": pids[:2]}
order = call("POST", "/api/v1/orders", {"idempotency_key": "st-seed-1", "legs": [leg]}, token, (201,))
payments = [pay(f"/api/v1/orders/{order['order_no']}/payments", token)]
for _ in range(150):
    got = call("GET", f"/api/v1/orders/{order['order_no']}", token=token)
    if got["status"] == "TICKETED":
        break
    time.sleep(0.2)
else:
    sys.exit(f"seed: order {order['order_no']} is {got['status']}, not TICKETED")
tickets = got["tickets"]

# A paid waitlist wish for the third passenger on another run.
wish = call("POST", "/api/v1/waitlist", {
    "run_id": runs[1], "from": "VNP", "to": "AOH", "class": "SECOND", "passenger_ids": pids[2:],
    "deadline": f"{date}T06:00:00+08:00", "idempotency_key": "st-seed-wish"}, token, (200, 201))
payments.append(pay(f"/api/v1/waitlist/{wish['waitlist_id']}/payments", token))

dictionaries = {
    "run_id": runs[:2] + [sale_run], "station": ["VNP", "AOH", "BJP", "SHH"], "date": [date],
    "seat_class": ["SECOND", "FIRST", "BUSINESS"], "passenger_id": pids,
    "order_no": [order["order_no"]] + ([wish["order_no"]] if wish.get("order_no") else []),
    "ticket_sn": [t["ticket_sn"] for t in tickets], "qr": [t["qr"] for t in tickets],
    "payment_no": payments, "waitlist_id": [wish["waitlist_id"]], "sale_id": ["st-sale"],
    "channel": ["mockpay"], "gate_id": ["g1"], "risk_list": ["block", "allow"],
    "risk_kind": ["user", "device", "ip"], "query_text": ["北京", "VNP", "beijing", "bj"],
    "cursor": [0], "old_password": [password2], "new_password": ["st-new-password"],
    "device": ["st-device-1", "st-device-2"], "idem": ["st-key-1", "st-key-2", "st-key-3"],
    "deadline": [f"{date}T05:00:00+08:00"], "username": ["st_main", "st_fuzz"],
    "password": ["st-main-password"], "name": ["赵六", "钱七"], "id_type": ["ID_CARD"],
    "id_no": [id_card(i) for i in range(21, 24)],
}
bindings = {
    "path.run_id": "run_id", "query.from": "station", "query.to": "station", "query.date": "date",
    "query.class": "seat_class", "query.q": "query_text", "query.since": "cursor",
    "path.order_no": "order_no", "path.ticket_sn": "ticket_sn", "path.payment_no": "payment_no",
    "path.waitlist_id": "waitlist_id", "path.sale_id": "sale_id", "path.channel": "channel",
    "path.list": "risk_list", "path.kind": "risk_kind",
    "body.legs[*].run_id": "run_id", "body.legs[*].from": "station", "body.legs[*].to": "station",
    "body.legs[*].class": "seat_class", "body.legs[*].passenger_ids[*]": "passenger_id",
    "body.run_id": "run_id", "body.from": "station", "body.to": "station", "body.class": "seat_class",
    "body.passenger_ids[*]": "passenger_id", "body.channel": "channel", "body.qr": "qr",
    "body.station": "station", "body.gate_id": "gate_id", "body.scans[*].qr": "qr",
    "body.scans[*].station": "station", "body.old_password": "old_password",
    "body.new_password": "new_password", "header.X-Device-Id": "device", "body.idempotency_key": "idem",
    "body.deadline": "deadline", "body.username": "username", "body.password": "password",
    "body.name": "name", "body.id_type": "id_type", "body.id_no": "id_no",
}
# The stateful phase follows the spec's links (order -> pay -> pay page, wish -> pay -> cancel, ...):
# more steps than the default so that every linked operation is reached.
lines = ["[cache]", "enabled = false", "", "[phases.stateful]", "max-steps = 200", ""]
lines += [f"[dictionaries.{k}]\nvalues = {json.dumps(v, ensure_ascii=False)}\n" for k, v in dictionaries.items()]
lines += ["[parameters]"] + [f'"{k}" = {{ dictionary = "{v}", probability = 0.6 }}' for k, v in bindings.items()]
with open(f"{out}/schemathesis.toml", "w") as f:
    f.write("\n".join(lines) + "\n")
for name, value in (("token", token), ("token_password", token_password), ("token_logout", token_logout)):
    with open(f"{out}/{name}", "w") as f:
        f.write(value)
print(f"runs {runs[:2]} (sale: {sale_run}), passengers {pids}, order {order['order_no']}, "
      f"tickets {[t['ticket_sn'] for t in tickets]}, wish {wish['waitlist_id']}")
PY

CHECKS=not_a_server_error,status_code_conformance,content_type_conformance
CHECKS=$CHECKS,response_headers_conformance,response_schema_conformance
# Run from $WORK: schemathesis and hypothesis keep state in the working directory.
cd "$WORK"
st_run() {
    local name=$1 token=$2; shift 2
    timeout 480 "$ST" --config-file "$WORK/schemathesis.toml" run "$BASE/openapi.json" \
        --checks "$CHECKS" --max-examples "$MAX_EXAMPLES" --seed "$SEED" --workers "$WORKERS" \
        --continue-on-failure --request-timeout 15 --generation-database none --no-color \
        -H "Authorization: Bearer $token" -H "X-Admin-Key: $ADMIN_KEY" -H "X-Gate-Key: $GATE_KEY" \
        --report junit,har --report-dir "$WORK/reports/$name" "$@"
}
rc=0
section "run: every operation but logout and password change (-n $MAX_EXAMPLES, seed $SEED)"
st_run main "$(cat token)" --exclude-path /api/v1/auth/logout --exclude-path /api/v1/auth/password || rc=1
# A successful password change or logout ends the caller's tokens: each gets a user of its own.
section "run: password change, as a user of its own"
# One operation alone has no links to follow: no stateful phase.
st_run password "$(cat token_password)" --include-path /api/v1/auth/password --phases examples,coverage,fuzzing || rc=1
section "run: logout, as a user of its own"
st_run logout "$(cat token_logout)" --include-path /api/v1/auth/logout --phases examples,coverage,fuzzing || rc=1

section "done"
if grep -q 'panicked at' "$WORK/server.log"; then
    echo "server panics (from $WORK/server.log):"
    grep -A1 'panicked at' "$WORK/server.log" | grep -v '^--$' | sed 's/^thread .* panicked at/panicked at/' \
        | paste - - | sort | uniq -c | sort -rn | head -n 20
fi
python3 - "$WORK"/reports/*/junit*.xml <<'PY'
import sys, xml.etree.ElementTree as ET
cases = failed = 0
for path in sys.argv[1:]:
    for case in ET.parse(path).getroot().iter("testcase"):
        cases += 1
        failed += any(c.tag in ("failure", "error") for c in case)
print(f"schemathesis operations: {cases - failed} passed, {failed} failed")
PY
echo "reports and server log: $WORK"
exit "$rc"
