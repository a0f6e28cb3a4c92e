import { expect, test } from "./fixtures";
import { hydrated, signUp, watchErrors } from "./helpers";

// The fake MCP servers answer on the fake provider .ci/test.sh starts (and
// allowlists); it passes the address in FAKE_URL.
const fakeUrl = process.env.FAKE_URL ?? "";

test("a new user adds an MCP server, sees its tools, and an agent calls one in the chat", async ({ page }) => {
  expect(fakeUrl, "FAKE_URL is set by .ci/test.sh").not.toBe("");
  const errors = watchErrors(page);
  await signUp(page);
  await page.goto("/settings");
  await page.getByRole("link", { name: /MCP servers/ }).click();
  await expect(page).toHaveURL(/\/settings\/mcp$/);
  await hydrated(page);
  await expect(page.getByText("No MCP servers yet.")).toBeVisible();
  await page.getByLabel("Name", { exact: true }).fill("Fake tools");
  await page.getByLabel("Address").fill(`${fakeUrl}/mcp/open`);
  await page.getByRole("button", { name: "Add server" }).click();
  const server = page.getByTestId("mcp-server");
  await expect(server).toContainText("Fake tools");
  await expect(server.getByTestId("mcp-tool-count")).toHaveText("8 tools (7 usable)");
  await expect(server.getByTestId("mcp-tool").filter({ hasText: "shout" })).toContainText(
    "Says the text in capitals.",
  );
  await expect(server.getByTestId("mcp-tool").filter({ hasText: "weird" })).toContainText("Cannot be used");

  await page.goto("/agents/new");
  await hydrated(page);
  await page.getByLabel("Name").fill("MCP user");
  await page.getByLabel("Provider").selectOption("demo");
  await page.getByRole("checkbox", { name: "shout", exact: true }).check();
  await page.getByRole("button", { name: "Create agent" }).click();
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
  await expect(page.getByTestId("agent-tools")).toContainText("shout (MCP)");
  await hydrated(page);
  await page.getByRole("link", { name: "Chat", exact: true }).click();
  await hydrated(page);
  await page.getByLabel("Message", { exact: true }).fill('Please shout {"text": "hello from mcp"}');
  await page.getByLabel("Message", { exact: true }).press("Enter");
  const reply = page.getByTestId("assistant-message").last();
  const call = reply.getByTestId("tool-call");
  await expect(call).toContainText("shout");
  await expect(call).toHaveAttribute("data-status", "done");
  await expect(reply).toContainText("The tool answered: HELLO FROM MCP", { timeout: 20_000 });
  await call.locator("summary").click();
  await expect(call.locator(".tool-result")).toHaveText("HELLO FROM MCP");
  expect(errors).toEqual([]);
});

test("signing in to an OAuth-protected MCP server goes to its sign-in page and back", async ({ page }) => {
  expect(fakeUrl, "FAKE_URL is set by .ci/test.sh").not.toBe("");
  const errors = watchErrors(page);
  await signUp(page);
  await page.goto("/settings/mcp");
  await hydrated(page);
  await page.getByLabel("Name", { exact: true }).fill("Protected");
  await page.getByLabel("Address").fill(`${fakeUrl}/mcp/oauth`);
  await page.getByLabel("Authentication").selectOption("oauth");
  await page.getByRole("button", { name: "Add server" }).click();
  // Off to the fake authorization server, which signs in at once and sends
  // the browser back to Enclave.
  await expect(page).toHaveURL(/\/settings\/mcp$/);
  const server = page.getByTestId("mcp-server");
  await expect(server).toContainText("OAuth, signed in");
  await expect(server.getByTestId("mcp-tool").filter({ hasText: "whoami" })).toBeVisible();
  await expect(server.getByRole("button", { name: "Sign in again" })).toBeVisible();
  expect(errors).toEqual([]);
});

test("serving an agent over MCP turns on and off in place, after a reload too", async ({ page }) => {
  const errors = watchErrors(page);
  await signUp(page);
  await page.goto("/agents/new");
  await hydrated(page);
  await page.getByLabel("Name").fill("Served live");
  await page.getByLabel("Provider").selectOption("demo");
  await page.getByRole("button", { name: "Create agent" }).click();
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
  await hydrated(page);
  const card = page.getByTestId("agent-mcp");
  await card.getByRole("button", { name: "Serve over MCP" }).click();
  await expect(card.getByTestId("agent-mcp-url")).toBeVisible();
  await page.reload();
  await hydrated(page);
  await expect(card.getByTestId("agent-mcp-url")).toBeVisible();
  await card.getByRole("button", { name: "Stop serving" }).click();
  await expect(card).toContainText("Off.");
  expect(errors).toEqual([]);
});

test.describe("with JavaScript disabled", () => {
  test.use({ javaScriptEnabled: false });

  test("an agent is served over MCP from its page, and stops", async ({ page }) => {
    await signUp(page);
    await page.goto("/agents/new");
    await page.getByLabel("Name").fill("Served");
    await page.getByLabel("Provider").selectOption("demo");
    await page.getByRole("button", { name: "Create agent" }).click();
    await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
    const id = page.url().split("/").pop();
    const card = page.getByTestId("agent-mcp");
    await expect(card).toContainText("Off.");
    await card.getByRole("button", { name: "Serve over MCP" }).click();
    await expect(card.getByTestId("agent-mcp-url")).toHaveText(new RegExp(`/mcp/agents/${id}$`));
    await card.getByText("Show the token").click();
    const token = (await card.getByTestId("agent-mcp-token").textContent()) ?? "";
    expect(token).toMatch(/^enclave_mcp_[A-Za-z0-9_-]{43}$/);

    // The token works, from a program.
    const list = { jsonrpc: "2.0", id: 1, method: "tools/list", params: {} };
    const headers = {
      accept: "application/json, text/event-stream",
      "content-type": "application/json",
      "mcp-protocol-version": "2025-11-25",
    };
    const url = `/mcp/agents/${id}`;
    const ok = await page.request.post(url, {
      headers: { ...headers, authorization: `Bearer ${token}` },
      data: list,
    });
    expect(ok.status()).toBe(200);
    expect(await ok.text()).toContain('"name":"ask"');

    await card.getByRole("button", { name: "Stop serving" }).click();
    await expect(card).toContainText("Off.");
    const refused = await page.request.post(url, {
      headers: { ...headers, authorization: `Bearer ${token}` },
      data: list,
    });
    expect(refused.status()).toBe(401);
  });
});
