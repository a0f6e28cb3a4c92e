//! The single-use links Enclave mails (server only): a 256-bit token in
//! the link, only its SHA-256 in `email_tokens`, one live link per user and
//! purpose (a new one replaces the older), expiring, used once. Verification
//! and password reset both go through here.

use std::time::Duration;

use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    error::AppError,
    platform::{
        crypto::{DataKey, Place, Sealed, random_token, token_hash},
        jobs::{self, Kind, NewJob},
        mail::Outgoing,
        rate_limit,
        settings::Limit,
    },
    state::AppState,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    ResetPassword,
    /// Sent to a new address; the address waits, sealed, in the link's row.
    ChangeEmail,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::ResetPassword => "reset_password",
            Purpose::ChangeEmail => "change_email",
        }
    }

    /// How long its link works.
    pub fn ttl(self) -> Duration {
        match self {
            Purpose::VerifyEmail | Purpose::ChangeEmail => Duration::from_secs(24 * 3600),
            Purpose::ResetPassword => Duration::from_secs(3600),
        }
    }

    /// The page the link opens.
    fn path(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "/verify-email",
            Purpose::ResetPassword => "/reset-password",
            Purpose::ChangeEmail => "/confirm-email",
        }
    }
}

/// Links opened per client address per hour, per purpose. The tokens cannot
/// be guessed; this keeps anyone from trying at scale all the same.
const OPENS_PER_IP: Limit = Limit::new(30, 3600);

/// Counts one opening of a `purpose` link from `client_ip`.
pub async fn limit_opens(
    state: &AppState,
    client_ip: std::net::IpAddr,
    purpose: Purpose,
) -> Result<(), AppError> {
    let bucket = state.crypto.rate_bucket(
        &format!("link-open:{}:ip", purpose.as_str()),
        &rate_limit::ip_subject(client_ip),
    );
    rate_limit::hit(&state.db, &bucket, OPENS_PER_IP).await
}

/// Makes a link for `user` (the older one of the same purpose stops
/// working) and queues the mail `compose` writes around it, in the caller's
/// transaction, sealed with the user's key.
pub async fn issue(
    conn: &mut PgConnection,
    state: &AppState,
    user: Uuid,
    key: &DataKey,
    purpose: Purpose,
    compose: impl FnOnce(&str) -> Outgoing,
) -> Result<(), AppError> {
    issue_with(conn, state, user, key, purpose, None, compose).await
}

/// `issue`, keeping `new_email` (sealed) with the link until it is used.
pub async fn issue_with(
    conn: &mut PgConnection,
    state: &AppState,
    user: Uuid,
    key: &DataKey,
    purpose: Purpose,
    new_email: Option<&str>,
    compose: impl FnOnce(&str) -> Outgoing,
) -> Result<(), AppError> {
    let token = random_token();
    let id = Uuid::new_v4();
    let new_email = new_email.map(|e| key.seal_str(new_email_place(id, user), e));
    sqlx::query("DELETE FROM email_tokens WHERE user_id = $1 AND purpose = $2")
        .bind(user)
        .bind(purpose.as_str())
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO email_tokens (id, user_id, purpose, token_hash, expires_at, new_email)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5), $6)",
    )
    .bind(id)
    .bind(user)
    .bind(purpose.as_str())
    .bind(token_hash(&token))
    .bind(purpose.ttl().as_secs_f64())
    .bind(new_email)
    .execute(&mut *conn)
    .await?;
    let link = format!(
        "{}{}?token={token}",
        state.settings.public_url.trim_end_matches('/'),
        purpose.path()
    );
    jobs::enqueue(
        conn,
        NewJob::new(Kind::Mail)
            .for_owner(user, key, &compose(&link))
            .idempotency_key(format!("mail:{}:{id}", purpose.as_str())),
    )
    .await?;
    Ok(())
}

/// Uses a link's token, in the caller's transaction: its user, or (nothing
/// changed) `unknown` for a wrong or used token and `expired` for a late one,
/// as the `token` field's message.
pub async fn take(
    tx: &mut PgConnection,
    purpose: Purpose,
    token: &str,
    unknown: &str,
    expired: &str,
) -> Result<Uuid, AppError> {
    Ok(take_link(tx, purpose, token, unknown, expired).await?.user)
}

/// A used link: whose it is, and the new address it carried, if any.
pub struct Taken {
    pub id: Uuid,
    pub user: Uuid,
    pub new_email: Option<Sealed>,
}

/// `take`, with what the link carried.
pub async fn take_link(
    tx: &mut PgConnection,
    purpose: Purpose,
    token: &str,
    unknown: &str,
    expired: &str,
) -> Result<Taken, AppError> {
    let row: Option<(Uuid, Uuid, bool, Option<Sealed>)> = sqlx::query_as(
        "SELECT id, user_id, expires_at > now(), new_email FROM email_tokens
         WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL
         FOR UPDATE",
    )
    .bind(token_hash(token.trim()))
    .bind(purpose.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((id, user, live, new_email)) = row else {
        return Err(AppError::invalid("token", unknown));
    };
    if !live {
        return Err(AppError::invalid("token", expired));
    }
    sqlx::query("UPDATE email_tokens SET used_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    Ok(Taken {
        id,
        user,
        new_email,
    })
}

pub(crate) fn new_email_place(link: Uuid, user: Uuid) -> Place {
    Place::new("email_tokens", "new_email", link, user)
}

pub const SEALED: &[crate::platform::keystore::SealedColumn] =
    &[crate::platform::keystore::SealedColumn {
        table: "email_tokens",
        column: "new_email",
        id: "id",
        owner: "user_id",
    }];
