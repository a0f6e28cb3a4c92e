import { expect, type Page, test } from "./fixtures";
import { hydrated, signUp, watchErrors } from "./helpers";

// Files in a conversation: attach text-like files to the next message, see
// them listed (and take one back), send, and get an answer that read them
// from the offline demo model. With JavaScript the draft stays while files
// are attached; without it, the attach form goes back to the chat with them.

const NOTES = "# Trip notes\n\nThe ferry leaves Harwich at 23:00 on Fridays. Bring the blue tickets.\n";

async function demoAgentChat(page: Page, js: boolean) {
  await page.goto("/agents/new");
  if (js) await hydrated(page);
  await page.getByLabel("Name").fill("File reader");
  await page.getByLabel("Provider").selectOption("demo");
  await page.getByLabel("Model").fill("demo");
  await page.getByRole("button", { name: "Create agent" }).click();
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
  await page.getByRole("link", { name: "Chat", exact: true }).click();
  await expect(page).toHaveURL(/\/chat/);
  if (js) await hydrated(page);
}

test("with JavaScript: attach files while writing, take one back, and send", async ({ page }) => {
  const errors = watchErrors(page);
  await signUp(page);
  await demoAgentChat(page, true);
  const message = page.getByLabel("Message", { exact: true });
  await message.fill("What do these say?");

  await page.getByLabel("Attach files").setInputFiles([
    { name: "notes.md", mimeType: "text/markdown", buffer: Buffer.from(NOTES) },
    { name: "extra.txt", mimeType: "text/plain", buffer: Buffer.from("Nothing important.") },
  ]);
  const attached = page.getByTestId("attached-file");
  await expect(attached).toHaveCount(2);
  await expect(attached.first()).toContainText("notes.md");
  await expect(attached.first()).toContainText("Markdown");
  await expect(message).toHaveValue("What do these say?");

  // A file that cannot be used is refused with its reason; the others stay.
  await page.getByLabel("Attach files").setInputFiles([
    { name: "photo.png", mimeType: "image/png", buffer: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0]) },
  ]);
  await expect(page.locator("#attach-error")).toContainText("photo.png: Only text, Markdown, PDF");
  await expect(attached).toHaveCount(2);

  await page.getByRole("link", { name: "Remove extra.txt" }).click();
  await expect(attached).toHaveCount(1);
  await expect(message).toHaveValue("What do these say?");

  await message.press("Enter");
  const reply = page.getByTestId("assistant-message").last();
  await expect(reply).toHaveAttribute("data-status", "complete", { timeout: 20_000 });
  await expect(reply).toContainText("You attached notes.md");
  await expect(reply).toContainText("The ferry leaves Harwich at 23:00 on Fridays.");
  await expect(reply).not.toContainText("extra.txt");
  await expect(page.getByTestId("message-file")).toHaveText(/notes\.md/);
  await expect(attached).toHaveCount(0);
  // Kept with the message.
  await page.reload();
  await hydrated(page);
  await expect(page.getByTestId("message-file")).toHaveText(/notes\.md/);
  expect(errors).toEqual([]);
});

test.describe("with JavaScript disabled", () => {
  test.use({ javaScriptEnabled: false });

  test("attach a file with the form, then send it with a message", async ({ page }) => {
    await signUp(page);
    await demoAgentChat(page, false);
    await page.getByLabel("Attach files").setInputFiles([
      { name: "notes.md", mimeType: "text/markdown", buffer: Buffer.from(NOTES) },
    ]);
    await page.getByRole("button", { name: "Attach", exact: true }).click();
    await expect(page).toHaveURL(/files=[0-9a-f-]{36}/);
    await expect(page.getByTestId("attached-file")).toContainText("notes.md");
    await page.getByLabel("Message", { exact: true }).fill("What does it say?");
    await page.getByRole("button", { name: "Send", exact: true }).click();
    await expect(page).toHaveURL(/\?c=[0-9a-f-]{36}$/);
    await expect(page.getByTestId("attached-file")).toHaveCount(0);
    await expect(page.getByTestId("message-file")).toContainText("notes.md");
    const reply = page.getByTestId("assistant-message").last();
    for (let i = 0; i < 40 && (await reply.getAttribute("data-status")) !== "complete"; i++) {
      await page.waitForTimeout(250);
      await page.reload();
    }
    await expect(reply).toContainText("You attached notes.md");
  });
});
