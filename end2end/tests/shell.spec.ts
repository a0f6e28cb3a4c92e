import { expect, test, type Page } from "./fixtures";
import { agentWithModel, hydrated, send, signUp, watchErrors } from "./helpers";

const sidebar = (page: Page) => page.locator("#sidebar");
const chatLink = (page: Page, title: string) =>
  sidebar(page).getByRole("navigation", { name: "Conversations" }).getByRole("link", { name: title });

/** Sends `text` and waits for its reply to be written. */
async function chat(page: Page, text: string) {
  await send(page, text);
  await expect(page.getByTestId("assistant-message").last()).toHaveAttribute("data-status", "complete", {
    timeout: 20_000,
  });
}

test("the sidebar lists every conversation across agents, finds them by title, and starts new chats", async ({ page }) => {
  const errors = watchErrors(page);
  await signUp(page);
  await agentWithModel(page, "fake:echo", "", "Owl helper");
  await chat(page, "Plan the garden beds");
  await agentWithModel(page, "fake:echo", "", "Fox helper");
  await chat(page, "Tax return checklist");

  // Both conversations, under Today, each with its agent's avatar; the open
  // one is marked.
  const today = sidebar(page).locator(".chat-group").filter({ has: page.getByRole("heading", { name: "Today" }) });
  await expect(today.getByTestId("sidebar-chat")).toHaveCount(2);
  await expect(today.getByTestId("sidebar-chat").first()).toContainText("Tax return checklist");
  await expect(today.getByTestId("sidebar-chat").first().getByTestId("avatar")).toHaveCount(1);
  await expect(chatLink(page, "Tax return checklist")).toHaveAttribute("aria-current", "page");
  await expect(chatLink(page, "Plan the garden beds")).not.toHaveAttribute("aria-current", "page");

  // The search opens the sealed titles on the server and keeps the matches.
  await page.getByRole("searchbox", { name: "Search chats" }).fill("garden");
  await expect(sidebar(page).getByTestId("sidebar-chat")).toHaveCount(1);
  await expect(chatLink(page, "Plan the garden beds")).toBeVisible();
  await page.getByRole("searchbox", { name: "Search chats" }).fill("nothing like this");
  await expect(sidebar(page).getByText("No chat title matches.")).toBeVisible();
  await page.getByRole("searchbox", { name: "Search chats" }).fill("");
  await expect(sidebar(page).getByTestId("sidebar-chat")).toHaveCount(2);

  // Going to the other agent's conversation keeps the sidebar (and marks it).
  await chatLink(page, "Plan the garden beds").click();
  await expect(page.getByTestId("user-message")).toHaveText(/Plan the garden beds/);
  await expect(chatLink(page, "Plan the garden beds")).toHaveAttribute("aria-current", "page");
  await expect(page.locator("#main h1")).toHaveText("Owl helper");

  // "New chat" picks the agent used last; another can be chosen.
  await expect(page.getByLabel("Agent for a new chat")).toHaveValue(/[0-9a-f-]{36}/);
  const picked = await page.getByLabel("Agent for a new chat").locator("option:checked").textContent();
  expect(picked).toBe("Fox helper");
  await page.getByLabel("Agent for a new chat").selectOption({ label: "Owl helper" });
  await sidebar(page).getByRole("button", { name: "New chat" }).click();
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}\/chat$/);
  await expect(page.locator("#main h1")).toHaveText("Owl helper");
  await expect(page.getByTestId("user-message")).toHaveCount(0);

  // The agents are listed too, each a way into a new chat with it.
  const agents = sidebar(page).getByRole("navigation", { name: "Your agents" });
  await agents.getByRole("link", { name: "Fox helper" }).click();
  await expect(page.locator("#main h1")).toHaveText("Fox helper");
  expect(errors).toEqual([]);
});

