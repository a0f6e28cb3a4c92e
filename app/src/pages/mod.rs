//! Pages that belong to no slice yet: home, dashboard, settings, not found.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::{
    auth::api::SignOutEverywhereAction,
    theme::ThemeSwitcher,
    ui::{RequireUser, refresh_auth_on, signed_in_user},
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
        </section>
        <section class="card">
            <h2>"Provider keys"</h2>
            <p class="muted">"API keys for OpenAI, Anthropic, Google and OpenAI-compatible servers."</p>
            <a class="button" href="/settings/keys">"Manage provider keys"</a>
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
            <h2>"Appearance"</h2>
            <ThemeSwitcher/>
        </section>
        <section class="card">
            <h2>"Sessions"</h2>
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
