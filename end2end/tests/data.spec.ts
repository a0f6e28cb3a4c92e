import { expect, test } from "./fixtures";
import { hydrated, signIn, signUp, watchErrors } from "./helpers";

// Your data: the account activity log, and deleting the account then
// restoring it by signing in within the grace period, with and without
// JavaScript.

for (const javaScriptEnabled of [true, false]) {
  test.describe(javaScriptEnabled ? "with JavaScript" : "with JavaScript disabled", () => {
    test.use({ javaScriptEnabled });

    test("the activity log lists sign-ins, failures and deletion; signing in again restores the account", async ({
      page,
    }) => {
      const errors = watchErrors(page);
      const user = await signUp(page);
      // Sign out, fail once, then sign in.
      await page.getByRole("button", { name: "Sign out", exact: true }).click();
      await expect(page).toHaveURL(/\/$/);
      await page.goto("/sign-in");
      await signIn(page, { ...user, password: `${user.password}-wrong` });
      await expect(page.getByRole("alert")).toBeVisible();
      await page.goto("/sign-in");
      await signIn(page, user);
      await expect(page).toHaveURL(/\/dashboard$/);

      await page.goto("/settings/account-activity");
      if (javaScriptEnabled) await hydrated(page);
      const log = page.getByTestId("activity-log");
      await expect(log.locator("li").first()).toContainText("Signed in");
      const failed = log.locator("li[data-kind='sign_in_failed']");
      await expect(failed).toHaveCount(1);
      await expect(failed).toContainText("127.0.0.1");
      await expect(failed).toContainText("Chrome");

      await page.goto("/settings/data");
      if (javaScriptEnabled) await hydrated(page);
      await expect(page.getByTestId("retention-days")).toContainText("90 days");
      await expect(page.getByTestId("grace")).toHaveText("30 days");
      await page.getByLabel("Keep conversations for").selectOption("30");
      await page.getByRole("button", { name: "Save", exact: true }).click();
      await expect(page.getByTestId("retention-days")).toContainText("30 days");

      const danger = page.locator("section.danger-zone");
      await danger.getByLabel("Your password").fill("not the password at all");
      await danger.getByRole("button", { name: "Delete my account" }).click();
      await expect(danger.getByText("That is not your current password.")).toBeVisible();
      await danger.getByLabel("Your password").fill(user.password);
      await danger.getByRole("button", { name: "Delete my account" }).click();
      await expect(page).toHaveURL(/\/sign-in\?deleted=\d{4}-\d\d-\d\d$/);
      await expect(page.getByTestId("account-deleted")).toContainText("Sign in before then");
      await page.goto("/dashboard");
      await expect(page).toHaveURL(/\/sign-in/);

      // Within the grace period: signing in brings the account back.
      await page.goto("/sign-in");
      await signIn(page, user);
      await expect(page).toHaveURL(/\/dashboard$/);
      await page.goto("/settings/account-activity");
      await expect(page.getByTestId("activity-log").locator("li").first()).toContainText("Restored the account");
      await expect(page.getByTestId("activity-log")).toContainText("Asked for the account to be deleted");
      await page.goto("/dev/mail");
      const mails = page.getByTestId("caught-mail").filter({ hasText: user.email });
      await expect(async () => {
        await page.goto("/dev/mail");
        await expect(mails.filter({ hasText: "Your Enclave account was restored" })).toHaveCount(1, {
          timeout: 1000,
        });
      }).toPass();
      await expect(mails.filter({ hasText: "Your Enclave account was deleted" })).toHaveCount(1);
      await expect(mails.filter({ hasText: "A failed sign-in to your account" })).toHaveCount(1);
      expect(errors).toEqual([]);
    });

    test("an export is built with its progress shown, then downloaded as a zip", async ({ page }) => {
      const user = await signUp(page);
      await page.goto("/settings/data");
      if (javaScriptEnabled) await hydrated(page);
      await page.getByRole("button", { name: "Export my data" }).click();
      const exported = page.getByTestId("export").first();
      await expect(exported).toBeVisible();
      const download = exported.getByRole("link", { name: "Download" });
      if (javaScriptEnabled) {
        // The page looks again by itself until it is ready.
        await expect(download).toBeVisible({ timeout: 20000 });
      } else {
        await expect(async () => {
          await page.goto("/settings/data");
          await expect(download).toBeVisible({ timeout: 500 });
        }).toPass();
      }
      await expect(exported).toHaveAttribute("data-state", "ready");
      await expect(exported.locator("progress")).toHaveAttribute("value", "100");
      const [file] = await Promise.all([page.waitForEvent("download"), download.click()]);
      expect(file.suggestedFilename()).toMatch(/^enclave-export-\d{4}-\d\d-\d\d\.zip$/);
      const bytes = await (await file.createReadStream()).toArray();
      const zip = Buffer.concat(bytes);
      expect(zip.subarray(0, 2).toString()).toBe("PK");
      expect(zip.includes(Buffer.from("account.json"))).toBe(true);
      await expect(async () => {
        await page.goto("/dev/mail");
        await expect(
          page.getByTestId("caught-mail").filter({ hasText: user.email }).filter({ hasText: "Your Enclave export is ready" }),
        ).toHaveCount(1, { timeout: 1000 });
      }).toPass();
    });
  });
}
