//! Shared UI: the page frame, the signed-in user context, form helpers,
//! safe Markdown.

pub mod avatar;
pub mod markdown;

use leptos::{prelude::*, server_fn::ServerFn};
use leptos_router::{components::Redirect, hooks::use_location};

use crate::{
    auth::{
        UserView,
        api::{SignOut, SignOutAction, current_user},
    },
    error::AppError,
    theme::ThemeSwitcher,
};

/// The signed-in user, shared by every page. `epoch` goes up whenever a page
/// signs someone in or out, and the user is fetched again.
#[derive(Clone, Copy)]
pub struct Auth {
    pub user: Resource<Result<Option<UserView>, AppError>>,
    epoch: RwSignal<u64>,
}

impl Auth {
    /// Call after an action that may have changed who is signed in.
    pub fn changed(&self) {
        self.epoch.update(|n| *n += 1);
    }

    /// Moves each time who is signed in may have changed (to refetch what
    /// depends on it).
    pub fn version(&self) -> u64 {
        self.epoch.get()
    }
}

pub fn provide_auth() {
    let epoch = RwSignal::new(0u64);
    let user = Resource::new(move || epoch.get(), |_| current_user());
    provide_context(Auth { user, epoch });
}

pub fn use_auth() -> Auth {
    expect_context::<Auth>()
}

/// A field of the form a submit event came from, by name (`None` when the
/// form has none). The forms every visitor's first load carries (sign-in,
/// sign-out, the theme) build their server function's input with this and
/// dispatch it themselves: `ActionForm` reads a form through `serde_qs`,
/// and it and the code it brings weighed 22 KB of brotli there
/// (BENCHMARKS.md). Pages fetched later keep `ActionForm`.
#[cfg(feature = "hydrate")]
pub fn submitted_field(ev: &leptos::ev::SubmitEvent, name: &str) -> Option<String> {
    use wasm_bindgen::JsCast;
    let form = ev.target()?.dyn_into::<web_sys::HtmlFormElement>().ok()?;
    web_sys::FormData::new_with_form(&form)
        .ok()?
        .get(name)
        .as_string()
}

/// Bumps the auth epoch each time `version` moves (an action completed).
pub fn refresh_auth_on(version: RwSignal<usize>) {
    let auth = use_auth();
    Effect::new(move |previous: Option<usize>| {
        let current = version.get();
        if previous.is_some_and(|p| p != current) {
            auth.changed();
        }
        current
    });
}

#[component]
pub fn Header() -> impl IntoView {
    let auth = use_auth();
    let sign_out = SignOutAction::new();
    refresh_auth_on(sign_out.version());
    view! {
        <header class="site-header">
            <a class="brand" href="/">"Enclave"</a>
            <nav aria-label="Main">
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        match auth.user.await {
                            Ok(Some(user)) => {
                                view! {
                                    <a href="/dashboard">"Dashboard"</a>
                                    <a href="/agents">"Agents"</a>
                                    <a href="/knowledge">"Knowledge"</a>
                                    <a href="/teams">"Teams"</a>
                                    <a href="/usage">"Usage"</a>
                                    <a href="/settings">"Settings"</a>
                                    {user.is_admin.then(|| view! { <a href="/admin">"Admin"</a> })}
                                    <span class="who" data-testid="signed-in-as">
                                        {user.first_name}
                                    </span>
                                    <form
                                        method="post"
                                        action=SignOut::PATH
                                        class="inline"
                                        on:submit=move |ev| {
                                            ev.prevent_default();
                                            sign_out.dispatch(SignOut {});
                                        }
                                    >
                                        <button type="submit" class="link">"Sign out"</button>
                                    </form>
                                }
                                    .into_any()
                            }
                            _ => {
                                view! {
                                    <a href="/sign-in">"Sign in"</a>
                                    <a href="/sign-up" class="button">"Create account"</a>
                                }
                                    .into_any()
                            }
                        }
                    })}
                </Transition>
            </nav>
            <ThemeSwitcher/>
        </header>
    }
}

