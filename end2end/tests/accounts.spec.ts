import { expect, test } from "./fixtures";
import { caughtMail, fillSignUp, hydrated, newUser, signIn, signUp, totpCode, watchErrors } from "./helpers";

// The server runs with the development mail catcher (.ci/test.sh): what it
// sends shows at /dev/mail.

test("a new account confirms its address from the mailed link", async ({ page }) => {
  const errors = watchErrors(page);
  const user = await signUp(page);
  await hydrated(page);
  const banner = page.getByTestId("verify-banner");
  await expect(banner).toContainText("Please confirm your email address");
  await expect(banner).toContainText(user.email);

  const mail = (await caughtMail(page, [user.email])).first();
  await expect(mail).toContainText("Confirm your email address for Enclave");
  await mail.getByRole("link").click();
  await expect(page.getByTestId("verify-outcome")).toHaveText("Your email address is confirmed. Thank you.");
  await hydrated(page);
  await page.getByRole("link", { name: "Go to your dashboard" }).click();
  await expect(page).toHaveURL(/\/dashboard$/);
  await hydrated(page);
  await expect(page.getByTestId("verify-banner")).toHaveCount(0);
  expect(errors).toEqual([]);
});

test("a new link can be sent, and the old one then says it is no longer valid", async ({ page }) => {
  const user = await signUp(page);
  await hydrated(page);
  await page.getByRole("button", { name: "Send a new link" }).click();
  await expect(page.getByTestId("verify-banner")).toContainText("Sent. The older link no longer works.");
  // The mail leaves from a background job: look again until it is there.
  const mails = page.getByTestId("caught-mail").filter({ hasText: user.email });
  await expect(async () => {
    await page.goto("/dev/mail");
    await expect(mails).toHaveCount(2, { timeout: 1000 });
  }).toPass();
  // Newest first: the second mail holds the first link.
  const oldLink = (await mails.nth(1).getByRole("link").getAttribute("href")) ?? "";
  await page.goto(oldLink);
  await expect(page.getByTestId("verify-outcome")).toContainText("not valid or was used already");
  await page.goto("/dev/mail");
  await page.getByTestId("caught-mail").filter({ hasText: user.email }).first().getByRole("link").click();
  await expect(page.getByTestId("verify-outcome")).toContainText("confirmed");
});

