// The scenarios, in the order they run in each viewport (later ones use what earlier ones
// left when it is there, and make it through the API when not).
import account from "./account.mjs";
import buy from "./buy.mjs";
import gate from "./gate.mjs";
import operator from "./operator.mjs";
import rebook from "./rebook.mjs";
import refundWaitlist from "./refund-waitlist.mjs";
import roundTrip from "./round-trip.mjs";
import stats from "./stats.mjs";
import waitingRoom from "./waiting-room.mjs";

export default [buy, roundTrip, account, refundWaitlist, rebook, waitingRoom, gate, operator, stats];
