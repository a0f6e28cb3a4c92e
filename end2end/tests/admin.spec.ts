import { execFileSync } from "node:child_process";
import { expect, test } from "./fixtures";
import { hydrated, signIn, signUp, watchErrors } from "./helpers";

// The platform administrator: named by the operator's command line, finds
// an account, disables it (its browser is signed out at once), and enables
// it again. Anyone else meets "Not found." at /admin.

function grant(email: string) {
  const out = execFileSync("../target/debug/server", ["admin", "grant", email], {
    env: process.env,
    encoding: "utf8",
  });
  expect(out).toContain("is an administrator now");
}

test("an administrator finds an account, disables it and enables it again", async ({ page, browser }) => {
  const errors = watchErrors(page);
  const admin = await signUp(page);
  grant(admin.email);

  const theirs = await browser.newContext();
  const other = await theirs.newPage();
  const user = await signUp(other);
  await other.goto("/admin");
  await expect(other.getByText("Not found.")).toBeVisible();

  await page.goto("/dashboard");
  await hydrated(page);
  await page.getByRole("link", { name: "Admin" }).click();
  await expect(page).toHaveURL(/\/admin$/);
  await hydrated(page);
  await expect(page.getByTestId("admin-overview")).toContainText("Accounts");
  await expect(page.getByTestId("admin-jobs")).toBeVisible();
  await page.getByLabel("Search accounts").fill(user.email);
  await page.getByRole("button", { name: "Search" }).click();
  await expect(page).toHaveURL(/\/admin\?q=/);
  const row = page.getByTestId("admin-user");
  await expect(row).toHaveCount(1);
  await expect(row).toContainText(user.email);

  await row.getByRole("button", { name: "Disable" }).click();
  await expect(row.locator(".badge")).toHaveText("disabled");
  await other.goto("/dashboard");
  await expect(other).toHaveURL(/\/sign-in/);
  await signIn(other, user);
  await expect(other.getByText("This account is disabled.")).toBeVisible();

  await row.getByRole("button", { name: "Enable" }).click();
  await expect(row.locator(".badge")).toHaveCount(0);
  await signIn(other, user);
  await expect(other).toHaveURL(/\/dashboard$/);
  await theirs.close();
  expect(errors).toEqual([]);
});
