//! What a signed-in user changes about their account (server only): their
//! name, and their password (which needs the current one and signs out
//! every other session).

use super::{
    domain::{Password, PersonName},
    server::{AuthSession, users_place},
};
use crate::{
    error::{AppError, FieldError},
    platform::{crypto::Sealed, rate_limit, settings::Limit},
    state::AppState,
};

/// Password changes tried per user per 15 minutes (each checks the
/// current password: a stolen session must not become a guessing oracle).
const PASSWORD_CHANGES: Limit = Limit::new(10, 900);

pub async fn rename(
    state: &AppState,
    session: &AuthSession,
    first_name: &str,
    last_name: &str,
) -> Result<(), AppError> {
    let first = PersonName::parse(first_name, "first name");
    let last = PersonName::parse(last_name, "last name");
    let (first, last) = match (first, last) {
        (Ok(first), Ok(last)) => (first, last),
        (first, last) => {
            let mut errors = Vec::new();
            if let Err(message) = first {
                errors.push(FieldError {
                    field: "first_name".into(),
                    message,
                });
            }
            if let Err(message) = last {
                errors.push(FieldError {
                    field: "last_name".into(),
                    message,
                });
            }
            return Err(AppError::Invalid(errors));
        }
    };
    let user = session.user_id;
    let seal = |column, value: &str| session.key.seal_str(users_place(column, user), value);
    sqlx::query("UPDATE users SET first_name = $2, last_name = $3 WHERE id = $1")
        .bind(user)
        .bind(seal("first_name", first.as_ref()))
        .bind(seal("last_name", last.as_ref()))
        .execute(&state.db)
        .await?;
    tracing::info!(user_id = %user, "name changed");
    Ok(())
}

/// Checks `current`, sets `new`, and ends every session but this one.
pub async fn change_password(
    state: &AppState,
    session: &AuthSession,
    current: &str,
    new: String,
) -> Result<u64, AppError> {
    let user = session.user_id;
    rate_limit::hit(
        &state.db,
        &format!("change-password:user:{user}"),
        PASSWORD_CHANGES,
    )
    .await?;
    let new = Password::parse(new).map_err(|message| AppError::invalid("new_password", message))?;
    let sealed: Sealed = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user)
        .fetch_one(&state.db)
        .await?;
    let stored = session
        .key
        .open_string(users_place("password_hash", user), &sealed)
        .map_err(|e| AppError::internal(format!("users.password_hash of {user}: {e}")))?;
    let long = current.chars().count() > super::domain::PASSWORD_MAX_CHARS;
    let matches = state
        .passwords
        .verify(current, (!long).then_some(stored))
        .await?;
    if !matches {
        return Err(AppError::invalid(
            "current_password",
            "That is not your current password.",
        ));
    }
    let hash = state.passwords.hash(new.expose_for_hashing()).await?;
    let mut tx = state.db.begin().await?;
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
        .bind(user)
        .bind(
            session
                .key
                .seal_str(users_place("password_hash", user), &hash),
        )
        .execute(&mut *tx)
        .await?;
    let ended = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
        .bind(user)
        .bind(session.session_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    tracing::info!(user_id = %user, sessions_ended = ended, "password changed");
    Ok(ended)
}
