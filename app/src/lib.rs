//! Enclave's application crate: the UI, the types shared by browser and server,
//! the server functions, and (behind `ssr`) the server-side logic they call.
//!
//! - [`error`]: `AppError`, the one error type on the wire.
//! - [`auth`]: accounts, sign-in, sessions.
//! - [`agents`]: agents and their configuration.
//! - [`provider_keys`]: the user's API keys and which one a run uses.
//! - [`provider`]: the model providers and their rules.
//! - [`chat`]: conversations, messages, server-owned streaming runs.
//! - [`data`]: your data: the activity log, export, deletion, retention.
//! - [`knowledge`]: knowledge bases: upload, parse, split, embed, search.
//! - [`theme`]: the light/dark/system preference.
//! - [`ui`]: the page frame and shared components.
//! - [`pages`]: home, dashboard, settings, not found.
//! - [`llm`] (ssr): provider adapters over their real streaming protocols.
//! - [`platform`] (ssr): the ground floor: settings, crypto, egress, password
//!   hashing, rate limits. It imports no slice.
//! - [`background`] (ssr): what each background job does.
//! - [`state`] (ssr): `AppState`, the composition root; [`ctx`] (ssr): what
//!   a server function knows about its request (state, session).

#![recursion_limit = "256"]

pub mod admin;
pub mod agents;
pub mod api_keys;
pub mod auth;
#[cfg(feature = "ssr")]
pub mod background;
pub mod chat;
pub mod connections;
#[cfg(feature = "ssr")]
pub mod ctx;
pub mod data;
pub mod error;
pub mod knowledge;
#[cfg(feature = "ssr")]
pub mod llm;
pub mod mcp;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod platform;
pub mod provider;
pub mod provider_keys;
pub mod schedules;
#[cfg(feature = "ssr")]
pub mod state;
pub mod teams;
pub mod telegram;
pub mod theme;
pub mod tools;
pub mod ui;
pub mod usage;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::{
    Lazy, ParamSegment, SsrMode, StaticSegment,
    components::{FlatRoutes, Route, Router},
};

use crate::{
    admin::pages::AdminPage,
    agents::pages::{AgentDetailPage, AgentEditPage, AgentImportPage, AgentNewPage, AgentsPage},
    api_keys::pages::ApiKeysPage,
    auth::pages::{
        CheckEmailPage, ConfirmEmailChangePage, ForgotPasswordPage, PasskeysPage,
        ResetPasswordPage, SessionsPage, SignInMethodsPage, SignInPage, SignUpPage, TwoFactorPage,
        TwoFactorSettingsPage, VerifyEmailPage,
    },
    chat::pages::ChatPage,
    connections::pages::ConnectionsPage,
    data::pages::{AccountActivityPage, CookiePolicyPage, PrivacyPolicyPage, YourDataPage},
    knowledge::pages::{KnowledgeBasePage, KnowledgePage, PassagePage},
    mcp::pages::McpServersPage,
    pages::{DashboardPage, HomePage, NotFound, SettingsPage},
    provider_keys::pages::KeysPage,
    tools::activity::ToolActivityPage,
    ui::{Header, provide_auth},
};

/// Every sealed column, gathered from the slices that own them: what
/// `server keys verify` opens, and what a test checks against the columns of
/// the `sealed` domain in the database.
#[cfg(feature = "ssr")]
pub fn sealed_columns() -> &'static [platform::keystore::SealedColumn] {
    static ALL: std::sync::LazyLock<Vec<platform::keystore::SealedColumn>> =
        std::sync::LazyLock::new(|| {
            [
                auth::server::SEALED,
                auth::two_factor::SEALED,
                auth::links::SEALED,
                auth::oidc::SEALED,
                auth::passkeys::SEALED,
                agents::server::SEALED,
                provider_keys::server::SEALED,
                chat::server::SEALED,
                chat::files::SEALED,
                schedules::server::SEALED,
                telegram::server::SEALED,
                teams::server::SEALED,
                usage::server::SEALED,
                api_keys::server::SEALED,
                tools::server::SEALED,
                connections::server::SEALED,
                mcp::server::SEALED,
                mcp::oauth::SEALED,
                mcp::serve::SEALED,
                data::activity::server::SEALED,
                data::export::server::SEALED,
                knowledge::server::SEALED,
                platform::jobs::SEALED,
            ]
            .concat()
        });
    &ALL
}

