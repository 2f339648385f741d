// 1. A passenger registers, adds two passengers, searches 北京南 → 上海虹桥 typing pinyin, picks two
//    window seats, pays, and sees two tickets with QR codes.
import { idCardNumber, uniqueName } from "../lib/api.mjs";
import { assert, pickStation, tokenOf } from "../lib/harness.mjs";
import { run } from "./common.mjs";

export default {
  id: "1-buy",
  title: "register, add passengers, search by pinyin, two window seats, pay, two tickets with QR",
  async run(t) {
    const { page } = t;
    const username = uniqueName(t.vp).slice(0, 32);
    const password = "password-e2e-1";

    await t.goto("/account");
    await page.click("[data-test=tab-register]");
    await page.fill("input[name=username]", username);
    await page.fill("input[name=password]", password);
    await t.shot("register");
    await page.click("[data-test=account-submit]");
    await page.waitForSelector("[data-test=logout]");
    await t.shot("account");
    const token = await tokenOf(page);
    assert.ok(token, "the console keeps the login token");

    // Passengers: a wrong check digit is caught before the API is asked.
    await t.goto("/passengers");
    const good = [idCardNumber(), idCardNumber()];
    const bad = good[0].slice(0, 17) + (good[0][17] === "1" ? "2" : "1");
    await page.fill("input[name=pax-name]", "张三");
    await page.fill("input[name=pax-id-no]", bad);
    await page.waitForSelector("[data-test=id-problem]");
    await t.shot("id-check-digit");
    await page.fill("input[name=pax-id-no]", good[0]);
    await page.click("[data-test=add-passenger]");
    await page.waitForSelector("[data-test=passenger-list] tbody tr");
    await page.fill("input[name=pax-name]", "李四");
    await page.fill("input[name=pax-id-no]", good[1]);
    await page.click("[data-test=add-passenger]");
    await page.waitForFunction(() => document.querySelectorAll("[data-test=passenger-list] tbody tr").length === 2);
    const rows = await page.locator("[data-test=passenger-list] tbody tr").allInnerTexts();
    assert.ok(rows.every((r) => r.includes("*")), `names and numbers are masked: ${rows}`);
    assert.ok(!rows.some((r) => r.includes(good[0]) || r.includes(good[1])), "no full ID number on the page");
    await t.shot("passengers");
    const { items } = await t.api.get("/api/v1/passengers", { token });
    const passengers = items.map((p) => p.passenger_id);

    // Search, typing pinyin (full on the desktop, initials on the phone).
    await t.goto("/");
    const [fromText, toText] = t.vp === "phone" ? ["bjn", "shhq"] : ["beijingnan", "shanghaihongqiao"];
    await pickStation(page, "from", fromText, "VNP");
    await pickStation(page, "to", toText, "AOH");
    await page.fill("input[name=date]", t.shared.tomorrow);
    await page.click("[data-test=search]");
    const g1 = run("G1", t.shared.tomorrow);
    const row = page.locator(`li.train[data-run="${g1}"]`);
    await row.waitFor();
    await t.shot("search");
    // The same page in English, and back.
    await page.click("[data-test=lang]");
    await page.locator("nav.sub").getByText("Tickets").waitFor();
    await t.shot("search-english");
    await page.click("[data-test=lang]");
    await page.locator("nav.sub").getByText("车票查询").waitFor();
    const shown = Number(await row.locator(".offer[data-class=SECOND]").getAttribute("data-remaining"));
    assert.equal(shown, await t.api.remaining(g1, "VNP", "AOH", t.shared.tomorrow, "SECOND"), "余票 as the API says");

    // Book: both passengers, window seats A and F.
    await row.locator(".offer[data-class=SECOND] [data-test=book]").click();
    await page.waitForSelector(".seat-map .seat-rows");
    for (const id of passengers) await page.check(`.pax-option[data-passenger="${id}"] input`);
    await page.click(`.pref-row[data-passenger="${passengers[0]}"] [data-letter=A]`);
    await page.click(`.pref-row[data-passenger="${passengers[1]}"] [data-letter=F]`);
    await t.shot("book");
    await page.click("[data-test=place-order]");
    await page.waitForSelector("[data-test=order][data-status=PENDING_PAYMENT]");
    await t.shot("order-pending");
    const orderNo = page.url().split("/orders/")[1];

    // Pay through mockpay; the page follows the order to TICKETED.
    await page.click("[data-test=pay]");
    await page.waitForSelector("[data-test=checkout]");
    await t.shot("checkout");
    await page.click("[data-test=pay-confirm]");
    await page.waitForSelector("[data-test=order][data-status=TICKETED]", { timeout: 30_000 });
    await page.waitForFunction(
      () => {
        const imgs = [...document.querySelectorAll("[data-test=tickets] img[data-test=qr]")];
        return imgs.length === 2 && imgs.every((i) => i.complete && i.naturalWidth > 0);
      },
      null,
      { timeout: 15_000 },
    );
    const order = await t.api.get(`/api/v1/orders/${orderNo}`, { token });
    assert.equal(order.status, "TICKETED");
    assert.equal(order.tickets.length, 2);
    for (const tk of order.tickets) {
      assert.match(tk.seat, /[AF]$/, `window seat: ${tk.seat}`);
      const card = page.locator(`article.ticket[data-sn="${tk.ticket_sn}"]`);
      assert.ok((await card.locator("[data-test=seat]").innerText()).includes(tk.seat), "the card shows the seat");
    }
    await t.shot("tickets");
    t.shared.buyer = { username, password, token, passengers };
    t.shared.orderNo = orderNo;
    t.shared.orderedInConsole = true;
  },
};
