// The operator's page beyond the statistics: key entry, risk lists add/remove, dead events, and
// the live, waiting-room and audit tabs showing the figures the API answers.
import { until } from "../lib/api.mjs";
import { ADMIN_KEY, SALE_ID } from "../lib/chepiao.mjs";
import { assert } from "../lib/harness.mjs";
import { run } from "./common.mjs";

/** The figures that stay put while nothing happens (not the rate, not the outbox's oldest age), comparable. */
function steady(figures) {
  const { orders_per_s: _rate, outbox_oldest: _age, ...rest } = figures;
  return JSON.stringify(Object.entries(rest).sort(([a], [b]) => a.localeCompare(b)));
}

/** `GET /api/v1/admin/live` as the live tab's `data-field`s should read. */
function liveFigures(live) {
  return {
    orders_per_s: String(live.orders_per_s),
    outbox_pending: String(live.outbox.pending),
    outbox_dead: String(live.outbox.dead),
    ...(live.outbox.oldest_pending_age_s == null ? {} : { outbox_oldest: String(live.outbox.oldest_pending_age_s) }),
    risk_allowed: String(live.risk.allowed),
    risk_slow_lane: String(live.risk.slow_lane),
    risk_refused: String(live.risk.refused),
    engine_runs: String(live.engine.runs),
    engine_live_holds: String(live.engine.live_holds),
    engine_sold_legs: String(live.engine.sold_legs),
    hot: live.hottest_runs.map((r) => [r.run_id, String(r.orders), ...r.remaining.map((c) => `${c.class}=${c.remaining}`)].join(" ")),
  };
}

