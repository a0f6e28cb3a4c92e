import { expect, test } from "./fixtures";
import { agentWithModel, hydrated, send, signUp, watchErrors } from "./helpers";

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

  await edited.locator(".code-block").getByRole("button", { name: "Copy" }).click();
  await expect(edited.locator(".code-block").getByRole("button", { name: "Copied" })).toBeVisible();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe("let x = 42;\n");

  await page.getByLabel("Conversation title").fill("Renamed chat");
  await page.getByRole("button", { name: "Save", exact: true }).click();
  await expect(page.getByRole("link", { name: "Renamed chat" })).toBeVisible();

  await page.getByRole("button", { name: "Delete conversation" }).click();
  await expect(page).toHaveURL(/\/chat$/);
  await expect(page.getByRole("link", { name: "Renamed chat" })).toHaveCount(0);
});

test("choosing the offline demo model brings its model along", async ({ page }) => {
  await signUp(page);
  await page.goto("/agents/new");
  await hydrated(page);
  await expect(page.getByLabel("Model")).toHaveValue("gpt-4o-mini");
  await page.getByLabel("Provider").selectOption("demo");
  await expect(page.getByLabel("Model")).toHaveValue("demo");
  await page.getByLabel("Provider").selectOption("anthropic");
  await expect(page.getByLabel("Model")).toHaveValue("claude-sonnet-4-5");
  // Only an OpenAI-compatible server takes a base URL.
  await expect(page.getByLabel("Base URL")).toBeHidden();
  await page.getByLabel("Provider").selectOption("openai_compatible");
  await expect(page.getByLabel("Base URL")).toBeVisible();
  await page.getByLabel("Provider").selectOption("anthropic");
  await expect(page.getByLabel("Model")).toHaveValue("claude-sonnet-4-5");
  // A model the user typed stays.
  await page.getByLabel("Model").fill("my-own-model");
  await page.getByLabel("Provider").selectOption("openai");
  await expect(page.getByLabel("Model")).toHaveValue("my-own-model");
});

test("a page keeps at most one stream open per live reply", async ({ page }) => {
  // Count the EventSource connections the page makes and holds open.
  await page.addInitScript(() => {
    const w = window as unknown as { openStreams: number; madeStreams: number; EventSource: typeof EventSource };
    w.openStreams = 0;
    w.madeStreams = 0;
    const Native = w.EventSource;
    class Counted extends Native {
      private open = true;
      constructor(url: string | URL, init?: EventSourceInit) {
        super(url, init);
        w.openStreams += 1;
        w.madeStreams += 1;
      }
      close() {
        if (this.open) {
          this.open = false;
          w.openStreams -= 1;
        }
        super.close();
      }
    }
    w.EventSource = Counted as unknown as typeof EventSource;
  });
  const streams = () =>
    page.evaluate(() => {
      const w = window as unknown as { openStreams: number; madeStreams: number };
      return { open: w.openStreams, made: w.madeStreams };
    });
  await signUp(page);
  await agentWithModel(page, "fake:tokens=400,delay_ms=40");
  await send(page, "A long one");
  await expect(page.getByTestId("assistant-message").last()).toContainText("t2 ");
  // Leaving the conversation for a new chat and coming back through the
  // sidebar, again and again, while the reply streams.
  const sidebar = page.locator("#sidebar");
  for (let i = 0; i < 7; i++) {
    await sidebar.getByRole("button", { name: "New chat" }).click();
    await expect(page.getByTestId("assistant-message")).toHaveCount(0);
    expect((await streams()).open).toBeLessThanOrEqual(1);
    await sidebar.getByRole("link", { name: "A long one" }).click();
    await expect(page.getByTestId("assistant-message").last()).toHaveAttribute("data-status", "streaming");
    expect((await streams()).open).toBeLessThanOrEqual(1);
  }
  // The reply was re-rendered (a new stream each time), and still only one is open.
  const { made, open } = await streams();
  expect(made).toBeGreaterThan(3);
  expect(open).toBe(1);
  // The app still answers: the reply keeps streaming and Stop works.
  const live = page.getByTestId("assistant-message").last();
  await live.getByRole("button", { name: "Stop" }).click();
  await expect(live).toHaveAttribute("data-status", "stopped");
  expect((await streams()).open).toBe(0);
});

test("at phone width a long title does not widen the page and the header stays tidy", async ({ page }) => {
  await page.setViewportSize({ width: 390, height: 844 });
  await signUp(page);
  await agentWithModel(page, "fake:tokens=2");
  await send(page, "A".repeat(40) + " " + "very-long-conversation-title-without-any-spaces-at-all-".repeat(3));
  await expect(page.getByTestId("assistant-message").last()).toHaveAttribute("data-status", "complete");
  await page.reload();
  await hydrated(page);
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  expect(width).toBeLessThanOrEqual(390);
  const lines = await page.getByRole("button", { name: "Sign out" }).evaluate((button) => {
    const range = document.createRange();
    range.selectNodeContents(button);
    return new Set(Array.from(range.getClientRects()).map((r) => Math.round(r.top))).size;
  });
  expect(lines).toBe(1);
});

