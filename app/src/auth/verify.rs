//! Email verification (server only): sign-up mails a link; opening it marks
//! the address verified. Links carry a 256-bit token stored only as its
//! SHA-256, single use, valid 24 hours; a new link replaces the older one.
//! The mail goes out from a job enqueued in the same transaction as the
//! change that causes it (`platform::jobs`), so a slow mail server never
//! holds up sign-up, and a sign-up that fails sends nothing.

use sqlx::PgConnection;
use uuid::Uuid;

use super::links::{self, Purpose};
use crate::{
    error::AppError,
    platform::{
        crypto::DataKey,
        mail::{Outgoing, escape_html},
        rate_limit,
        settings::Limit,
    },
    state::AppState,
};

/// Verification mails a user may ask for per hour.
const RESENDS: Limit = Limit::new(5, 3600);

/// Makes a verification link for `user` (replacing any older one) and
/// queues the mail, in the caller's transaction.
pub async fn issue(
    conn: &mut PgConnection,
    state: &AppState,
    user: Uuid,
    key: &DataKey,
    email: &str,
    first_name: &str,
) -> Result<(), AppError> {
    links::issue(conn, state, user, key, Purpose::VerifyEmail, |link| {
        verification_mail(email, first_name, link)
    })
    .await
}

fn verification_mail(email: &str, first_name: &str, link: &str) -> Outgoing {
    let text = format!(
        "Hello {first_name},\n\n\
         Please confirm that this is your email address for Enclave by opening this link \
         within 24 hours:\n\n{link}\n\n\
         If you did not create an Enclave account, ignore this mail: nothing happens \
         until the link is opened.\n"
    );
    let html = format!(
        "<p>Hello {name},</p>\
         <p>Please confirm that this is your email address for Enclave by opening this link \
         within 24 hours:</p>\
         <p><a href=\"{href}\">Confirm my email address</a></p>\
         <p>If you did not create an Enclave account, ignore this mail: nothing happens \
         until the link is opened.</p>",
        name = escape_html(first_name),
        href = escape_html(link),
    );
    Outgoing {
        to: email.to_owned(),
        subject: "Confirm your email address for Enclave".to_owned(),
        text,
        html,
    }
}

/// Why a link did not work, with the way forward.
pub const LINK_EXPIRED: &str =
    "This link has expired. Sign in and send yourself a new one from the banner at the top.";
pub const LINK_UNKNOWN: &str = "This link is not valid or was used already. Sign in to see \
     whether your address is confirmed, and send a new link if it is not.";

/// Marks the address of the token's user verified (once). A wrong, used or
/// expired token changes nothing and says what to do.
pub async fn confirm(
    state: &AppState,
    client_ip: std::net::IpAddr,
    token: &str,
) -> Result<(), AppError> {
    links::limit_opens(state, client_ip, Purpose::VerifyEmail).await?;
    let mut tx = state.db.begin().await?;
    let user = links::take(
        &mut tx,
        Purpose::VerifyEmail,
        token,
        LINK_UNKNOWN,
        LINK_EXPIRED,
    )
    .await?;
    sqlx::query(
        "UPDATE users SET email_verified_at = coalesce(email_verified_at, now()) WHERE id = $1",
    )
    .bind(user)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(user_id = %user, "email address verified");
    Ok(())
}

/// Sends the signed-in user a new link (the older one stops working).
/// Nothing to do once verified.
pub async fn resend(
    state: &AppState,
    user: Uuid,
    key: &DataKey,
    email: &str,
    first_name: &str,
) -> Result<(), AppError> {
    rate_limit::hit(&state.db, &format!("verify-resend:user:{user}"), RESENDS).await?;
    let mut tx = state.db.begin().await?;
    let verified: Option<bool> = sqlx::query_scalar(
        "SELECT email_verified_at IS NOT NULL FROM users WHERE id = $1 FOR UPDATE",
    )
    .bind(user)
    .fetch_optional(&mut *tx)
    .await?;
    match verified {
        None => return Err(AppError::NotFound),
        Some(true) => return Ok(()),
        Some(false) => {}
    }
    issue(&mut tx, state, user, key, email, first_name).await?;
    tx.commit().await?;
    state.jobs.wake();
    Ok(())
}
