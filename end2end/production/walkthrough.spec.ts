import { readFileSync } from "node:fs";
import { expect, test } from "@playwright/test";
import { agentWithModel, hydrated, send, signUp, watchErrors } from "../tests/helpers";

// README "Run in production", the last step: the first person signs up on
// the release build (optimised WASM, served compressed, behind TLS) and
// chats with an agent on the operator's provider key.
test("the release build serves a person who signs up and chats over https", async ({ page }) => {
  const errors = watchErrors(page);
  await signUp(page);
  // The first account administers the instance.
  await expect(page.getByRole("link", { name: "Admin" })).toBeVisible();

  await agentWithModel(page, "fake:tokens=12,delay_ms=20", "", "Production agent");
  await send(page, "Hello from the release build");
  const reply = page.getByTestId("assistant-message").last();
  await expect(reply).toHaveAttribute("data-status", "complete", { timeout: 30_000 });
  await expect(page.getByTestId("user-message").last()).toContainText("Hello from the release build");

  // The conversation is there after a reload (served, not only streamed).
  await page.reload();
  await hydrated(page);
  await expect(page.getByTestId("assistant-message").last()).toHaveAttribute("data-status", "complete");

  // The site's WASM came compressed from the release folder.
  const wasm = await page.request.get("/pkg/enclave.wasm", { headers: { "accept-encoding": "br" } });
  expect(wasm.status()).toBe(200);
  expect(wasm.headers()["content-encoding"]).toBe("br");

  // Session cookies are Secure and __Host- prefixed over https.
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name.startsWith("__Host-"));
  expect(session?.secure).toBe(true);
  expect(errors).toEqual([]);
});

// Each page but the first ones a visitor opens is a lazy route (`cargo
// leptos --split`): its code is fetched the first time it is opened. On the
// release build, every one is opened here the way the app opens it (a click
// on a link, so the router fetches the page's code and its data together),
// and each must load without an error; the split manifest names them all.
test("every page's own code loads when it is first opened, on the release build", async ({ page }) => {
  const errors = watchErrors(page);
  // A panic in the WASM is logged before it traps (a missing page's 404
  // from its data is logged too, and is expected here).
  page.on("console", (msg) => {
    if (msg.type() === "error" && /panicked|split|chunk/i.test(msg.text())) errors.push(`console: ${msg.text()}`);
  });
  const fetched = new Set<string>();
  page.on("response", (res) => {
    const split = res.url().match(/\/pkg\/split_(__[a-z_]+_route_view_[0-9]+)\.wasm$/);
    if (split && res.ok()) fetched.add(split[1]);
  });
  await signUp(page);
  const first = [...fetched];
  expect(first, "signing up and the dashboard load only their own code").toEqual(
    first.filter((name) => /^__(sign_up|check_email|dashboard)_/.test(name)),
  );
  const manifest = await (await page.request.get("/pkg/__wasm_split_manifest.json")).json();
  const routes = Object.keys(manifest).filter((name) => /_route_view_[0-9]+$/.test(name));
  expect(routes.length).toBeGreaterThan(30);

  const none = "00000000-0000-4000-8000-000000000000";
  const paths = [
    "/sign-up", "/check-email", "/forgot-password", "/reset-password", "/verify-email", "/dashboard",
    "/knowledge", `/knowledge/${none}`, `/knowledge/passages/${none}`, `/schedules/${none}`,
    "/privacy", "/cookies", "/settings", "/admin", "/teams", "/usage", "/teams/join", `/teams/${none}`,
    "/settings/keys", "/settings/api-keys", "/settings/connections", "/settings/mcp", "/two-factor",
    "/confirm-email", "/settings/two-factor", "/settings/sign-in-methods", "/settings/passkeys",
    "/settings/sessions", "/settings/activity", "/settings/data", "/settings/account-activity",
    "/agents", "/agents/new", "/agents/import", `/agents/${none}`, `/agents/${none}/chat`,
    `/agents/${none}/edit`, "/chats", `/chat/new?agent=${none}`,
  ];
  for (const path of paths) {
    // Back to a page that holds no lazy code, then a click through the router.
    await page.goto("/");
    await hydrated(page);
    const loaded = page.waitForResponse((res) => /\/pkg\/split___[a-z_]+_route_view_[0-9]+\.wasm$/.test(res.url()));
    await page.evaluate((href) => {
      const link = document.createElement("a");
      link.href = href;
      link.textContent = "go";
      document.body.appendChild(link);
      link.click();
    }, path);
    expect((await loaded).ok(), `${path} fetched its own code`).toBe(true);
    await page.waitForLoadState("networkidle");
  }
  expect([...fetched].sort()).toEqual([...routes].sort());
  expect(errors).toEqual([]);
});

