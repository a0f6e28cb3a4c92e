//! The sign-in and sign-up pages. Both are server-rendered forms that post to
//! their server function, so they work before (or without) the WASM loading.

use leptos::{prelude::*, server_fn::ServerFn};
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
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        #[cfg(feature = "hydrate")]
        {
            ev.prevent_default();
            let field = |name| crate::ui::submitted_field(&ev, name);
            action.dispatch(super::api::SignIn {
                email: field("email").unwrap_or_default(),
                password: field("password").unwrap_or_default(),
                next: field("next"),
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    };
    let query = use_query_map();
    let was_reset = move || query.read().get("reset").is_some();
    // After deleting an account: the date it will be erased (shown only
    // when it reads as one).
    let deleted = move || {
        query
            .read()
            .get("deleted")
            .filter(|d| d.len() == 10 && d.chars().all(|c| c.is_ascii_digit() || c == '-'))
    };
    view! {
        <Title text="Sign in"/>
        <section class="card auth-card">
            <h1>"Sign in"</h1>
            <ProviderProblem/>
            <Show when=was_reset>
                <p role="status" data-testid="reset-done">
                    "Your password was changed, and every session signed out. Sign in with the new one."
                </p>
            </Show>
            {move || {
                deleted()
                    .map(|date| {
                        view! {
                            <p role="status" data-testid="account-deleted">
                                "Your account is deleted and every session signed out. It will be erased on "
                                <time>{date.clone()}</time>
                                ". Changed your mind? Sign in before then and it comes back as it was."
                            </p>
                        }
                    })
            }}
            <form method="post" action=super::api::SignIn::PATH on:submit=on_submit>
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
            </form>
            <p class="muted">
                <a href="/forgot-password">"Forgot your password?"</a>
            </p>
            <PasskeySignIn/>
            <ProviderButtons intent="sign-in" verb="Sign in with"/>
            <p class="muted">"New to Enclave? " <a href=sign_up_href>"Create an account"</a></p>
        </section>
    }
}

/// Where sign-up lands. It reads the same whether the address was new or
/// already had an account (the owner of an existing one is mailed instead),
/// so it never tells who is registered.
#[component]
pub fn CheckEmailPage() -> impl IntoView {
    let next = next_param();
    let sign_in_href = move || {
        let next = next.get();
        if next.is_empty() {
            "/sign-in".to_owned()
        } else {
            format!("/sign-in?next={}", encode_component(&next))
        }
    };
    view! {
        <Title text="Check your inbox"/>
        <section class="card auth-card">
            <h1>"Check your inbox"</h1>
            <p role="status" data-testid="sign-up-sent">
                "We sent a mail to the address you gave. Open the link in it to confirm the "
                "address; it works for 24 hours."
            </p>
            <p>
                "Your account is ready: you can sign in now, and confirm the address later."
            </p>
            <a class="button primary" href=sign_in_href>"Sign in"</a>
            <p class="muted">
                "Nothing arrived? Check your spam folder, or sign in and send a new link from "
                "the banner at the top."
            </p>
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
            <ProviderProblem/>
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
            <ProviderSignUp/>
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
    view! {
        <LinkOutcome
            title="Confirm your email address"
            outcome=Resource::new(token, super::api::verify_email)
            test_id="verify-outcome"
            done="Your email address is confirmed. Thank you."
            done_link=("/dashboard", "Go to your dashboard")
            failed_link=("/sign-in", "Sign in")
        />
    }
}

/// What opening a mailed link did, checked as the page renders: the
/// outcome, and where to go next. The header (and its banner) may have read
/// the user before the link was checked, so it reads them again after.
#[component]
fn LinkOutcome(
    title: &'static str,
    outcome: Resource<Result<(), AppError>>,
    test_id: &'static str,
    done: &'static str,
    done_link: (&'static str, &'static str),
    failed_link: (&'static str, &'static str),
) -> impl IntoView {
    let auth = crate::ui::use_auth();
    Effect::new(move |_| {
        if let Some(Ok(())) = outcome.get() {
            auth.changed();
        }
    });
    view! {
        <Title text=title/>
        <section class="card narrow">
            <h1>{title}</h1>
            <Suspense fallback=|| view! { <p class="muted">"Checking the link…"</p> }>
                {move || Suspend::new(async move {
                    match outcome.await {
                        Ok(()) => {
                            view! {
                                <p role="status" data-testid=test_id>{done}</p>
                                <a class="button primary" href=done_link.0>{done_link.1}</a>
                            }
                                .into_any()
                        }
                        Err(err) => {
                            let message = err
                                .field_message("token")
                                .unwrap_or_else(|| err.to_string());
                            view! {
                                <p class="field-error" role="alert" data-testid=test_id>
                                    {message}
                                </p>
                                <a class="button" href=failed_link.0>{failed_link.1}</a>
                            }
                                .into_any()
                        }
                    }
                })}
            </Suspense>
        </section>
    }
}

/// Settings → Sessions: every live session of the account (browser, system,
/// address, when it signed in and was last seen), the current one marked;
/// end one, or all the others.
#[component]
pub fn SessionsPage() -> impl IntoView {
    view! {
        <Title text="Sessions"/>
        <crate::ui::RequireUser>
            <Sessions/>
        </crate::ui::RequireUser>
    }
}

#[component]
fn Sessions() -> impl IntoView {
    let end = super::api::EndSessionAction::new();
    let others = super::api::EndOtherSessionsAction::new();
    refresh_auth_on(end.version());
    let sessions = Resource::new(
        move || (end.version().get(), others.version().get()),
        |_| super::api::list_sessions(),
    );
    let end_error: Signal<Option<AppError>> = crate::action_error!(end);
    let ended = move || others.value().get().and_then(Result::ok);
    view! {
        <h1>"Sessions"</h1>
        <p class="muted">
            "Every browser signed in to your account. Something you do not recognise? End it, "
            "and change your password."
        </p>
        <FormError error=end_error/>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match sessions.await {
                    Err(err) => crate::ui::error_view(err).into_any(),
                    Ok(list) => {
                        let count = list.len();
                        view! {
                            <ul class="session-list">
                                {list
                                    .into_iter()
                                    .map(|s| view! { <SessionRow session=s end=end/> })
                                    .collect_view()}
                            </ul>
                            <Show when=move || { count > 1 }>
                                <ActionForm action=others>
                                    <button type="submit" class="danger">
                                        "Sign out all other sessions"
                                    </button>
                                </ActionForm>
                            </Show>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
        {move || {
            ended()
                .map(|n| {
                    view! {
                        <p role="status" data-testid="others-ended">
                            {format!("{n} other session{} signed out.", if n == 1 { " was" } else { "s were" })}
                        </p>
                    }
                })
        }}
        <p class="muted"><a href="/settings">"Back to settings"</a></p>
    }
}

#[component]
fn SessionRow(session: super::SessionView, end: super::api::EndSessionAction) -> impl IntoView {
    let label = if session.current {
        "Sign out here"
    } else {
        "End session"
    };
    view! {
        <li class="card session-row" data-testid="session" class:current=session.current>
            <div>
                <strong>{format!("{} on {}", session.browser, session.system)}</strong>
                {session
                    .current
                    .then(|| view! { <span class="badge" data-testid="current-session">"This browser"</span> })}
                <p class="muted">
                    "Signed in " <time>{session.signed_in.clone()}</time> " from "
                    <span class="address">{session.address.clone()}</span> " · last seen "
                    <time>{session.last_seen.clone()}</time>
                </p>
            </div>
            <ActionForm action=end attr:class="inline">
                <input type="hidden" name="id" value=session.id.clone()/>
                <button type="submit">{label}</button>
            </ActionForm>
        </li>
    }
}

/// The second step of signing in, for accounts with two-factor sign-in: a
/// code from the authenticator app, or a recovery code. A plain form, so it
/// works without JavaScript.
#[component]
pub fn TwoFactorPage() -> impl IntoView {
    let action = super::api::CompleteSignInAction::new();
    refresh_auth_on(action.version());
    let error: Signal<Option<AppError>> = crate::action_error!(action);
    let next = next_param();
    view! {
        <Title text="Two-factor sign-in"/>
        <section class="card auth-card">
            <h1>"Two-factor sign-in"</h1>
            <p class="muted">
                "Enter the 6-digit code your authenticator app shows for Enclave, or one of "
                "your recovery codes."
            </p>
            <ActionForm action=action>
                <input type="hidden" name="next" value=next/>
                <FormError error=error/>
                <Field
                    label="Code"
                    name="code"
                    autocomplete="one-time-code"
                    hint="A recovery code works once; it looks like abcd-efgh-ijkl-mnop."
                    error=error
                />
                <button type="submit" class="primary" disabled=move || action.pending().get()>
                    "Sign in"
                </button>
            </ActionForm>
            <p class="muted"><a href="/sign-in">"Start again"</a></p>
        </section>
    }
}

/// Settings → Two-factor sign-in: set up an authenticator app (QR code and
/// secret, confirmed by a first code, then ten recovery codes shown once),
/// or turn it off with a current code.
#[component]
pub fn TwoFactorSettingsPage() -> impl IntoView {
    view! {
        <Title text="Two-factor sign-in"/>
        <crate::ui::RequireUser>
            <TwoFactorSettings/>
        </crate::ui::RequireUser>
    }
}

#[component]
fn TwoFactorSettings() -> impl IntoView {
    let start = super::api::StartTotpAction::new();
    let confirm = super::api::ConfirmTotpAction::new();
    let disable = super::api::DisableTotpAction::new();
    // Read the status again only when it changed: a refused code must not
    // re-render the form and wipe what is being typed.
    let (changed, set_changed) = signal(0u32);
    Effect::new(move |_| {
        if matches!(confirm.value().get(), Some(Ok(_))) {
            set_changed.update(|n| *n += 1);
        }
    });
    Effect::new(move |_| {
        if matches!(disable.value().get(), Some(Ok(()))) {
            set_changed.update(|n| *n += 1);
        }
    });
    let status = Resource::new(move || changed.get(), |_| super::api::two_factor_status());
    let start_error: Signal<Option<AppError>> = crate::action_error!(start);
    let confirm_error: Signal<Option<AppError>> = crate::action_error!(confirm);
    let disable_error: Signal<Option<AppError>> = crate::action_error!(disable);
    let setup = move || start.value().get().and_then(Result::ok);
    let codes = move || confirm.value().get().and_then(Result::ok);
    view! {
        <h1>"Two-factor sign-in"</h1>
        <p class="muted">
            "With it on, signing in asks for a code from an authenticator app on your phone "
            "after your password, so a stolen password alone is not enough."
        </p>
        <Show when=move || codes().is_some()>
            <section class="card" data-testid="recovery-codes">
                <h2>"Your recovery codes"</h2>
                <p>
                    "Two-factor sign-in is on. Keep these codes somewhere safe: each signs you in "
                    "once if you lose your phone. They are shown only now."
                </p>
                <ul class="recovery-codes">
                    {move || {
                        codes()
                            .unwrap_or_default()
                            .into_iter()
                            .map(|c| view! { <li><code>{c}</code></li> })
                            .collect_view()
                    }}
                </ul>
            </section>
        </Show>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match status.await {
                    Err(err) => crate::ui::error_view(err).into_any(),
                    Ok(status) if status.on => {
                        view! {
                            <section class="card">
                                <h2>"On"</h2>
                                <p data-testid="two-factor-status">
                                    {format!(
                                        "Two-factor sign-in is on. {} unused recovery code{} left.",
                                        status.recovery_codes_left,
                                        if status.recovery_codes_left == 1 { "" } else { "s" },
                                    )}
                                </p>
                                <ActionForm action=disable>
                                    <FormError error=disable_error/>
                                    <Field
                                        label="Current code"
                                        name="code"
                                        autocomplete="one-time-code"
                                        hint="From your authenticator app."
                                        error=disable_error
                                    />
                                    <button type="submit" class="danger">"Turn off"</button>
                                </ActionForm>
                            </section>
                        }
                            .into_any()
                    }
                    Ok(_) => {
                        view! {
                            <section class="card">
                                <p data-testid="two-factor-status">"Two-factor sign-in is off."</p>
                                <FormError error=start_error/>
                                <Show
                                    when=move || setup().is_some()
                                    fallback=move || {
                                        view! {
                                            <ActionForm action=start>
                                                <button type="submit" class="primary">
                                                    "Set up an authenticator app"
                                                </button>
                                            </ActionForm>
                                        }
                                    }
                                >
                                    {move || {
                                        setup()
                                            .map(|s| {
                                                view! {
                                                    <ol class="totp-steps">
                                                        <li>
                                                            "Scan this code with your authenticator app:"
                                                            <div class="qr" data-testid="totp-qr" inner_html=s.qr_svg></div>
                                                            "or type this key into it: "
                                                            <code data-testid="totp-secret">{s.secret}</code>
                                                        </li>
                                                        <li>"Enter the 6-digit code it shows:"</li>
                                                    </ol>
                                                    <ActionForm action=confirm>
                                                        <FormError error=confirm_error/>
                                                        <Field
                                                            label="Code"
                                                            name="code"
                                                            autocomplete="one-time-code"
                                                            error=confirm_error
                                                        />
                                                        <button type="submit" class="primary">"Turn on"</button>
                                                    </ActionForm>
                                                }
                                            })
                                    }}
                                </Show>
                            </section>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
        <p class="muted"><a href="/settings">"Back to settings"</a></p>
    }
}

/// Where an email-change link lands: the account takes the new address as
/// the page renders (so without JavaScript too), or the page says why not.
#[component]
pub fn ConfirmEmailChangePage() -> impl IntoView {
    let query = use_query_map();
    let token = move || query.read().get("token").unwrap_or_default();
    view! {
        <LinkOutcome
            title="Your new email address"
            outcome=Resource::new(token, super::api::confirm_email_change)
            test_id="email-change-outcome"
            done="Done: your account uses this address now. Sign in with it from now on."
            done_link=("/settings", "Go to settings")
            failed_link=("/settings", "Go to settings")
        />
    }
}

/// The sentence for the page's `?problem=` (a provider sign-in that did
/// not work), if any.
#[component]
fn ProviderProblem() -> impl IntoView {
    let query = use_query_map();
    let problem = move || {
        query
            .read()
            .get("problem")
            .and_then(|p| super::provider_problem(&p))
    };
    view! {
        <Show when=move || problem().is_some()>
            <p class="field-error" role="alert" data-testid="provider-problem">{problem}</p>
        </Show>
    }
}

/// "Sign in with …" (or "Connect …") buttons, one plain form each: they
/// post to `/auth/oidc/{id}`, which sends the browser to the provider.
#[component]
fn ProviderButtons(intent: &'static str, verb: &'static str) -> impl IntoView {
    let providers = Resource::new(|| (), |_| super::api::sign_in_providers());
    let next = next_param();
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let list = providers.await.unwrap_or_default();
                (!list.is_empty())
                    .then(|| {
                        view! {
                            <div class="provider-buttons">
                                {list
                                    .into_iter()
                                    .map(|p| {
                                        view! {
                                            <form method="post" action=format!("/auth/oidc/{}", p.id)>
                                                <input type="hidden" name="intent" value=intent/>
                                                <input type="hidden" name="next" value=next/>
                                                <button type="submit">{format!("{verb} {}", p.name)}</button>
                                            </form>
                                        }
                                    })
                                    .collect_view()}
                            </div>
                        }
                    })
            })}
        </Transition>
    }
}

/// "Sign up with …": one form, the age box shared by every provider's
/// button (each posts to its own `/auth/oidc/{id}`).
#[component]
fn ProviderSignUp() -> impl IntoView {
    let providers = Resource::new(|| (), |_| super::api::sign_in_providers());
    let next = next_param();
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let list = providers.await.unwrap_or_default();
                (!list.is_empty())
                    .then(|| {
                        let first = format!("/auth/oidc/{}", list[0].id);
                        view! {
                            <form method="post" action=first class="provider-buttons">
                                <h2 class="or">"Or use an account you already have"</h2>
                                <input type="hidden" name="intent" value="sign-up"/>
                                <input type="hidden" name="next" value=next/>
                                <label class="checkbox">
                                    <input type="checkbox" name="age_confirmed" value="yes" required/>
                                    " I am 16 or older"
                                </label>
                                {list
                                    .into_iter()
                                    .map(|p| {
                                        view! {
                                            <button type="submit" formaction=format!("/auth/oidc/{}", p.id)>
                                                {format!("Sign up with {}", p.name)}
                                            </button>
                                        }
                                    })
                                    .collect_view()}
                            </form>
                        }
                    })
            })}
        </Transition>
    }
}

