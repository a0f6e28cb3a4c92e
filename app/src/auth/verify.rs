//! Email verification (server only): sign-up mails a link; opening it marks
//! the address verified. Links carry a 256-bit token stored only as its
//! SHA-256, single use, valid 24 hours; a new link replaces the older one.
//! The mail goes out from a job enqueued in the same transaction as the
//! change that causes it (`platform::jobs`), so a slow mail server never
//! holds up sign-up, and a sign-up that fails sends nothing.

use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    error::AppError,
    platform::{
        crypto::DataKey,
        jobs::{self, Kind, NewJob},
        mail::{Outgoing, escape_html},
        rate_limit,
        settings::Limit,
    },
    state::AppState,
};

/// How long a verification link works.
pub const VERIFY_TTL: Duration = Duration::from_secs(24 * 3600);
/// Verification mails a user may ask for per hour.
const RESENDS: Limit = Limit::new(5, 3600);

pub(crate) fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

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
    let token = new_token();
    let id = Uuid::new_v4();
    sqlx::query("DELETE FROM email_tokens WHERE user_id = $1 AND purpose = 'verify_email'")
        .bind(user)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO email_tokens (id, user_id, purpose, token_hash, expires_at)
         VALUES ($1, $2, 'verify_email', $3, now() + make_interval(secs => $4))",
    )
    .bind(id)
    .bind(user)
    .bind(token_hash(&token))
    .bind(VERIFY_TTL.as_secs_f64())
    .execute(&mut *conn)
    .await?;
    let link = format!(
        "{}/verify-email?token={token}",
        state.settings.public_url.trim_end_matches('/')
    );
    let mail = verification_mail(email, first_name, &link);
    jobs::enqueue(
        conn,
        NewJob::new(Kind::Mail)
            .for_owner(user, key, &mail)
            .idempotency_key(format!("mail:verify_email:{id}")),
    )
    .await?;
    Ok(())
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
pub async fn confirm(state: &AppState, token: &str) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    let row: Option<(Uuid, Uuid, bool)> = sqlx::query_as(
        "SELECT id, user_id, expires_at > now() FROM email_tokens
         WHERE token_hash = $1 AND purpose = 'verify_email' AND used_at IS NULL
         FOR UPDATE",
    )
    .bind(token_hash(token.trim()))
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, user, live)) = row else {
        return Err(AppError::invalid("token", LINK_UNKNOWN));
    };
    if !live {
        return Err(AppError::invalid("token", LINK_EXPIRED));
    }
    sqlx::query("UPDATE email_tokens SET used_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
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
