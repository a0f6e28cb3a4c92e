//! Auth server functions: authenticate, validate, call `server`, map errors.
//! Each answers a plain form post (no JavaScript) with a redirect, so the
//! sign-in and sign-up pages work without WASM.

use leptos::prelude::*;

use super::UserView;
use crate::error::AppError;

pub type SignInAction = ServerAction<SignIn>;
pub type SignUpAction = ServerAction<SignUp>;
pub type SignOutAction = ServerAction<SignOut>;
pub type SignOutEverywhereAction = ServerAction<SignOutEverywhere>;

/// The signed-in user, if any.
#[server(prefix = "/api", endpoint = "current_user")]
pub async fn current_user() -> Result<Option<UserView>, AppError> {
    Ok(crate::ctx::session().map(|s| s.user))
}

#[server(prefix = "/api", endpoint = "sign_up")]
pub async fn sign_up(
    first_name: String,
    last_name: String,
    email: String,
    password: String,
    // The "I am 16 or older" checkbox: present when ticked.
    age_confirmed: Option<String>,
    next: Option<String>,
) -> Result<(), AppError> {
    use crate::ctx;
    let state = ctx::state()?;
    let account = super::domain::NewAccount::parse(
        &first_name,
        &last_name,
        &email,
        password,
        age_confirmed.is_some(),
    )?;
    super::server::sign_up(&state, ctx::client_ip()?, account).await?;
    leptos_axum::redirect(&super::domain::check_email_path(next.as_deref()));
    Ok(())
}

#[server(prefix = "/api", endpoint = "sign_in")]
pub async fn sign_in(
    email: String,
    password: String,
    next: Option<String>,
) -> Result<(), AppError> {
    use super::server::SignedIn;
    use crate::ctx;
    let state = ctx::state()?;
    let signed_in = super::server::sign_in(&state, &ctx::client_info()?, &email, &password).await?;
    ctx::set_cookie(&super::server::session_cookie(
        &state.settings,
        signed_in.token(),
    ))?;
    let next = super::domain::safe_next(next.as_deref());
    match signed_in {
        SignedIn::Session(_) => leptos_axum::redirect(&next),
        SignedIn::NeedsSecondFactor(_) => leptos_axum::redirect(&format!(
            "/two-factor?next={}",
            crate::ui::encode_component(&next)
        )),
    }
    Ok(())
}

pub type CompleteSignInAction = ServerAction<CompleteSignIn>;
pub type StartTotpAction = ServerAction<StartTotp>;
pub type ConfirmTotpAction = ServerAction<ConfirmTotp>;
pub type DisableTotpAction = ServerAction<DisableTotp>;

/// The second step of signing in: a code from the authenticator app, or a
/// recovery code, for the pending session this browser holds.
#[server(prefix = "/api", endpoint = "complete_sign_in")]
pub async fn complete_sign_in(code: String, next: Option<String>) -> Result<(), AppError> {
    use crate::ctx;
    let state = ctx::state()?;
    let parts = ctx::parts()?;
    let cookie_name = super::server::session_cookie_name(&state.settings);
    let token = parts
        .headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| super::server::read_cookie(h, cookie_name))
        .unwrap_or_default();
    let session =
        super::two_factor::complete_sign_in(&state, &token, &code, &ctx::client_info()?).await?;
    ctx::set_cookie(&super::server::session_cookie(&state.settings, &session))?;
    leptos_axum::redirect(&super::domain::safe_next(next.as_deref()));
    Ok(())
}

/// Whether two-factor sign-in is on, and recovery codes left.
#[server(prefix = "/api", endpoint = "two_factor_status")]
pub async fn two_factor_status() -> Result<super::TwoFactorStatus, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let (on, recovery_codes_left) =
        super::two_factor::status(&ctx::state()?.db, session.user_id).await?;
    Ok(super::TwoFactorStatus {
        on,
        recovery_codes_left,
    })
}

/// Starts setting up an authenticator app: a new secret and its QR code.
#[server(prefix = "/api", endpoint = "start_totp")]
pub async fn start_totp() -> Result<super::TotpSetup, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    super::two_factor::start(&ctx::state()?, &session).await
}

/// Finishes the setup with a first code; returns the recovery codes.
#[server(prefix = "/api", endpoint = "confirm_totp")]
pub async fn confirm_totp(code: String) -> Result<Vec<String>, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let state = ctx::state()?;
    let codes = super::two_factor::confirm(&state, &session, &code).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::TwoFactorEnabled,
        None,
    )
    .await;
    Ok(codes)
}

/// Turns two-factor sign-in off; needs a current code.
#[server(prefix = "/api", endpoint = "disable_totp")]
pub async fn disable_totp(code: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let state = ctx::state()?;
    super::two_factor::disable(&state, &session, &code).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::TwoFactorDisabled,
        None,
    )
    .await;
    ctx::redirect_plain_post("/settings/two-factor");
    Ok(())
}

