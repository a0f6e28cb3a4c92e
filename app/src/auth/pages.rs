//! The sign-in and sign-up pages. Both are server-rendered forms that post to
//! their server function, so they work before (or without) the WASM loading.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::{
    SignUpEcho,
    api::{SignInAction, SignUpAction},
};
use crate::{
    error::AppError,
    ui::{Field, FormError, encode_component, refresh_auth_on},
};

/// The `next` query parameter, passed through the form.
fn next_param() -> Signal<String> {
    let query = use_query_map();
    Signal::derive(move || query.read().get("next").unwrap_or_default())
}

#[component]
pub fn SignInPage() -> impl IntoView {
    let action = SignInAction::new();
    refresh_auth_on(action.version());
    let error: Signal<Option<AppError>> = crate::action_error!(action);
    let next = next_param();
    let sign_up_href = move || {
        let next = next.get();
        if next.is_empty() {
            "/sign-up".to_owned()
        } else {
            format!("/sign-up?next={}", encode_component(&next))
        }
    };
    let query = use_query_map();
    let was_reset = move || query.read().get("reset").is_some();
    view! {
        <Title text="Sign in"/>
        <section class="card auth-card">
            <h1>"Sign in"</h1>
            <Show when=was_reset>
                <p role="status" data-testid="reset-done">
                    "Your password was changed, and every session signed out. Sign in with the new one."
                </p>
            </Show>
            <ActionForm action=action>
                <input type="hidden" name="next" value=next/>
                <FormError error=error/>
                <Field label="Email" name="email" kind="email" autocomplete="username" error=error/>
                <Field
                    label="Password"
                    name="password"
                    kind="password"
                    autocomplete="current-password"
                    error=error
                />
                <button type="submit" class="primary" disabled=move || action.pending().get()>
                    "Sign in"
                </button>
            </ActionForm>
            <p class="muted">
                <a href="/forgot-password">"Forgot your password?"</a>
            </p>
            <p class="muted">"New to Enclave? " <a href=sign_up_href>"Create an account"</a></p>
        </section>
    }
}

/// Asks for a reset link. The answer never says whether the address has
/// an account.
#[component]
pub fn ForgotPasswordPage() -> impl IntoView {
    let action = super::api::RequestPasswordResetAction::new();
    let error: Signal<Option<AppError>> = crate::action_error!(action);
    let query = use_query_map();
    let sent = move || query.read().get("sent").is_some();
    view! {
        <Title text="Forgot your password?"/>
        <section class="card auth-card">
            <h1>"Forgot your password?"</h1>
            <Show
                when=sent
                fallback=move || {
                    view! {
                        <p class="muted">
                            "Give the address of your account, and we will mail you a link to choose a new password."
                        </p>
                        <ActionForm action=action>
                            <FormError error=error/>
                            <Field label="Email" name="email" kind="email" autocomplete="username" error=error/>
                            <button type="submit" class="primary" disabled=move || action.pending().get()>
                                "Send the link"
                            </button>
                        </ActionForm>
                    }
                }
            >
                <p role="status" data-testid="reset-sent">
                    "If an account uses that address, we sent it a link to choose a new password. "
                    "It works for an hour. Nothing arrived? Check your spam folder, or "
                    <a href="/forgot-password">"ask again"</a> "."
                </p>
            </Show>
            <p class="muted"><a href="/sign-in">"Back to sign in"</a></p>
        </section>
    }
}

/// Where a reset link lands: choose the new password.
#[component]
pub fn ResetPasswordPage() -> impl IntoView {
    let action = super::api::ResetPasswordAction::new();
    let error: Signal<Option<AppError>> = crate::action_error!(action);
    let query = use_query_map();
    let token = move || query.read().get("token").unwrap_or_default();
    let link_problem = move || error.get().and_then(|e| e.field_message("token"));
    view! {
        <Title text="Choose a new password"/>
        <section class="card auth-card">
            <h1>"Choose a new password"</h1>
            <Show when=move || link_problem().is_some()>
                <p class="field-error" role="alert" data-testid="reset-link-problem">
                    {link_problem}
                    " "
                    <a href="/forgot-password">"Ask for a new link"</a>
                </p>
            </Show>
            <ActionForm action=action>
                <input type="hidden" name="token" value=token/>
                <Field
                    label="New password"
                    name="password"
                    kind="password"
                    autocomplete="new-password"
                    hint="8 to 128 characters. Every session of your account ends."
                    error=error
                />
                <button type="submit" class="primary" disabled=move || action.pending().get()>
                    "Set the new password"
                </button>
            </ActionForm>
        </section>
    }
}

