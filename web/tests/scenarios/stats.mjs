// 5. The operator page shows the sales statistics with the numbers the API returns: the table,
//    totals, by channel and by source, and again filtered by train and class.
import { ADMIN_KEY, chinaDate } from "../lib/chepiao.mjs";
import { assert } from "../lib/harness.mjs";
import { ensureOrder, run } from "./common.mjs";

const COUNTS = ["placed", "seats", "paid", "ticketed", "expired", "cancelled", "refunded"];

export async function compare(page, stats) {
  const rows = page.locator("[data-test=stats-row]");
  assert.equal(await rows.count(), stats.rows.length, "one table row per API row");
  for (let i = 0; i < stats.rows.length; i++) {
    const r = stats.rows[i];
    const row = rows.nth(i);
    const cell = (f) => row.locator(`[data-field=${f}]`);
    assert.equal(await cell("day").innerText(), r.day);
    assert.equal(await cell("train_code").innerText(), r.train_code);
    assert.equal(await cell("class").getAttribute("data-value"), r.class);
    for (const f of COUNTS) assert.equal(Number(await cell(f).innerText()), r[f], `${r.day} ${r.train_code} ${r.class} ${f}`);
    assert.equal(Number(await cell("revenue_fen").getAttribute("data-value")), r.revenue_fen);
    assert.equal(Number(await cell("refunds_fen").getAttribute("data-value")), r.refunds_fen);
    assert.equal(Number(await cell("conversion").getAttribute("data-value")), r.conversion);
  }
  const totals = page.locator("[data-test=stats-totals]");
  for (const f of COUNTS) assert.equal(Number(await totals.locator(`[data-field=${f}]`).innerText()), stats.totals[f], `totals ${f}`);
  for (const f of ["revenue_fen", "refunds_fen", "conversion"]) {
    assert.equal(Number(await totals.locator(`[data-field=${f}]`).getAttribute("data-value")), stats.totals[f], `totals ${f}`);
  }
  for (const c of stats.by_channel) {
    const row = page.locator(`[data-test=stats-channels] tr[data-channel="${c.channel}"]`);
    assert.equal(Number(await row.locator("[data-field=payments]").innerText()), c.payments, `${c.channel} payments`);
    assert.equal(Number(await row.locator("[data-field=amount_fen]").getAttribute("data-value")), c.amount_fen);
    assert.equal(Number(await row.locator("[data-field=refunds_fen]").getAttribute("data-value")), c.refunds_fen);
  }
  for (const s of stats.by_source) {
    const row = page.locator(`[data-test=stats-sources] tr[data-source="${s.source}"]`);
    assert.equal(Number(await row.locator("[data-field=placed]").innerText()), s.placed, `${s.source} placed`);
    assert.equal(Number(await row.locator("[data-field=paid]").innerText()), s.paid, `${s.source} paid`);
  }
}

export default {
  id: "5-stats",
  title: "operator statistics show the numbers the API returns",
  async run(t) {
    const { page, api } = t;
    await ensureOrder(t); // G1 orders for the filter below, when scenario 1 did not run
    const from = chinaDate(-6);
    const to = chinaDate(0);
    const statsNow = async () => (await api.admin("GET", `/api/v1/admin/stats/sales?from=${from}&to=${to}`)).body;

    // Orders' sources are their X-Client header: `web` counts as web; none, or one the server
    // does not know, as `api`. Three orders of three new users, the `web` one paid.
    const before = await statsNow();
    const sourced = {};
    for (const client of [undefined, "web", "some-robot/1.0"]) {
      const u = await api.newUser(`${t.vp}src`);
      const [p] = await api.addPassengers(u.token, 1);
      const headers = client ? { "x-client": client } : {};
      const o = await api.order(u.token, [{ run_id: run("G17", t.shared.tomorrow), from: "VNP", to: "AOH", class: "SECOND", passenger_ids: [p] }], { headers });
      if (client === "web") await api.payAndWait(u.token, o.order_no);
      sourced[client ?? "none"] = o.order_no;
    }
    const after = await statsNow();
    const delta = (source, f) => (after.by_source.find((s) => s.source === source)?.[f] ?? 0) - (before.by_source.find((s) => s.source === source)?.[f] ?? 0);
    const moved = `by_source before ${JSON.stringify(before.by_source)}, after ${JSON.stringify(after.by_source)} (orders ${JSON.stringify(sourced)})`;
    assert.equal(delta("web", "placed"), 1, `X-Client: web counts as web: ${moved}`);
    assert.equal(delta("web", "paid"), 1, `the paid web order counts as paid: ${moved}`);
    assert.equal(delta("api", "placed"), 2, `no X-Client, or an unknown one, counts as api: ${moved}`);
    assert.equal(delta("api", "paid"), 0, `neither api order is paid: ${moved}`);
    assert.equal(after.totals.placed - before.totals.placed, 3, "three more orders placed");

    await t.goto("/admin?tab=stats");
    if (await page.locator("input[name=admin-key]").isVisible()) {
      await page.fill("input[name=admin-key]", ADMIN_KEY);
      await page.click("[data-test=admin-enter]");
    }
    await page.waitForSelector("[data-test=stats-totals]");
    const stats = (await api.admin("GET", `/api/v1/admin/stats/sales?from=${from}&to=${to}`)).body;
    await compare(page, stats);
    assert.equal(stats.truncated, false);
    assert.ok(stats.rows.length > 0 && stats.totals.placed > 0, "the earlier scenarios' orders are counted");
    if (t.shared.orderedInConsole) {
      assert.ok(stats.by_source.some((s) => s.source === "console" && s.placed > 0), "scenario 1's order counts as source `console`");
    }
    assert.ok(stats.by_channel.some((c) => c.channel === "mockpay" && c.payments > 0), "mockpay payments are counted");
    await t.shot("stats");

    // Filtered by train and class.
    await page.fill("input[name=stats-train]", "G1");
    await page.selectOption("select[name=stats-class]", "SECOND");
    await page.click("[data-test=stats-query]");
    await page.waitForFunction(() => [...document.querySelectorAll("[data-test=stats-row] [data-field=train_code]")].every((c) => c.textContent === "G1"));
    const filtered = (await api.admin("GET", `/api/v1/admin/stats/sales?from=${from}&to=${to}&train=G1&class=SECOND`)).body;
    assert.ok(filtered.rows.length > 0, "scenario 1's G1 orders are there");
    assert.ok(filtered.rows.every((r) => r.train_code === "G1" && r.class === "SECOND"), "the API filtered");
    assert.ok(filtered.totals.placed < stats.totals.placed, "fewer orders than unfiltered");
    await compare(page, filtered);
    await t.shot("stats-filtered");
  },
};
