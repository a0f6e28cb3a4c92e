//! Two-factor authentication with TOTP (RFC 6238), server only.
//!
//! Enrolment: a fresh 160-bit secret, sealed with the user's key, shown as a
//! QR code drawn here (SVG) and as text; it counts once a first code
//! confirms it, which also makes ten single-use recovery codes (80 random
//! bits each, stored as SHA-256, shown once). A code is accepted only for a
//! time step newer than the last one accepted, in one atomic update, so no
//! code works twice. Turning it off needs a current code.
//!
//! Sign-in: a right password for an account with a factor opens a *pending*
//! session (same cookie; `resolve_session` ignores it), and the
//! second-factor page trades it, with a code, for a new real session.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore as _;
use sqlx::PgPool;
use totp_rs::{Algorithm, Builder, Secret, Totp};
use uuid::Uuid;

use super::{
    TotpSetup,
    server::{AuthSession, SessionToken, create_session_with, users_place},
};
use crate::{
    error::AppError,
    platform::{
        crypto::{DataKey, Place, Sealed, token_hash},
        keystore::{self, KeyUse, SealedColumn},
        rate_limit,
        request::ClientInfo,
        settings::Limit,
    },
    state::AppState,
};

pub const SEALED: &[SealedColumn] = &[SealedColumn {
    table: "totp_factors",
    column: "secret",
    id: "user_id",
    owner: "user_id",
}];

/// Codes tried per account per 15 minutes (sign-in, enrolment, turning off).
const ATTEMPTS: Limit = Limit::new(5, 900);
/// How long a pending session waits for its code.
pub const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
const RECOVERY_CODES: usize = 10;
const ISSUER: &str = "Enclave";

pub const WRONG_CODE: &str =
    "That code is not right. Check the time on your phone, or use a recovery code.";
const NOT_STARTED: &str = "Start again: the setup was not found, or was finished already.";

fn secret_place(user: Uuid) -> Place {
    Place::new("totp_factors", "secret", user, user)
}

fn totp(secret: Vec<u8>, account: &str) -> Result<Totp, AppError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_secret(Secret::from(secret))
        .with_issuer(Some(ISSUER))
        .with_account_name(account)
        .build()
        .map_err(|e| AppError::internal(format!("totp: {e}")))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn attempt(state: &AppState, user: Uuid) -> Result<(), AppError> {
    rate_limit::hit(&state.db, &format!("second-factor:user:{user}"), ATTEMPTS).await
}

/// Whether the account has a confirmed second factor, and how many unused
/// recovery codes are left.
pub async fn status(db: &PgPool, user: Uuid) -> Result<(bool, i64), AppError> {
    let on: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM totp_factors WHERE user_id = $1 AND confirmed_at IS NOT NULL)",
    )
    .bind(user)
    .fetch_one(db)
    .await?;
    let codes: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL",
    )
    .bind(user)
    .fetch_one(db)
    .await?;
    Ok((on, codes))
}