// README "More than one server": two servers behind nginx, and the one
// writing a reply is stopped (`systemctl stop` sends SIGTERM) while the page
// follows it. The page must end with every token so far, saved, not freeze
// with a Stop that does nothing; a reload through the other server shows the
// same reply, and the person chats on there. Last in this file: one server
// is gone afterwards.
test("a reply outlives the server writing it: every token so far is kept, and the other server goes on", async ({ page }) => {
  const pids = (process.env.REPLICA_PIDS ?? "").split(",").filter(Boolean).map(Number);
  const logs = (process.env.REPLICA_LOGS ?? "").split(",").filter(Boolean);
  expect(pids, "production.sh names both servers' processes").toHaveLength(2);
  expect(logs).toHaveLength(2);
  const errors = watchErrors(page);
  await signUp(page);
  await agentWithModel(page, "fake:tokens=80,delay_ms=100", "", "Long replies");
  await send(page, "A long story");
  const reply = page.getByTestId("assistant-message").last();
  await expect(reply).toContainText("t5 ", { timeout: 30_000 });
  await expect(reply).toHaveAttribute("data-status", "streaming");

  // The server that took the message writes its reply; its log says so.
  const conversation = new URL(page.url()).searchParams.get("c");
  expect(conversation).toMatch(/^[0-9a-f-]{36}$/);
  const writer = logs.findIndex((log) =>
    readFileSync(log, "utf8")
      .split("\n")
      .some((line) => line.includes("reply started") && line.includes(conversation!)),
  );
  expect(writer, "one server's log has the reply starting").toBeGreaterThanOrEqual(0);
  process.kill(pids[writer], "SIGTERM");

  // The page ends the reply with what was saved: tokens t0 … tN in order,
  // cut short, and no Stop button left.
  await expect(reply).toHaveAttribute("data-status", "interrupted", { timeout: 30_000 });
  await expect(reply.getByRole("button", { name: "Stop" })).toHaveCount(0);
  // It says why it ended.
  await expect(reply.getByRole("alert")).not.toBeEmpty();
  // As a person sees it: desktop and phone, light and dark.
  const desktop = page.viewportSize()!;
  for (const scheme of ["light", "dark"] as const) {
    await page.emulateMedia({ colorScheme: scheme });
    for (const [width, name] of [[desktop.width, "desktop"], [390, "phone"]] as const) {
      await page.setViewportSize({ width, height: desktop.height });
      // The sidebar becomes a closed drawer on a phone (it slides away in
      // 0.2 s) and comes back on a desktop: shoot once it has settled.
      const sidebar = page.locator("#sidebar");
      await (name === "phone" ? expect(sidebar).toBeHidden() : expect(sidebar).toBeVisible());
      // What the screen shows with the reply in the middle of it: a
      // full-page shot would draw the composer (sticky at the bottom of
      // the window) over the messages.
      await reply.evaluate((el) => el.scrollIntoView({ block: "center" }));
      await page.screenshot({ path: test.info().outputPath(`interrupted-${name}-${scheme}.png`) });
    }
  }
  await page.setViewportSize(desktop);
  await page.emulateMedia({ colorScheme: "light" });
  const tokens = (text: string) => text.match(/\bt\d+\b/g) ?? [];
  const shown = tokens(await reply.innerText());
  expect(shown.length).toBeGreaterThan(5);
  expect(shown.length).toBeLessThan(80);
  expect(shown).toEqual(shown.map((_, i) => `t${i}`));

  // Through the other server: the same reply, stored.
  await page.reload();
  await hydrated(page);
  const stored = page.getByTestId("assistant-message").last();
  await expect(stored).toHaveAttribute("data-status", "interrupted");
  expect(tokens(await stored.innerText())).toEqual(shown);
  await expect(page.getByTestId("user-message").last()).toContainText("A long story");

  // And the conversation goes on there.
  await send(page, "Still there?");
  await expect(page.getByTestId("user-message").last()).toContainText("Still there?");
  const next = page.getByTestId("assistant-message").last();
  await expect(next).toHaveAttribute("data-status", "complete", { timeout: 30_000 });
  expect(tokens(await next.innerText())).toHaveLength(80);
  expect(errors).toEqual([]);
});
