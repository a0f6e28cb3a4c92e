import { expect, type Page, test } from "@playwright/test";
import { hydrated, signUp, watchErrors } from "./helpers";

/** Creates an OpenAI agent on the fake provider (scripted by the model name). */
async function agentWithModel(page: Page, model: string, starter = "") {
  await page.goto("/agents/new");
  await hydrated(page);
  await page.getByLabel("Name").fill(`Fake ${model}`);
  await page.getByLabel("Model").fill(model);
  if (starter) await page.getByLabel("Conversation starter 1").fill(starter);
  await page.getByRole("button", { name: "Create agent" }).click();
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
  await hydrated(page);
  await page.getByRole("link", { name: "Chat", exact: true }).click();
  await expect(page).toHaveURL(/\/chat$/);
  await hydrated(page);
}

async function send(page: Page, text: string) {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.getByLabel("Message", { exact: true }).press("Enter");
}

test("a reply streams in piece by piece, is kept, and reloads with the history", async ({ page }) => {
  const errors = watchErrors(page);
  await signUp(page);
  await agentWithModel(page, "fake:tokens=40,delay_ms=60");
  await send(page, "Count for me");

  const reply = page.getByTestId("assistant-message").last();
  // Part of the reply is on screen while the rest is still coming.
  await expect(reply).toContainText("t3 ");
  await expect(reply).toHaveAttribute("data-status", "streaming");
  await expect(reply).not.toContainText("t39");
  await expect(reply).toHaveAttribute("data-status", "complete", { timeout: 20_000 });
  await expect(reply).toContainText("t39");
  await expect(reply).toContainText("40 out tokens");
  await expect(page.getByLabel("Message", { exact: true })).toHaveValue("");
  await expect(page.getByLabel("Message", { exact: true })).toBeEditable();

  await page.reload();
  await expect(page.getByTestId("user-message").locator(".plain")).toHaveText("Count for me");
  await expect(page.getByTestId("assistant-message")).toContainText("t0 t1");
  await expect(page.getByRole("link", { name: "Count for me" })).toBeVisible();
  expect(errors).toEqual([]);
});

test("stop ends the reply and keeps what was written", async ({ page }) => {
  await signUp(page);
  await agentWithModel(page, "fake:tokens=300,delay_ms=40");
  await send(page, "Go on and on");
  const reply = page.getByTestId("assistant-message").last();
  await expect(reply).toContainText("t2 ");
  await reply.getByRole("button", { name: "Stop" }).click();
  await expect(reply).toHaveAttribute("data-status", "stopped");
  await expect(reply).toContainText("Stopped.");
  await page.reload();
  const kept = page.getByTestId("assistant-message").last();
  await expect(kept).toContainText("t0 t1 t2");
  await expect(kept).not.toContainText("t299");
});

test("a provider error shows a readable message and the composer works again", async ({ page }) => {
  await signUp(page);
  await agentWithModel(page, "fake:status=404");
  await send(page, "Hello?");
  await expect(page.getByRole("alert")).toHaveText("The provider does not know this model: check the agent's model name.");
  await send(page, "Still there?");
  await expect(page.getByTestId("user-message")).toHaveCount(2);
});

test("markdown renders, and script tags and javascript: links stay inert", async ({ page }) => {
  const errors = watchErrors(page);
  await signUp(page);
  await agentWithModel(page, "fake:echo", "Say hi");
  await send(page, 'Here: **bold** <script>window.pwned = 1</script> [click](javascript:window.pwned=2) <img src=x onerror="window.pwned=3">');
  const reply = page.getByTestId("assistant-message").last();
  await expect(reply).toHaveAttribute("data-status", "complete");
  await expect(reply.locator("strong")).toHaveText("bold");
  await expect(reply.locator("script")).toHaveCount(0);
  await expect(reply.locator("img")).toHaveCount(0);
  await expect(reply.locator('a[href^="javascript"]')).toHaveCount(0);
  await expect(reply).toContainText("<script>");
  expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBeUndefined();
  expect(errors).toEqual([]);
});

test("a conversation starter starts a conversation", async ({ page }) => {
  await signUp(page);
  await agentWithModel(page, "fake:echo", "Plan my week");
  await page.getByRole("button", { name: "Plan my week" }).click();
  await expect(page.getByTestId("assistant-message")).toContainText("You said: Plan my week");
});

test("a new user can chat with the offline demo model at once", async ({ page }) => {
  await signUp(page);
  await page.goto("/agents/new");
  await hydrated(page);
  await page.getByLabel("Name").fill("Demo");
  await page.getByLabel("Provider").selectOption("demo");
  await page.getByLabel("Model").fill("demo");
  await page.getByRole("button", { name: "Create agent" }).click();
  await expect(page.getByTestId("key-source")).toContainText("None needed");
  await hydrated(page);
  await page.getByRole("link", { name: "Chat", exact: true }).click();
  await hydrated(page);
  await send(page, "Hello demo");
  const reply = page.getByTestId("assistant-message").last();
  await expect(reply).toContainText("offline demo model");
  await expect(reply).toHaveAttribute("data-status", "streaming");
  await expect(reply).toContainText("You said: Hello demo", { timeout: 20_000 });
  await expect(reply).toHaveAttribute("data-status", "complete");
});

test("regenerate, edit and resend, copy code, rename and delete", async ({ page, context }) => {
  await context.grantPermissions(["clipboard-read", "clipboard-write"]);
  await signUp(page);
  await agentWithModel(page, "fake:echo,delay_ms=40");
  await send(page, "first");
  const reply = page.getByTestId("assistant-message").last();
  await expect(reply).toHaveAttribute("data-status", "complete");
  await expect(reply).toContainText("You said: first");

  const before = await reply.getAttribute("data-id");
  await reply.getByRole("button", { name: "Regenerate" }).click();
  await expect(page.getByTestId("assistant-message")).toHaveCount(1);
  await expect(page.getByTestId("assistant-message")).not.toHaveAttribute("data-id", before!);
  await expect(page.getByTestId("assistant-message")).toHaveAttribute("data-status", "complete");

  const mine = page.getByTestId("user-message").first();
  await mine.getByText("Edit").click();
  await mine.getByLabel("Edited message").fill("Show code:\n\n```\nlet x = 42;\n```");
  await mine.getByRole("button", { name: "Save and resend" }).click();
  const edited = page.getByTestId("assistant-message").last();
  await expect(edited.locator("pre code")).toHaveText("let x = 42;\n");
  await expect(page.getByTestId("user-message")).toHaveCount(1);

  await edited.getByRole("button", { name: "Copy" }).click();
  await expect(edited.getByRole("button", { name: "Copied" })).toBeVisible();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe("let x = 42;\n");

  await page.getByText("Rename").click();
  await page.getByLabel("Title").fill("Renamed chat");
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await expect(page.getByRole("link", { name: "Renamed chat" })).toBeVisible();

  await page.getByRole("button", { name: "Delete conversation" }).click();
  await expect(page).toHaveURL(/\/chat$/);
  await expect(page.getByRole("link", { name: "Renamed chat" })).toHaveCount(0);
});