/// Starts (or restarts) enrolment: a new secret, not yet in force.
pub async fn start(state: &AppState, session: &AuthSession) -> Result<TotpSetup, AppError> {
    let user = session.user_id;
    if status(&state.db, user).await?.0 {
        return Err(AppError::invalid(
            "code",
            "Two-factor sign-in is on already. Turn it off first to set up a new app.",
        ));
    }
    let mut secret = vec![0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let sealed = session.key.seal(secret_place(user), &secret);
    let totp = totp(secret, &session.user.email)?;
    sqlx::query(
        "INSERT INTO totp_factors (user_id, secret) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE
           SET secret = EXCLUDED.secret, last_step = 0, created_at = now()
         WHERE totp_factors.confirmed_at IS NULL",
    )
    .bind(user)
    .bind(sealed)
    .execute(&state.db)
    .await?;
    let url = totp
        .to_url()
        .map_err(|e| AppError::internal(format!("totp url: {e}")))?;
    Ok(TotpSetup {
        secret: totp.secret().to_base32(),
        qr_svg: qr_svg(&url)?,
    })
}

/// The otpauth URL as a QR code, drawn here: no outside service sees it.
fn qr_svg(url: &str) -> Result<String, AppError> {
    use qrcode::{EcLevel, QrCode, render::svg};
    let code = QrCode::with_error_correction_level(url.as_bytes(), EcLevel::M)
        .map_err(|e| AppError::internal(format!("qr: {e}")))?;
    Ok(code
        .render::<svg::Color>()
        .min_dimensions(200, 200)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build())
}

/// The user's factor (its secret opened) and whether it is confirmed.
async fn load(db: &PgPool, user: Uuid, key: &DataKey) -> Result<Option<(Vec<u8>, bool)>, AppError> {
    let row: Option<(Sealed, bool)> = sqlx::query_as(
        "SELECT secret, confirmed_at IS NOT NULL FROM totp_factors WHERE user_id = $1",
    )
    .bind(user)
    .fetch_optional(db)
    .await?;
    row.map(|(sealed, confirmed)| {
        let secret = key
            .open(secret_place(user), &sealed)
            .map_err(|e| AppError::internal(format!("totp_factors.secret of {user}: {e}")))?;
        Ok((secret, confirmed))
    })
    .transpose()
}

/// Accepts `code` for the user's factor once: its step must be newer than
/// the last accepted one (checked and recorded in one statement).
async fn accept_code(
    db: &PgPool,
    user: Uuid,
    secret: Vec<u8>,
    account: &str,
    code: &str,
) -> Result<bool, AppError> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
        return Ok(false);
    }
    let Some(step) = totp(secret, account)?.check(&code, now_secs()) else {
        return Ok(false);
    };
    let step = i64::try_from(step).unwrap_or(i64::MAX);
    let taken =
        sqlx::query("UPDATE totp_factors SET last_step = $2 WHERE user_id = $1 AND last_step < $2")
            .bind(user)
            .bind(step)
            .execute(db)
            .await?;
    Ok(taken.rows_affected() == 1)
}

/// Confirms enrolment with a first code; returns the recovery codes, which
/// are shown this once.
pub async fn confirm(
    state: &AppState,
    session: &AuthSession,
    code: &str,
) -> Result<Vec<String>, AppError> {
    let user = session.user_id;
    attempt(state, user).await?;
    let Some((secret, false)) = load(&state.db, user, &session.key).await? else {
        return Err(AppError::invalid("code", NOT_STARTED));
    };
    if !accept_code(&state.db, user, secret, &session.user.email, code).await? {
        return Err(AppError::invalid("code", WRONG_CODE));
    }
    let mut tx = state.db.begin().await?;
    sqlx::query("UPDATE totp_factors SET confirmed_at = now() WHERE user_id = $1")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    let codes = replace_recovery_codes(&mut tx, user).await?;
    tx.commit().await?;
    rate_limit::reset(&state.db, &format!("second-factor:user:{user}")).await?;
    tracing::info!(user_id = %user, "two-factor sign-in turned on");
    Ok(codes)
}

async fn replace_recovery_codes(
    conn: &mut sqlx::PgConnection,
    user: Uuid,
) -> Result<Vec<String>, AppError> {
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user)
        .execute(&mut *conn)
        .await?;
    let mut codes = Vec::with_capacity(RECOVERY_CODES);
    for _ in 0..RECOVERY_CODES {
        let code = recovery_code();
        sqlx::query("INSERT INTO recovery_codes (id, user_id, code_hash) VALUES ($1, $2, $3)")
            .bind(Uuid::new_v4())
            .bind(user)
            .bind(token_hash(&code))
            .execute(&mut *conn)
            .await?;
        codes.push(code);
    }
    Ok(codes)
}

/// 80 random bits as four groups of four lowercase base32 letters:
/// "k3vq-7hxm-2pda-w9fn" (RFC 4648 alphabet, no 0/1/8/9 to misread).
fn recovery_code() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut bytes = [0u8; 10];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut bits: u128 = 0;
    for b in bytes {
        bits = (bits << 8) | u128::from(b);
    }
    let mut out = String::with_capacity(19);
    for i in 0..16 {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        let shift = 80 - 5 * (i + 1);
        out.push(ALPHABET[((bits >> shift) & 31) as usize] as char);
    }
    out
}

/// A recovery code as typed: case, spaces and dashes do not matter.
fn normalise_recovery(code: &str) -> Option<String> {
    let letters: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    (letters.len() == 16).then(|| {
        letters
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("-")
    })
}

/// Whether `code` is a current code of the signed-in user's authenticator
/// (false when two-factor sign-in is off). Counted like every code check.
pub async fn check(state: &AppState, session: &AuthSession, code: &str) -> Result<bool, AppError> {
    let user = session.user_id;
    attempt(state, user).await?;
    let Some((secret, true)) = load(&state.db, user, &session.key).await? else {
        return Ok(false);
    };
    accept_code(&state.db, user, secret, &session.user.email, code).await
}

