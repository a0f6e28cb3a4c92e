import { expect, test, type Locator, type Page } from "./fixtures";
import { hydrated, newUser } from "./helpers";

/** Presses Tab until `target` has the focus (as a keyboard user would). */
async function tabTo(page: Page, target: Locator, max = 80) {
  for (let i = 0; i < max; i++) {
    if (await target.evaluate((el) => el === document.activeElement).catch(() => false)) {
      // What has the focus shows it.
      const outline = await target.evaluate((el) => getComputedStyle(el).outlineStyle);
      expect(outline, "the focused element shows a focus ring").not.toBe("none");
      return;
    }
    await page.keyboard.press("Tab");
  }
  throw new Error(`Tab never reached ${target}`);
}

test("the whole journey works from the keyboard alone", async ({ page }) => {
  test.setTimeout(120_000);
  const user = newUser();
  await page.goto("/sign-up");
  await hydrated(page);
  const form = page.locator("form[action='/sign-up']");
  await tabTo(page, form.getByLabel("First name"));
  await page.keyboard.type(user.firstName);
  await tabTo(page, form.getByLabel("Last name"));
  await page.keyboard.type(user.lastName);
  await tabTo(page, form.getByLabel("Email"));
  await page.keyboard.type(user.email);
  await tabTo(page, form.getByLabel("Password"));
  await page.keyboard.type(user.password);
  await tabTo(page, form.getByLabel("I am 16 or older"));
  await page.keyboard.press("Space");
  await tabTo(page, page.getByRole("button", { name: "Create account" }));
  await page.keyboard.press("Enter");
  await expect(page).toHaveURL(/\/check-email$/);
  await hydrated(page);
  await tabTo(page, page.locator("#main").getByRole("link", { name: "Sign in" }));
  await page.keyboard.press("Enter");
  await expect(page).toHaveURL(/\/sign-in$/);
  await tabTo(page, page.getByLabel("Email"));
  await page.keyboard.type(user.email);
  await tabTo(page, page.getByLabel("Password"));
  await page.keyboard.type(user.password);
  await page.keyboard.press("Enter");
  await expect(page).toHaveURL(/\/dashboard$/);
  await hydrated(page);

  // An agent, from the sidebar.
  await tabTo(page, page.locator("#sidebar").getByRole("link", { name: "Create an agent" }));
  await page.keyboard.press("Enter");
  await expect(page).toHaveURL(/\/agents\/new$/);
  await hydrated(page);
  await tabTo(page, page.getByLabel("Name"));
  await page.keyboard.type("Keyboard agent");
  await tabTo(page, page.getByLabel("Model"));
  await page.keyboard.type("fake:tokens=400,delay_ms=40");
  await tabTo(page, page.getByRole("button", { name: "Create agent" }));
  await page.keyboard.press("Enter");
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
  await hydrated(page);
  await tabTo(page, page.getByRole("link", { name: "Chat", exact: true }));
  await page.keyboard.press("Enter");
  await expect(page).toHaveURL(/\/chat$/);
  await hydrated(page);

  // Chat, then stop the reply; the focus comes back to the composer.
  const composer = page.getByLabel("Message", { exact: true });
  await tabTo(page, composer);
  await page.keyboard.type("Tell me a long story");
  await page.keyboard.press("Enter");
  const reply = page.getByTestId("assistant-message").last();
  await expect(reply).toContainText("t2 ");
  const stop = reply.getByRole("button", { name: "Stop" });
  await tabTo(page, stop);
  await page.keyboard.press("Enter");
  await expect(reply).toHaveAttribute("data-status", "stopped");
  await expect(composer).toBeFocused();

  // Rename: the title is a field; Enter saves.
  const title = page.getByLabel("Conversation title");
  await tabTo(page, title);
  await page.keyboard.press("ControlOrMeta+a");
  await page.keyboard.type("Story time");
  await page.keyboard.press("Enter");
  await expect(page.locator("#sidebar").getByRole("link", { name: "Story time" })).toBeVisible();
  await expect(title).toBeFocused();

  // Delete: the focus goes to Undo; left alone, the conversation goes.
  await tabTo(page, page.getByRole("button", { name: "Delete conversation" }));
  await page.keyboard.press("Enter");
  await expect(page.getByRole("button", { name: "Undo" })).toBeFocused();
  await expect(page.getByTestId("undo-toast")).toHaveCount(0, { timeout: 10_000 });
  await expect(page.getByRole("searchbox", { name: "Search chats" })).toBeFocused();
  await page.reload();
  await expect(page.locator("#sidebar").getByRole("link", { name: "Story time" })).toHaveCount(0);
});
