import { expect, test } from "./fixtures";
import { agentWithModel, hydrated, send, signUp, watchErrors } from "./helpers";

// These run against the second server .ci/test.sh starts: it runs on
// prepaid credits, with card payments through the fake Stripe.
const billing = process.env.BILLING_URL;
if (!billing) throw new Error("BILLING_URL is not set: run these through .ci/test.sh");
test.use({ baseURL: billing });

test("without credits a reply is refused; a card top-up through Stripe adds them once, and the usage shows", async ({ page }) => {
  const errors = watchErrors(page);
  await signUp(page);
  await agentWithModel(page, "fake:echo", "", "Ledger helper");
  const chat = page.url();

  // No credits yet: refused before the provider is asked, in plain words.
  await send(page, "Hello with no credits");
  await expect(
    page.getByText("You have no credits left: add credits on the Usage page to keep chatting."),
  ).toBeVisible();
  // Nothing is lost: the message waits in the composer, nothing was stored.
  await expect(page.getByLabel("Message", { exact: true })).toHaveValue("Hello with no credits");
  await expect(page.getByTestId("user-message")).toHaveCount(0);

  // Usage → Add credits → Stripe's page → back, credited by the webhook.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Usage" }).click();
  await expect(page).toHaveURL(/\/usage$/);
  await expect(page.getByTestId("balance")).toHaveText("$0.00");
  await page.getByLabel("$20.00").check();
  await page.getByRole("button", { name: "Pay with card" }).click();
  await expect(page.getByRole("heading", { name: "Fake Stripe Checkout" })).toBeVisible();
  await expect(page.getByTestId("stripe-amount")).toHaveText("20.00 USD");
  await page.getByRole("button", { name: "Pay" }).click();
  await expect(page).toHaveURL(/\/usage\?paid=/);
  await expect(page.getByTestId("paid")).toBeVisible();
  await expect(page.getByTestId("balance")).toHaveText("$20.00");
  // Stripe delivered the event twice; it counted once.
  const transactions = page.getByTestId("transactions");
  await expect(transactions.getByRole("row")).toHaveCount(2); // the header and one top-up
  await expect(transactions).toContainText("Card payment through Stripe ($20.00)");

  // Now the agent answers, and the reply is charged.
  await page.goto(chat);
  await hydrated(page);
  await page.getByLabel("Message", { exact: true }).fill("");
  await send(page, "Hello with credits");
  const reply = page.getByTestId("assistant-message").last();
  await expect(reply).toHaveAttribute("data-status", "complete", { timeout: 20_000 });
  await expect(reply).toContainText("Hello with credits");

  await page.goto("/usage?days=7");
  await hydrated(page);
  await expect(page.getByTestId("usage-totals")).toContainText("Model calls");
  await expect(page.getByTestId("usage-totals").locator("dd").first()).toHaveText("1");
  await expect(page.getByRole("img", { name: /Cost per day/ })).toBeVisible();
  await expect(page.getByRole("img", { name: /Tokens per day/ })).toBeVisible();
  await expect(page.getByTestId("usage-agent")).toContainText("Ledger helper");
  await expect(page.getByTestId("balance")).not.toHaveText("$20.00");
  await expect(page.getByTestId("transactions")).toContainText("Reply from “Ledger helper”");

  // The CSV download: one row for the day, agent and model.
  const download = page.waitForEvent("download");
  await page.getByRole("link", { name: "Download as CSV" }).click();
  const file = await download;
  const csv = await (await file.createReadStream()).toArray();
  const text = Buffer.concat(csv).toString("utf8");
  expect(text.split("\r\n")[0]).toBe("date,agent,model,calls,input_tokens,output_tokens,cost_micro_usd,cost_usd");
  expect(text).toContain(",Ledger helper,openai fake:echo,1,");

  // On a phone the tables fit the page: nothing to scroll sideways.
  await page.setViewportSize({ width: 375, height: 800 });
  for (const wrap of await page.locator(".table-wrap").all()) {
    const [scroll, client] = await wrap.evaluate((el) => [el.scrollWidth, el.clientWidth]);
    expect(scroll).toBeLessThanOrEqual(client);
  }
  expect(await page.locator(".table-wrap").count()).toBeGreaterThanOrEqual(2);
  expect(errors).toEqual([]);
});

test("the usage page works without JavaScript, and a cancelled payment changes nothing", async ({ browser }) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  // Sign up with JavaScript, then look without it.
  const withJs = await (await browser.newContext()).newPage();
  const user = await signUp(withJs);
  await page.goto("/sign-in");
  await page.getByLabel("Email").fill(user.email);
  await page.getByLabel("Password").fill(user.password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await page.goto("/usage");
  await expect(page.getByTestId("balance")).toHaveText("$0.00");
  await page.getByRole("link", { name: "90 days" }).click();
  await expect(page).toHaveURL(/days=90/);
  await expect(page.getByRole("heading", { name: "Last 90 days" })).toBeVisible();
  await page.getByLabel("$5.00").check();
  await page.getByRole("button", { name: "Pay with card" }).click();
  await expect(page.getByRole("heading", { name: "Fake Stripe Checkout" })).toBeVisible();
  await page.getByRole("link", { name: "Cancel" }).click();
  await expect(page).toHaveURL(/\/usage\?cancelled=1/);
  await expect(page.getByText("The payment was cancelled: nothing was charged.")).toBeVisible();
  await expect(page.getByTestId("balance")).toHaveText("$0.00");
  await context.close();
});
