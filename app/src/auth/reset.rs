//! "Forgot your password?" (server only). Asking for a reset answers the
//! same way, at once, whether the address has an account or not: the work
//! (finding the account, making the link, queueing the mail) happens after
//! the answer. The link is a 256-bit token stored as its SHA-256, single
//! use, valid one hour, a newer one replacing the older. Setting a new
//! password with it ends every session of the account, and confirms the
//! address (the link proved the mailbox is theirs).

use std::net::IpAddr;

use super::{
    domain::{Email, Password},
    links::{self, Purpose},
    server::{Account, account_by_email, users_place},
};
use crate::{
    error::AppError,
    platform::{
        keystore::{self, KeyUse},
        mail::{Outgoing, escape_html},
        rate_limit,
        settings::Limit,
    },
    state::AppState,
};

/// Reset requests per client address per hour.
const REQUESTS_PER_IP: Limit = Limit::new(10, 3600);
/// Attempts to use a reset link per client address per hour.
const RESETS_PER_IP: Limit = Limit::new(20, 3600);

pub const LINK_EXPIRED: &str = "This link has expired. Ask for a new one below.";
pub const LINK_UNKNOWN: &str =
    "This link is not valid or was used already. Ask for a new one below.";

/// Answers at once; mails a link if `email` has an account.
pub async fn request(state: &AppState, client_ip: IpAddr, email: &str) -> Result<(), AppError> {
    rate_limit::hit(
        &state.db,
        &state
            .crypto
            .rate_bucket("reset-request:ip", &rate_limit::ip_subject(client_ip)),
        REQUESTS_PER_IP,
    )
    .await?;
    let email = Email::parse(email).map_err(|message| AppError::invalid("email", message))?;
    let state = state.clone();
    // After the answer: the same reply, in the same time, for every address.
    tokio::spawn(async move {
        if let Err(err) = mail_link(&state, email.as_ref()).await {
            tracing::warn!(error = %err, "could not queue a password reset mail");
        }
    });
    Ok(())
}

async fn mail_link(state: &AppState, email: &str) -> Result<(), AppError> {
    let Some(Account {
        user,
        key,
        first_name,
    }) = account_by_email(state, &state.crypto.email_index(email)).await?
    else {
        return Ok(());
    };
    let mut tx = state.db.begin().await?;
    links::issue(&mut tx, state, user, &key, Purpose::ResetPassword, |link| {
        reset_mail(email, &first_name, link)
    })
    .await?;
    tx.commit().await?;
    state.jobs.wake();
    tracing::info!(user_id = %user, "password reset link queued");
    Ok(())
}

fn reset_mail(email: &str, first_name: &str, link: &str) -> Outgoing {
    let text = format!(
        "Hello {first_name},\n\n\
         Someone, probably you, asked to reset the password of your Enclave account. \
         To choose a new one, open this link within an hour:\n\n{link}\n\n\
         Choosing a new password signs you out everywhere. If you did not ask, ignore \
         this mail: your password stays as it is.\n"
    );
    let html = format!(
        "<p>Hello {name},</p>\
         <p>Someone, probably you, asked to reset the password of your Enclave account. \
         To choose a new one, open this link within an hour:</p>\
         <p><a href=\"{href}\">Choose a new password</a></p>\
         <p>Choosing a new password signs you out everywhere. If you did not ask, ignore \
         this mail: your password stays as it is.</p>",
        name = escape_html(first_name),
        href = escape_html(link),
    );
    Outgoing {
        to: email.to_owned(),
        subject: "Reset your Enclave password".to_owned(),
        text,
        html,
    }
}

/// Sets a new password with a reset link's token. The password is checked
/// first (a weak one keeps the link usable); a wrong, used or expired
/// token changes nothing.
pub async fn reset(
    state: &AppState,
    client: &crate::platform::request::ClientInfo,
    token: &str,
    password: String,
) -> Result<(), AppError> {
    rate_limit::hit(
        &state.db,
        &state
            .crypto
            .rate_bucket("reset:ip", &rate_limit::ip_subject(client.ip)),
        RESETS_PER_IP,
    )
    .await?;
    let password =
        Password::parse(password).map_err(|message| AppError::invalid("password", message))?;
    let hash = state.passwords.hash(password.expose_for_hashing()).await?;
    let mut tx = state.db.begin().await?;
    let user = links::take(
        &mut tx,
        Purpose::ResetPassword,
        token,
        LINK_UNKNOWN,
        LINK_EXPIRED,
    )
    .await?;
    let key = keystore::user_key(
        &state.db,
        &state.crypto.keyring,
        user,
        KeyUse::AccountRecovery,
    )
    .await?;
    sqlx::query(
        "UPDATE users SET password_hash = $2,
                email_verified_at = coalesce(email_verified_at, now())
         WHERE id = $1",
    )
    .bind(user)
    .bind(key.seal_str(users_place("password_hash", user), &hash))
    .execute(&mut *tx)
    .await?;
    let ended = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    tracing::info!(user_id = %user, sessions_ended = ended, "password reset");
    crate::data::activity::server::note_for(
        state,
        user,
        &key,
        crate::data::activity::Event::PasswordReset,
        Some(client),
        None,
    )
    .await;
    Ok(())
}