export default {
  id: "5a-operator",
  title: "operator: admin key, risk lists, dead events, live figures, audit, waiting room",
  async run(t) {
    const { page, api } = t;
    await t.goto("/admin");
    await page.fill("input[name=admin-key]", ADMIN_KEY);
    await page.click("[data-test=admin-enter]");
    await page.waitForSelector(".admin-tabs");

    // Risk lists: add a device to the block list, then take it off again.
    await page.click("[data-tab=risk]");
    const device = `e2e-${t.vp}-device`;
    await page.selectOption("select[name=risk-kind]", "device");
    await page.fill("input[name=risk-value]", device);
    await page.click("[data-test=risk-add]");
    await page.waitForSelector(`[data-test=risk-values] li[data-value="${device}"]`);
    await t.shot("risk-added");
    let list = (await api.admin("GET", "/api/v1/admin/risk/block/device")).body.values;
    assert.ok(list.includes(device), "the API lists the blocked device");
    await page.click(`[data-test=risk-values] li[data-value="${device}"] button`);
    await page.waitForSelector(`[data-test=risk-values] li[data-value="${device}"]`, { state: "detached" });
    list = (await api.admin("GET", "/api/v1/admin/risk/block/device")).body.values;
    assert.ok(!list.includes(device), "removed from the API's list");

    // Dead outbox events (none in a healthy run): the list answers.
    await page.click("[data-tab=events]");
    const dead = (await api.admin("GET", "/api/v1/admin/events?state=DEAD")).body.events;
    if (dead.length) await page.waitForSelector("[data-test=events]");
    else await page.getByText(/没有死信事件|No dead events/).waitFor();
    await t.shot("dead-events");

    // Live figures: what the page shows is what the API answers (the page refreshes every 2 s, the
    // figures move with the server's traffic, so both are read again until they agree). Orders just
    // placed make their run the hottest (no other run of the tests takes more than four at once).
    const hotRun = run("G101", t.shared.tomorrow);
    const HOT_ORDERS = 6;
    for (let i = 0; i < HOT_ORDERS; i++) {
      const buyer = await api.newUser(`${t.vp}hot${i}`);
      await api.order(buyer.token, [{ run_id: hotRun, from: "VNP", to: "AOH", class: "FIRST", passenger_ids: await api.addPassengers(buyer.token, 1) }]);
    }
    await page.click("[data-tab=live]");
    await page.waitForSelector("[data-test=live]");
    let seen = {};
    let expected = {};
    await until(
      async () => {
        const live = (await api.admin("GET", "/api/v1/admin/live")).body;
        expected = liveFigures(live);
        seen = await page.evaluate(() => {
          const out = {};
          for (const el of document.querySelectorAll("[data-test=live] [data-field]")) out[el.dataset.field] = el.dataset.value ?? el.textContent.trim();
          out.hot = [...document.querySelectorAll("[data-test=hot-run]")].map((r) =>
            [r.dataset.run, r.querySelector("[data-field=orders]").textContent.trim(), ...[...r.querySelectorAll("[data-class]")].map((c) => `${c.dataset.class}=${c.dataset.remaining}`)].join(" "),
          );
          return out;
        });
        return steady(seen) === steady(expected);
      },
      "the live tab to show the API's figures",
      10_000,
      500,
    ).catch((e) => {
      throw new Error(`${e.message}: page ${JSON.stringify(seen)}, API ${JSON.stringify(expected)}`);
    });
    const counts = expected.hot.map((r) => Number(r.split(" ")[1]));
    assert.ok(counts.every((c, i) => i === 0 || c <= counts[i - 1]), `the busiest first: ${expected.hot}`);
    const hot = expected.hot.find((r) => r.startsWith(`${hotRun} `));
    assert.ok(hot && Number(hot.split(" ")[1]) >= HOT_ORDERS, `${hotRun} among the hottest runs with ${HOT_ORDERS} orders or more: ${expected.hot}`);
    assert.ok(Number(expected.engine_live_holds) + Number(expected.engine_sold_legs) > 0, "the order holds a seat");
    await t.shot("live");

    // The waiting room of the tests' sale, someone having just joined: the page's figures are the API's.
    const joiner = await api.newUser(`${t.vp}room`);
    await api.post(`/api/v1/queue/${SALE_ID}/join`, undefined, { token: joiner.token, headers: { "x-device-id": `room-${t.vp}` } });
    await page.click("[data-tab=room]");
    const roomRow = page.locator(`[data-test=rooms] tr[data-sale="${SALE_ID}"]`);
    let room = {};
    let shown = [];
    await until(
      async () => {
        room = (await api.admin("GET", `/api/v1/admin/sales/${SALE_ID}/room`)).body;
        shown = [await roomRow.locator("[data-field=waiting]").innerText(), await roomRow.locator("[data-field=admitted]").innerText()];
        return shown[0] === String(room.waiting) && shown[1] === String(room.admitted);
      },
      "the room tab to show the API's figures",
      10_000,
      500,
    ).catch((e) => {
      throw new Error(`${e.message}: page ${shown}, API ${JSON.stringify(room)}`);
    });
    assert.equal(room.sale_id, SALE_ID);
    assert.ok(room.waiting + room.admitted > 0, `the joiner is counted: ${JSON.stringify(room)}`);
    await t.shot("room");

    // The audit log's hash chain: intact, with as many entries as the API counts.
    await page.click("[data-tab=audit]");
    const before = (await api.admin("GET", "/api/v1/admin/audit/verify")).body;
    await page.click("[data-test=audit-verify]");
    const result = page.locator("[data-test=audit-result]");
    await result.waitFor();
    const after = (await api.admin("GET", "/api/v1/admin/audit/verify")).body;
    assert.equal(after.intact, true, `the API finds the chain intact: ${after.problem}`);
    assert.equal(await result.getAttribute("data-intact"), "true");
    const entries = Number(await result.getAttribute("data-entries"));
    assert.ok(before.entries > 0 && before.entries <= entries && entries <= after.entries, `entries ${before.entries} ≤ ${entries} ≤ ${after.entries}`);
    assert.match(await result.innerText(), new RegExp(`${entries}`), "the count is shown");
    await t.shot("audit");
  },
};
