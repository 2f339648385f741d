// 2. A refund shows its fee and the seat count goes back up; a waitlist wish is fulfilled after a
//    refund (business class on one run filled first through the API).
import { chinaDate } from "../lib/chepiao.mjs";
import { assert, pickStation, tokenOf } from "../lib/harness.mjs";
import { until } from "../lib/api.mjs";
import { ensureOrder, run } from "./common.mjs";

/** The waitlist run per viewport, so the two viewports do not share a filled class. */
const WISH_TRAIN = { desktop: "G7", phone: "G9" };
/**
 * The wishes' day: one on which the buyer's passengers travel on nothing else, as the server
 * refuses a journey overlapping another of the same passenger (409/40914, `rule_no_overlapping_trips`).
 */
const WISH_DAYS_AHEAD = 4;

export default {
  id: "2-refund-waitlist",
  title: "refund shows its fee and gives the seat back; a waitlist wish is fulfilled after a refund",
  async run(t) {
    const { page, api } = t;
    const date = t.shared.tomorrow;
    const order = await ensureOrder(t);
    const token = await tokenOf(page);
    const ticket = order.tickets.find((x) => x.status === "ISSUED");
    const g1 = run("G1", date);
    const before = await api.remaining(g1, "VNP", "AOH", date, "SECOND");

    // Refund one ticket: the fee is shown before confirming, then the API's answer.
    await t.goto(`/orders/${order.order_no}`);
    const card = page.locator(`article.ticket[data-sn="${ticket.ticket_sn}"]`);
    await card.locator("[data-test=refund]").click();
    const estimate = card.locator("[data-test=refund-estimate]");
    await estimate.waitFor();
    await t.shot("refund-fee");
    const shownFee = Number(await estimate.getAttribute("data-fee"));
    await card.locator("[data-test=refund-confirm]").click();
    const done = page.locator("[data-test=refund-done]");
    await done.waitFor();
    await t.shot("refunded");
    const answer = await api.post(`/api/v1/tickets/${ticket.ticket_sn}/refund`, undefined, { token }); // asking again answers the same refund
    assert.equal(Number(await done.getAttribute("data-fee")), answer.fee_fen, "the page shows the API's fee");
    assert.equal(Number(await done.getAttribute("data-refund")), answer.refund_fen, "the page shows the API's refund");
    assert.equal(shownFee, answer.fee_fen, "the fee shown before confirming is the one charged");
    assert.equal(answer.fee_fen + answer.refund_fen, ticket.price_fen);
    await page.waitForSelector(`article.ticket[data-sn="${ticket.ticket_sn}"][data-status=REFUNDED]`);
    t.shared.refundedSn = ticket.ticket_sn;

    // The seat goes back (asynchronously): the search shows one more.
    await until(async () => (await api.remaining(g1, "VNP", "AOH", date, "SECOND")) === before + 1, "the refunded seat back on sale");
    await t.goto(`/search?from=VNP&fromName=北京南&to=AOH&toName=上海虹桥&date=${date}`);
    const offer = page.locator(`li.train[data-run="${g1}"] .offer[data-class=SECOND]`);
    await offer.waitFor();
    assert.equal(Number(await offer.getAttribute("data-remaining")), before + 1, "余票 back up by one");
    await t.shot("seat-back");

    // Fill business class on one run through the API: 18 seats, four paid orders of 18 different
    // passengers (one passenger cannot hold two seats on a run; a user lists at most 15), of two users.
    const wishDate = chinaDate(WISH_DAYS_AHEAD);
    const wishRun = run(WISH_TRAIN[t.vp], wishDate);
    const fillerOrders = [];
    for (const i of [1, 2]) {
      const filler = await api.newUser(`${t.vp}fill${i}`);
      const pax = await api.addPassengers(filler.token, 9);
      for (const group of [pax.slice(0, 5), pax.slice(5)]) {
        const o = await api.order(filler.token, [{ run_id: wishRun, from: "VNP", to: "AOH", class: "BUSINESS", passenger_ids: group }]);
        fillerOrders.push({ token: filler.token, order: await api.payAndWait(filler.token, o.order_no) });
      }
    }
    assert.equal(await api.remaining(wishRun, "VNP", "AOH", wishDate, "BUSINESS"), 0, "business sold out");

    // The passenger finds it sold out and joins the waitlist from the results.
    await t.goto("/");
    await pickStation(page, "from", "北京南", "VNP");
    await pickStation(page, "to", "上海虹桥", "AOH");
    await page.fill("input[name=date]", wishDate);
    await page.click("[data-test=search]");
    const sold = page.locator(`li.train[data-run="${wishRun}"] .offer[data-class=BUSINESS]`);
    await sold.waitFor();
    assert.equal(await sold.getAttribute("data-remaining"), "0");
    await sold.locator("[data-test=waitlist]").click();
    await page.waitForSelector(".pax-option");
    await page.locator(".pax-option input").first().check();
    await t.shot("waitlist-join");
    await page.click("[data-test=wish-join]");
    const wish = page.locator("li.wish").first();
    await wish.waitFor();
    await wish.locator("[data-test=pay]").click();
    await wish.locator("[data-test=pay-confirm]").click();
    await page.waitForSelector("li.wish[data-status=WAITING]", { timeout: 20_000 });
    await t.shot("waitlist-waiting");

    // A refund on that class gives the seat to the wish; the page follows it to FULFILLED.
    await api.post(`/api/v1/tickets/${fillerOrders[0].order.tickets[0].ticket_sn}/refund`, undefined, { token: fillerOrders[0].token });
    await page.waitForSelector("li.wish[data-status=FULFILLED]", { timeout: 30_000 });
    await t.shot("waitlist-fulfilled");
    await page.click("li.wish[data-status=FULFILLED] [data-test=wish-order]");
    await page.waitForSelector("[data-test=order][data-status=TICKETED]", { timeout: 20_000 });
    await page.waitForSelector("[data-test=tickets] img[data-test=qr]");
    await t.shot("waitlist-ticket");

    // Another wish on the class (sold out again), prepaid, then cancelled.
    assert.equal(await api.remaining(wishRun, "VNP", "AOH", wishDate, "BUSINESS"), 0, "the wish took the seat");
    await t.goto(`/waitlist?run=${wishRun}&from=VNP&to=AOH&cls=BUSINESS`);
    await page.waitForSelector(".pax-option");
    await page.locator(".pax-option input").nth(1).check();
    await page.click("[data-test=wish-join]");
    const second = page.locator("li.wish[data-status=PENDING_PAYMENT]");
    await second.waitFor();
    await second.locator("[data-test=pay]").click();
    await second.locator("[data-test=pay-confirm]").click();
    const waiting = page.locator("li.wish[data-status=WAITING]");
    await waiting.waitFor({ timeout: 20_000 });
    await waiting.locator("[data-test=wish-cancel]").click();
    await page.waitForSelector("li.wish[data-status=CANCELLED]");
    await t.shot("waitlist-cancelled");

    await t.goto("/notifications");
    await page.waitForSelector("[data-test=notifications] li[data-kind='wish.fulfilled']");
    await t.shot("notifications");
  },
};
