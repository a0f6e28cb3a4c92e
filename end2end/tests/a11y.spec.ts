import { execFileSync } from "node:child_process";
import AxeBuilder from "@axe-core/playwright";
import { expect, test, type Page, type TestInfo } from "./fixtures";
import { agentWithModel, createKnowledgeBase, demoAgent, hydrated, send, signUp } from "./helpers";

// Every page, checked by axe-core (WCAG 2.1 A and AA rules) in light and in
// dark: no serious or critical violation. A screenshot of each is kept in
// test-results (artifacts to look at, not compared pixel by pixel).

const SIGNED_OUT = [
  "/", "/sign-in", "/sign-up", "/forgot-password", "/reset-password", "/verify-email", "/check-email",
  "/two-factor", "/privacy", "/cookies",
];
const SIGNED_IN = [
  "/dashboard", "/chats", "/agents", "/agents/new", "/agents/import", "/knowledge", "/teams", "/usage",
  "/settings", "/settings/keys", "/settings/api-keys", "/settings/connections", "/settings/mcp",
  "/settings/two-factor", "/settings/sign-in-methods", "/settings/passkeys", "/settings/sessions",
  "/settings/activity", "/settings/data", "/settings/account-activity", "/teams/join", "/confirm-email",
  "/chat/new", "/admin",
];

/** The page as it is now: axe-core's serious and critical findings (none
 * expected), and a screenshot named after `path`. */
async function analyze(page: Page, path: string, scheme: string, testInfo: TestInfo) {
  const results = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  const serious = results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")}`);
  expect.soft(serious, `${path} in ${scheme}`).toEqual([]);
  const name = path.replace(/[^a-z0-9]+/gi, "-").replace(/^-|-$/g, "") || "home";
  await page.screenshot({ path: testInfo.outputPath(`${name}-${scheme}.png`), fullPage: true });
}

async function check(page: Page, path: string, scheme: string, testInfo: TestInfo) {
  await page.goto(path);
  await hydrated(page);
  await analyze(page, path, scheme, testInfo);
}

for (const scheme of ["light", "dark"] as const) {
  test(`every page passes axe-core in ${scheme}`, async ({ page }, testInfo) => {
    test.setTimeout(180_000);
    await page.emulateMedia({ colorScheme: scheme });
    for (const path of SIGNED_OUT) await check(page, path, scheme, testInfo);

    await signUp(page);
    await agentWithModel(page, "fake:echo", "Say hello", "Reader");
    const agentPath = new URL(page.url()).pathname.replace(/\/chat$/, "");
    await send(page, "Show code:\n\n```rust\nfn main() { let x = \"hi\"; } // done\n```");
    await expect(page.getByTestId("assistant-message").last()).toHaveAttribute("data-status", "complete");
    const chatPath = new URL(page.url()).pathname + new URL(page.url()).search;
    for (const path of [...SIGNED_IN, agentPath, `${agentPath}/edit`, `${agentPath}/chat`, chatPath]) {
      await check(page, path, scheme, testInfo);
    }
    // A knowledge base's own page.
    await page.goto("/knowledge");
    await hydrated(page);
    await createKnowledgeBase(page, "Handbook");
    await check(page, new URL(page.url()).pathname, scheme, testInfo);
    // The shortcuts' dialog, open.
    await page.locator("#main h1").click();
    await page.keyboard.press("?");
    await expect(page.getByRole("dialog", { name: "Keyboard shortcuts" })).toBeVisible();
    await analyze(page, "shortcuts", scheme, testInfo);
    // The drawer, open on a phone.
    await page.setViewportSize({ width: 375, height: 740 });
    await page.goto(chatPath);
    await hydrated(page);
    await page.getByRole("button", { name: "Chats" }).click();
    await expect(page.locator("#sidebar")).toBeVisible();
    await analyze(page, "drawer", `${scheme}-phone`, testInfo);
  });
}

// The pages reached from others: a team's, a schedule's, a passage of a
// knowledge base, the admin page as an administrator, and "Not found".
for (const scheme of ["light", "dark"] as const) {
  test(`the pages things lead to pass axe-core in ${scheme}`, async ({ page }, testInfo) => {
    test.setTimeout(120_000);
    await page.emulateMedia({ colorScheme: scheme });
    const user = await signUp(page);
    const out = execFileSync("../target/debug/server", ["admin", "grant", user.email], {
      env: process.env,
      encoding: "utf8",
    });
    expect(out).toContain("is an administrator now");
    await check(page, "/admin", scheme, testInfo);
    await expect(page.getByTestId("admin-overview")).toBeVisible();
    await check(page, "/no-such-page", scheme, testInfo);

    // A team's page, as its owner.
    await page.goto("/teams");
    await hydrated(page);
    await page.getByLabel("Team name").fill("Lighthouse crew");
    await page.getByRole("button", { name: "Make team" }).click();
    await expect(page).toHaveURL(/\/teams\/[0-9a-f-]{36}$/);
    await check(page, new URL(page.url()).pathname, scheme, testInfo);

    // A schedule's page, after it has run once.
    await demoAgent(page, "Morning helper");
    const card = page.locator("#schedules");
    await card.getByText("Add a schedule").click();
    await card.getByLabel("Name").fill("Weekday briefing");
    await card.getByLabel("When (cron)").fill("0 9 * * 1-5");
    await card.getByLabel("Time zone").fill("Europe/Berlin");
    await card.getByLabel("Prompt").fill("What is on today?");
    await page.getByRole("button", { name: "Add schedule" }).click();
    await expect(page).toHaveURL(/\/schedules\/[0-9a-f-]{36}$/);
    await hydrated(page);
    await page.getByRole("button", { name: "Run now" }).click();
    await expect(page.getByTestId("schedule-run").first()).toHaveAttribute("data-status", "complete", {
      timeout: 20_000,
    });
    await check(page, new URL(page.url()).pathname, scheme, testInfo);

    // A passage found in a knowledge base.
    await page.goto("/knowledge");
    await hydrated(page);
    await createKnowledgeBase(page, "Handbook");
    await hydrated(page);
    const text = "# Handbook\n\n## Invoices\n\nInvoices are paid within thirty days of receipt.\n";
    await page.getByLabel("Files").setInputFiles([
      { name: "handbook.md", mimeType: "text/markdown", buffer: Buffer.from(text) },
    ]);
    await page.getByRole("button", { name: "Upload" }).click();
    const doc = page.getByTestId("document").filter({ hasText: "handbook.md" });
    await expect(doc).toHaveAttribute("data-state", "ready", { timeout: 20_000 });
    await page.getByLabel("Look for").fill("when are invoices paid");
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await page.getByTestId("search-result").first().getByRole("link", { name: "handbook.md" }).click();
    await expect(page.getByTestId("passage")).toContainText("thirty days");
    await check(page, new URL(page.url()).pathname + new URL(page.url()).search, scheme, testInfo);
  });
}
