// Rebook (改签) a ticket to a dearer train: the new order asks for the difference, is paid, and
// the old ticket becomes REBOOKED.
import { assert } from "../lib/harness.mjs";
import { ensureBuyer, run } from "./common.mjs";

export default {
  id: "2b-rebook",
  title: "rebook a ticket to a dearer train, pay the difference",
  async run(t) {
    const { page, api } = t;
    const buyer = await ensureBuyer(t);
    const date = t.shared.tomorrow;
    const o = await api.order(buyer.token, [
      { run_id: run("G11", date), from: "VNP", to: "AOH", class: "SECOND", passenger_ids: [buyer.passengers[1]] },
    ]);
    const paid = await api.payAndWait(buyer.token, o.order_no);
    const old = paid.tickets[0];

    await t.goto(`/orders/${o.order_no}`);
    const card = page.locator(`article.ticket[data-sn="${old.ticket_sn}"]`);
    await card.locator("[data-test=rebook]").click();
    const target = card.locator(`[data-test=rebook-panel] button[data-run="${run("G13", date)}"][data-class=SECOND]`);
    await target.waitFor();
    await t.shot("rebook-pick");
    await target.click();
    await page.waitForSelector("[data-test=order][data-status=PENDING_PAYMENT]");
    await page.waitForURL((u) => !u.href.endsWith(o.order_no));
    const newNo = page.url().split("/orders/")[1];
    const fresh = await api.get(`/api/v1/orders/${newNo}`, { token: buyer.token });
    assert.equal(fresh.legs[0].run_id, run("G13", date));
    assert.ok(fresh.amount_fen > 0 && fresh.amount_fen < old.price_fen, `pays the difference only: ${fresh.amount_fen}`);
    await t.shot("rebook-order");
    await page.click("[data-test=pay]");
    await page.click("[data-test=pay-confirm]");
    await page.waitForSelector("[data-test=order][data-status=TICKETED]", { timeout: 30_000 });
    await t.shot("rebook-ticketed");
    const before = await api.get(`/api/v1/tickets/${old.ticket_sn}`, { token: buyer.token });
    assert.equal(before.status, "REBOOKED");
  },
};
