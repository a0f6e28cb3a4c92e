//! Light, dark or system theme. The choice lives in a persistent `theme` cookie
//! (one of the only two cookies Enclave sets) and the server renders it into
//! `<html data-theme>`, so the first paint already has the right colours.

use leptos::{prelude::*, server_fn::ServerFn};
use serde::{Deserialize, Serialize};

use crate::error::AppError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Theme {
    Light,
    Dark,
    #[default]
    System,
}

impl Theme {
    pub const ALL: [Theme; 3] = [Theme::Light, Theme::Dark, Theme::System];

    pub fn as_str(self) -> &'static str {
        match self {
            Theme::Light => "light",
            Theme::Dark => "dark",
            Theme::System => "system",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Theme::Light => "Light",
            Theme::Dark => "Dark",
            Theme::System => "System",
        }
    }

    pub fn parse(value: &str) -> Option<Theme> {
        Theme::ALL.into_iter().find(|t| t.as_str() == value)
    }
}

pub const THEME_COOKIE: &str = "theme";

pub type SetThemeAction = ServerAction<SetTheme>;

#[server(prefix = "/api", endpoint = "set_theme")]
pub async fn set_theme(theme: String) -> Result<Theme, AppError> {
    use crate::ctx;
    let theme = Theme::parse(&theme)
        .ok_or_else(|| AppError::invalid("theme", "Choose light, dark or system."))?;
    let settings = ctx::state()?.settings;
    let cookie = cookie::Cookie::build((THEME_COOKIE, theme.as_str()))
        .path("/")
        .same_site(cookie::SameSite::Lax)
        .secure(settings.secure_cookies)
        .max_age(cookie::time::Duration::days(365))
        .build();
    ctx::set_cookie(&cookie.to_string())?;
    Ok(theme)
}

/// The theme the current request asked for (server only: reads the cookie).
#[cfg(feature = "ssr")]
pub fn theme_from_request() -> Theme {
    use_context::<http::request::Parts>()
        .and_then(|parts| {
            parts
                .headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|h| crate::auth::server::read_cookie(h, THEME_COOKIE))
        })
        .and_then(|value| Theme::parse(&value))
        .unwrap_or_default()
}

/// Three buttons, one per theme. A plain form post without JavaScript; with it,
/// the page switches at once without a reload.
/// The theme in force: from the request on the server, from `<html
/// data-theme>` (which the server rendered from the same cookie) in the
/// browser, so both render the same pressed button.
fn current_theme() -> Theme {
    #[cfg(feature = "ssr")]
    return theme_from_request();
    #[cfg(all(feature = "hydrate", not(feature = "ssr")))]
    return web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.document_element())
        .and_then(|root| root.get_attribute("data-theme"))
        .and_then(|value| Theme::parse(&value))
        .unwrap_or_default();
    #[cfg(not(any(feature = "ssr", feature = "hydrate")))]
    Theme::default()
}

/// The theme in force, shared by every switcher on the page.
#[derive(Clone, Copy)]
struct CurrentTheme(RwSignal<Theme>);

pub fn provide_theme() {
    provide_context(CurrentTheme(RwSignal::new(current_theme())));
}

#[component]
pub fn ThemeSwitcher() -> impl IntoView {
    let action = SetThemeAction::new();
    let current = use_context::<CurrentTheme>()
        .map(|c| c.0)
        .unwrap_or_else(|| RwSignal::new(current_theme()));
    Effect::new(move |_| {
        if let Some(Ok(theme)) = action.value().get() {
            apply_theme(theme);
            current.set(theme);
        }
    });
    view! {
        // Each button sends its own theme (a plain form without JavaScript).
        <form method="post" action=SetTheme::PATH class="theme-switcher" aria-label="Theme">
            {Theme::ALL
                .into_iter()
                .map(|theme| {
                    view! {
                        <button
                            type="submit"
                            name="theme"
                            value=theme.as_str()
                            title=format!("{} theme", theme.label())
                            aria-pressed=move || (current.get() == theme).to_string()
                            on:click=move |ev| {
                                ev.prevent_default();
                                action
                                    .dispatch(SetTheme {
                                        theme: theme.as_str().to_owned(),
                                    });
                            }
                        >
                            {theme.label()}
                        </button>
                    }
                })
                .collect_view()}
        </form>
    }
}

#[cfg(feature = "hydrate")]
fn apply_theme(theme: Theme) {
    if let Some(root) = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.document_element())
    {
        let _ = root.set_attribute("data-theme", theme.as_str());
    }
}

#[cfg(not(feature = "hydrate"))]
fn apply_theme(_theme: Theme) {}
