import { expect, type Page, test } from "./fixtures";
import { hydrated, signUp, watchErrors } from "./helpers";

// A Telegram bot for an agent: connect it with its token, let someone in
// with the start code, see them answered in Telegram (through the fake Bot
// API that .ci/test.sh runs; this server long-polls it, having no https
// address), let nobody in, disconnect.
const fakeUrl = process.env.FAKE_URL ?? "";

async function demoAgent(page: Page, js: boolean) {
  await page.goto("/agents/new");
  if (js) await hydrated(page);
  await page.getByLabel("Name").fill("Telegram helper");
  await page.getByLabel("Provider").selectOption("demo");
  await page.getByLabel("Model").fill("demo");
  await page.getByRole("button", { name: "Create agent" }).click();
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
  if (js) await hydrated(page);
}

/** A bot token of its own for each test (the fake keeps state per token). */
function token() {
  return `123456789:AAE_e2e-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-token`;
}

async function userWrites(token: string, from: number, text: string) {
  const res = await fetch(`${fakeUrl}/fakes/telegram/${token}/updates`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ from, text }),
  });
  expect(res.ok).toBe(true);
}

async function chatShows(token: string, chat: number, count: number): Promise<string[]> {
  let texts: string[] = [];
  for (let i = 0; i < 120; i++) {
    const res = await fetch(`${fakeUrl}/fakes/telegram/${token}/chats/${chat}`);
    const shown = await res.json();
    texts = shown.messages.map((m: { text: string }) => m.text);
    if (texts.length >= count && !texts.includes("…")) return texts;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`chat ${chat} shows ${JSON.stringify(texts)}`);
}

test("connect a bot, let someone in, see them answered, then disconnect", async ({ page }) => {
  expect(fakeUrl, "FAKE_URL is set by .ci/test.sh").not.toBe("");
  const errors = watchErrors(page);
  await signUp(page);
  await demoAgent(page, true);
  const card = page.locator("#telegram");
  await card.getByLabel("Bot token").fill("not a token");
  await card.getByRole("button", { name: "Connect bot" }).click();
  await expect(card.locator("#field-telegram-token-error")).toContainText("@BotFather");

  const bot = token();
  await card.getByLabel("Bot token").fill(bot);
  await card.getByRole("button", { name: "Connect bot" }).click();
  await expect(card.getByTestId("telegram-bot")).toContainText("@fake_enclave_bot");
  await expect(card).toContainText("long polling");
  await expect(card.getByTestId("telegram-allowed")).toHaveText("Nobody is let in yet.");
  const start = (await card.getByTestId("telegram-start").textContent()) ?? "";
  expect(start).toMatch(/^\/start [A-Za-z0-9]{10}$/);

  await userWrites(bot, 501, "hello?");
  expect((await chatShows(bot, 501, 1))[0]).toContain("this bot is private");
  await userWrites(bot, 501, start);
  expect((await chatShows(bot, 501, 2))[1]).toContain("You can talk to Telegram helper");
  await userWrites(bot, 501, "Hello bot");
  expect((await chatShows(bot, 501, 3))[2]).toContain("offline demo model");

  await page.reload();
  await hydrated(page);
  await expect(card.getByTestId("telegram-allowed")).toContainText("501");
  await card.getByRole("button", { name: "Let nobody in (new code)" }).click();
  await expect(card.getByTestId("telegram-allowed")).toHaveText("Nobody is let in yet.");
  await expect(card.getByTestId("telegram-start")).not.toHaveText(start);
  await card.getByRole("button", { name: "Disconnect bot" }).click();
  await expect(card.getByLabel("Bot token")).toBeVisible();
  expect(errors).toEqual([]);
});

test.describe("with JavaScript disabled", () => {
  test.use({ javaScriptEnabled: false });

  test("connect and disconnect a bot with plain forms", async ({ page }) => {
    await signUp(page);
    await demoAgent(page, false);
    const card = page.locator("#telegram");
    await card.getByLabel("Bot token").fill(token());
    await card.getByRole("button", { name: "Connect bot" }).click();
    await expect(page.locator("#telegram").getByTestId("telegram-bot")).toContainText("@fake_enclave_bot");
    await page.locator("#telegram").getByRole("button", { name: "Disconnect bot" }).click();
    await expect(page.locator("#telegram").getByLabel("Bot token")).toBeVisible();
  });
});
