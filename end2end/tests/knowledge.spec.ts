import { expect, type Page, test } from "./fixtures";
import { createKnowledgeBase, hydrated, signUp, watchErrors } from "./helpers";

// Knowledge bases: create one on the offline demo embeddings, upload files
// (each with its progress, a bad one failing with its reason), search it,
// and (with JavaScript) chat with an agent that answers from it, citing
// the passage.

const HANDBOOK =
  "# Handbook\n\n## Invoices\n\nInvoices are paid within thirty days of receipt.\n\n## Parking\n\nParking permits are renewed every January.\n";

async function createBase(page: Page, js: boolean) {
  await page.goto("/knowledge");
  if (js) await hydrated(page);
  await expect(page.getByTestId("no-bases")).toBeVisible();
  await createKnowledgeBase(page, "Team handbook");
  await expect(page.getByRole("heading", { name: "Team handbook" })).toBeVisible();
}

async function uploadFiles(page: Page, js: boolean) {
  if (js) await hydrated(page);
  await page.getByLabel("Files").setInputFiles([
    { name: "handbook.md", mimeType: "text/markdown", buffer: Buffer.from(HANDBOOK) },
    { name: "photo.pdf", mimeType: "application/pdf", buffer: Buffer.from("not a pdf, just words") },
  ]);
  await page.getByRole("button", { name: "Upload" }).click();
  await expect(page).toHaveURL(/\/knowledge\/[0-9a-f-]{36}$/);
  const handbook = page.getByTestId("document").filter({ hasText: "handbook.md" });
  if (js) {
    // The page looks again by itself while a file is being worked on.
    await expect(handbook).toHaveAttribute("data-state", "ready", { timeout: 20_000 });
  } else {
    for (let i = 0; i < 40 && (await handbook.getAttribute("data-state")) !== "ready"; i++) {
      await page.waitForTimeout(250);
      await page.reload();
    }
    await expect(handbook).toHaveAttribute("data-state", "ready");
  }
  await expect(handbook).toContainText("Ready:");
  const bad = page.getByTestId("document").filter({ hasText: "photo.pdf" });
  await expect(bad).toHaveAttribute("data-state", "failed");
  await expect(bad).toContainText("This file's name says PDF, but its content is not.");
}

for (const javaScriptEnabled of [true, false]) {
  test.describe(javaScriptEnabled ? "with JavaScript" : "with JavaScript disabled", () => {
    test.use({ javaScriptEnabled });

    test("upload files, watch them become ready, and search them", async ({ page }) => {
      const errors = watchErrors(page);
      await signUp(page);
      await createBase(page, javaScriptEnabled);
      await uploadFiles(page, javaScriptEnabled);
      await page.getByLabel("Look for").fill("when are invoices paid");
      await page.getByRole("button", { name: "Search", exact: true }).click();
      const first = page.getByTestId("search-result").first();
      await expect(first).toContainText("handbook.md");
      await expect(first).toContainText("Invoices");
      await expect(first).toContainText("thirty days");
      await first.getByRole("link", { name: "handbook.md" }).click();
      await expect(page.getByTestId("passage")).toContainText("thirty days");
      expect(errors).toEqual([]);
    });
  });
}

test("an agent answers from the knowledge base and cites the passage", async ({ page }) => {
  const errors = watchErrors(page);
  await signUp(page);
  await createBase(page, true);
  const baseUrl = page.url();
  await uploadFiles(page, true);

  // The agent form's Knowledge section chooses the base.
  await page.goto("/agents/new");
  await hydrated(page);
  await page.getByLabel("Name").fill("Handbook helper");
  await page.getByLabel("Provider").selectOption("demo");
  await page.getByLabel("Model").fill("demo");
  const knowledge = page.getByRole("group", { name: "Knowledge" });
  await expect(knowledge).toContainText("2 documents · 2 passages");
  await knowledge.getByLabel("Team handbook").check();
  await page.getByRole("button", { name: "Create agent" }).click();
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
  const agentUrl = page.url();
  await expect(page.getByTestId("agent-knowledge")).toHaveText("Team handbook");

  // The base's page agrees, and can stop and start it too.
  await page.goto(baseUrl);
  await hydrated(page);
  const agent = page.getByTestId("base-agent").filter({ hasText: "Handbook helper" });
  await expect(agent).toHaveAttribute("data-uses", "true");
  await agent.getByRole("button", { name: "Stop using it" }).click();
  await expect(agent).toHaveAttribute("data-uses", "false");
  await agent.getByRole("button", { name: "Use it" }).click();
  await expect(agent).toHaveAttribute("data-uses", "true");

  await page.goto(`${agentUrl}/chat`);
  await hydrated(page);
  await page.getByLabel("Message", { exact: true }).fill("When are invoices paid?");
  await page.getByLabel("Message", { exact: true }).press("Enter");
  const reply = page.getByTestId("assistant-message").last();
  await expect(reply).toHaveAttribute("data-status", "complete", { timeout: 20_000 });
  await expect(reply).toContainText("Invoices are paid within thirty days of receipt. [1]");
  const citation = reply.getByTestId("citation").first();
  await expect(citation).toContainText("handbook.md");
  await expect(citation).toContainText("Invoices");
  // The citation survives a reload (stored with the reply), and opens the passage.
  await page.reload();
  await hydrated(page);
  const cited = page.getByTestId("assistant-message").last().getByTestId("citation");
  await expect(cited.first()).toContainText("Invoices");
  await cited.first().getByRole("link", { name: "handbook.md" }).click();
  await expect(page.getByTestId("passage")).toContainText("thirty days");
  expect(errors).toEqual([]);
});
