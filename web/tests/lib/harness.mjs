// Small helpers the scenarios share.
import assert from "node:assert/strict";

/** Thrown to mark a scenario skipped (e.g. the server lacks the endpoint it needs). */
export class SkipError extends Error {}

export function skip(message) {
  throw new SkipError(message);
}

export { assert };

/** The passenger's login token the console keeps in localStorage. */
export async function tokenOf(page) {
  return page.evaluate(() => JSON.parse(localStorage.getItem("chepiao.user") ?? "{}").token ?? "");
}

/** Log a browser context in as `user` (`{username, token}`) without the form. */
export async function signIn(page, url, user) {
  await page.goto(`${url}/#/account`);
  await page.evaluate((u) => localStorage.setItem("chepiao.user", JSON.stringify({ token: u.token, username: u.username, expiresAt: "" })), user);
  await page.reload();
}

/** Pick a station in a StationInput by typing `text` and choosing `telecode` from the suggestions. */
export async function pickStation(page, name, text, telecode) {
  const input = page.locator(`[data-test=station-${name}]`);
  await input.fill("");
  await input.pressSequentially(text, { delay: 20 });
  await page.locator(`.suggestions li[data-telecode=${telecode}]`).click();
}
