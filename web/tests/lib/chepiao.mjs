// Start a chepiao server of the tests' own: a free port, a fresh data directory, and a TOML
// configuration with an admin key, a gate key, the risk scores at 100 and one sale opening a few
// seconds after start on a G-train run tomorrow.
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export const ADMIN_KEY = "e2e-admin-secret";
export const GATE_ID = "g1";
export const GATE_KEY = "e2e-gate-secret-key"; // secrets: at least 16 characters (docs/CONFIG.md)
export const SALE_ID = "e2e-rush";

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Date in China (UTC+8) `days` from today, YYYY-MM-DD. */
export function chinaDate(days = 0) {
  return new Date(Date.now() + 8 * 3600e3 + days * 86400e3).toISOString().slice(0, 10);
}

/** RFC 3339 in China time, `ms` from now. */
export function chinaTime(ms = 0) {
  return new Date(Date.now() + ms + 8 * 3600e3).toISOString().replace(/\.\d+Z$/, "+08:00");
}

export async function startChepiao({ bin, saleRun, opensInMs = 5000, log }) {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "chepiao-e2e-"));
  const config = join(dir, "chepiao.toml");
  writeFileSync(
    config,
    `# written by web/tests/run.mjs
listen = "127.0.0.1:${port}"
data_dir = "${join(dir, "data")}"
admin_key = "${ADMIN_KEY}"
gates = ["${GATE_ID}=${GATE_KEY}"]
risk_slow_score = 100
risk_refuse_score = 100
# the tests place many orders from one address within seconds
risk_rate_per_s = 10000
risk_burst = 10000
# tomorrow's tickets can be checked in whatever the hour the tests run at
ticket_valid_before_s = 259200

[[sales]]
sale_id = "${SALE_ID}"
opens_at = "${chinaTime(opensInMs)}"
run_ids = ["${saleRun}"]
admit_per_s = 1
`,
  );
  // The tests' configuration only: no CHEPIAO_* variables of the calling shell.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CHEPIAO_")));
  const child = spawn(bin, ["serve", "--config", config], { env, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.on("data", (d) => log(d.toString()));
  child.stderr.on("data", (d) => log(d.toString()));
  let exited = null;
  child.on("exit", (code, signal) => (exited = `exited with ${code ?? signal}`));
  const url = `http://127.0.0.1:${port}`;
  const until = Date.now() + 180_000; // the first start imports the rail network
  for (;;) {
    if (exited) throw new Error(`chepiao ${exited} before it was ready (see the server log)`);
    try {
      const r = await fetch(`${url}/readyz`);
      if (r.ok) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > until) throw new Error("chepiao was not ready within 180 s");
    await sleep(300);
  }
  return {
    url,
    dir,
    config,
    stop: () =>
      new Promise((resolve) => {
        if (exited) return resolve();
        child.once("exit", resolve);
        child.kill("SIGTERM");
        setTimeout(() => child.kill("SIGKILL"), 5000).unref();
      }),
  };
}