test("keyboard shortcuts: search, new chat, stop, and their help", async ({ page }) => {
  await signUp(page);
  await agentWithModel(page, "fake:tokens=400,delay_ms=40", "", "Long talker");
  await send(page, "Talk for a while");
  const reply = page.getByTestId("assistant-message").last();
  await expect(reply).toContainText("t2 ");
  // Esc stops the reply being written (from the composer too).
  await page.getByLabel("Message", { exact: true }).press("Escape");
  await expect(reply).toHaveAttribute("data-status", "stopped");

  await page.locator("body").click({ position: { x: 5, y: 5 } });
  await page.keyboard.press("ControlOrMeta+k");
  await expect(page.getByRole("searchbox", { name: "Search chats" })).toBeFocused();

  await page.keyboard.press("ControlOrMeta+Shift+o");
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}\/chat$/);
  await expect(page.getByTestId("user-message")).toHaveCount(0);

  // `?` (outside a text field) lists the shortcuts; Esc closes the list.
  await page.locator("#main h1").click();
  await page.keyboard.press("?");
  const help = page.getByRole("dialog", { name: "Keyboard shortcuts" });
  await expect(help).toBeVisible();
  await expect(help).toContainText("Search chats");
  await expect(help).toContainText("New chat");
  await expect(help).toContainText("Stop the reply being written");
  await page.keyboard.press("Escape");
  await expect(help).toBeHidden();
  // Typing a question mark in the composer is just typing.
  await page.getByLabel("Message", { exact: true }).press("?");
  await expect(help).toBeHidden();
  await expect(page.getByLabel("Message", { exact: true })).toHaveValue("?");
});

test("a streaming reply is followed unless the reader scrolls up, then Jump to latest brings them back", async ({ page }) => {
  await page.setViewportSize({ width: 1280, height: 600 });
  await signUp(page);
  await agentWithModel(page, "fake:tokens=3000,delay_ms=5", "", "Long talker");
  await send(page, "A long one please");
  const reply = page.getByTestId("assistant-message").last();
  await expect(reply).toContainText("t2 ");
  const composer = page.getByLabel("Message", { exact: true });
  const overflow = () => page.evaluate(() => document.documentElement.scrollHeight - window.innerHeight);
  const distanceToEnd = () =>
    page.evaluate(() => document.documentElement.scrollHeight - (window.scrollY + window.innerHeight));
  // Followed: once the reply is taller than the window, the page is at its end.
  await expect.poll(overflow, { timeout: 20_000 }).toBeGreaterThan(400);
  expect(await distanceToEnd()).toBeLessThan(150);
  // The composer stays on screen while the reply grows.
  await expect(composer).toBeInViewport();
  await expect(page.getByRole("button", { name: "Jump to latest" })).toBeHidden();

  // Scrolled up: the page stays put as the reply grows, and offers a way back.
  await page.evaluate(() => window.scrollTo(0, 0));
  const before = await overflow();
  await expect.poll(overflow).toBeGreaterThan(before + 300);
  expect(await page.evaluate(() => window.scrollY)).toBe(0);
  const jump = page.getByRole("button", { name: "Jump to latest" });
  await expect(jump).toBeVisible();
  await expect(composer).toBeInViewport();
  await jump.click();
  await expect.poll(distanceToEnd).toBeLessThan(150);
  await expect(jump).toBeHidden();

  // Screen readers hear that a reply started and how it ended, not every word.
  await expect(page.getByTestId("reply-status")).toHaveText("The agent is writing a reply.");
  await expect(reply).toHaveAttribute("data-status", "complete", { timeout: 30_000 });
  await expect(page.getByTestId("reply-status")).toHaveText("The reply is complete.");
  await expect(page.locator("[aria-live]").filter({ has: page.getByTestId("assistant-message") })).toHaveCount(0);
});

test("deleting from the sidebar can be undone, and otherwise deletes", async ({ page }) => {
  await signUp(page);
  await agentWithModel(page, "fake:echo", "", "Owl helper");
  await chat(page, "Keep me around");
  await sidebar(page).getByRole("button", { name: "New chat" }).click();
  await expect(page.getByTestId("user-message")).toHaveCount(0);
  await chat(page, "Throw me away");

  // Undo: the conversation comes back, and stays after a reload.
  await sidebar(page).getByRole("button", { name: "Delete “Keep me around”" }).click();
  const toast = page.getByTestId("undo-toast");
  await expect(toast).toContainText("Deleted “Keep me around”.");
  await expect(chatLink(page, "Keep me around")).toHaveCount(0);
  await expect(page.getByRole("button", { name: "Undo" })).toBeFocused();
  await page.getByRole("button", { name: "Undo" }).click();
  await expect(toast).toHaveCount(0);
  await expect(chatLink(page, "Keep me around")).toBeVisible();
  await page.waitForTimeout(7_000);
  await page.reload();
  await expect(chatLink(page, "Keep me around")).toBeVisible();

  // No undo: the open conversation is left for the agent's new chat, and
  // once the toast goes, it is gone for good.
  await chatLink(page, "Throw me away").click();
  await expect(page.getByTestId("user-message")).toHaveText(/Throw me away/);
  await sidebar(page).getByRole("button", { name: "Delete “Throw me away”" }).click();
  await expect(page).toHaveURL(/\/chat$/);
  await expect(toast).toBeVisible();
  await expect(toast).toHaveCount(0, { timeout: 10_000 });
  await page.reload();
  await expect(chatLink(page, "Keep me around")).toBeVisible();
  await expect(chatLink(page, "Throw me away")).toHaveCount(0);
});

