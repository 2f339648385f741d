#!/usr/bin/env node
// Browser tests of the console: starts a chepiao server of its own (CHEPIAO_BIN, default
// ../target/release/chepiao), uses the console it serves (or web/dist in front of it when it
// embeds another build), and drives Debian's chromium (CHROMIUM, default /usr/bin/chromium)
// through playwright-core in a desktop (1280×800) and a phone (390×844) viewport. Screenshots of
// every page go to tests/screenshots/. Exits non-zero when a scenario fails.
//
//   npm run build && npm run test:e2e          # all scenarios, both viewports
//   E2E_ONLY=gate E2E_VIEWPORTS=phone npm run test:e2e
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { Api } from "./lib/api.mjs";
import { ADMIN_KEY, chinaDate, GATE_KEY, startChepiao } from "./lib/chepiao.mjs";
import { startConsoleServer } from "./lib/console-server.mjs";
import { SkipError } from "./lib/harness.mjs";
import scenarios from "./scenarios/index.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const web = resolve(here, "..");
const dist = join(web, "dist");
const shots = join(here, "screenshots");
const bin = resolve(web, process.env.CHEPIAO_BIN ?? "../target/release/chepiao");
const browserPath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const VIEWPORTS = {
  desktop: { viewport: { width: 1280, height: 800 } },
  phone: { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 },
};
const only = process.env.E2E_ONLY?.split(",").filter(Boolean);
const viewports = (process.env.E2E_VIEWPORTS ?? "desktop,phone").split(",").filter((v) => VIEWPORTS[v]);
const SCENARIO_TIMEOUT_MS = Number(process.env.E2E_SCENARIO_TIMEOUT_MS ?? 120_000);

function fail(message) {
  console.error(`e2e: ${message}`);
  process.exit(2);
}
if (!existsSync(join(dist, "index.html"))) fail("web/dist/index.html is missing: run `npm run build` first");
if (!existsSync(bin)) fail(`no chepiao binary at ${bin} (set CHEPIAO_BIN)`);
if (!existsSync(browserPath)) fail(`no chromium at ${browserPath} (apt-get install chromium, or set CHROMIUM)`);

rmSync(shots, { recursive: true, force: true });
mkdirSync(shots, { recursive: true });
const serverLog = [];

const tomorrow = chinaDate(1);
const server = await startChepiao({ bin, saleRun: `G3-${tomorrow.replaceAll("-", "")}`, log: (s) => serverLog.push(s) }).catch((e) => {
  writeFileSync(join(shots, "server.log"), serverLog.join(""));
  fail(`${e.message}; its last words:\n${serverLog.join("").split("\n").filter((l) => !/^\s+(\d+:|at )/.test(l)).slice(-15).join("\n")}`);
});
console.log(`chepiao at ${server.url} (data in ${server.dir})`);

// Serve the console from the server itself when it embeds this very build (the binary was built
// from these sources); otherwise from web/dist in front of it.
let consoleUrl = server.url;
let proxy;
/**
 * API requests the console made without `X-Client: console`, seen from the browser (so whether
 * the console comes from dist/ or from the server itself).
 */
const unlabelled = new Set();
let browserCalls = 0;
const inspect = (req) => {
  const url = new URL(req.url());
  if (url.origin !== new URL(consoleUrl).origin || !/^\/(api|mockpay)\//.test(url.pathname)) return;
  browserCalls += 1;
  if (req.headers()["x-client"] !== "console") unlabelled.add(`${req.method()} ${url.pathname}`);
};
const built = readFileSync(join(dist, "index.html"), "utf8").match(/assets\/index-[\w-]+\.js/)?.[0];
const served = await fetch(`${server.url}/`).then((r) => r.text()).catch(() => "");
if (!built || !served.includes(built)) {
  proxy = await startConsoleServer({ dist, upstream: server.url });
  consoleUrl = proxy.url;
  console.log(`console from web/dist at ${consoleUrl} (the server embeds another build)`);
} else {
  console.log("console served by chepiao itself");
}

const api = new Api(server.url, { adminKey: ADMIN_KEY, gateKey: GATE_KEY });
const browser = await chromium.launch({ executablePath: browserPath, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
const results = [];

try {
  for (const vp of viewports) {
    const context = await browser.newContext({ ...VIEWPORTS[vp], locale: "zh-CN", timezoneId: "Asia/Shanghai" });
    context.setDefaultTimeout(15_000);
    const shared = { tomorrow }; // what one scenario leaves for the next, per viewport
    for (const s of scenarios) {
      if (only && !only.some((o) => s.id.includes(o))) continue;
      const page = await context.newPage();
      const problems = [];
      page.on("request", inspect);
      page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
      page.on("console", (m) => m.type() === "error" && !/status of 4\d\d/.test(m.text()) && problems.push(`console: ${m.text()}`));
      let n = 0;
      const t = {
        vp,
        page,
        api,
        url: consoleUrl,
        shared,
        serverUrl: server.url,
        goto: (hash) => page.goto(`${consoleUrl}/#${hash}`),
        shot: async (name) => {
          n += 1;
          await page.screenshot({ path: join(shots, `${vp}-${s.id}-${String(n).padStart(2, "0")}-${name}.png`), fullPage: true });
        },
        log: (m) => console.log(`    ${m}`),
      };
      const started = Date.now();
      let outcome;
      try {
        await Promise.race([
          s.run(t),
          new Promise((_, reject) => setTimeout(() => reject(new Error(`timed out after ${SCENARIO_TIMEOUT_MS} ms`)), SCENARIO_TIMEOUT_MS).unref()),
        ]);
        if (problems.length) throw new Error(`the page reported errors:\n      ${problems.join("\n      ")}`);
        outcome = { status: "passed" };
      } catch (e) {
        if (e instanceof SkipError) outcome = { status: "skipped", message: e.message };
        else {
          outcome = { status: "failed", message: e.stack ?? String(e) };
          await page.screenshot({ path: join(shots, `${vp}-${s.id}-FAILED.png`), fullPage: true }).catch(() => undefined);
        }
      }
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      results.push({ vp, id: s.id, ...outcome });
      const mark = { passed: "ok", failed: "FAIL", skipped: "skip" }[outcome.status];
      console.log(`${mark.padEnd(4)} ${vp.padEnd(7)} ${s.id} — ${s.title} (${secs} s)${outcome.message ? `\n      ${outcome.message.replaceAll("\n", "\n      ")}` : ""}`);
      await page.close();
    }
    await context.close();
  }
} finally {
  await browser.close();
  proxy?.server.close();
  await server.stop();
  writeFileSync(join(shots, "server.log"), serverLog.join(""));
}

{
  const ok = unlabelled.size === 0 && browserCalls > 0;
  results.push({ vp: "all", id: "x-client", status: ok ? "passed" : "failed" });
  console.log(
    ok
      ? `ok   all ${browserCalls} API requests from the console carried X-Client: console`
      : `FAIL ${browserCalls ? "requests without X-Client: console" : "no API request from the console seen"}:\n      ${[...unlabelled].join("\n      ")}`,
  );
}

const count = (st) => results.filter((r) => r.status === st).length;
// The server's data directory is kept for a look after a failure only.
if (!count("failed")) rmSync(server.dir, { recursive: true, force: true });
else console.log(`\nchepiao's data kept in ${server.dir}`);
console.log(`\nscreenshots: ${readdirSync(shots).filter((f) => f.endsWith(".png")).length} in ${shots}`);
console.log(`e2e: ${count("passed")} passed, ${count("failed")} failed, ${count("skipped")} skipped`);
if (count("failed") || !results.length) process.exit(1);