test.describe("with JavaScript disabled", () => {
  test.use({ javaScriptEnabled: false });

  test("the first message lands on its new conversation", async ({ page }) => {
    await signUp(page);
    await page.goto("/agents/new");
    await page.getByLabel("Name").fill("Plain");
    await page.getByLabel("Model").fill("fake:echo");
    await page.getByRole("button", { name: "Create agent" }).click();
    await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
    await page.getByRole("link", { name: "Chat", exact: true }).click();
    await page.getByLabel("Message", { exact: true }).fill("Hello without scripts");
    await page.getByRole("button", { name: "Send", exact: true }).click();
    await expect(page).toHaveURL(/\/chat\?c=[0-9a-f-]{36}$/);
    await expect(page.getByTestId("user-message")).toContainText("Hello without scripts");
  });
});

test("a tool call shows in the reply, with its result, and survives a reload", async ({ page }) => {
  await signUp(page);
  await page.goto("/agents/new");
  await hydrated(page);
  await page.getByLabel("Name").fill("Calculating");
  await page.getByLabel("Model").fill("fake:tool=calculator,delay_ms=30");
  // New agents start with the tools that need no connection.
  await expect(page.getByRole("checkbox", { name: "Calculator" })).toBeChecked();
  await page.getByRole("button", { name: "Create agent" }).click();
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
  await expect(page.getByTestId("agent-tools")).toContainText("Calculator");
  await hydrated(page);
  await page.getByRole("link", { name: "Chat", exact: true }).click();
  await hydrated(page);
  await send(page, '{"expression":"6*7"}');
  const reply = page.getByTestId("assistant-message").last();
  const call = reply.getByTestId("tool-call");
  await expect(call).toContainText("calculator");
  await expect(call).toHaveAttribute("data-status", "done");
  await expect(reply).toContainText("The tools said: 6*7 = 42");
  await expect(reply).toHaveAttribute("data-status", "complete");
  await call.locator("summary").click();
  await expect(call.locator(".tool-result")).toHaveText("6*7 = 42");
  await expect(call.locator(".tool-arguments")).toContainText('"expression"');

  await page.reload();
  const kept = page.getByTestId("assistant-message").last();
  await expect(kept.getByTestId("tool-call")).toHaveAttribute("data-status", "done");
  await expect(kept).toContainText("The tools said: 6*7 = 42");
});

test("the offline demo model calls a tool", async ({ page }) => {
  await signUp(page);
  await page.goto("/agents/new");
  await hydrated(page);
  await page.getByLabel("Name").fill("Demo tools");
  await page.getByLabel("Provider").selectOption("demo");
  await page.getByRole("button", { name: "Create agent" }).click();
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
  await hydrated(page);
  await page.getByRole("link", { name: "Chat", exact: true }).click();
  await hydrated(page);
  await send(page, "What time is it?");
  const reply = page.getByTestId("assistant-message").last();
  await expect(reply.getByTestId("tool-call")).toContainText("current_time");
  await expect(reply).toContainText("The tool answered:", { timeout: 20_000 });
  await expect(reply).toHaveAttribute("data-status", "complete");
});

test("a tool set to ask first waits for approval, across a reload, then runs", async ({ page }) => {
  await signUp(page);
  await page.goto("/settings/connections");
  await hydrated(page);
  await page.getByLabel("Service").selectOption("slack");
  await page.getByLabel("Label").fill("Team Slack");
  await page.getByLabel("Token, password or header value").fill("xoxb-good-e2e");
  await page.getByRole("button", { name: "Add connection" }).click();
  await expect(page.getByTestId("connection")).toContainText("Team Slack");
  await page.getByTestId("connection").getByRole("button", { name: "Test" }).click();
  await expect(page.getByTestId("connection").getByRole("status")).toContainText("Fake Team");

  await page.goto("/agents/new");
  await hydrated(page);
  await page.getByLabel("Name").fill("Careful");
  await page.getByLabel("Model").fill("fake:tool=slack_post");
  await page.getByRole("checkbox", { name: "Slack: post" }).check();
  await page.locator('input[name="ask_first[]"][value="slack_post"]').check();
  await page.getByRole("button", { name: "Create agent" }).click();
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
  await hydrated(page);
  await page.getByRole("link", { name: "Chat", exact: true }).click();
  await hydrated(page);
  await send(page, '{"channel":"C0GENERAL","text":"Shipped"}');
  const reply = page.getByTestId("assistant-message").last();
  await expect(reply).toHaveAttribute("data-status", "awaiting_approval");
  await expect(reply.getByTestId("tool-call")).toHaveAttribute("data-status", "awaiting_approval");

  await page.reload();
  await hydrated(page);
  const waiting = page.getByTestId("assistant-message").last();
  await waiting.getByRole("button", { name: "Approve" }).click();
  const done = page.getByTestId("assistant-message").last();
  await expect(done).toHaveAttribute("data-status", "complete");
  await expect(done).toContainText("The tools said: Posted to C0GENERAL");

  await page.goto("/settings/activity");
  await expect(page.getByTestId("tool-activity")).toContainText("slack_post");
});
