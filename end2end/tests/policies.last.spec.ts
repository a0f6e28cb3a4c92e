import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, test } from "./fixtures";
import { hydrated, signUp } from "./helpers";

// Publishing a new policy version is the operator's command; it mails every
// user and shows each a notice until they acknowledge it. It runs after the
// other browser tests (the "last" project), since it reaches every account.

test.describe.configure({ mode: "serial" });

/** Runs `server policy publish` against the test server's database; the
 * version it published. */
function publish(summary: string): number {
  const dir = mkdtempSync(join(tmpdir(), "enclave-policy-"));
  const file = join(dir, "privacy.md");
  writeFileSync(file, `## What changes\n\n${summary}\n`);
  const effective = new Date(Date.now() + 31 * 24 * 3600 * 1000).toISOString().slice(0, 10);
  const out = execFileSync("../target/debug/server", ["policy", "publish", "privacy", file, effective, summary], {
    env: process.env,
    encoding: "utf8",
  });
  const match = out.match(/version (\d+)/);
  expect(match, out).not.toBeNull();
  return Number(match![1]);
}

for (const javaScriptEnabled of [true, false]) {
  test.describe(javaScriptEnabled ? "with JavaScript" : "with JavaScript disabled", () => {
    test.use({ javaScriptEnabled });

    test("a policy change is mailed and shown until acknowledged, with its version history", async ({ page }) => {
      const user = await signUp(page);
      const summary = `Logs are kept 60 days (${javaScriptEnabled ? "js" : "plain"}).`;
      const version = publish(summary);
      await page.goto("/dashboard");
      if (javaScriptEnabled) await hydrated(page);
      const notice = page.getByTestId("policy-notice");
      await expect(notice).toHaveCount(1);
      await expect(notice).toContainText(summary);
      await notice.getByRole("link", { name: "Privacy Policy" }).click();
      await expect(page).toHaveURL(new RegExp(`/privacy\\?version=${version}$`));
      await expect(page.getByTestId("policy-version")).toContainText(`Version ${version} · takes effect`);
      await expect(page.locator(".policy")).toContainText(summary);
      await expect(page.locator(".policy-history")).toContainText("Version 1");
      // Still shown until acknowledged, on every page.
      await page.goto("/settings");
      await page.getByTestId("policy-notice").getByRole("button", { name: "I have read it" }).click();
      await expect(page.getByTestId("policy-notice")).toHaveCount(0);
      await page.goto("/settings/data");
      await expect(page.getByTestId("policy-notice")).toHaveCount(0);
      await expect(page.getByTestId("consents")).toContainText(`Privacy Policy, version ${version}: agreed`);
      await expect(async () => {
        await page.goto("/dev/mail");
        await expect(
          page.getByTestId("caught-mail").filter({ hasText: user.email }).filter({ hasText: "Our Privacy Policy changes on" }),
        ).toHaveCount(1, { timeout: 1000 });
      }).toPass();
    });
  });
}
