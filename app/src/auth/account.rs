//! What a signed-in user changes about their account (server only): their
//! name, their password (which needs the current one and signs out every
//! other session), and their email address (the current password, then a
//! link to the new address; the old one is told when it is done).

use super::{
    domain::{Email, Password, PersonName},
    links::{self, Purpose},
    server::{AuthSession, users_place},
};
use crate::{
    error::{AppError, FieldError},
    platform::{
        crypto::Sealed,
        jobs::{self, Kind, NewJob},
        mail::{Outgoing, escape_html},
        rate_limit,
        settings::Limit,
    },
    state::AppState,
};

/// Changes that check the current password, per user per 15 minutes (a
/// stolen session must not become a guessing oracle).
const PASSWORD_CHECKS: Limit = Limit::new(10, 900);

/// Checks the signed-in user's current password (counted against
/// `PASSWORD_CHECKS`); a wrong one is a message on `field`.
pub(crate) async fn check_current_password(
    state: &AppState,
    session: &AuthSession,
    current: &str,
    field: &str,
) -> Result<(), AppError> {
    let user = session.user_id;
    rate_limit::hit(
        &state.db,
        &format!("change-password:user:{user}"),
        PASSWORD_CHECKS,
    )
    .await?;
    let sealed: Option<Sealed> =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
            .bind(user)
            .fetch_one(&state.db)
            .await?;
    let Some(stored) = session
        .key
        .open_optional(users_place("password_hash", user), sealed.as_ref())?
    else {
        return Err(AppError::invalid(
            field,
            "Your account has no password yet: choose one with \"Forgot your password?\" on the sign-in page.",
        ));
    };
    let long = current.chars().count() > super::domain::PASSWORD_MAX_CHARS;
    let matches = state
        .passwords
        .verify(current, (!long).then_some(stored))
        .await?;
    if matches {
        Ok(())
    } else {
        Err(AppError::invalid(
            field,
            "That is not your current password.",
        ))
    }
}

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
    let new = Password::parse(new).map_err(|message| AppError::invalid("new_password", message))?;
    check_current_password(state, session, current, "current_password").await?;
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

pub const EMAIL_LINK_UNKNOWN: &str =
    "This link is not valid or was used already. Ask for a new one in Settings.";
pub const EMAIL_LINK_EXPIRED: &str = "This link has expired. Ask for a new one in Settings.";

/// Asks to move the account to `new_email`: checks the current password,
/// then mails a link to the new address. Whether the address already has
/// an account is not told (no link is sent to it then): the answer is the
/// same, so this is no way to find out who is registered.
pub async fn change_email(
    state: &AppState,
    session: &AuthSession,
    new_email: &str,
    password: &str,
) -> Result<(), AppError> {
    let user = session.user_id;
    let new = Email::parse(new_email).map_err(|message| AppError::invalid("new_email", message))?;
    if new.as_ref() == session.user.email {
        return Err(AppError::invalid(
            "new_email",
            "That is your address already.",
        ));
    }
    check_current_password(state, session, password, "password").await?;
    let taken: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE email_index = $1)")
            .bind(state.crypto.email_index(new.as_ref()))
            .fetch_one(&state.db)
            .await?;
    if taken {
        tracing::info!(user_id = %user, "email change asked for a registered address: no link sent");
        return Ok(());
    }
    let mut tx = state.db.begin().await?;
    let first_name = &session.user.first_name;
    links::issue_with(
        &mut tx,
        state,
        user,
        &session.key,
        Purpose::ChangeEmail,
        Some(new.as_ref()),
        |link| change_link_mail(new.as_ref(), first_name, link),
    )
    .await?;
    tx.commit().await?;
    state.jobs.wake();
    tracing::info!(user_id = %user, "email change link queued");
    Ok(())
}

