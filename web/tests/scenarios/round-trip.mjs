// A round trip is one order of two legs; an unpaid order can be cancelled.
import { assert, pickStation, tokenOf } from "../lib/harness.mjs";
import { chinaDate } from "../lib/chepiao.mjs";
import { ensureBuyer, run } from "./common.mjs";

export default {
  id: "1b-round-trip",
  title: "round trip: two legs in one order; cancel it",
  async run(t) {
    const { page, api } = t;
    const buyer = await ensureBuyer(t);
    // Not tomorrow: the buyer's passengers already travel on G1 then (scenario 1), and the server
    // refuses a passenger two journeys at once (409/40914).
    const out = chinaDate(2);
    const back = chinaDate(3);
    await t.goto("/");
    await pickStation(page, "from", "北京南", "VNP");
    await pickStation(page, "to", "shhq", "AOH");
    await page.fill("input[name=date]", out);
    await page.check("input[name=round-trip]");
    await page.fill("input[name=back-date]", back);
    // Filter and sort on the way: G trains leaving in the morning, fastest first.
    await page.click("[data-test=search]");
    await page.locator(`li.train[data-run="${run("G1", out)}"]`).waitFor();
    await page.check("input[name=type-G]");
    await page.selectOption("select[name=slot]", "morning");
    await page.selectOption("select[name=sort]", "duration");
    const hours = await page.locator("li.train .times > div:first-child .time").allInnerTexts();
    assert.ok(hours.length && hours.every((h) => h >= "06:00" && h < "12:00"), `morning departures only: ${hours}`);
    await t.shot("outbound-filtered");
    await page.locator(`li.train[data-run="${run("G1", out)}"] .offer[data-class=SECOND] [data-test=book]`).click();
    const ret = page.locator(`li.train[data-run="${run("G2", back)}"]`);
    await ret.waitFor();
    assert.match(await page.locator("[data-test=trip-step]").innerText(), /G1/);
    await t.shot("return");
    await ret.locator(".offer[data-class=FIRST] [data-test=book]").click();
    await page.waitForSelector(".leg[data-leg='1'] .seat-map .seat-rows");
    await page.check(`.pax-option[data-passenger="${buyer.passengers[0]}"] input`);
    await t.shot("book-two-legs");
    await page.click("[data-test=place-order]");
    await page.waitForSelector("[data-test=order][data-status=PENDING_PAYMENT]");
    const orderNo = page.url().split("/orders/")[1];
    const order = await api.get(`/api/v1/orders/${orderNo}`, { token: await tokenOf(page) });
    assert.deepEqual(
      order.legs.map((l) => [l.run_id, l.from, l.to, l.class]),
      [
        [run("G1", out), "VNP", "AOH", "SECOND"],
        [run("G2", back), "AOH", "VNP", "FIRST"],
      ],
    );
    assert.equal(await page.locator("[data-test=amount]").innerText(), `¥${order.amount_fen / 100}`.replace(/\.0+$/, ""));
    await t.shot("order-two-legs");
    await page.click("[data-test=cancel-order]");
    await page.waitForSelector("[data-test=order][data-status=CANCELLED]");
    await t.shot("cancelled");
  },
};
