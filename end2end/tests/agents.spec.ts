import { expect, test } from "./fixtures";
import { hydrated, signUp, watchErrors } from "./helpers";

test("create an agent, find it, edit it, reload, and delete it", async ({ page }) => {
  const errors = watchErrors(page);
  await signUp(page);
  await page.goto("/agents");
  await hydrated(page);
  await expect(page.getByRole("heading", { name: "No agents yet" })).toBeVisible();
  await page.getByRole("link", { name: "Create your first agent" }).click();

  await expect(page).toHaveURL(/\/agents\/new$/);
  await hydrated(page);
  await page.getByLabel("Name").fill("Paper scout");
  await page.getByLabel("Description").fill("Finds and summarises papers");
  await page.getByLabel("System prompt").fill("You are a careful research assistant.");
  await page.getByLabel("Provider").selectOption("anthropic");
  await page.getByLabel("Model").fill("claude-sonnet-4-5");
  await page.getByLabel("Temperature").fill("0.3");
  await page.getByLabel("Conversation starter 1").fill("What is new in Rust?");
  await page.getByRole("button", { name: "Create agent" }).click();

  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
  await expect(page.getByRole("heading", { name: "Paper scout" })).toBeVisible();
  await expect(page.getByText("You are a careful research assistant.")).toBeVisible();
  await expect(page.getByTestId("key-source")).toContainText("No Anthropic key");

  await page.goto("/agents");
  await expect(page.locator("#main").getByRole("link", { name: "Paper scout" })).toBeVisible();
  await page.getByLabel("Search agents").fill("nothing like it");
  await page.getByRole("button", { name: "Search" }).click();
  await expect(page.getByText("No agent matches")).toBeVisible();
  await page.getByLabel("Search agents").fill("scout");
  await page.getByRole("button", { name: "Search" }).click();
  await page.locator("#main").getByRole("link", { name: "Paper scout" }).click();

  await hydrated(page);
  await page.getByRole("link", { name: "Edit" }).click();
  await expect(page.getByLabel("Name")).toHaveValue("Paper scout");
  await hydrated(page);
  await page.getByLabel("Name").fill("Paper scout II");
  await page.getByRole("button", { name: "Save changes" }).click();
  await expect(page.getByRole("heading", { name: "Paper scout II" })).toBeVisible();

  await page.reload();
  await expect(page.getByRole("heading", { name: "Paper scout II" })).toBeVisible();
  await expect(page.getByText("claude-sonnet-4-5")).toBeVisible();

  await hydrated(page);
  await page.getByLabel("Yes, delete this agent").check();
  await page.getByRole("button", { name: "Delete agent" }).click();
  await expect(page).toHaveURL(/\/agents$/);
  await expect(page.getByRole("heading", { name: "No agents yet" })).toBeVisible();
  expect(errors).toEqual([]);
});

test("a validation error shows next to its field and nothing typed is lost", async ({ page }) => {
  await signUp(page);
  await page.goto("/agents/new");
  await hydrated(page);
  await page.getByLabel("Name").fill("Too hot");
  await page.getByLabel("Provider").selectOption("anthropic");
  await page.getByLabel("Model").fill("claude-sonnet-4-5");
  await page.getByLabel("System prompt").fill("Keep this text.");
  await page.getByLabel("Temperature").fill("1.7");
  await page.getByRole("button", { name: "Create agent" }).click();
  await expect(page.locator("#field-temperature-error")).toHaveText(/from 0 to 1/);
  await expect(page.getByLabel("Temperature")).toHaveAttribute("aria-invalid", "true");
  await expect(page.getByLabel("System prompt")).toHaveValue("Keep this text.");
  await expect(page).toHaveURL(/\/agents\/new$/);
});

test("a stored provider key shows only masked, and deleting an agent asks for confirmation", async ({ page }) => {
  await signUp(page);
  await page.goto("/settings/keys");
  await hydrated(page);
  const secret = "sk-e2e-never-shown-again-7x9Q";
  await page.getByLabel("Provider").selectOption("openai");
  await page.getByLabel("Label").fill("Work");
  await page.getByLabel("API key").fill(secret);
  await page.getByRole("button", { name: "Add key" }).click();
  const row = page.getByTestId("provider-key");
  await expect(row).toContainText("Work");
  await expect(row).toContainText("…7x9Q");

  await page.reload();
  await expect(page.getByTestId("provider-key")).toContainText("…7x9Q");
  expect(await page.content()).not.toContain(secret);
  await expect(page.getByLabel("API key", { exact: true })).toHaveValue("");

  // The key is what a new OpenAI agent uses automatically.
  await page.goto("/agents/new");
  await hydrated(page);
  await page.getByLabel("Name").fill("Keyed");
  await page.getByRole("button", { name: "Create agent" }).click();
  await expect(page.getByTestId("key-source")).toContainText("Your key “Work” (…7x9Q)");
  expect(await page.content()).not.toContain(secret);

  await hydrated(page);
  await page.getByRole("button", { name: "Delete agent" }).click();
  await expect(page.locator("#field-confirm-error")).toHaveText(/Tick the box/);
  await expect(page.getByRole("heading", { name: "Keyed" })).toBeVisible();
});

test("another user's agent page is not found", async ({ page, browser }) => {
  await signUp(page);
  await page.goto("/agents/new");
  await hydrated(page);
  await page.getByLabel("Name").fill("Private");
  await page.getByRole("button", { name: "Create agent" }).click();
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
  const url = page.url();

  const other = await browser.newContext();
  const intruder = await other.newPage();
  await signUp(intruder);
  const res = await intruder.goto(url);
  expect(res?.status()).toBe(404);
  await expect(intruder.getByRole("heading", { name: "Agent not found" })).toBeVisible();
  await expect(intruder.getByText("Private")).toHaveCount(0);
  await other.close();
});
