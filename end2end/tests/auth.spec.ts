import { expect, test } from "./fixtures";
import { fillSignUp, hydrated, newUser, signIn, signUp, watchErrors } from "./helpers";

test("sign up, reload, sign out, and a protected page sends you to sign-in", async ({ page }) => {
  const errors = watchErrors(page);
  await page.goto("/sign-up");
  await hydrated(page);
  const user = await signUp(page);

  await page.reload();
  await expect(page.getByRole("heading", { name: `Welcome, ${user.firstName}` })).toBeVisible();
  await expect(page.getByTestId("signed-in-as")).toHaveText(user.firstName);

  await hydrated(page);
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Sign in" })).toBeVisible();

  await page.goto("/dashboard");
  await expect(page).toHaveURL(/\/sign-in\?next=%2Fdashboard$/);
  expect(errors).toEqual([]);
});

test("after signing in you come back to the page you asked for", async ({ page }) => {
  const user = await signUp(page);
  await page.context().clearCookies();

  await page.goto("/settings");
  await expect(page).toHaveURL(/\/sign-in\?next=%2Fsettings$/);
  await hydrated(page);
  await signIn(page, user);
  await expect(page).toHaveURL(/\/settings$/);
  await expect(page.locator("#main").getByRole("definition").getByText(user.email)).toBeVisible();
});

test("a wrong password shows the one generic error and keeps the form usable", async ({ page }) => {
  const errors = watchErrors(page);
  const user = await signUp(page);
  await page.context().clearCookies();

  await page.goto("/sign-in");
  await hydrated(page);
  await signIn(page, { ...user, password: "definitely not it" });
  await expect(page.getByRole("alert")).toHaveText("The email or password is incorrect.");
  // Unknown accounts get the very same words.
  await signIn(page, { ...user, email: "nobody-at-all@example.com" });
  await expect(page.getByRole("alert")).toHaveText("The email or password is incorrect.");
  // What was typed stays typed; the right credentials then work.
  await expect(page.getByLabel("Email")).toHaveValue("nobody-at-all@example.com");
  await page.getByLabel("Email").fill(user.email);
  await page.getByLabel("Password").fill(user.password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
  await expect(page).toHaveURL(/\/dashboard$/);
  expect(errors).toEqual([]);
});

test("sign-up errors appear next to their fields", async ({ page }) => {
  await page.goto("/sign-up");
  await hydrated(page);
  const user = newUser();
  await fillSignUp(page, { ...user, password: "short" });
  await page.locator("form[action='/sign-up']").getByLabel("I am 16 or older").uncheck();
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.locator("#field-password-error")).toHaveText(/at least 8 characters/);
  await expect(page.locator("#field-age_confirmed-error")).toHaveText(/16 or older/);
  await expect(page.getByLabel("Password")).toHaveAttribute("aria-invalid", "true");
  // Nothing typed is lost.
  await expect(page.getByLabel("Email")).toHaveValue(user.email);
  await expect(page).toHaveURL(/\/sign-up$/);
});

test("the theme applies at once, survives a reload, and is rendered by the server", async ({ page, browser }) => {
  await page.goto("/");
  await hydrated(page);
  await page.getByRole("button", { name: "Dark" }).first().click();
  await expect(page.locator("html")).toHaveAttribute("data-theme", "dark");

  await page.reload();
  await expect(page.locator("html")).toHaveAttribute("data-theme", "dark");
  // No flash: the server's HTML already carries the theme, before any script runs.
  const html = await (await page.request.get("/")).text();
  expect(html).toContain('<html lang="en" data-theme="dark"');

  // And with no JavaScript at all, the first paint is dark.
  const cookies = await page.context().cookies();
  const noJs = await browser.newContext({ javaScriptEnabled: false });
  await noJs.addCookies(cookies);
  const plain = await noJs.newPage();
  await plain.goto("/");
  const background = await plain.evaluate(() => getComputedStyle(document.body).backgroundColor);
  expect(background).toBe("rgb(18, 19, 23)");
  await noJs.close();

  // "System" (no cookie) follows the operating system's preference.
  for (const [colorScheme, expected] of [["dark", "rgb(18, 19, 23)"], ["light", "rgb(247, 247, 248)"]] as const) {
    const system = await browser.newContext({ colorScheme, javaScriptEnabled: false });
    const systemPage = await system.newPage();
    await systemPage.goto("/");
    await expect(systemPage.locator("html")).toHaveAttribute("data-theme", "system");
    expect(await systemPage.evaluate(() => getComputedStyle(document.body).backgroundColor)).toBe(expected);
    await system.close();
  }
});

