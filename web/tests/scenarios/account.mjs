// Log in, change password (every earlier token stops working, the page keeps the fresh one), log
// out (the token stops working on the server too).
import { assert } from "../lib/harness.mjs";

export default {
  id: "1c-account",
  title: "account: log in, change password, log out",
  async run(t) {
    const { page, api } = t;
    const user = await api.newUser(`${t.vp}acct`);
    await t.goto("/account");
    await page.evaluate(() => localStorage.removeItem("chepiao.user"));
    await page.reload();
    await page.fill("input[name=username]", user.username);
    await page.fill("input[name=password]", user.password);
    await t.shot("login");
    await page.click("[data-test=account-submit]");
    await page.waitForSelector("[data-test=logout]");
    const loggedIn = await page.evaluate(() => JSON.parse(localStorage.getItem("chepiao.user")).token);
    assert.ok(loggedIn, "the console keeps the login token");

    // A mismatched repetition is caught on the page; then the change itself.
    const newPassword = "password-e2e-2";
    await page.fill("input[name=old-password]", user.password);
    await page.fill("input[name=new-password]", newPassword);
    await page.fill("input[name=new-password2]", `${newPassword}x`);
    await page.click("[data-test=change-password]");
    await page.locator("[data-test=error]").waitFor();
    await page.fill("input[name=new-password2]", newPassword);
    await page.click("[data-test=change-password]");
    await page.getByText(/密码已修改|Password changed/).waitFor();
    await t.shot("password");
    await api.post("/api/v1/auth/login", { username: user.username, password: newPassword });
    const oldLogin = await api.call("POST", "/api/v1/auth/login", { body: { username: user.username, password: user.password }, expect: [400] });
    assert.equal(oldLogin.body.code, 40004, "the old password is refused");
    for (const [what, token] of [["the API's", user.token], ["the console's", loggedIn]]) {
      const r = await api.call("GET", "/api/v1/passengers", { token, expect: [200, 401] });
      assert.equal(r.status, 401, `${what} token from before the change stops working`);
    }
    const fresh = await page.evaluate(() => JSON.parse(localStorage.getItem("chepiao.user")).token);
    assert.notEqual(fresh, loggedIn, "the page keeps the fresh token the change answered");
    await api.get("/api/v1/passengers", { token: fresh }); // and it works

    await page.click("[data-test=logout]");
    await page.waitForSelector("[data-test=account-submit]");
    await t.shot("logged-out");
    const after = await page.evaluate(() => JSON.parse(localStorage.getItem("chepiao.user")).token);
    assert.equal(after, "", "the token is forgotten");
    const still = await api.call("GET", "/api/v1/passengers", { token: fresh, expect: [200, 401] });
    assert.equal(still.status, 401, "after logging out the token stops working on the server");
  },
};
