//! Pages that belong to no slice yet: home, dashboard, settings, not found.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::{
    auth::api::SignOutEverywhereAction,
    theme::ThemeSwitcher,
    ui::{Field, FormError, RequireUser, refresh_auth_on, signed_in_user},
};

#[component]
pub fn HomePage() -> impl IntoView {
    view! {
        <Title text="Private AI agents"/>
        <section class="hero">
            <h1>"Your AI agents, on your own server."</h1>
            <p class="lead">
                "Enclave lets you build AI agents, chat with them and connect them to your tools. "
                "Conversations and credentials are encrypted with keys your database never holds."
            </p>
            <p class="actions">
                <a class="button primary" href="/sign-up">"Create an account"</a>
                <a class="button" href="/sign-in">"Sign in"</a>
            </p>
        </section>
    }
}

#[component]
pub fn DashboardPage() -> impl IntoView {
    view! {
        <Title text="Dashboard"/>
        <RequireUser>
            <Dashboard/>
        </RequireUser>
    }
}

#[component]
fn Dashboard() -> impl IntoView {
    let user = signed_in_user();
    view! {
        <h1>"Welcome, " {move || user().map(|u| u.first_name)}</h1>
        <div class="grid">
            <article class="card">
                <h2>"Agents"</h2>
                <p class="muted">"Create an agent with its own instructions, model and tools."</p>
                <a href="/agents">"Your agents"</a>
            </article>
            <article class="card">
                <h2>"Conversations"</h2>
                <p class="muted">"Your chats appear here, encrypted at rest."</p>
            </article>
            <article class="card">
                <h2>"Knowledge"</h2>
                <p class="muted">"Upload documents your agents can answer from."</p>
            </article>
        </div>
    }
}

/// Change the name; change the password (signing out every other session).
#[component]
fn AccountForms() -> impl IntoView {
    let user = signed_in_user();
    let rename = crate::auth::api::RenameAction::new();
    refresh_auth_on(rename.version());
    let rename_error = crate::action_error!(rename);
    let change = crate::auth::api::ChangePasswordAction::new();
    let change_error = crate::action_error!(change);
    let changed = move || change.value().get().and_then(|r| r.ok());
    let email = crate::auth::api::ChangeEmailAction::new();
    let email_error = crate::action_error!(email);
    let email_sent = move || matches!(email.value().get(), Some(Ok(())));
    view! {
        <details>
            <summary>"Change your name"</summary>
            <ActionForm action=rename>
                <FormError error=rename_error/>
                <div class="field-row">
                    <Field
                        label="First name"
                        name="first_name"
                        autocomplete="given-name"
                        value=user().map(|u| u.first_name).unwrap_or_default()
                        error=rename_error
                    />
                    <Field
                        label="Last name"
                        name="last_name"
                        autocomplete="family-name"
                        value=user().map(|u| u.last_name).unwrap_or_default()
                        error=rename_error
                    />
                </div>
                <button type="submit" disabled=move || rename.pending().get()>"Save name"</button>
            </ActionForm>
        </details>
        <details>
            <summary>"Change your email address"</summary>
            <ActionForm action=email>
                <FormError error=email_error/>
                <Field
                    label="New email address"
                    name="new_email"
                    kind="email"
                    autocomplete="email"
                    hint="We mail a link to it; the change happens when you open it. Your current address is told."
                    error=email_error
                />
                <Field
                    label="Your password"
                    name="password"
                    kind="password"
                    autocomplete="current-password"
                    error=email_error
                />
                <button type="submit" disabled=move || email.pending().get()>"Send the link"</button>
            </ActionForm>
            <Show when=email_sent>
                <p role="status" data-testid="email-change-sent">
                    "Check the new address's inbox: open the link there within 24 hours to finish."
                </p>
            </Show>
        </details>
        <details>
            <summary>"Change your password"</summary>
            <ActionForm action=change>
                <FormError error=change_error/>
                <Field
                    label="Current password"
                    name="current_password"
                    kind="password"
                    autocomplete="current-password"
                    error=change_error
                />
                <Field
                    label="New password"
                    name="new_password"
                    kind="password"
                    autocomplete="new-password"
                    hint="8 to 128 characters. Your other sessions end; this one stays."
                    error=change_error
                />
                <button type="submit" disabled=move || change.pending().get()>"Change password"</button>
            </ActionForm>
            {move || {
                changed()
                    .map(|ended| {
                        view! {
                            <p role="status" data-testid="password-changed">
                                {format!(
                                    "Your password was changed; {ended} other session{} signed out.",
                                    if ended == 1 { " was" } else { "s were" },
                                )}
                            </p>
                        }
                    })
            }}
        </details>
    }
}

