import { expect, type Page, test } from "./fixtures";
import { demoAgent, hydrated, signUp, watchErrors } from "./helpers";

// Schedules: add one to an agent (the expression previewed in words as it
// is typed), see its next times, run it now and watch the run land in the
// history with its conversation, turn it off, edit it, delete it. Without
// JavaScript the same forms work as plain posts.

async function addSchedule(page: Page) {
  const card = page.locator("#schedules");
  await card.getByText("Add a schedule").click();
  await card.getByLabel("Name").fill("Weekday briefing");
  await card.getByLabel("When (cron)").fill("0 9 * * 1-5");
  await card.getByLabel("Time zone").fill("Europe/Berlin");
  await card.getByLabel("Prompt").fill("What is on today?");
}

test("add a schedule, preview it, run it now, turn it off, edit and delete it", async ({ page }) => {
  const errors = watchErrors(page);
  await signUp(page);
  await demoAgent(page, "Morning helper");
  await addSchedule(page);
  const preview = page.getByTestId("schedule-preview");
  await expect(preview).toContainText("09:00");
  await expect(preview).toContainText("(Europe/Berlin)");
  // A mistake is previewed too, before anything is saved.
  await page.locator("#schedules").getByLabel("When (cron)").fill("every day");
  await expect(preview).toContainText("five fields");
  await page.locator("#schedules").getByLabel("When (cron)").fill("0 9 * * 1-5");
  await page.getByRole("button", { name: "Add schedule" }).click();

  await expect(page).toHaveURL(/\/schedules\/[0-9a-f-]{36}$/);
  await expect(page.getByRole("heading", { name: "Weekday briefing" })).toBeVisible();
  await expect(page.getByTestId("schedule-description")).toContainText("(Europe/Berlin)");
  await expect(page.locator(".next-runs li")).toHaveCount(5);
  await expect(page.locator(".next-runs li").first()).toContainText("09:00");

  await page.getByRole("button", { name: "Run now" }).click();
  const run = page.getByTestId("schedule-run").first();
  await expect(run).toHaveAttribute("data-status", "complete", { timeout: 20_000 });
  await expect(run).toContainText("(run now)");
  await expect(run).toContainText("Done");
  await run.getByRole("link", { name: "Open" }).click();
  await expect(page).toHaveURL(/\/chat\?c=[0-9a-f-]{36}$/);
  await expect(page.getByTestId("user-message")).toContainText("What is on today?");
  await expect(page.getByTestId("assistant-message")).toContainText("offline demo model");
  await page.goBack();
  await hydrated(page);

  await page.getByRole("button", { name: "Turn off" }).click();
  await expect(page.getByTestId("schedule-state")).toHaveText("Off");
  await expect(page.locator(".next-runs li")).toHaveCount(0);
  await page.getByRole("button", { name: "Turn on" }).click();
  await expect(page.getByTestId("schedule-state")).toHaveText("On");

  await page.getByText("Edit", { exact: true }).click();
  await page.locator(".edit-schedule").getByLabel("When (cron)").fill("30 7 * * *");
  await page.getByRole("button", { name: "Save changes" }).click();
  await expect(page.locator(".next-runs li").first()).toContainText("07:30");

  await page.getByRole("button", { name: "Delete schedule" }).click();
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
  await expect(page.getByTestId("schedule")).toHaveCount(0);
  expect(errors).toEqual([]);
});

test.describe("with JavaScript disabled", () => {
  test.use({ javaScriptEnabled: false });

  test("add a schedule and run it now with plain forms", async ({ page }) => {
    await signUp(page);
    await demoAgent(page, "Morning helper", false);
    await addSchedule(page);
    await page.getByRole("button", { name: "Add schedule" }).click();
    await expect(page).toHaveURL(/\/schedules\/[0-9a-f-]{36}$/);
    await expect(page.locator(".next-runs li")).toHaveCount(5);
    await page.getByRole("button", { name: "Run now" }).click();
    await expect(page).toHaveURL(/\/schedules\/[0-9a-f-]{36}$/);
    const run = page.getByTestId("schedule-run").first();
    for (let i = 0; i < 40 && (await run.getAttribute("data-status")) !== "complete"; i++) {
      await page.waitForTimeout(250);
      await page.reload();
    }
    await expect(run).toHaveAttribute("data-status", "complete");
    // A mistake comes back on its field.
    await page.locator("#main").getByRole("link", { name: "Morning helper" }).click();
    const card = page.locator("#schedules");
    await card.getByText("Add a schedule").click();
    await card.getByLabel("Name").fill("Broken");
    await card.getByLabel("When (cron)").fill("every day");
    await card.getByLabel("Prompt").fill("x");
    await page.getByRole("button", { name: "Add schedule" }).click();
    await expect(page.locator("#field-cron-error")).toContainText("five fields");
    await expect(page.getByTestId("schedule")).toHaveCount(1);
  });
});
