//! Deleting an account. Asking (with the password, or a current
//! two-factor code for an account without one) marks the account deleted:
//! every session ends at once, and neither a session nor a token of the
//! account works from then on. Signing in again within the grace period
//! (30 days by default) restores it. After that, the retention job erases
//! it: the user's data key goes first (crypto-shredding: every sealed value
//! of theirs, in this database or any copy of it, can no longer be opened),
//! then every row (each table's `owner_id` / `user_id` cascades from
//! `users`).

#[cfg(feature = "ssr")]
pub mod server {
    use chrono::{DateTime, Utc};
    use sqlx::PgPool;
    use uuid::Uuid;

    use crate::{
        auth::server::AuthSession,
        data::activity::{self, Event},
        error::AppError,
        platform::{
            crypto::DataKey,
            jobs::{self, Kind, NewJob},
            mail::{Outgoing, escape_html},
            request::ClientInfo,
        },
        state::AppState,
    };

    /// Marks the signed-in user's account deleted, after checking the
    /// password (or, for an account without one, a two-factor code). Every
    /// session ends, this one included. Returns when it will be erased.
    pub async fn request(
        state: &AppState,
        session: &AuthSession,
        password: &str,
        code: &str,
    ) -> Result<DateTime<Utc>, AppError> {
        let user = session.user_id;
        if !password.is_empty() {
            crate::auth::account::check_current_password(state, session, password, "password")
                .await?;
        } else if !code.trim().is_empty() {
            if !crate::auth::two_factor::check(state, session, code).await? {
                return Err(AppError::invalid(
                    "code",
                    "That code is not right. Use the current code from your authenticator app.",
                ));
            }
        } else {
            return Err(AppError::invalid(
                "password",
                "Enter your password (or, if your account has none, a code from your authenticator app) to delete your account.",
            ));
        }
        let grace = i32::try_from(state.settings.retention.deletion_grace_days).unwrap_or(30);
        let mut tx = state.db.begin().await?;
        let erase_on: Option<DateTime<Utc>> = sqlx::query_scalar(
            "UPDATE users SET deleted_at = now() WHERE id = $1 AND deleted_at IS NULL
             RETURNING now() + make_interval(days => $2)",
        )
        .bind(user)
        .bind(grace)
        .fetch_optional(&mut *tx)
        .await?;
        let erase_on = erase_on.ok_or(AppError::NotFound)?;
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user)
            .execute(&mut *tx)
            .await?;
        let client = crate::platform::request::current_client();
        activity::server::record(
            &mut *tx,
            &state.crypto,
            user,
            &session.key,
            Event::DeletionRequested,
            client.as_ref(),
            None,
        )
        .await?;
        let mail = deletion_mail(
            state,
            &session.user.email,
            &session.user.first_name,
            erase_on,
        );
        jobs::enqueue(
            &mut tx,
            NewJob::new(Kind::Mail).for_owner(user, &session.key, &mail),
        )
        .await?;
        tx.commit().await?;
        state.jobs.wake();
        tracing::info!(user_id = %user, "account deletion asked for");
        Ok(erase_on)
    }

    /// Called when someone signs in to `user`: a deleted account in its
    /// grace period comes back (and its owner is told). Returns whether it
    /// did.
    pub async fn restore(
        state: &AppState,
        user: Uuid,
        key: &DataKey,
        client: &ClientInfo,
    ) -> Result<bool, AppError> {
        let restored = sqlx::query(
            "UPDATE users SET deleted_at = NULL WHERE id = $1 AND deleted_at IS NOT NULL",
        )
        .bind(user)
        .execute(&state.db)
        .await?
        .rows_affected()
            == 1;
        if restored {
            activity::server::record(
                &state.db,
                &state.crypto,
                user,
                key,
                Event::AccountRestored,
                Some(client),
                None,
            )
            .await?;
            let (email, first_name) = activity::server::contact(&state.db, user, key).await?;
            let mut conn = state.db.acquire().await?;
            jobs::enqueue(
                &mut conn,
                NewJob::new(Kind::Mail).for_owner(user, key, &restored_mail(&email, &first_name)),
            )
            .await?;
            state.jobs.wake();
            tracing::info!(user_id = %user, "deleted account restored by signing in");
        }
        Ok(restored)
    }

    /// Erases up to `batch` accounts whose grace period is over; returns
    /// how many. Two servers running it at once take different accounts.
    pub async fn erase_due(db: &PgPool, grace_days: u32, batch: i64) -> Result<u64, sqlx::Error> {
        let mut tx = db.begin().await?;
        let due: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM users
             WHERE deleted_at IS NOT NULL AND deleted_at < now() - make_interval(days => $1)
             LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(grace_days as i32)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        // Teams keep what they share; a team left with nobody goes.
        for user in &due {
            crate::teams::server::before_erasing(&mut tx, *user).await?;
        }
        sqlx::query("DELETE FROM user_keys WHERE user_id = ANY($1)")
            .bind(&due)
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query("DELETE FROM users WHERE id = ANY($1)")
            .bind(&due)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        for user in &due {
            tracing::info!(user_id = %user, "deleted account erased after its grace period");
        }
        Ok(gone)
    }

    fn deletion_mail(
        state: &AppState,
        email: &str,
        first_name: &str,
        erase_on: DateTime<Utc>,
    ) -> Outgoing {
        let base = state.settings.public_url.trim_end_matches('/');
        let sign_in = format!("{base}/sign-in");
        let date = erase_on.format("%Y-%m-%d");
        let text = format!(
            "Hello {first_name},\n\n\
             Your Enclave account was deleted, as you asked, and every session of it \
             was signed out.\n\n\
             Changed your mind? Sign in before {date} and your account comes back as it \
             was:\n\n{sign_in}\n\n\
             On {date} everything in it is erased for good: your agents, conversations, \
             keys and settings, and the key that encrypts them, so that no copy \
             anywhere, backups included, can be read again.\n"
        );
        let html = format!(
            "<p>Hello {name},</p>\
             <p>Your Enclave account was deleted, as you asked, and every session of it \
             was signed out.</p>\
             <p>Changed your mind? <a href=\"{href}\">Sign in</a> before {date} and your \
             account comes back as it was.</p>\
             <p>On {date} everything in it is erased for good: your agents, conversations, \
             keys and settings, and the key that encrypts them, so that no copy \
             anywhere, backups included, can be read again.</p>",
            name = escape_html(first_name),
            href = escape_html(&sign_in),
        );
        Outgoing {
            to: email.to_owned(),
            subject: "Your Enclave account was deleted".to_owned(),
            text,
            html,
        }
    }

    fn restored_mail(email: &str, first_name: &str) -> Outgoing {
        let text = format!(
            "Hello {first_name},\n\n\
             You signed in to your deleted Enclave account, so it was restored: it is \
             no longer going to be erased.\n\n\
             If that was not you, someone has your password: change it at once.\n"
        );
        let html = format!(
            "<p>Hello {name},</p>\
             <p>You signed in to your deleted Enclave account, so it was restored: it is \
             no longer going to be erased.</p>\
             <p>If that was not you, someone has your password: change it at once.</p>",
            name = escape_html(first_name),
        );
        Outgoing {
            to: email.to_owned(),
            subject: "Your Enclave account was restored".to_owned(),
            text,
            html,
        }
    }
}