/// For a signed-in user whose address is not confirmed yet: where the link
/// went, and a button for a new one.
#[component]
pub fn VerifyBanner() -> impl IntoView {
    let auth = use_auth();
    let resend = crate::auth::api::ResendVerificationAction::new();
    let sent = move || resend.value().get().is_some_and(|r| r.is_ok());
    let error = crate::action_error!(resend);
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match auth.user.await {
                    Ok(Some(user)) if !user.email_verified => {
                        view! {
                            <div class="banner" role="status" data-testid="verify-banner">
                                <p>
                                    "Please confirm your email address: we sent a link to "
                                    <strong>{user.email}</strong> "."
                                </p>
                                <ActionForm action=resend attr:class="inline">
                                    <button type="submit" disabled=move || resend.pending().get()>
                                        "Send a new link"
                                    </button>
                                </ActionForm>
                                <Show when=sent>
                                    <p class="muted">"Sent. The older link no longer works."</p>
                                </Show>
                                <FormError error=error/>
                            </div>
                        }
                            .into_any()
                    }
                    _ => ().into_any(),
                }
            })}
        </Transition>
    }
}

/// Renders `children` for a signed-in user; sends anyone else to sign-in with
/// a way back here. (The server does the same for a page load before any of
/// this renders; this covers navigation inside the app.)
///
/// The page is made when it is written out (`Unsuspend`), never inside the
/// `Suspend` that waits for the user: the server runs a boundary's children
/// more than once (to start its resources, to wait for them, to write them),
/// and a page made in each run fetched its data three times, so its HTML
/// could come from another fetch than the data the browser took over, and
/// fail to hydrate. Now each render makes it once.
#[component]
pub fn RequireUser(children: ChildrenFn) -> impl IntoView {
    let auth = use_auth();
    let location = use_location();
    let children = StoredValue::new(children);
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let signed_in = matches!(auth.user.await, Ok(Some(_)));
                Unsuspend::new(move || {
                    if signed_in {
                        return children.read_value()().into_any();
                    }
                    let here = format!(
                        "{}{}",
                        location.pathname.get_untracked(),
                        location.search.get_untracked(),
                    );
                    view! { <Redirect path=format!("/sign-in?next={}", encode_component(&here))/> }
                        .into_any()
                })
            })}
        </Transition>
    }
}

