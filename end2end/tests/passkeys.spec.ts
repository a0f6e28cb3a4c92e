import { expect, test } from "./fixtures";
import { hydrated, signUp, watchErrors } from "./helpers";

// Chromium's virtual authenticator (the DevTools WebAuthn domain) stands in
// for a phone or security key: it makes and keeps real credentials.
test("a passkey is added in settings, then signs in alone", async ({ page }) => {
  const errors = watchErrors(page);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("WebAuthn.enable");
  await cdp.send("WebAuthn.addVirtualAuthenticator", {
    options: {
      protocol: "ctap2",
      transport: "internal",
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  const user = await signUp(page);
  await page.goto("/settings/passkeys");
  await hydrated(page);
  await expect(page.getByTestId("no-passkeys")).toBeVisible();
  await page.getByLabel("Name").fill("Test laptop");
  await page.getByRole("button", { name: "Add a passkey" }).click();
  await expect(page.getByTestId("passkey")).toHaveCount(1);
  await expect(page.getByTestId("passkey")).toContainText("Test laptop");
  await expect(page.getByTestId("passkey")).toContainText("never used");

  // Signed out, the passkey alone signs in: no address typed.
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/$/);
  await page.goto("/sign-in");
  await hydrated(page);
  await page.getByRole("button", { name: "Sign in with a passkey" }).click();
  await expect(page).toHaveURL(/\/dashboard$/);
  await expect(page.getByTestId("signed-in-as")).toHaveText(user.firstName);

  await page.goto("/settings/passkeys");
  await expect(page.getByTestId("passkey")).toContainText("last used");
  await page.getByRole("button", { name: "Delete" }).click();
  await expect(page.getByTestId("no-passkeys")).toBeVisible();
  expect(errors).toEqual([]);
});
