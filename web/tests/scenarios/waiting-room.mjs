// 3. A sale's waiting room shows a moving position, then admits, and the order goes through with
//    the queue token.
import { setTimeout as sleep } from "node:timers/promises";
import { SALE_ID } from "../lib/chepiao.mjs";
import { assert, tokenOf } from "../lib/harness.mjs";
import { ensureBuyer, run } from "./common.mjs";

export default {
  id: "3-waiting-room",
  title: "waiting room: moving position, admission, order with the queue token",
  async run(t) {
    const { page, api } = t;
    const buyer = await ensureBuyer(t);
    const saleRun = run("G3", t.shared.tomorrow);

    // Without a queue pass the order page sends the passenger to the waiting room.
    await t.goto(`/book?legs=${saleRun}:VNP:AOH:SECOND`);
    await page.waitForSelector("[data-test=need-queue]");
    await t.shot("needs-queue");

    await t.goto("/sales");
    await page.waitForSelector(`[data-sale="${SALE_ID}"]`);
    await t.shot("sales");

    // Others queue first (admitted one a second), so the passenger's position moves.
    const ahead = 4;
    for (let i = 0; i < ahead; i++) {
      const bot = await api.newUser(`${t.vp}q${i}`);
      await api.post(`/api/v1/queue/${SALE_ID}/join`, undefined, { token: bot.token, headers: { "x-device-id": `bot-${t.vp}-${i}` } });
    }
    await page.click(`[data-sale="${SALE_ID}"] [data-test=join-sale]`);
    const seen = [];
    const end = Date.now() + 60_000;
    let admitted = false;
    let shotWaiting = false;
    let mode = "";
    while (Date.now() < end) {
      if (await page.locator("[data-test=queue-admitted]").isVisible()) {
        admitted = true;
        break;
      }
      mode = (await page.locator("[data-test=queue-mode]").textContent({ timeout: 100 }).catch(() => null)) ?? mode;
      const pos = await page.locator("[data-test=queue-position]").getAttribute("data-position").catch(() => null);
      if (pos !== null && pos !== "" && seen[seen.length - 1] !== Number(pos)) {
        seen.push(Number(pos));
        if (!shotWaiting) {
          await t.shot("queue-waiting");
          shotWaiting = true;
        }
      }
      await sleep(150);
    }
    assert.ok(admitted, `admitted within a minute (positions seen: ${seen.join(", ")})`);
    assert.ok(seen.length >= 2, `the position moved while waiting: ${seen.join(", ")}`);
    assert.ok(seen.every((p, i) => i === 0 || p < seen[i - 1]), `the position only went down: ${seen.join(", ")}`);
    t.log(`positions: ${seen.join(" → ")} → admitted (followed by: ${mode || "?"})`);
    await t.shot("queue-admitted");

    // Straight to the order, with the token.
    await page.click(`.queue-run[data-run="${saleRun}"] [data-test=queue-order]`);
    await page.waitForSelector(".pax-option");
    await page.check(`.pax-option[data-passenger="${buyer.passengers[0]}"] input`);
    await t.shot("book-with-pass");
    await page.click("[data-test=place-order]");
    await page.waitForSelector("[data-test=order][data-status=PENDING_PAYMENT]");
    await page.click("[data-test=pay]");
    await page.click("[data-test=pay-confirm]");
    await page.waitForSelector("[data-test=order][data-status=TICKETED]", { timeout: 30_000 });
    await t.shot("queue-order-ticketed");
    const orderNo = page.url().split("/orders/")[1];
    const order = await api.get(`/api/v1/orders/${orderNo}`, { token: await tokenOf(page) });
    assert.equal(order.legs[0].run_id, saleRun);
  },
};