/// The current user; only for use under `RequireUser`.
pub fn signed_in_user() -> impl Fn() -> Option<UserView> + Copy {
    let auth = use_auth();
    move || auth.user.get().and_then(Result::ok).flatten()
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// An error that is not about one field, as a page shows it.
pub fn error_view(err: AppError) -> impl IntoView {
    view! {
        <p class="form-error" role="alert">
            {err.to_string()}
        </p>
    }
}

/// What an agent's page shows when the agent cannot be loaded.
pub fn not_found_or(err: AppError) -> impl IntoView {
    missing_or(
        err,
        "Agent not found",
        "There is no such agent among yours. ",
        ("/agents", "Back to your agents"),
    )
}

/// What a page shows when the thing it names cannot be loaded: `title`,
/// `text` and a way `back` (answered with status 404 on the server) when
/// it is not found, else the error.
pub fn missing_or(
    err: AppError,
    title: &'static str,
    text: &'static str,
    back: (&'static str, &'static str),
) -> impl IntoView {
    #[cfg(feature = "ssr")]
    if err == AppError::NotFound
        && let Some(response) = use_context::<leptos_axum::ResponseOptions>()
    {
        response.set_status(http::StatusCode::NOT_FOUND);
    }
    if err == AppError::NotFound {
        leptos::either::Either::Left(view! {
            <h1>{title}</h1>
            <p>{text} <a href=back.0>{back.1}</a></p>
        })
    } else {
        leptos::either::Either::Right(error_view(err))
    }
}

/// A size in bytes as people read it: "512 B", "3.4 KiB", "1.2 MiB".
pub fn size_label(bytes: u64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

/// The form-wide error of a failed action (anything not tied to one field).
#[component]
pub fn FormError(#[prop(into)] error: Signal<Option<AppError>>) -> impl IntoView {
    move || {
        error.get().and_then(|err| match err {
            AppError::Invalid(_) => None,
            other => Some(view! {
                <p class="form-error" role="alert">
                    {other.to_string()}
                </p>
            }),
        })
    }
}

/// A labelled input with its validation message underneath.
#[component]
pub fn Field(
    label: &'static str,
    name: &'static str,
    #[prop(default = "text")] kind: &'static str,
    #[prop(optional)] autocomplete: &'static str,
    #[prop(optional)] hint: &'static str,
    #[prop(optional, into)] value: String,
    #[prop(default = true)] required: bool,
    #[prop(optional)] list: &'static str,
    #[prop(into)] error: Signal<Option<AppError>>,
) -> impl IntoView {
    let message = field_message(error, name);
    let id = format!("field-{name}");
    let message_id = format!("{id}-error");
    view! {
        <div class="field" class:invalid=move || message().is_some()>
            <label for=id.clone()>{label}</label>
            <input
                id=id
                name=name
                type=kind
                value=value
                autocomplete=(!autocomplete.is_empty()).then_some(autocomplete)
                list=(!list.is_empty()).then_some(list)
                required=required
                aria-invalid=move || message().is_some().to_string()
                aria-describedby=message_id.clone()
            />
            {field_footer(hint, message_id, message)}
        </div>
    }
}

/// A labelled multi-line input with its validation message underneath.
#[component]
pub fn TextAreaField(
    label: &'static str,
    name: &'static str,
    #[prop(optional)] hint: &'static str,
    #[prop(optional, into)] value: String,
    #[prop(default = 4)] rows: u32,
    #[prop(into)] error: Signal<Option<AppError>>,
) -> impl IntoView {
    let message = field_message(error, name);
    let id = format!("field-{name}");
    let message_id = format!("{id}-error");
    view! {
        <div class="field" class:invalid=move || message().is_some()>
            <label for=id.clone()>{label}</label>
            <textarea
                id=id
                name=name
                rows=rows
                aria-invalid=move || message().is_some().to_string()
                aria-describedby=message_id.clone()
            >
                {value}
            </textarea>
            {field_footer(hint, message_id, message)}
        </div>
    }
}

/// Under every field: its hint, if any, and where its error appears.
fn field_footer(
    hint: &'static str,
    message_id: String,
    message: impl Fn() -> Option<String> + Send + Sync + 'static,
) -> impl IntoView {
    view! {
        {(!hint.is_empty()).then(|| view! { <p class="hint">{hint}</p> })}
        <p class="field-error" id=message_id>
            {message}
        </p>
    }
}

/// The message for `field` in an action's error, for hand-written fields.
pub fn field_message(
    error: Signal<Option<AppError>>,
    field: &'static str,
) -> impl Fn() -> Option<String> + Copy {
    move || error.get().and_then(|e| e.field_message(field))
}

/// The error of an action's last run, if it failed.
#[macro_export]
macro_rules! action_error {
    ($action:expr) => {{
        let action = $action;
        leptos::prelude::Signal::derive(move || action.value().get().and_then(Result::err))
    }};
}

#[cfg(test)]
mod tests {
    use super::encode_component;

    #[test]
    fn encode_component_escapes_reserved_characters() {
        assert_eq!(
            encode_component("/settings?a=1&b"),
            "%2Fsettings%3Fa%3D1%26b"
        );
        assert_eq!(encode_component("plain-Text_1.~"), "plain-Text_1.~");
    }
}