/// Turns the factor off (a current code required); recovery codes go too.
pub async fn disable(state: &AppState, session: &AuthSession, code: &str) -> Result<(), AppError> {
    let user = session.user_id;
    attempt(state, user).await?;
    let Some((secret, true)) = load(&state.db, user, &session.key).await? else {
        return Err(AppError::invalid("code", "Two-factor sign-in is not on."));
    };
    if !accept_code(&state.db, user, secret, &session.user.email, code).await? {
        return Err(AppError::invalid("code", WRONG_CODE));
    }
    let mut tx = state.db.begin().await?;
    sqlx::query("DELETE FROM totp_factors WHERE user_id = $1")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(user_id = %user, "two-factor sign-in turned off");
    Ok(())
}

/// Whether signing in to `user` needs a second factor.
pub async fn required(db: &PgPool, user: Uuid) -> Result<bool, AppError> {
    Ok(status(db, user).await?.0)
}

/// The second step of signing in: the pending session's `token` and a TOTP
/// or recovery code. On success the pending session is replaced by a new,
/// real one (a new token: the pending one is never promoted).
pub async fn complete_sign_in(
    state: &AppState,
    token: &str,
    code: &str,
    client: &ClientInfo,
) -> Result<SessionToken, AppError> {
    let pending: Option<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT id, user_id FROM sessions
         WHERE token_hash = $1 AND second_factor_pending AND expires_at > now()",
    )
    .bind(token_hash(token))
    .fetch_optional(&state.db)
    .await?;
    let Some((pending_id, user)) = pending else {
        return Err(AppError::invalid(
            "code",
            "This sign-in has expired. Sign in again with your password.",
        ));
    };
    attempt(state, user).await?;
    let key = keystore::user_key(&state.db, &state.crypto.keyring, user, KeyUse::SignIn).await?;
    let accepted = if let Some(recovery) = normalise_recovery(code) {
        let used = sqlx::query(
            "UPDATE recovery_codes SET used_at = now()
             WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL",
        )
        .bind(user)
        .bind(token_hash(&recovery))
        .execute(&state.db)
        .await?;
        if used.rows_affected() == 1 {
            tracing::info!(user_id = %user, "signed in with a recovery code");
        }
        used.rows_affected() == 1
    } else {
        let email: Sealed = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
            .bind(user)
            .fetch_one(&state.db)
            .await?;
        let email = key.open_text(users_place("email", user), &email)?;
        match load(&state.db, user, &key).await? {
            Some((secret, true)) => accept_code(&state.db, user, secret, &email, code).await?,
            _ => false,
        }
    };
    if !accepted {
        tracing::info!(user_id = %user, "second factor refused");
        crate::data::activity::server::sign_in_failed(state, user, &key, client).await?;
        return Err(AppError::invalid("code", WRONG_CODE));
    }
    sqlx::query("DELETE FROM sessions WHERE id = $1")
        .bind(pending_id)
        .execute(&state.db)
        .await?;
    rate_limit::reset(&state.db, &format!("second-factor:user:{user}")).await?;
    tracing::info!(user_id = %user, "signed in with a second factor");
    create_session_with(state, user, &key, client, false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_codes_are_80_bits_in_four_groups_and_read_back_however_typed() {
        let a = recovery_code();
        let b = recovery_code();
        assert_ne!(a, b);
        assert_eq!(a.len(), 19, "{a}");
        assert_eq!(a.matches('-').count(), 3);
        assert_eq!(
            normalise_recovery(&a.to_uppercase().replace('-', " ")),
            Some(a.clone())
        );
        assert_eq!(normalise_recovery("123456"), None);
    }

    #[test]
    fn codes_match_rfc_6238_and_the_qr_is_an_svg() {
        // RFC 6238 appendix B, SHA-1, 8 digits there; 6 here are its tail.
        let t = totp(b"12345678901234567890".to_vec(), "ada@example.com").unwrap();
        assert_eq!(t.generate(59).to_string(), "287082");
        assert!(t.check("287082", 59).is_some());
        assert!(
            t.to_url()
                .unwrap()
                .starts_with("otpauth://totp/Enclave:ada%40example.com?")
        );
        let svg = qr_svg(&t.to_url().unwrap()).unwrap();
        assert!(svg.contains("<svg") && svg.contains("</svg>"));
    }
}