test("the only cookies are the session and the theme, and the session is HttpOnly", async ({ page }) => {
  await signUp(page);
  await hydrated(page);
  await page.getByRole("button", { name: "Light" }).first().click();
  await expect(page.locator("html")).toHaveAttribute("data-theme", "light");
  await page.goto("/settings");

  const cookies = await page.context().cookies();
  expect(cookies.map((c) => c.name).sort()).toEqual(["enclave_session", "theme"]);
  const session = cookies.find((c) => c.name === "enclave_session")!;
  expect(session.httpOnly).toBe(true);
  expect(session.sameSite).toBe("Lax");
  expect(await page.evaluate(() => document.cookie)).not.toContain("enclave_session");
});

test.describe("with JavaScript disabled", () => {
  test.use({ javaScriptEnabled: false });

  test("sign-up, sign-in and a wrong password all work as plain forms", async ({ page }) => {
    const user = await signUp(page);
    await page.getByRole("button", { name: "Sign out" }).click();
    await expect(page).toHaveURL(/\/$/);

    await page.goto("/sign-in");
    await signIn(page, { ...user, password: "not the password" });
    await expect(page.getByRole("alert")).toHaveText("The email or password is incorrect.");

    await page.goto("/sign-in?next=%2Fsettings");
    await signIn(page, user);
    await expect(page).toHaveURL(/\/settings$/);
    await expect(page.locator("#main").getByRole("definition").getByText(user.email)).toBeVisible();
    expect(await page.locator("body[data-hydrated]").count()).toBe(0);
  });

  test("a failed sign-up keeps what was typed, except the password", async ({ page }) => {
    const user = newUser();
    await page.goto("/sign-up?next=%2Fagents");
    await fillSignUp(page, { ...user, password: "short" });
    await page.getByRole("button", { name: "Create account" }).click();
    await expect(page.locator("#field-password-error")).toHaveText(/at least 8 characters/);
    await expect(page.getByLabel("First name")).toHaveValue(user.firstName);
    await expect(page.getByLabel("Last name")).toHaveValue(user.lastName);
    await expect(page.getByLabel("Email")).toHaveValue(user.email);
    await expect(page.locator("form[action='/sign-up']").getByLabel("I am 16 or older")).toBeChecked();
    await expect(page.getByLabel("Password")).toHaveValue("");
    // Corrected, it goes where it was headed.
    await page.getByLabel("Password").fill(user.password);
    await page.getByRole("button", { name: "Create account" }).click();
    await expect(page).toHaveURL(/\/check-email\?next=%2Fagents$/);
    // Signing in from there goes on to where the visitor was headed.
    await page.locator("#main").getByRole("link", { name: "Sign in" }).click();
    await signIn(page, user);
    await expect(page).toHaveURL(/\/agents$/);
  });
});

test("the theme buttons say which theme is on", async ({ page }) => {
  await page.goto("/");
  await hydrated(page);
  const switcher = page.locator(".site-header .theme-switcher");
  await expect(switcher.getByRole("button", { name: "System" })).toHaveAttribute("aria-pressed", "true");
  await expect(switcher.getByRole("button", { name: "Dark" })).toHaveAttribute("aria-pressed", "false");
  await switcher.getByRole("button", { name: "Dark" }).click();
  await expect(switcher.getByRole("button", { name: "Dark" })).toHaveAttribute("aria-pressed", "true");
  await expect(switcher.getByRole("button", { name: "System" })).toHaveAttribute("aria-pressed", "false");
  // The server renders the same after a reload.
  await page.reload();
  await expect(switcher.getByRole("button", { name: "Dark" })).toHaveAttribute("aria-pressed", "true");
});

test("the sign-up card holds both name fields at desktop width", async ({ page }) => {
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.goto("/sign-up");
  const card = await page.locator(".auth-card").boundingBox();
  for (const label of ["First name", "Last name", "Email"]) {
    const field = await page.getByLabel(label).boundingBox();
    expect(field!.x, label).toBeGreaterThanOrEqual(card!.x);
    expect(field!.x + field!.width, label).toBeLessThanOrEqual(card!.x + card!.width);
  }
});

test("sign out everywhere ends the other browser's session too", async ({ page, browser }) => {
  const user = await signUp(page);
  const other = await browser.newContext();
  const otherPage = await other.newPage();
  await otherPage.goto("/sign-in");
  await signIn(otherPage, user);
  await expect(otherPage).toHaveURL(/\/dashboard$/);

  await page.goto("/settings");
  await hydrated(page);
  await page.getByRole("button", { name: "Sign out everywhere" }).click();
  await expect(page).toHaveURL(/\/sign-in$/);

  await otherPage.goto("/dashboard");
  await expect(otherPage).toHaveURL(/\/sign-in\?next=%2Fdashboard$/);
  await other.close();
});
