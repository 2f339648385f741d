// What several scenarios need when an earlier one did not leave it (each can run alone).
import { signIn, tokenOf } from "../lib/harness.mjs";

export const run = (train, date) => `${train}-${date.replaceAll("-", "")}`;

/** The viewport's passenger: made through the UI by scenario 1, else through the API. */
export async function ensureBuyer(t) {
  if (!t.shared.buyer) {
    const user = await t.api.newUser(`${t.vp}buyer`);
    user.passengers = await t.api.addPassengers(user.token, 2);
    t.shared.buyer = user;
  }
  await signIn(t.page, t.url, t.shared.buyer);
  return t.shared.buyer;
}

/** A ticketed order of the buyer's two passengers on G1 tomorrow (scenario 1's, else made here). */
export async function ensureOrder(t) {
  const buyer = await ensureBuyer(t);
  if (!t.shared.orderNo) {
    const o = await t.api.order(buyer.token, [
      { run_id: run("G1", t.shared.tomorrow), from: "VNP", to: "AOH", class: "SECOND", passenger_ids: buyer.passengers, seat_prefs: ["A", "F"] },
    ]);
    await t.api.payAndWait(buyer.token, o.order_no);
    t.shared.orderNo = o.order_no;
  }
  return t.api.get(`/api/v1/orders/${t.shared.orderNo}`, { token: buyer.token });
}

export { tokenOf };
