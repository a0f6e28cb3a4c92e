import { expect, test } from "./fixtures";
import { demoAgent, hydrated, signUp, watchErrors } from "./helpers";

// Settings → API keys: make a key, see it once, use it from a program
// against the OpenAI-compatible API (a real HTTP client here: Node's
// fetch), revoke it, and see it stop working. Without JavaScript the form
// posts to the server, which shows the key in that response only.
const baseUrl = process.env.BASE_URL ?? "";

async function ask(secret: string, model: string, text: string) {
  return fetch(`${baseUrl}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: text }] }),
  });
}

test("make a key, use it from a program, revoke it", async ({ page }) => {
  const errors = watchErrors(page);
  await signUp(page);
  await demoAgent(page, "Key Helper");
  await page.goto("/settings");
  await page.getByRole("link", { name: "Manage API keys" }).click();
  await expect(page).toHaveURL(/\/settings\/api-keys$/);
  await hydrated(page);
  await expect(page.getByText("No keys yet.")).toBeVisible();
  // The agent as a program names it.
  await expect(page.getByTestId("agents-as-models")).toContainText("key-helper");

  await page.getByLabel("List and read your agents").uncheck();
  await page.getByLabel("Chat with your agents").uncheck();
  await page.getByLabel("Name").fill("Nightly report");
  await page.getByRole("button", { name: "Create key" }).click();
  await expect(page.getByText("Choose at least one thing the key may do.")).toBeVisible();

  await page.getByLabel("Chat with your agents").check();
  await page.getByLabel("Expires").selectOption({ label: "In a year" });
  await page.getByRole("button", { name: "Create key" }).click();
  const shown = page.getByTestId("api-key-secret");
  await expect(shown).toBeVisible();
  const secret = (await shown.textContent()) ?? "";
  expect(secret).toMatch(/^enc_[A-Za-z0-9_-]{40,}$/);
  const row = page.getByTestId("api-key");
  await expect(row).toContainText("Nightly report");
  await expect(row).toContainText("chat");
  await expect(row).toContainText("never used");

  // A program uses it: the agent, named by its slug, answers.
  const res = await ask(secret, "key-helper", "Hello from a script");
  expect(res.status).toBe(200);
  const body = await res.json();
  expect(body.choices[0].message.content).toContain("Hello from a script");

  // Shown once: a fresh page lists the key without it.
  await page.reload();
  await hydrated(page);
  await expect(page.getByTestId("api-key-secret")).toHaveCount(0);
  await expect(row).toContainText(secret.slice(0, 8));
  await expect(row).toContainText("last used");

  await row.getByRole("button", { name: "Revoke" }).click();
  await expect(row).toContainText("Not working");
  await expect(row.getByRole("button", { name: "Revoke" })).toHaveCount(0);
  expect((await ask(secret, "key-helper", "Still there?")).status).toBe(401);
  expect(errors).toEqual([]);
});

test.describe("without JavaScript", () => {
  test.use({ javaScriptEnabled: false });

  test("the new key is shown in the answer to the form, and only there", async ({ page }) => {
    await signUp(page);
    await demoAgent(page, "Plain Helper", false);

    await page.goto("/settings/api-keys");
    await page.getByLabel("Name").fill("Cron job");
    await page.getByRole("button", { name: "Create key" }).click();
    await expect(page).toHaveURL(/\/settings\/api-keys$/);
    const secret = (await page.getByTestId("api-key-secret").textContent()) ?? "";
    expect(secret).toMatch(/^enc_/);
    const res = await ask(secret, "plain-helper", "Plain hello");
    expect(res.status).toBe(200);

    await page.goto("/settings/api-keys");
    await expect(page.getByTestId("api-key-secret")).toHaveCount(0);
    const row = page.getByTestId("api-key");
    await row.getByRole("button", { name: "Revoke" }).click();
    // The server function sends the browser back to the page.
    await expect(page).toHaveURL(/\/settings\/api-keys\??$/);
    await expect(page.getByTestId("api-key")).toContainText("Not working");
    expect((await ask(secret, "plain-helper", "Again")).status).toBe(401);
  });
});
