import { expect, test } from "./fixtures";
import { hydrated, signUp, watchErrors } from "./helpers";

// This machine's Chromium has no emoji font (Debian without fonts-noto-color-
// emoji): an emoji avatar shows only because the site brings Noto Emoji.
// A colour avatar is the agent's initials on that colour.
async function newAgent(page, name: string, avatar: string) {
  await page.goto("/agents/new");
  await hydrated(page);
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Model").fill("fake");
  await page.getByLabel("Avatar").fill(avatar);
  await page.getByRole("button", { name: "Create agent" }).click();
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
}

test("avatars show everywhere: an emoji in the bundled font, a colour as initials", async ({ page }) => {
  const errors = watchErrors(page);
  await signUp(page);
  await newAgent(page, "Night owl", "🦉");
  await newAgent(page, "blue heron", "#3b5bdb");
  await newAgent(page, "Plain helper", "");

  await page.goto("/agents");
  await hydrated(page);
  const row = (name: string) => page.locator(".agent-row").filter({ hasText: name }).getByTestId("avatar");
  await expect(row("Night owl")).toHaveText("🦉");
  // The browser needed a font for the owl, and took the site's.
  await page.evaluate(() => document.fonts.ready);
  await expect
    .poll(() => page.evaluate(() => [...document.fonts].some((f) => f.family.includes("Noto Emoji") && f.status === "loaded")))
    .toBe(true);
  const fonts = await page.evaluate(() =>
    performance.getEntriesByType("resource").map((e) => e.name).filter((n) => n.includes("/fonts/noto-emoji/")),
  );
  // The font comes in eleven parts by unicode range; the owl and the
  // default robot need two.
  expect(fonts.length, "the parts of the font the owl needs, not all of it").toBeGreaterThan(0);
  expect(fonts.length, "the parts of the font the owl needs, not all of it").toBeLessThanOrEqual(2);

  await expect(row("blue heron")).toHaveText("BH");
  await expect(row("blue heron").locator("circle")).toHaveAttribute("fill", "#3b5bdb");
  await expect(row("blue heron").locator("text")).toHaveAttribute("fill", "#ffffff");
  // No avatar chosen: the default robot.
  await expect(row("Plain helper")).toHaveText("🤖");

  // The same on the agent's page and above its chat.
  await page.locator(".agent-row").filter({ hasText: "blue heron" }).getByRole("link", { name: "blue heron" }).click();
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
  await expect(page.locator(".page-head").getByTestId("avatar")).toHaveText("BH");
  await hydrated(page);
  await page.getByRole("link", { name: "Chat", exact: true }).click();
  await expect(page).toHaveURL(/\/chat$/);
  await expect(page.locator(".chat-head").getByTestId("avatar")).toHaveText("BH");
  expect(errors).toEqual([]);
});