test("a deletion waiting for its undo still happens when the page is left", async ({ page }) => {
  await signUp(page);
  await agentWithModel(page, "fake:echo", "", "Owl helper");
  await chat(page, "Leave and delete me");
  await sidebar(page).getByRole("button", { name: "Delete “Leave and delete me”" }).click();
  await expect(page.getByTestId("undo-toast")).toBeVisible();
  await page.goto("/dashboard");
  await expect(async () => {
    await page.goto("/chats");
    await expect(page.locator("#main").getByText("No chats yet.")).toBeVisible({ timeout: 1_000 });
  }).toPass({ timeout: 10_000 });
});

test("on a phone the sidebar is a drawer", async ({ page }) => {
  await page.setViewportSize({ width: 375, height: 740 });
  await signUp(page);
  await agentWithModel(page, "fake:echo", "", "Owl helper");
  await chat(page, "Pocket-sized question");

  await expect(sidebar(page)).toBeHidden();
  const toggle = page.getByRole("button", { name: "Chats" });
  await expect(toggle).toHaveAttribute("aria-expanded", "false");
  await toggle.click();
  await expect(sidebar(page)).toBeVisible();
  await expect(toggle).toHaveAttribute("aria-expanded", "true");
  await expect(page.getByRole("searchbox", { name: "Search chats" })).toBeFocused();
  // Esc closes it, and focus goes back to what opened it.
  await page.keyboard.press("Escape");
  await expect(sidebar(page)).toBeHidden();
  await expect(toggle).toBeFocused();

  await toggle.click();
  await chatLink(page, "Pocket-sized question").click();
  await expect(page.getByTestId("user-message")).toHaveText(/Pocket-sized question/);
  await expect(sidebar(page)).toBeHidden();
  // Nothing is wider than the phone.
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(375);
});

test("on a wide screen the sidebar can be hidden and shown again", async ({ page }) => {
  await signUp(page);
  await page.goto("/agents");
  await hydrated(page);
  await expect(sidebar(page)).toBeVisible();
  await sidebar(page).getByRole("button", { name: "Close the sidebar" }).click();
  await expect(sidebar(page)).toBeHidden();
  const toggle = page.getByRole("button", { name: "Chats" });
  await expect(toggle).toBeFocused();
  await toggle.click();
  await expect(sidebar(page)).toBeVisible();
  await expect(page.getByRole("searchbox", { name: "Search chats" })).toBeFocused();
});

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("the sidebar is plain links and forms: read, search, start a chat", async ({ page, browser }, testInfo) => {
    // Set up with JavaScript, then read without it in the same session.
    const live = await browser.newContext({ baseURL: testInfo.project.use.baseURL, javaScriptEnabled: true });
    const setup = await live.newPage();
    await signUp(setup);
    await agentWithModel(setup, "fake:echo", "", "Owl helper");
    await chat(setup, "Read me without scripts");
    await page.context().addCookies(await live.cookies());
    await live.close();

    await page.goto("/dashboard");
    await expect(chatLink(page, "Read me without scripts")).toBeVisible();
    await chatLink(page, "Read me without scripts").click();
    await expect(page.getByTestId("user-message").first()).toHaveText(/Read me without scripts/);
    await expect(page.getByTestId("assistant-message").first()).toContainText("You said: Read me without scripts");

    // The search goes to All chats.
    await page.getByRole("searchbox", { name: "Search chats" }).fill("scripts");
    await page.getByRole("searchbox", { name: "Search chats" }).press("Enter");
    await expect(page).toHaveURL(/\/chats\?q=scripts$/);
    await expect(page.locator("#main").getByRole("link", { name: "Read me without scripts" })).toBeVisible();

    // New chat goes through /chat/new to the chosen agent.
    await sidebar(page).getByRole("button", { name: "New chat" }).click();
    await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}\/chat$/);
    await expect(page.locator("#main h1")).toHaveText("Owl helper");

    // On a phone, "Chats" opens the drawer as the page's target.
    await page.setViewportSize({ width: 375, height: 740 });
    await expect(sidebar(page)).toBeHidden();
    await page.getByRole("button", { name: "Chats" }).click();
    await expect(sidebar(page)).toBeVisible();
  });
});