/// Pages that need a signed-in user. The server redirects a signed-out
/// visitor to sign-in before rendering them.
pub const PROTECTED_PATHS: &[&str] = &[
    "/dashboard",
    "/settings",
    "/agents",
    "/knowledge",
    "/admin",
    "/teams",
    "/chats",
    "/chat",
];
/// Pages a signed-in user has no use for; the server sends them to the dashboard.
pub const GUEST_PATHS: &[&str] = &["/sign-in", "/sign-up"];

pub fn path_matches(list: &[&str], path: &str) -> bool {
    list.iter().any(|p| {
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Pages whose code is fetched the first time one is opened (`cargo leptos
/// --split`, Leptos 0.8 lazy routes): the first page a visitor opens (home,
/// or sign-in) carries only the shell, and each page below its own code.
/// Sign-up is one of them: its form reads itself through `serde_qs`, which
/// the first load no longer carries (`ui::submitted_field`). The server
/// renders every page whole, so each works without JavaScript as before.
macro_rules! lazy_pages {
    ($frame:path: $($route:ident => $page:path),* $(,)?) => {
        $(
            pub struct $route;

            #[leptos_router::lazy_route]
            impl leptos_router::LazyRoute for $route {
                fn data() -> Self {
                    $route
                }

                fn view(_this: Self) -> AnyView {
                    $frame(
                        leptos::component::component_view(
                            &$page,
                            leptos::component::component_props_builder(&$page).build(),
                        )
                        .into_any(),
                    )
                    .into_any()
                }
            }
        )*
    };
}

lazy_pages! {
    plain_page:
    CheckEmailRoute => CheckEmailPage,
    ForgotPasswordRoute => ForgotPasswordPage,
    ResetPasswordRoute => ResetPasswordPage,
    VerifyEmailRoute => VerifyEmailPage,
    PrivacyPolicyRoute => PrivacyPolicyPage,
    CookiePolicyRoute => CookiePolicyPage,
    JoinTeamRoute => crate::teams::pages::JoinTeamPage,
    TwoFactorRoute => TwoFactorPage,
    ConfirmEmailChangeRoute => ConfirmEmailChangePage,
    NewChatRoute => crate::chat::sidebar::NewChatPage,
    SignUpRoute => SignUpPage,
}

lazy_pages! {
    crate::chat::sidebar::with_sidebar:
    DashboardRoute => DashboardPage,
    KnowledgeRoute => KnowledgePage,
    KnowledgeBaseRoute => KnowledgeBasePage,
    PassageRoute => PassagePage,
    ScheduleRoute => crate::schedules::pages::SchedulePage,
    SettingsRoute => SettingsPage,
    AdminRoute => AdminPage,
    TeamsRoute => crate::teams::pages::TeamsPage,
    UsageRoute => crate::usage::pages::UsagePage,
    TeamRoute => crate::teams::pages::TeamPage,
    KeysRoute => KeysPage,
    ApiKeysRoute => ApiKeysPage,
    ConnectionsRoute => ConnectionsPage,
    McpServersRoute => McpServersPage,
    TwoFactorSettingsRoute => TwoFactorSettingsPage,
    SignInMethodsRoute => SignInMethodsPage,
    PasskeysRoute => PasskeysPage,
    SessionsRoute => SessionsPage,
    ToolActivityRoute => ToolActivityPage,
    YourDataRoute => YourDataPage,
    AccountActivityRoute => AccountActivityPage,
    AgentsRoute => AgentsPage,
    AgentNewRoute => AgentNewPage,
    AgentImportRoute => AgentImportPage,
    AgentDetailRoute => AgentDetailPage,
    ChatRoute => ChatPage,
    AgentEditRoute => AgentEditPage,
    ChatsRoute => crate::chat::sidebar::ChatsPage,
}

/// A page without the sidebar (signed out, or a step of signing in).
fn plain_page(page: impl IntoView + 'static) -> impl IntoView {
    view! { <main id="main">{page}</main> }
}

/// Hydrates the server-rendered page (the WASM entry point calls it). A
/// lazy page's code is fetched first, then the whole page hydrates; the
/// body is marked `data-hydrated` only then (the browser tests wait for it
/// to tell the live page from the plain one).
#[cfg(feature = "hydrate")]
pub fn hydrate() {
    wasm_bindgen_futures::spawn_local(async {
        let Some(body) = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.body())
        else {
            return;
        };
        let mounted = leptos::mount::hydrate_from_async(body.clone(), App).await;
        mounted.forget();
        mark_live();
    });
}

/// Marks the body `data-hydrated`: the page is live.
#[cfg(feature = "hydrate")]
fn mark_live() {
    if let Some(body) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.body())
    {
        let _ = body.set_attribute("data-hydrated", "");
    }
}

/// Marks the page live once the router has moved. A link followed while
/// the first page's code is still being fetched moves the router (so the
/// app is live) and drops the end of that first hydration, which would
/// otherwise never mark it.
#[component]
fn LiveOnNavigation() -> impl IntoView {
    #[cfg(feature = "hydrate")]
    {
        let location = leptos_router::hooks::use_location();
        Effect::new(move |first: Option<()>| {
            location.pathname.track();
            if first.is_some() {
                mark_live();
            }
        });
    }
}

/// The HTML document around the app (server only).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    let theme = theme::theme_from_request();
    #[cfg(not(feature = "ssr"))]
    let theme = theme::Theme::default();
    view! {
        <!DOCTYPE html>
        <html lang="en" data-theme=theme.as_str()>
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <meta name="color-scheme" content="light dark"/>
                <link rel="icon" href="data:,"/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// Every page renders in `SsrMode::Async`: the server waits for the page's
/// data and sends complete HTML, so pages read and work with JavaScript off
/// (out-of-order streaming would leave `<Suspense>` content for a script to
/// swap in). The data is in-process and fast, so the wait is short.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    provide_auth();
    theme::provide_theme();
    view! {
        <Stylesheet id="leptos" href="/pkg/enclave.css"/>
        <Title formatter=|title: String| format!("{title} · Enclave")/>
        <Router>
            <LiveOnNavigation/>
            <Header/>
            <div class="shell">
                <FlatRoutes fallback=|| plain_page(view! { <NotFound/> })>
                    <Route path=StaticSegment("") view=|| plain_page(view! { <HomePage/> }) ssr=SsrMode::Async/>
                    <Route
                        path=StaticSegment("sign-in")
                        view=|| plain_page(view! { <SignInPage/> })
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=StaticSegment("sign-up")
                        view={Lazy::<SignUpRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route path=StaticSegment("chats") view={Lazy::<ChatsRoute>::new()} ssr=SsrMode::Async/>
                    <Route
                        path=(StaticSegment("chat"), StaticSegment("new"))
                        view={Lazy::<NewChatRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=StaticSegment("check-email")
                        view={Lazy::<CheckEmailRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=StaticSegment("forgot-password")
                        view={Lazy::<ForgotPasswordRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=StaticSegment("reset-password")
                        view={Lazy::<ResetPasswordRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=StaticSegment("verify-email")
                        view={Lazy::<VerifyEmailRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route path=StaticSegment("dashboard") view={Lazy::<DashboardRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=StaticSegment("knowledge") view={Lazy::<KnowledgeRoute>::new()} ssr=SsrMode::Async/>
                    <Route
                        path=(StaticSegment("knowledge"), ParamSegment("id"))
                        view={Lazy::<KnowledgeBaseRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("knowledge"), StaticSegment("passages"), ParamSegment("id"))
                        view={Lazy::<PassageRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("schedules"), ParamSegment("id"))
                        view={Lazy::<ScheduleRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route path=StaticSegment("privacy") view={Lazy::<PrivacyPolicyRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=StaticSegment("cookies") view={Lazy::<CookiePolicyRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=StaticSegment("settings") view={Lazy::<SettingsRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=StaticSegment("admin") view={Lazy::<AdminRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=StaticSegment("teams") view={Lazy::<TeamsRoute>::new()} ssr=SsrMode::Async/>
                    <Route path=StaticSegment("usage") view={Lazy::<UsageRoute>::new()} ssr=SsrMode::Async/>
                    <Route
                        path=(StaticSegment("teams"), StaticSegment("join"))
                        view={Lazy::<JoinTeamRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("teams"), ParamSegment("id"))
                        view={Lazy::<TeamRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("settings"), StaticSegment("keys"))
                        view={Lazy::<KeysRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("settings"), StaticSegment("api-keys"))
                        view={Lazy::<ApiKeysRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("settings"), StaticSegment("connections"))
                        view={Lazy::<ConnectionsRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("settings"), StaticSegment("mcp"))
                        view={Lazy::<McpServersRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route path=StaticSegment("two-factor") view={Lazy::<TwoFactorRoute>::new()} ssr=SsrMode::Async/>
                    <Route
                        path=StaticSegment("confirm-email")
                        view={Lazy::<ConfirmEmailChangeRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("settings"), StaticSegment("two-factor"))
                        view={Lazy::<TwoFactorSettingsRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("settings"), StaticSegment("sign-in-methods"))
                        view={Lazy::<SignInMethodsRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("settings"), StaticSegment("passkeys"))
                        view={Lazy::<PasskeysRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("settings"), StaticSegment("sessions"))
                        view={Lazy::<SessionsRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("settings"), StaticSegment("activity"))
                        view={Lazy::<ToolActivityRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("settings"), StaticSegment("data"))
                        view={Lazy::<YourDataRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("settings"), StaticSegment("account-activity"))
                        view={Lazy::<AccountActivityRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route path=StaticSegment("agents") view={Lazy::<AgentsRoute>::new()} ssr=SsrMode::Async/>
                    <Route
                        path=(StaticSegment("agents"), StaticSegment("new"))
                        view={Lazy::<AgentNewRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("agents"), StaticSegment("import"))
                        view={Lazy::<AgentImportRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("agents"), ParamSegment("id"))
                        view={Lazy::<AgentDetailRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("agents"), ParamSegment("id"), StaticSegment("chat"))
                        view={Lazy::<ChatRoute>::new()}
                        ssr=SsrMode::Async
                    />
                    <Route
                        path=(StaticSegment("agents"), ParamSegment("id"), StaticSegment("edit"))
                        view={Lazy::<AgentEditRoute>::new()}
                        ssr=SsrMode::Async
                    />
                </FlatRoutes>
            </div>
            <footer class="site-footer">
                <a href="/privacy">"Privacy Policy"</a>
                " · "
                <a href="/cookies">"Cookie Policy"</a>
            </footer>
        </Router>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The modules under `crate::` that a use of `crate::…` at `rest` names
    /// (`rest` is what follows `crate::`): one, or each top-level name in a
    /// `{…}` group.
    fn named_modules(rest: &str) -> Vec<String> {
        let ident = |s: &str| -> String {
            s.trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        };
        let Some(group) = rest.strip_prefix('{') else {
            return vec![ident(rest)];
        };
        let (mut depth, mut names, mut start) = (0, Vec::new(), true);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => break,
                '}' => depth -= 1,
                ',' if depth == 0 => start = true,
                c if start && !c.is_whitespace() => {
                    names.push(ident(&group[i..]));
                    start = false;
                }
                _ => {}
            }
        }
        names
    }

    #[test]
    #[cfg(feature = "ssr")]
    fn the_platform_imports_no_slice() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/platform");
        let allowed = ["error", "platform", "provider"];
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            for (at, _) in text.match_indices("crate::") {
                for module in named_modules(&text[at + "crate::".len()..]) {
                    checked += 1;
                    assert!(
                        allowed.contains(&module.as_str()),
                        "{} uses crate::{module}: the platform must not import a slice",
                        path.display()
                    );
                }
            }
        }
        assert!(checked > 5, "the scan found the platform's own imports");
        assert_eq!(
            named_modules("{auth::server::AuthSession, error::AppError}"),
            ["auth", "error"]
        );
    }

    #[test]
    fn path_matching_respects_segment_boundaries() {
        assert!(path_matches(PROTECTED_PATHS, "/dashboard"));
        assert!(path_matches(PROTECTED_PATHS, "/settings/security"));
        assert!(!path_matches(PROTECTED_PATHS, "/dashboards"));
        assert!(!path_matches(PROTECTED_PATHS, "/"));
    }
}
