import { createHmac } from "node:crypto";
import { expect, type Page } from "./fixtures";

/** Every password and email the browser tests type starts with a canary that
 * .ci/test.sh then looks for in the server's log: it must never appear. */
export const CANARY = "canary7f3e";

let counter = 0;
export function newUser() {
  counter += 1;
  const id = `${Date.now().toString(36)}${process.pid}${counter}`;
  return {
    firstName: "Ada",
    lastName: "Lovelace",
    email: `${CANARY}-${id}@example.com`,
    password: `${CANARY}-pw-${id}-correct horse`,
  };
}
export type User = ReturnType<typeof newUser>;

/** Waits until the WASM has hydrated the page. */
export async function hydrated(page: Page) {
  await expect(page.locator("body[data-hydrated]")).toHaveCount(1);
}

/** Collects CSP violations and uncaught errors for a page. */
export function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(`pageerror: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error" && /Content.Security.Policy|Refused to/i.test(msg.text())) {
      errors.push(`console: ${msg.text()}`);
    }
  });
  return errors;
}

export async function fillSignUp(page: Page, user: User) {
  // The account form (the page may also offer signing up with a provider).
  const form = page.locator("form[action='/sign-up']");
  await form.getByLabel("First name").fill(user.firstName);
  await form.getByLabel("Last name").fill(user.lastName);
  await form.getByLabel("Email").fill(user.email);
  await form.getByLabel("Password").fill(user.password);
  await form.getByLabel("I am 16 or older").check();
}

/** Signs a new user up through the form, then in from the "check your
 * inbox" page that sign-up ends on, and waits for the dashboard. */
export async function signUp(page: Page, user: User = newUser()) {
  await page.goto("/sign-up");
  await fillSignUp(page, user);
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page).toHaveURL(/\/check-email$/);
  await expect(page.getByTestId("sign-up-sent")).toBeVisible();
  await page.locator("#main").getByRole("link", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/sign-in$/);
  await signIn(page, user);
  await expect(page).toHaveURL(/\/dashboard$/);
  await expect(page.getByRole("heading", { name: `Welcome, ${user.firstName}` })).toBeVisible();
  return user;
}

export async function signIn(page: Page, user: User) {
  await page.getByLabel("Email").fill(user.email);
  await page.getByLabel("Password").fill(user.password);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
}

/** The code an authenticator app shows (RFC 6238: HMAC-SHA-1, 30 s, 6
 * digits) for a base32 `secret`, `steps` steps from now. */
export function totpCode(secret: string, steps = 0): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/=+$/, "").toUpperCase()) {
    bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  }
  const key = Buffer.from((bits.match(/.{8}/g) ?? []).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 1000 / 30) + steps));
  const mac = createHmac("sha1", key).update(counter).digest();
  const offset = mac[mac.length - 1] & 0xf;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return value.toString().padStart(6, "0");
}

/** The caught mails (at /dev/mail) holding every one of `texts`, once at
 * least `count` have arrived. Mail leaves from a background job, so the
 * page is looked at again until then. */
export async function caughtMail(page: Page, texts: string[], count = 1) {
  let mails = page.getByTestId("caught-mail");
  for (const text of texts) mails = mails.filter({ hasText: text });
  await expect(async () => {
    await page.goto("/dev/mail");
    expect(await mails.count()).toBeGreaterThanOrEqual(count);
  }).toPass({ timeout: 20_000 });
  return mails;
}

/** Creates an OpenAI agent on the fake provider (scripted by the model
 * name), named `name`, with `starter` as its first conversation starter,
 * and opens its chat. */
export async function agentWithModel(page: Page, model: string, starter = "", name = `Fake ${model}`) {
  await page.goto("/agents/new");
  await hydrated(page);
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Model").fill(model);
  if (starter) await page.getByLabel("Conversation starter 1").fill(starter);
  await page.getByRole("button", { name: "Create agent" }).click();
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
  await hydrated(page);
  await page.getByRole("link", { name: "Chat", exact: true }).click();
  await expect(page).toHaveURL(/\/chat$/);
  await hydrated(page);
}

/** Creates an agent on the offline demo model, named `name`, and waits on
 * its page. */
export async function demoAgent(page: Page, name: string, js = true) {
  await page.goto("/agents/new");
  if (js) await hydrated(page);
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Provider").selectOption("demo");
  await page.getByLabel("Model").fill("demo");
  await page.getByRole("button", { name: "Create agent" }).click();
  await expect(page).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
  if (js) await hydrated(page);
}

/** On the knowledge page: makes a base named `name` on the demo embeddings
 * and waits on its page. */
export async function createKnowledgeBase(page: Page, name: string) {
  await page.getByLabel("Name").fill(name);
  await page.getByLabel("Embeddings from").selectOption("demo");
  await page.getByLabel("Embedding model").fill("demo-embedding");
  await page.getByRole("button", { name: "Create knowledge base" }).click();
  await expect(page).toHaveURL(/\/knowledge\/[0-9a-f-]{36}$/);
}

/** Types `text` into the chat composer and sends it with Enter. */
export async function send(page: Page, text: string) {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.getByLabel("Message", { exact: true }).press("Enter");
}
