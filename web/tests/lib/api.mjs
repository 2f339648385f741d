// The chepiao API straight from Node, for the tests' setup and for checking what the pages show.
import { setTimeout as sleep } from "node:timers/promises";

const WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

/** A random ID card number with a correct GB 11643 check digit. */
export function idCardNumber() {
  const year = 1950 + Math.floor(Math.random() * 50);
  const month = String(1 + Math.floor(Math.random() * 12)).padStart(2, "0");
  const day = String(1 + Math.floor(Math.random() * 28)).padStart(2, "0");
  const seq = String(Math.floor(Math.random() * 1000)).padStart(3, "0");
  const first17 = `110105${year}${month}${day}${seq}`;
  const sum = [...first17].reduce((s, d, i) => s + Number(d) * WEIGHTS[i], 0);
  return first17 + "10X98765432"[sum % 11];
}

export function uniqueName(prefix) {
  return `${prefix}_${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

export class Api {
  constructor(base, { adminKey, gateKey } = {}) {
    this.base = base;
    this.adminKey = adminKey;
    this.gateKey = gateKey;
  }

  /** One call; answers `{status, body}`; throws on an unexpected status unless `expect` lists it. */
  async call(method, path, { token, body, headers = {}, expect } = {}) {
    const h = { ...headers };
    if (body !== undefined) h["content-type"] = "application/json";
    if (token) h.authorization = `Bearer ${token}`;
    const res = await fetch(this.base + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    let json;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = text;
    }
    const fine = expect ? expect.includes(res.status) : res.ok;
    if (!fine) throw new Error(`${method} ${path} answered ${res.status}: ${text.slice(0, 300)}`);
    return { status: res.status, body: json };
  }

  async get(path, opts) {
    return (await this.call("GET", path, opts)).body;
  }
  async post(path, body, opts = {}) {
    return (await this.call("POST", path, { ...opts, body })).body;
  }
  admin(method, path, opts = {}) {
    return this.call(method, path, { ...opts, headers: { "x-admin-key": this.adminKey, ...(opts.headers ?? {}) } });
  }

  /** Register and log in a new user: `{username, password, token}`. */
  async newUser(prefix = "e2e") {
    const username = uniqueName(prefix).slice(0, 32);
    const password = "password-e2e-1";
    await this.post("/api/v1/auth/register", { username, password });
    const { token } = await this.post("/api/v1/auth/login", { username, password });
    return { username, password, token };
  }

  async addPassengers(token, n) {
    const ids = [];
    for (let i = 0; i < n; i++) {
      const p = await this.post("/api/v1/passengers", { name: `测试${"甲乙丙丁戊己庚辛"[i % 8]}${i}`, id_type: "ID_CARD", id_no: idCardNumber() }, { token });
      ids.push(p.passenger_id);
    }
    return ids;
  }

  async order(token, legs, { queueToken, key, headers: extra = {} } = {}) {
    const headers = { ...extra, ...(queueToken ? { "x-queue-token": queueToken } : {}) };
    return this.post("/api/v1/orders", { idempotency_key: key ?? uniqueName("k"), legs }, { token, headers });
  }

  /** Pay an order through mockpay and wait until it is TICKETED. */
  async payAndWait(token, orderNo) {
    const { pay_url } = await this.post(`/api/v1/orders/${orderNo}/payments`, { channel: "mockpay" }, { token });
    await this.call("POST", new URL(pay_url).pathname, { expect: [202] });
    return this.waitOrder(token, orderNo, (o) => o.status === "TICKETED");
  }

  async waitOrder(token, orderNo, done, timeoutMs = 20000) {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const o = await this.get(`/api/v1/orders/${orderNo}`, { token });
      if (done(o)) return o;
      if (Date.now() > until) throw new Error(`order ${orderNo} stayed ${o.status}`);
      await sleep(300);
    }
  }

  /** Places left of `cls` on `run` between two stations, as the search answers. */
  async remaining(run, from, to, date, cls) {
    const trains = await this.get(`/api/v1/trains?from=${from}&to=${to}&date=${date}`);
    const r = trains.find((x) => x.run_id === run);
    if (!r) throw new Error(`${run} not in the search ${from}→${to} ${date}`);
    return r.classes.find((c) => c.class === cls).remaining;
  }
}

/** Wait until `probe()` answers something truthy. */
export async function until(probe, what, timeoutMs = 20000, everyMs = 300) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}