#[server(prefix = "/api", endpoint = "sign_out")]
pub async fn sign_out() -> Result<(), AppError> {
    use crate::ctx;
    let state = ctx::state()?;
    if let Some(session) = ctx::session() {
        super::server::end_session(&state.db, &session).await?;
        crate::data::activity::server::note(
            &state,
            &session,
            crate::data::activity::Event::SignedOut,
            None,
        )
        .await;
    }
    ctx::set_cookie(&super::server::clear_session_cookie(&state.settings))?;
    leptos_axum::redirect("/");
    Ok(())
}

/// Ends every session of the signed-in user, this one included.
#[server(prefix = "/api", endpoint = "sign_out_everywhere")]
pub async fn sign_out_everywhere() -> Result<(), AppError> {
    use crate::ctx;
    let state = ctx::state()?;
    let session = ctx::require_session()?;
    let ended = super::server::end_all_sessions(&state.db, session.user_id).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::SignedOutEverywhere,
        None,
    )
    .await;
    tracing::info!(user_id = %session.user_id, ended, "signed out everywhere");
    ctx::set_cookie(&super::server::clear_session_cookie(&state.settings))?;
    leptos_axum::redirect("/sign-in");
    Ok(())
}

pub type EndSessionAction = ServerAction<EndSession>;
pub type EndOtherSessionsAction = ServerAction<EndOtherSessions>;

/// The signed-in user's live sessions, this one first.
#[server(prefix = "/api", endpoint = "list_sessions")]
pub async fn list_sessions() -> Result<Vec<super::SessionView>, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    super::server::list_sessions(&ctx::state()?.db, &session).await
}

/// Ends one of the user's sessions (another user's is not found). Ending
/// this browser's own session signs it out.
#[server(prefix = "/api", endpoint = "end_session")]
pub async fn end_session(id: String) -> Result<(), AppError> {
    use crate::ctx;
    let state = ctx::state()?;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    super::server::end_session_by_id(&state.db, session.user_id, id).await?;
    let event = if id == session.session_id {
        crate::data::activity::Event::SignedOut
    } else {
        crate::data::activity::Event::SessionEnded
    };
    crate::data::activity::server::note(&state, &session, event, None).await;
    if id == session.session_id {
        ctx::set_cookie(&super::server::clear_session_cookie(&state.settings))?;
        leptos_axum::redirect("/sign-in");
    } else {
        ctx::redirect_plain_post("/settings/sessions");
    }
    Ok(())
}

/// Ends every session of the user but this one. Returns how many ended.
#[server(prefix = "/api", endpoint = "end_other_sessions")]
pub async fn end_other_sessions() -> Result<u64, AppError> {
    use crate::ctx;
    let state = ctx::state()?;
    let session = ctx::require_session()?;
    let ended =
        super::server::end_other_sessions(&state.db, session.user_id, session.session_id).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::OtherSessionsEnded,
        None,
    )
    .await;
    tracing::info!(user_id = %session.user_id, ended, "other sessions ended");
    ctx::redirect_plain_post("/settings/sessions");
    Ok(ended)
}

pub type ResendVerificationAction = ServerAction<ResendVerification>;

/// Confirms an email address from the mailed link's token.
#[server(prefix = "/api", endpoint = "verify_email")]
pub async fn verify_email(token: String) -> Result<(), AppError> {
    use crate::ctx;
    let state = ctx::state()?;
    super::verify::confirm(&state, ctx::client_ip()?, &token).await
}

/// Mails the signed-in user a new confirmation link.
#[server(prefix = "/api", endpoint = "resend_verification")]
pub async fn resend_verification() -> Result<(), AppError> {
    use crate::ctx;
    let state = ctx::state()?;
    let session = ctx::require_session()?;
    super::verify::resend(
        &state,
        session.user_id,
        &session.key,
        &session.user.email,
        &session.user.first_name,
    )
    .await
}

pub type RequestPasswordResetAction = ServerAction<RequestPasswordReset>;
pub type ResetPasswordAction = ServerAction<ResetPassword>;

/// Mails a reset link if the address has an account; the answer is the
/// same either way (`/forgot-password?sent=1`).
#[server(prefix = "/api", endpoint = "request_password_reset")]
pub async fn request_password_reset(email: String) -> Result<(), AppError> {
    use crate::ctx;
    let state = ctx::state()?;
    super::reset::request(&state, ctx::client_ip()?, &email).await?;
    leptos_axum::redirect("/forgot-password?sent=1");
    Ok(())
}

/// Sets a new password with a reset link; every session ends.
#[server(prefix = "/api", endpoint = "reset_password")]
pub async fn reset_password(token: String, password: String) -> Result<(), AppError> {
    use crate::ctx;
    let state = ctx::state()?;
    super::reset::reset(&state, &ctx::client_info()?, &token, password).await?;
    ctx::set_cookie(&super::server::clear_session_cookie(&state.settings))?;
    leptos_axum::redirect("/sign-in?reset=1");
    Ok(())
}

pub type RenameAction = ServerAction<Rename>;
pub type ChangePasswordAction = ServerAction<ChangePassword>;

/// Changes the signed-in user's name.
#[server(prefix = "/api", endpoint = "rename")]
pub async fn rename(first_name: String, last_name: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    super::account::rename(&ctx::state()?, &session, &first_name, &last_name).await
}