/// The sign-up form. Without JavaScript it posts to `/sign-up`, where the
/// server answers a failure with this page again, filled in (`SignUpEcho`);
/// hydrated, it calls the server function in place.
#[component]
pub fn SignUpPage() -> impl IntoView {
    let action = SignUpAction::new();
    refresh_auth_on(action.version());
    let action_error: Signal<Option<AppError>> = crate::action_error!(action);
    let next = next_param();
    // The echo reaches the browser as the resource's serialized value, so
    // the hydrated page matches what the server rendered.
    let echo = Resource::new(
        || (),
        |_| {
            #[cfg(feature = "ssr")]
            let echo = use_context::<SignUpEcho>();
            #[cfg(not(feature = "ssr"))]
            let echo: Option<SignUpEcho> = None;
            async move { echo }
        },
    );
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        #[cfg(feature = "hydrate")]
        {
            use leptos::form::FromFormData as _;
            ev.prevent_default();
            if let Ok(input) = super::api::SignUp::from_event(&ev) {
                action.dispatch(input);
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    };
    view! {
        <Title text="Create your account"/>
        <section class="card auth-card">
            <h1>"Create your account"</h1>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    let echo = echo.await.unwrap_or_default();
                    let echoed_error = echo.error.clone();
                    let error = Signal::derive(move || {
                        action_error.get().or_else(|| echoed_error.clone())
                    });
                    let age_error = move || error.get().and_then(|e| e.field_message("age_confirmed"));
                    let next_value = if echo.next.is_empty() { next.get_untracked() } else { echo.next.clone() };
                    view! {
                        <form method="post" action="/sign-up" on:submit=on_submit>
                            <input type="hidden" name="next" value=next_value/>
                            <FormError error=error/>
                            <div class="field-row">
                                <Field
                                    label="First name"
                                    name="first_name"
                                    autocomplete="given-name"
                                    value=echo.first_name.clone()
                                    error=error
                                />
                                <Field
                                    label="Last name"
                                    name="last_name"
                                    autocomplete="family-name"
                                    value=echo.last_name.clone()
                                    error=error
                                />
                            </div>
                            <Field
                                label="Email"
                                name="email"
                                kind="email"
                                autocomplete="email"
                                value=echo.email.clone()
                                error=error
                            />
                            <Field
                                label="Password"
                                name="password"
                                kind="password"
                                autocomplete="new-password"
                                hint=const_format_hint()
                                error=error
                            />
                            <div class="field checkbox" class:invalid=move || age_error().is_some()>
                                <label>
                                    <input
                                        type="checkbox"
                                        name="age_confirmed"
                                        value="yes"
                                        checked=echo.age_confirmed
                                        aria-describedby="field-age_confirmed-error"
                                    />
                                    " I am 16 or older"
                                </label>
                                <p class="field-error" id="field-age_confirmed-error">
                                    {age_error}
                                </p>
                            </div>
                            <button type="submit" class="primary" disabled=move || action.pending().get()>
                                "Create account"
                            </button>
                        </form>
                    }
                })}
            </Transition>
            <p class="muted">"Already have an account? " <a href="/sign-in">"Sign in"</a></p>
        </section>
    }
}

fn const_format_hint() -> &'static str {
    // Kept in step with the rules in `domain` by the test below.
    "8 to 128 characters. A long passphrase is best."
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::domain::{PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS};

    #[test]
    fn password_hint_states_the_real_limits() {
        let hint = const_format_hint();
        assert!(hint.contains(&PASSWORD_MIN_CHARS.to_string()));
        assert!(hint.contains(&PASSWORD_MAX_CHARS.to_string()));
    }
}

/// Where a confirmation link lands: the address is confirmed as the page
/// renders (on the server, so it works without JavaScript), or the page
/// says why not and what to do.
#[component]
pub fn VerifyEmailPage() -> impl IntoView {
    let query = use_query_map();
    let token = move || query.read().get("token").unwrap_or_default();
    let outcome = Resource::new(token, super::api::verify_email);
    // The header (and its banner) may have read the user before the link
    // was checked: read it again once it has been.
    let auth = crate::ui::use_auth();
    Effect::new(move |_| {
        if let Some(Ok(())) = outcome.get() {
            auth.changed();
        }
    });
    view! {
        <Title text="Confirm your email address"/>
        <section class="card narrow">
            <h1>"Confirm your email address"</h1>
            <Suspense fallback=|| view! { <p class="muted">"Checking the link…"</p> }>
                {move || Suspend::new(async move {
                    match outcome.await {
                        Ok(()) => {
                            view! {
                                <p role="status" data-testid="verify-outcome">
                                    "Your email address is confirmed. Thank you."
                                </p>
                                <a class="button primary" href="/dashboard">"Go to your dashboard"</a>
                            }
                                .into_any()
                        }
                        Err(err) => {
                            let message = err
                                .field_message("token")
                                .unwrap_or_else(|| err.to_string());
                            view! {
                                <p class="field-error" role="alert" data-testid="verify-outcome">
                                    {message}
                                </p>
                                <a class="button" href="/sign-in">"Sign in"</a>
                            }
                                .into_any()
                        }
                    }
                })}
            </Suspense>
        </section>
    }
}