#[component]
pub fn SettingsPage() -> impl IntoView {
    view! {
        <Title text="Settings"/>
        <RequireUser>
            <Settings/>
        </RequireUser>
    }
}

#[component]
fn Settings() -> impl IntoView {
    let user = signed_in_user();
    let everywhere = SignOutEverywhereAction::new();
    refresh_auth_on(everywhere.version());
    view! {
        <h1>"Settings"</h1>
        <section class="card">
            <h2>"Account"</h2>
            <dl>
                <dt>"Name"</dt>
                <dd>{move || user().map(|u| format!("{} {}", u.first_name, u.last_name))}</dd>
                <dt>"Email"</dt>
                <dd>{move || user().map(|u| u.email)}</dd>
            </dl>
            <AccountForms/>
        </section>
        <section class="card">
            <h2>"Provider keys"</h2>
            <p class="muted">"API keys for OpenAI, Anthropic, Google and OpenAI-compatible servers."</p>
            <a class="button" href="/settings/keys">"Manage provider keys"</a>
        </section>
        <section class="card">
            <h2>"API keys"</h2>
            <p class="muted">"Keys for your own programs to chat with your agents through Enclave's OpenAI-compatible API."</p>
            <a class="button" href="/settings/api-keys">"Manage API keys"</a>
        </section>
        <section class="card">
            <h2>"Connections"</h2>
            <p class="muted">"GitHub, Slack, email, Telegram and web API accounts your agents' tools use."</p>
            <a class="button" href="/settings/connections">"Manage connections"</a>
            " "
            <a class="button" href="/settings/activity">"Tool activity"</a>
        </section>
        <section class="card">
            <h2>"MCP servers"</h2>
            <p class="muted">"Your own remote MCP servers, whose tools your agents can call."</p>
            <a class="button" href="/settings/mcp">"Manage MCP servers"</a>
        </section>
        <section class="card">
            <h2>"Your data"</h2>
            <p class="muted">"What Enclave keeps about you and for how long; export it, or delete your account."</p>
            <a class="button" href="/settings/data">"Your data"</a>
        </section>
        <section class="card">
            <h2>"Appearance"</h2>
            <ThemeSwitcher/>
        </section>
        <section class="card">
            <h2>"Sessions"</h2>
            <p class="muted">"Where your account is signed in: browsers, addresses, last seen."</p>
            <a class="button" href="/settings/sessions">"See your sessions"</a>
            " "
            <a class="button" href="/settings/two-factor">"Two-factor sign-in"</a>
            " "
            <a class="button" href="/settings/sign-in-methods">"Sign-in methods"</a>
            " "
            <a class="button" href="/settings/passkeys">"Passkeys"</a>
            " "
            <a class="button" href="/settings/account-activity">"Account activity"</a>
            <p class="muted">"Signed in on a device you no longer use? End every session, this one included."</p>
            <ActionForm action=everywhere>
                <button type="submit" class="danger">"Sign out everywhere"</button>
            </ActionForm>
        </section>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    view! {
        <Title text="Not found"/>
        <h1>"Page not found"</h1>
        <p>"There is nothing here. " <a href="/">"Go home"</a></p>
    }
}