/// Changes the password (the current one is asked for); every other
/// session ends. Returns how many did.
#[server(prefix = "/api", endpoint = "change_password")]
pub async fn change_password(
    current_password: String,
    new_password: String,
) -> Result<u64, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let state = ctx::state()?;
    let ended =
        super::account::change_password(&state, &session, &current_password, new_password).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::PasswordChanged,
        None,
    )
    .await;
    Ok(ended)
}

pub type ChangeEmailAction = ServerAction<ChangeEmail>;

/// Asks to change the account's address: mails a link to the new one.
#[server(prefix = "/api", endpoint = "change_email")]
pub async fn change_email(new_email: String, password: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    super::account::change_email(&ctx::state()?, &session, &new_email, &password).await
}

/// Opens an email-change link (the page calls it while rendering).
#[server(prefix = "/api", endpoint = "confirm_email_change")]
pub async fn confirm_email_change(token: String) -> Result<(), AppError> {
    use crate::ctx;
    super::account::confirm_email_change(&ctx::state()?, ctx::client_ip()?, &token).await
}

pub type DisconnectIdentityAction = ServerAction<DisconnectIdentity>;

/// The sign-in providers this server offers (for the buttons).
#[server(prefix = "/api", endpoint = "sign_in_providers")]
pub async fn sign_in_providers() -> Result<Vec<super::ProviderButton>, AppError> {
    use crate::ctx;
    Ok(ctx::state()?
        .settings
        .oidc_providers
        .iter()
        .map(|p| super::ProviderButton {
            id: p.id.clone(),
            name: p.name.clone(),
        })
        .collect())
}

/// The provider accounts connected to the signed-in user's.
#[server(prefix = "/api", endpoint = "list_identities")]
pub async fn list_identities() -> Result<Vec<super::IdentityView>, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    super::oidc::identities(&ctx::state()?, &session).await
}

/// Disconnects a provider account while another way to sign in remains.
#[server(prefix = "/api", endpoint = "disconnect_identity")]
pub async fn disconnect_identity(id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    let state = ctx::state()?;
    super::oidc::disconnect(&state, &session, id).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::SignInMethodRemoved,
        None,
    )
    .await;
    ctx::redirect_plain_post("/settings/sign-in-methods");
    Ok(())
}

pub type DeletePasskeyAction = ServerAction<DeletePasskey>;

/// Starts adding a passkey: the options for `navigator.credentials.create`.
#[server(prefix = "/api", endpoint = "passkey_register_start")]
pub async fn passkey_register_start() -> Result<super::PasskeyCeremony, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let ceremony = super::passkeys::start_registration(&ctx::state()?, &session).await?;
    Ok(super::PasskeyCeremony {
        id: ceremony.id.to_string(),
        options: ceremony.options,
    })
}

/// Finishes adding a passkey with the browser's answer (JSON).
#[server(prefix = "/api", endpoint = "passkey_register_finish")]
pub async fn passkey_register_finish(
    ceremony: String,
    name: String,
    credential: String,
) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let ceremony = ctx::parse_id(&ceremony)?;
    let state = ctx::state()?;
    super::passkeys::finish_registration(&state, &session, ceremony, &name, &credential).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::PasskeyAdded,
        Some(name.trim()),
    )
    .await;
    Ok(())
}

/// The signed-in user's passkeys.
#[server(prefix = "/api", endpoint = "list_passkeys")]
pub async fn list_passkeys() -> Result<Vec<super::PasskeyView>, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    super::passkeys::list(&ctx::state()?, &session).await
}

/// Deletes one of the user's passkeys.
#[server(prefix = "/api", endpoint = "delete_passkey")]
pub async fn delete_passkey(id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    let state = ctx::state()?;
    super::passkeys::delete(&state, &session, id).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::PasskeyRemoved,
        None,
    )
    .await;
    ctx::redirect_plain_post("/settings/passkeys");
    Ok(())
}

/// Starts a passkey sign-in: the options for `navigator.credentials.get`.
#[server(prefix = "/api", endpoint = "passkey_sign_in_start")]
pub async fn passkey_sign_in_start() -> Result<super::PasskeyCeremony, AppError> {
    use crate::ctx;
    let ceremony = super::passkeys::start_sign_in(&ctx::state()?, &ctx::client_info()?).await?;
    Ok(super::PasskeyCeremony {
        id: ceremony.id.to_string(),
        options: ceremony.options,
    })
}

/// Finishes a passkey sign-in with the browser's answer (JSON).
#[server(prefix = "/api", endpoint = "passkey_sign_in_finish")]
pub async fn passkey_sign_in_finish(ceremony: String, credential: String) -> Result<(), AppError> {
    use crate::ctx;
    let state = ctx::state()?;
    let ceremony = ctx::parse_id(&ceremony).map_err(|_| {
        AppError::invalid("credential", "That took too long. Try the passkey again.")
    })?;
    let token =
        super::passkeys::finish_sign_in(&state, ceremony, &credential, &ctx::client_info()?)
            .await?;
    ctx::set_cookie(&super::server::session_cookie(&state.settings, &token))?;
    Ok(())
}