fn change_link_mail(to: &str, first_name: &str, link: &str) -> Outgoing {
    let text = format!(
        "Hello {first_name},\n\n\
         To make this the email address of your Enclave account, open this link within \
         24 hours:\n\n{link}\n\n\
         If you did not ask for this, ignore this mail: nothing changes.\n"
    );
    let html = format!(
        "<p>Hello {name},</p>\
         <p>To make this the email address of your Enclave account, open this link within \
         24 hours:</p>\
         <p><a href=\"{href}\">Use this address</a></p>\
         <p>If you did not ask for this, ignore this mail: nothing changes.</p>",
        name = escape_html(first_name),
        href = escape_html(link),
    );
    Outgoing {
        to: to.to_owned(),
        subject: "Confirm your new email address for Enclave".to_owned(),
        text,
        html,
    }
}

/// Opens a change link: the account takes the new address (confirmed, as
/// the link proved the mailbox), and the old address is told.
pub async fn confirm_email_change(
    state: &AppState,
    client_ip: std::net::IpAddr,
    token: &str,
) -> Result<(), AppError> {
    links::limit_opens(state, client_ip, Purpose::ChangeEmail).await?;
    let mut tx = state.db.begin().await?;
    let taken = links::take_link(
        &mut tx,
        Purpose::ChangeEmail,
        token,
        EMAIL_LINK_UNKNOWN,
        EMAIL_LINK_EXPIRED,
    )
    .await?;
    let user = taken.user;
    let key = crate::platform::keystore::user_key(
        &state.db,
        &state.crypto.keyring,
        user,
        crate::platform::keystore::KeyUse::AccountRecovery,
    )
    .await?;
    let Some(sealed_new) = taken.new_email else {
        return Err(AppError::invalid("token", EMAIL_LINK_UNKNOWN));
    };
    let new = key.open_text(links::new_email_place(taken.id, user), &sealed_new)?;
    let (old, first_name): (Sealed, Sealed) =
        sqlx::query_as("SELECT email, first_name FROM users WHERE id = $1")
            .bind(user)
            .fetch_one(&mut *tx)
            .await?;
    let old = key.open_text(users_place("email", user), &old)?;
    let first_name = key.open_text(users_place("first_name", user), &first_name)?;
    let moved = sqlx::query(
        "UPDATE users SET email = $2, email_index = $3, email_verified_at = now()
         WHERE id = $1
           AND NOT EXISTS (SELECT 1 FROM users WHERE email_index = $3)",
    )
    .bind(user)
    .bind(key.seal_str(users_place("email", user), &new))
    .bind(state.crypto.email_index(&new))
    .execute(&mut *tx)
    .await;
    let moved = match moved {
        Ok(done) => done.rows_affected() == 1,
        // Another account took the address meanwhile (unique index).
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => false,
        Err(e) => return Err(e.into()),
    };
    if !moved {
        return Err(AppError::invalid(
            "token",
            "That address has an account of its own now, so it cannot be yours too.",
        ));
    }
    jobs::enqueue(
        &mut tx,
        NewJob::new(Kind::Mail).for_owner(user, &key, &changed_mail(&old, &new, &first_name)),
    )
    .await?;
    tx.commit().await?;
    state.jobs.wake();
    tracing::info!(user_id = %user, "email address changed");
    crate::data::activity::server::note_for(
        state,
        user,
        &key,
        crate::data::activity::Event::EmailChanged,
        crate::platform::request::current_client().as_ref(),
        None,
    )
    .await;
    Ok(())
}

/// To the old address: the account moved, and what to do if that was not you.
fn changed_mail(old: &str, new: &str, first_name: &str) -> Outgoing {
    let text = format!(
        "Hello {first_name},\n\n\
         The email address of your Enclave account was changed from {old} to {new}.\n\n\
         If you did not do this, someone may have your password: tell the \
         administrator of your Enclave server at once.\n"
    );
    let html = format!(
        "<p>Hello {name},</p>\
         <p>The email address of your Enclave account was changed from {old_h} to {new_h}.</p>\
         <p>If you did not do this, someone may have your password: tell the \
         administrator of your Enclave server at once.</p>",
        name = escape_html(first_name),
        old_h = escape_html(old),
        new_h = escape_html(new),
    );
    Outgoing {
        to: old.to_owned(),
        subject: "The email address of your Enclave account was changed".to_owned(),
        text,
        html,
    }
}
