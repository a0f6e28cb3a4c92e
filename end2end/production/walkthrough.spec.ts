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