for (const javaScriptEnabled of [true, false]) {
  test.describe(javaScriptEnabled ? "with JavaScript" : "with JavaScript disabled", () => {
    test.use({ javaScriptEnabled });

    test("a forgotten password is reset from the mailed link", async ({ page, browser }) => {
      const user = await signUp(page);
      await page.getByRole("button", { name: "Sign out" }).click();
      await expect(page).toHaveURL(/\/$/);
      await expect(page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Sign in" })).toBeVisible();
      await page.goto("/sign-in");
      await page.getByRole("link", { name: "Forgot your password?" }).click();
      await expect(page).toHaveURL(/\/forgot-password$/);
      if (javaScriptEnabled) await hydrated(page);
      await page.getByLabel("Email").fill(user.email);
      await page.getByRole("button", { name: "Send the link" }).click();
      await expect(page.getByTestId("reset-sent")).toContainText("If an account uses that address");

      const mailPage = await (await browser.newContext()).newPage();
      const mail = await caughtMail(mailPage, ["Reset your Enclave password", user.email]);
      const link = (await mail.first().getByRole("link").getAttribute("href")) ?? "";
      await page.goto(link);
      if (javaScriptEnabled) await hydrated(page);
      const newPassword = `${user.password} renewed`;
      await page.getByLabel("New password").fill(newPassword);
      await page.getByRole("button", { name: "Set the new password" }).click();
      await expect(page).toHaveURL(/\/sign-in\?reset=1$/);
      await expect(page.getByTestId("reset-done")).toContainText("Your password was changed");
      await page.getByLabel("Email").fill(user.email);
      await page.getByLabel("Password").fill(newPassword);
      await page.getByRole("button", { name: "Sign in", exact: true }).click();
      await expect(page).toHaveURL(/\/dashboard$/);
    });
  });
}

test("the name and the password are changed in settings", async ({ page }) => {
  const errors = watchErrors(page);
  const user = await signUp(page);
  await page.goto("/settings");
  await hydrated(page);
  await page.getByText("Change your name").click();
  await page.getByLabel("First name").fill("Grace");
  await page.getByLabel("Last name").fill("Hopper");
  await page.getByRole("button", { name: "Save name" }).click();
  await expect(page.getByTestId("signed-in-as")).toHaveText("Grace");

  await page.getByText("Change your password").click();
  await page.getByLabel("Current password").fill("not it");
  await page.getByLabel("New password").fill(`${user.password} changed`);
  await page.getByRole("button", { name: "Change password" }).click();
  await expect(page.getByText("That is not your current password.")).toBeVisible();
  await page.getByLabel("Current password").fill(user.password);
  await page.getByRole("button", { name: "Change password" }).click();
  await expect(page.getByTestId("password-changed")).toContainText("Your password was changed; 0 other sessions were signed out.");
  expect(errors).toEqual([]);
});

test("signing up with a registered address reads the same, and its owner is told", async ({ page, browser }) => {
  const user = await signUp(page);
  const other = await (await browser.newContext()).newPage();
  await other.goto("/sign-up");
  await hydrated(other);
  await fillSignUp(other, { ...newUser(), email: user.email });
  await other.getByRole("button", { name: "Create account" }).click();
  await expect(other).toHaveURL(/\/check-email$/);
  await expect(other.getByTestId("sign-up-sent")).toContainText("We sent a mail to the address you gave");
  await expect(other.getByTestId("signed-in-as")).toHaveCount(0);

  const notice = await caughtMail(page, ["Someone tried to sign up with your address", user.email]);
  await expect(notice).toHaveCount(1);
});

test("the sessions page lists both browsers and ends the other one", async ({ page, browser }) => {
  const errors = watchErrors(page);
  const user = await signUp(page);
  const otherContext = await browser.newContext();
  const other = await otherContext.newPage();
  await other.goto("/sign-in");
  await signIn(other, user);
  await expect(other).toHaveURL(/\/dashboard$/);

  await page.goto("/settings");
  await page.getByRole("link", { name: "See your sessions" }).click();
  await expect(page).toHaveURL(/\/settings\/sessions$/);
  await hydrated(page);
  const sessions = page.getByTestId("session");
  await expect(sessions).toHaveCount(2);
  await expect(sessions.first().getByTestId("current-session")).toHaveText("This browser");
  await expect(sessions.first()).toContainText("Chrome");
  await expect(sessions.first()).toContainText("127.0.0.1");
  await sessions.nth(1).getByRole("button", { name: "End session" }).click();
  await expect(sessions).toHaveCount(1);

  // The other browser is signed out on its next request.
  await other.goto("/settings");
  await expect(other).toHaveURL(/\/sign-in\?next=%2Fsettings$/);
  await page.reload();
  await expect(page.getByTestId("session")).toHaveCount(1);
  expect(errors).toEqual([]);
});

test("two-factor sign-in: set up with the QR code's key, then asked for at sign-in, with and without JavaScript", async ({ page, browser }) => {
  const errors = watchErrors(page);
  const user = await signUp(page);
  await page.goto("/settings");
  await page.getByRole("link", { name: "Two-factor sign-in" }).click();
  await expect(page).toHaveURL(/\/settings\/two-factor$/);
  await hydrated(page);
  await expect(page.getByTestId("two-factor-status")).toHaveText("Two-factor sign-in is off.");
  await page.getByRole("button", { name: "Set up an authenticator app" }).click();
  await expect(page.getByTestId("totp-qr").locator("svg")).toBeVisible();
  const secret = (await page.getByTestId("totp-secret").textContent()) ?? "";
  expect(secret).toMatch(/^[A-Z2-7]{32}$/);
  await page.getByLabel("Code").fill("000000" === totpCode(secret) ? "111111" : "000000");
  await page.getByRole("button", { name: "Turn on" }).click();
  await expect(page.getByText("That code is not right.")).toBeVisible();
  await page.getByLabel("Code").fill(totpCode(secret));
  await page.getByRole("button", { name: "Turn on" }).click();
  const codes = page.getByTestId("recovery-codes").getByRole("listitem");
  await expect(codes).toHaveCount(10);
  const recovery = (await codes.first().textContent()) ?? "";
  await expect(page.getByTestId("two-factor-status")).toContainText("10 unused recovery codes left");
  expect(errors).toEqual([]);

  // Signing in now takes a code after the password.
  const other = await (await browser.newContext()).newPage();
  await other.goto("/sign-in");
  await hydrated(other);
  await signIn(other, user);
  await expect(other).toHaveURL(/\/two-factor\?next=%2Fdashboard$/);
  await other.getByLabel("Code").fill(totpCode(secret, 1));
  await other.getByRole("button", { name: "Sign in", exact: true }).click();
  await expect(other).toHaveURL(/\/dashboard$/);
  await expect(other.getByTestId("signed-in-as")).toHaveText(user.firstName);

  // Without JavaScript, with a recovery code; a wrong one first.
  const plainContext = await browser.newContext({ javaScriptEnabled: false });
  const plain = await plainContext.newPage();
  await plain.goto("/sign-in");
  await signIn(plain, user);
  await expect(plain).toHaveURL(/\/two-factor/);
  await plain.getByLabel("Code").fill("aaaa-bbbb-cccc-dddd");
  await plain.getByRole("button", { name: "Sign in", exact: true }).click();
  await expect(plain.getByText("That code is not right.")).toBeVisible();
  await plain.getByLabel("Code").fill(recovery);
  await plain.getByRole("button", { name: "Sign in", exact: true }).click();
  await expect(plain).toHaveURL(/\/dashboard$/);
  await plainContext.close();
});

test("the email address changes by a link mailed to the new one", async ({ page }) => {
  const errors = watchErrors(page);
  const user = await signUp(page);
  const newEmail = newUser().email;
  await page.goto("/settings");
  await hydrated(page);
  await page.getByText("Change your email address").click();
  await page.getByLabel("New email address").fill(newEmail);
  await page.getByLabel("Your password").fill("not it");
  await page.getByRole("button", { name: "Send the link" }).click();
  await expect(page.getByText("That is not your current password.")).toBeVisible();
  await page.getByLabel("Your password").fill(user.password);
  await page.getByRole("button", { name: "Send the link" }).click();
  await expect(page.getByTestId("email-change-sent")).toBeVisible();

  const mail = await caughtMail(page, ["Confirm your new email address", newEmail]);
  await mail.first().getByRole("link").click();
  await expect(page.getByTestId("email-change-outcome")).toContainText("your account uses this address now");
  await page.goto("/settings");
  await expect(page.locator("#main").getByText(newEmail)).toBeVisible();
  await expect(await caughtMail(page, ["was changed", user.email])).toHaveCount(1);
  expect(errors).toEqual([]);
});

for (const javaScriptEnabled of [true, false]) {
  test.describe(javaScriptEnabled ? "with JavaScript" : "with JavaScript disabled", () => {
    test.use({ javaScriptEnabled });

    test("sign up with a provider, then see it in sign-in methods", async ({ page }) => {
      const email = newUser().email;
      await page.goto("/sign-up");
      if (javaScriptEnabled) await hydrated(page);
      await page.locator("form.provider-buttons").getByLabel("I am 16 or older").check();
      await page.getByRole("button", { name: "Sign up with Fake ID" }).click();
      await expect(page.getByRole("heading", { name: "Fake identity provider" })).toBeVisible();
      await page.getByLabel("Subject").fill(`subject-${email}`);
      await page.getByLabel("Email", { exact: true }).fill(email);
      await page.getByRole("button", { name: "Continue" }).click();
      await expect(page).toHaveURL(/\/dashboard$/);
      await expect(page.getByRole("heading", { name: "Welcome, Grace" })).toBeVisible();

      await page.goto("/settings/sign-in-methods");
      await expect(page.getByTestId("identity")).toContainText("Fake ID");
      await expect(page.getByTestId("identity")).toContainText(email);

      // Signing in again from a fresh start finds the same account.
      await page.context().clearCookies();
      await page.goto("/sign-in");
      await page.getByRole("button", { name: "Sign in with Fake ID" }).click();
      await page.getByLabel("Subject").fill(`subject-${email}`);
      await page.getByLabel("Email", { exact: true }).fill(email);
      await page.getByRole("button", { name: "Continue" }).click();
      await expect(page).toHaveURL(/\/dashboard$/);

      // A refused answer comes back as a plain sentence.
      await page.context().clearCookies();
      await page.goto("/sign-in");
      await page.getByRole("button", { name: "Sign in with Fake ID" }).click();
      await page.getByLabel("Subject").fill(`subject-${email}`);
      await page.getByLabel("Email", { exact: true }).fill(email);
      await page.getByLabel("Flaw").fill("bad-signature");
      await page.getByRole("button", { name: "Continue" }).click();
      await expect(page).toHaveURL(/\/sign-in\?problem=failed$/);
      await expect(page.getByTestId("provider-problem")).toContainText("could not be verified");
    });
  });
}