/// Settings → Sign-in methods: the provider accounts connected to this
/// one (disconnect while another way to sign in remains), and "Connect …".
#[component]
pub fn SignInMethodsPage() -> impl IntoView {
    view! {
        <Title text="Sign-in methods"/>
        <crate::ui::RequireUser>
            <SignInMethods/>
        </crate::ui::RequireUser>
    }
}

#[component]
fn SignInMethods() -> impl IntoView {
    let disconnect = super::api::DisconnectIdentityAction::new();
    let error: Signal<Option<AppError>> = crate::action_error!(disconnect);
    let identities = Resource::new(
        move || disconnect.version().get(),
        |_| super::api::list_identities(),
    );
    let id_error = move || error.get().and_then(|e| e.field_message("id"));
    view! {
        <h1>"Sign-in methods"</h1>
        <p class="muted">
            "Besides your password, you can sign in with an account at these providers."
        </p>
        <ProviderProblem/>
        <Show when=move || id_error().is_some()>
            <p class="field-error" role="alert">{id_error}</p>
        </Show>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match identities.await {
                    Err(err) => crate::ui::error_view(err).into_any(),
                    Ok(list) if list.is_empty() => {
                        view! { <p class="card muted" data-testid="no-identities">"No provider connected."</p> }
                            .into_any()
                    }
                    Ok(list) => {
                        view! {
                            <ul class="session-list">
                                {list
                                    .into_iter()
                                    .map(|i| {
                                        view! {
                                            <li class="card session-row" data-testid="identity">
                                                <div>
                                                    <strong>{i.provider.clone()}</strong>
                                                    <p class="muted">
                                                        {format!("{} · connected {}", i.email, i.connected)}
                                                    </p>
                                                </div>
                                                <ActionForm action=disconnect attr:class="inline">
                                                    <input type="hidden" name="id" value=i.id.clone()/>
                                                    <button type="submit">"Disconnect"</button>
                                                </ActionForm>
                                            </li>
                                        }
                                    })
                                    .collect_view()}
                            </ul>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
        <ProviderButtons intent="link" verb="Connect"/>
        <p class="muted"><a href="/settings">"Back to settings"</a></p>
    }
}

/// Whether the page is running in the browser with passkey support (false
/// in the server's render and without JavaScript).
fn passkeys_here() -> ReadSignal<bool> {
    let (here, set_here) = signal(false);
    Effect::new(move |_| set_here.set(super::webauthn::supported()));
    here
}

/// The passkey ceremony: its code (the WebAuthn call and the two server
/// functions) is fetched when the button is pressed, not with the sign-in
/// page, which most people use with a password (`#[lazy]`, `--split`).
#[lazy]
async fn passkey_sign_in() -> Result<(), AppError> {
    let ceremony = super::api::passkey_sign_in_start().await?;
    let credential = super::webauthn::get(&ceremony.options).await?;
    super::api::passkey_sign_in_finish(ceremony.id, credential).await
}

/// "Sign in with a passkey" (shown once the page runs in a browser that
/// has passkeys).
#[component]
fn PasskeySignIn() -> impl IntoView {
    let here = passkeys_here();
    let next = next_param();
    let auth = crate::ui::use_auth();
    let sign_in = Action::new_local(move |_: &()| passkey_sign_in());
    let error = move || sign_in.value().get().and_then(|r| r.err());
    Effect::new(move |_| {
        if let Some(Ok(())) = sign_in.value().get() {
            auth.changed();
            let target = super::domain::safe_next(Some(&next.get_untracked()));
            let navigate = leptos_router::hooks::use_navigate();
            navigate(&target, Default::default());
        }
    });
    view! {
        <Show when=move || here.get()>
            <div class="provider-buttons">
                <button type="button" on:click=move |_| { sign_in.dispatch(()); }>
                    "Sign in with a passkey"
                </button>
                {move || {
                    error()
                        .map(|e| {
                            let message = e.field_message("credential").unwrap_or_else(|| e.to_string());
                            view! { <p class="field-error" role="alert" data-testid="passkey-error">{message}</p> }
                        })
                }}
            </div>
        </Show>
    }
}

/// Settings → Passkeys: add one (named), see them, delete one.
#[component]
pub fn PasskeysPage() -> impl IntoView {
    view! {
        <Title text="Passkeys"/>
        <crate::ui::RequireUser>
            <Passkeys/>
        </crate::ui::RequireUser>
    }
}

#[component]
fn Passkeys() -> impl IntoView {
    let here = passkeys_here();
    let delete = super::api::DeletePasskeyAction::new();
    let (name, set_name) = signal(String::new());
    let add = Action::new_local(move |name: &String| {
        let name = name.clone();
        async move {
            let ceremony = super::api::passkey_register_start().await?;
            let credential = super::webauthn::create(&ceremony.options).await?;
            super::api::passkey_register_finish(ceremony.id, name, credential).await
        }
    });
    let list = Resource::new(
        move || (delete.version().get(), add.version().get()),
        |_| super::api::list_passkeys(),
    );
    let add_error = move || {
        add.value().get().and_then(|r| r.err()).map(|e| {
            e.field_message("credential")
                .or_else(|| e.field_message("name"))
                .unwrap_or_else(|| e.to_string())
        })
    };
    view! {
        <h1>"Passkeys"</h1>
        <p class="muted">
            "A passkey signs you in with your device's screen lock or a security key: no password "
            "to type, and nothing a fake site could reuse."
        </p>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Err(err) => crate::ui::error_view(err).into_any(),
                    Ok(list) if list.is_empty() => {
                        view! { <p class="card muted" data-testid="no-passkeys">"No passkeys yet."</p> }.into_any()
                    }
                    Ok(list) => {
                        view! {
                            <ul class="session-list">
                                {list
                                    .into_iter()
                                    .map(|p| {
                                        let used = p
                                            .last_used
                                            .clone()
                                            .map_or_else(|| "never used".to_owned(), |u| format!("last used {u}"));
                                        view! {
                                            <li class="card session-row" data-testid="passkey">
                                                <div>
                                                    <strong>{p.name.clone()}</strong>
                                                    <p class="muted">{format!("added {} · {used}", p.added)}</p>
                                                </div>
                                                <ActionForm action=delete attr:class="inline">
                                                    <input type="hidden" name="id" value=p.id.clone()/>
                                                    <button type="submit" class="danger">"Delete"</button>
                                                </ActionForm>
                                            </li>
                                        }
                                    })
                                    .collect_view()}
                            </ul>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
        <section class="card">
            <h2>"Add a passkey"</h2>
            <Show
                when=move || here.get()
                fallback=|| view! { <p class="muted">"Adding a passkey needs JavaScript and a browser with passkeys."</p> }
            >
                <div class="field">
                    <label for="passkey-name">"Name"</label>
                    <input
                        id="passkey-name"
                        type="text"
                        maxlength="60"
                        placeholder="Like: work laptop"
                        prop:value=move || name.get()
                        on:input=move |ev| set_name.set(event_target_value(&ev))
                    />
                </div>
                <button
                    type="button"
                    class="primary"
                    disabled=move || add.pending().get()
                    on:click=move |_| { add.dispatch(name.get_untracked()); }
                >
                    "Add a passkey"
                </button>
                {move || add_error().map(|m| view! { <p class="field-error" role="alert">{m}</p> })}
            </Show>
        </section>
        <p class="muted"><a href="/settings">"Back to settings"</a></p>
    }
}
