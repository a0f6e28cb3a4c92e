import { expect, test } from "./fixtures";
import { hydrated, signIn, signUp } from "./helpers";

// The Cookie Policy's promise: exactly two cookies, the session and the
// theme, after a full journey through the app.
test("after a full journey the browser holds exactly the session and theme cookies", async ({ page, context }) => {
  const user = await signUp(page);
  await hydrated(page);
  // The theme.
  await page.goto("/settings");
  await hydrated(page);
  await page.getByRole("button", { name: "Dark" }).first().click();
  await expect(page.locator("html")).toHaveAttribute("data-theme", "dark");
  // An agent and a chat with the offline demo model.
  await page.goto("/agents/new");
  await hydrated(page);
  await page.getByLabel("Name").fill("Cookie counter");
  await page.getByLabel("Provider").selectOption("demo");
  await page.getByLabel("Model").fill("demo");
  await page.getByRole("button", { name: "Create agent" }).click();
  await expect(page.getByTestId("key-source")).toContainText("None needed");
  await hydrated(page);
  await page.getByRole("link", { name: "Chat", exact: true }).click();
  await hydrated(page);
  await page.getByLabel("Message", { exact: true }).fill("How many cookies?");
  await page.getByLabel("Message", { exact: true }).press("Enter");
  const reply = page.getByTestId("assistant-message").last();
  await expect(reply).toContainText("You said: How many cookies?", { timeout: 20_000 });
  // Your data, the activity log, the policies; out and in again.
  for (const path of ["/settings/data", "/settings/account-activity", "/privacy", "/cookies", "/settings/sessions"]) {
    await page.goto(path);
  }
  await page.getByRole("button", { name: "Sign out", exact: true }).click();
  await expect(page).toHaveURL(/\/$/);
  await page.goto("/sign-in");
  await signIn(page, user);
  await expect(page).toHaveURL(/\/dashboard$/);

  const cookies = await context.cookies();
  const names = cookies.map((c) => c.name).sort();
  expect(names).toEqual(["enclave_session", "theme"]);
  const session = cookies.find((c) => c.name === "enclave_session")!;
  expect(session.httpOnly).toBe(true);
  expect(session.sameSite).toBe("Lax");
  // Nothing in the browser's storage either.
  const storage = await page.evaluate(() => [localStorage.length, sessionStorage.length]);
  expect(storage).toEqual([0, 0]);
});
