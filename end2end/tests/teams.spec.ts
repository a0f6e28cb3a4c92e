import { expect, test } from "./fixtures";
import { caughtMail, hydrated, newUser, signUp, watchErrors } from "./helpers";

// A team from both sides: the owner makes it, invites someone by mail and
// makes an agent for it; the invited person joins from the link, chats with
// the team's agent (without being able to change it), and loses it the
// moment the owner removes them.
test("an owner shares an agent with a team, and removing a member takes it away", async ({ browser }) => {
  const ownerPage = await (await browser.newContext()).newPage();
  const memberPage = await (await browser.newContext()).newPage();
  const errors = watchErrors(ownerPage);
  const memberErrors = watchErrors(memberPage);
  await signUp(ownerPage);
  const member = await signUp(memberPage, newUser());

  // The owner makes the team and invites the member.
  await ownerPage.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Teams" }).click();
  await expect(ownerPage).toHaveURL(/\/teams$/);
  await hydrated(ownerPage);
  await expect(ownerPage.getByText("You are in no team yet")).toBeVisible();
  await ownerPage.getByLabel("Team name").fill("Lighthouse crew");
  await ownerPage.getByRole("button", { name: "Make team" }).click();
  await expect(ownerPage).toHaveURL(/\/teams\/[0-9a-f-]{36}$/);
  await expect(ownerPage.getByRole("heading", { name: "Lighthouse crew" })).toBeVisible();
  await expect(ownerPage.getByTestId("your-role")).toContainText("You are an owner here");
  await hydrated(ownerPage);
  await ownerPage.getByLabel("Email address").fill(member.email);
  await ownerPage.getByLabel("Role").selectOption("member");
  await ownerPage.getByRole("button", { name: "Send invitation" }).click();
  await expect(ownerPage.getByTestId("invitation")).toContainText(member.email);

  // The member opens the mailed link and joins.
  const mail = (await caughtMail(memberPage, ["invited you to the team", member.email])).first();
  await expect(mail).toContainText("Lighthouse crew");
  await mail.getByRole("link").click();
  await expect(memberPage).toHaveURL(/\/teams\/join\?token=/);
  await expect(memberPage.getByTestId("invitation-offer")).toContainText("Ada Lovelace invited");
  await expect(memberPage.getByTestId("invitation-offer")).toContainText("Lighthouse crew");
  await hydrated(memberPage);
  await memberPage.getByRole("button", { name: "Join the team" }).click();
  await expect(memberPage).toHaveURL(/\/teams\/[0-9a-f-]{36}$/);
  await expect(memberPage.getByTestId("your-role")).toContainText("You are a member here");
  await expect(memberPage.getByTestId("member")).toHaveCount(2);
  // A member has no invitation form and no settings.
  await expect(memberPage.getByRole("button", { name: "Send invitation" })).toHaveCount(0);
  await expect(memberPage.getByRole("button", { name: "Delete team" })).toHaveCount(0);

  // The owner makes a knowledge base for the team; the member sees it,
  // without the means to change it.
  await ownerPage.goto("/knowledge");
  await hydrated(ownerPage);
  await ownerPage.getByLabel("Name").fill("Lighthouse logbook");
  await ownerPage.getByLabel("Belongs to").selectOption({ label: "The team Lighthouse crew" });
  await ownerPage.getByRole("button", { name: "Create knowledge base" }).click();
  await expect(ownerPage).toHaveURL(/\/knowledge\/[0-9a-f-]{36}$/);
  await expect(ownerPage.getByTestId("base-team")).toContainText("Lighthouse crew");
  await expect(ownerPage.getByRole("button", { name: "Upload" })).toBeVisible();
  await memberPage.goto("/knowledge");
  await expect(memberPage.getByTestId("base-team")).toHaveText("Lighthouse crew");
  await memberPage.getByRole("link", { name: "Lighthouse logbook" }).click();
  await expect(memberPage.getByTestId("base-team")).toContainText("its admins change it");
  await expect(memberPage.getByRole("button", { name: "Upload" })).toHaveCount(0);
  await expect(memberPage.getByRole("button", { name: "Delete knowledge base" })).toHaveCount(0);

  // The owner makes the team's agent from the team page.
  await ownerPage.goto("/teams");
  await ownerPage.getByRole("link", { name: "Lighthouse crew" }).click();
  // The router fetches the team page's code and data before it moves.
  await expect(ownerPage).toHaveURL(/\/teams\/[0-9a-f-]{36}$/);
  await hydrated(ownerPage);
  await ownerPage.reload();
  await expect(ownerPage.getByTestId("invitation")).toHaveCount(0);
  await ownerPage.getByRole("link", { name: "New team agent" }).click();
  await expect(ownerPage).toHaveURL(/\/agents\/new\?team=/);
  await hydrated(ownerPage);
  await expect(ownerPage.getByLabel("Belongs to")).toHaveValue(/[0-9a-f-]{36}/);
  await ownerPage.getByLabel("Name").fill("Keeper");
  await ownerPage.getByLabel("Model").fill("fake:echo");
  await ownerPage.getByRole("button", { name: "Create agent" }).click();
  await expect(ownerPage).toHaveURL(/\/agents\/[0-9a-f-]{36}$/);
  await expect(ownerPage.getByTestId("agent-team")).toContainText("Lighthouse crew");
  await expect(ownerPage.getByRole("link", { name: "Edit" })).toBeVisible();
  const agentUrl = ownerPage.url();

  // The member sees it, marked as the team's, and chats with it.
  await memberPage.goto("/agents");
  await expect(memberPage.getByTestId("agent-team-badge")).toHaveText("Lighthouse crew");
  await memberPage.locator("#main").getByRole("link", { name: "Keeper" }).click();
  await expect(memberPage.getByTestId("agent-team")).toContainText("you can chat with it");
  await expect(memberPage.getByRole("link", { name: "Edit" })).toHaveCount(0);
  await expect(memberPage.getByRole("button", { name: "Delete agent" })).toHaveCount(0);
  await hydrated(memberPage);
  await memberPage.getByRole("link", { name: "Chat", exact: true }).click();
  await expect(memberPage).toHaveURL(/\/chat$/);
  await hydrated(memberPage);
  await memberPage.getByLabel("Message", { exact: true }).fill("Is the lamp lit?");
  await memberPage.getByLabel("Message", { exact: true }).press("Enter");
  const reply = memberPage.getByTestId("assistant-message").last();
  await expect(reply).toContainText("You said: Is the lamp lit?");
  await expect(reply).toHaveAttribute("data-status", "complete");

  // The owner's own chat page lists none of the member's conversations.
  await ownerPage.goto(`${agentUrl}/chat`);
  await expect(ownerPage.getByText("Is the lamp lit?")).toHaveCount(0);

  // The owner removes the member: the agent is gone for them at once.
  await ownerPage.goBack();
  await ownerPage.getByTestId("agent-team").getByRole("link", { name: "Lighthouse crew" }).click();
  await hydrated(ownerPage);
  await ownerPage.getByTestId("member").filter({ hasText: member.email }).getByRole("button", { name: "Remove" }).click();
  await expect(ownerPage.getByTestId("member")).toHaveCount(1);
  await memberPage.goto("/agents");
  await expect(memberPage.locator("#main").getByRole("link", { name: "Keeper" })).toHaveCount(0);
  const gone = await memberPage.goto(agentUrl);
  expect(gone?.status()).toBe(404);
  await memberPage.goto("/teams");
  await expect(memberPage.getByText("You are in no team yet")).toBeVisible();

  expect(errors).toEqual([]);
  expect(memberErrors).toEqual([]);
});

test.describe("with JavaScript disabled", () => {
  test.use({ javaScriptEnabled: false });

  test("a team is made and renamed with plain forms", async ({ page }) => {
    await signUp(page);
    await page.goto("/teams");
    await page.getByLabel("Team name").fill("Plain team");
    await page.getByRole("button", { name: "Make team" }).click();
    await expect(page).toHaveURL(/\/teams\/[0-9a-f-]{36}$/);
    await expect(page.getByRole("heading", { name: "Plain team" })).toBeVisible();
    await page.getByLabel("Team name").fill("Plainer team");
    await page.getByRole("button", { name: "Rename" }).click();
    await expect(page.getByRole("heading", { name: "Plainer team" })).toBeVisible();
    await page.getByLabel("Email address").fill("someone@example.com");
    await page.getByRole("button", { name: "Send invitation" }).click();
    await expect(page.getByTestId("invitation")).toContainText("someone@example.com");
  });
});
