//! The administrator's queries (server only). Every function here is
//! behind `require_admin`, checked afresh on each call.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use super::{AdminUser, JobCount, Overview};
use crate::{
    auth::server::{AuthSession, users_place},
    data::activity::{Event, server::note_for},
    error::AppError,
    platform::{
        control,
        crypto::Sealed,
        keystore::{self, Crypto, KeyUse},
    },
    state::AppState,
};

/// Accounts the list reads before filtering (newest first).
const LIST_SCAN: i64 = 1000;
/// Accounts the list shows.
const LIST_SHOWN: usize = 100;

/// The signed-in user, if they are an administrator now (read afresh, so a
/// grant taken back counts at once); anyone else is told "Not found.".
pub async fn require_admin(state: &AppState, session: &AuthSession) -> Result<(), AppError> {
    let admin: Option<bool> = sqlx::query_scalar(
        "SELECT is_admin FROM users WHERE id = $1 AND disabled_at IS NULL AND deleted_at IS NULL",
    )
    .bind(session.user_id)
    .fetch_optional(&state.db)
    .await?;
    if admin == Some(true) {
        Ok(())
    } else {
        Err(AppError::NotFound)
    }
}

/// Makes `user` the administrator if theirs is the only account (called in
/// the transaction that creates an account; a lock makes two first
/// sign-ups at once agree on one).
pub async fn make_first_admin(tx: &mut PgConnection, user: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('enclave:first-admin'))")
        .execute(&mut *tx)
        .await?;
    let made = sqlx::query(
        "UPDATE users SET is_admin = true
         WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM users WHERE id <> $1)",
    )
    .bind(user)
    .execute(&mut *tx)
    .await?;
    if made.rows_affected() > 0 {
        tracing::info!(user_id = %user, "the first account is the administrator");
    }
    Ok(())
}

/// `server admin grant|revoke EMAIL`: makes the account with `email` an
/// administrator, or no longer one. False when no account has it.
pub async fn set_admin(
    db: &sqlx::PgPool,
    crypto: &Crypto,
    email: &str,
    admin: bool,
) -> Result<bool, sqlx::Error> {
    let index = crypto.email_index(&email.trim().to_lowercase());
    let done = sqlx::query("UPDATE users SET is_admin = $2 WHERE email_index = $1")
        .bind(&index)
        .bind(admin)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn overview(state: &AppState) -> Result<Overview, AppError> {
    #[allow(clippy::type_complexity)]
    let (users, disabled, agents, conversations, messages, input, output, keys): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM users),
                (SELECT count(*) FROM users WHERE disabled_at IS NOT NULL),
                (SELECT count(*) FROM agents),
                (SELECT count(*) FROM conversations WHERE NOT transient),
                (SELECT count(*) FROM messages WHERE created_at > now() - interval '30 days'),
                (SELECT coalesce(sum(input_tokens), 0)::int8 FROM messages
                   WHERE created_at > now() - interval '30 days'),
                (SELECT coalesce(sum(output_tokens), 0)::int8 FROM messages
                   WHERE created_at > now() - interval '30 days'),
                (SELECT count(*) FROM api_keys WHERE revoked_at IS NULL
                   AND (expires_at IS NULL OR expires_at > now()))",
    )
    .fetch_one(&state.db)
    .await?;
    let jobs: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, count(*) FROM jobs GROUP BY state ORDER BY state")
            .fetch_all(&state.db)
            .await?;
    let oldest: Option<f64> = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM now() - min(run_at))::float8 FROM jobs
         WHERE state = 'queued' AND run_at <= now()",
    )
    .fetch_one(&state.db)
    .await?;
    Ok(Overview {
        users,
        disabled,
        agents,
        conversations,
        messages_30d: messages,
        input_tokens_30d: input,
        output_tokens_30d: output,
        live_api_keys: keys,
        jobs: jobs
            .into_iter()
            .map(|(state, count)| JobCount { state, count })
            .collect(),
        oldest_due_secs: oldest.map(|s| s.max(0.0) as i64),
        live_replies: state.runs.live_count(),
    })
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: Sealed,
    first_name: Sealed,
    last_name: Sealed,
    created_at: DateTime<Utc>,
    last_seen: Option<DateTime<Utc>>,
    agents: i64,
    conversations: i64,
    is_admin: bool,
    disabled: bool,
    deleting: bool,
    kek_id: String,
    wrapped_key: Vec<u8>,
}

/// Who acts on an account: an administrator (signed in), or the operator
/// on the server's command line (`server users …`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Admin(Uuid),
    Operator,
}

impl Actor {
    fn admin_id(self) -> Option<Uuid> {
        match self {
            Actor::Admin(id) => Some(id),
            Actor::Operator => None,
        }
    }
}

impl From<&AuthSession> for Actor {
    fn from(session: &AuthSession) -> Self {
        Actor::Admin(session.user_id)
    }
}

/// The accounts whose address or name holds `query` (all when empty),
/// newest first: metadata and counts only.
pub async fn users(
    state: &AppState,
    admin: impl Into<Actor>,
    query: &str,
) -> Result<Vec<AdminUser>, AppError> {
    let admin: Actor = admin.into();
    let rows: Vec<UserRow> = sqlx::query_as(
        "SELECT u.id, u.email, u.first_name, u.last_name, u.created_at,
                (SELECT max(s.last_seen_at) FROM sessions s
                   WHERE s.user_id = u.id AND s.expires_at > now()) AS last_seen,
                (SELECT count(*) FROM agents a WHERE a.owner_id = u.id) AS agents,
                (SELECT count(*) FROM conversations c
                   WHERE c.owner_id = u.id AND NOT c.transient) AS conversations,
                u.is_admin, u.disabled_at IS NOT NULL AS disabled,
                u.deleted_at IS NOT NULL AS deleting, k.kek_id, k.wrapped_key
         FROM users u JOIN user_keys k ON k.user_id = u.id
         ORDER BY u.created_at DESC, u.id LIMIT $1",
    )
    .bind(LIST_SCAN)
    .fetch_all(&state.db)
    .await?;
    tracing::info!(admin_id = ?admin.admin_id(), accounts = rows.len(), key_use = KeyUse::Admin.as_str(), "administrator listed accounts");
    let wanted = query.trim().to_lowercase();
    let mut out = Vec::new();
    for row in rows {
        let key = keystore::open_user_key(
            &state.crypto.keyring,
            row.id,
            row.kek_id.clone(),
            row.wrapped_key.clone(),
        )?;
        let email = key.open_text(users_place("email", row.id), &row.email)?;
        let name = format!(
            "{} {}",
            key.open_text(users_place("first_name", row.id), &row.first_name)?,
            key.open_text(users_place("last_name", row.id), &row.last_name)?
        );
        if !wanted.is_empty()
            && !email.to_lowercase().contains(&wanted)
            && !name.to_lowercase().contains(&wanted)
        {
            continue;
        }
        out.push(AdminUser {
            id: row.id.to_string(),
            email,
            name,
            created: row.created_at.format("%Y-%m-%d").to_string(),
            last_seen: row.last_seen.map(|t| t.format("%Y-%m-%d").to_string()),
            agents: row.agents,
            conversations: row.conversations,
            is_admin: row.is_admin,
            disabled: row.disabled,
            deleting: row.deleting,
            you: admin.admin_id() == Some(row.id),
        });
        if out.len() == LIST_SHOWN {
            break;
        }
    }
    Ok(out)
}

/// Every team, newest first: its name (opened with the team's key, as an
/// account's name is) and counts, never what it shares.
pub async fn teams(
    state: &AppState,
    admin: &AuthSession,
) -> Result<Vec<super::AdminTeam>, AppError> {
    #[allow(clippy::type_complexity)]
    let rows: Vec<(
        Uuid,
        Sealed,
        DateTime<Utc>,
        i64,
        i64,
        i64,
        i64,
        String,
        Vec<u8>,
    )> = sqlx::query_as(
        "SELECT t.id, t.name, t.created_at,
                (SELECT count(*) FROM team_members m WHERE m.team_id = t.id AND m.role = 'owner'),
                (SELECT count(*) FROM team_members m WHERE m.team_id = t.id),
                (SELECT count(*) FROM agents a WHERE a.team_id = t.id),
                (SELECT count(*) FROM team_invitations i
                   WHERE i.team_id = t.id AND i.expires_at > now()),
                k.kek_id, k.wrapped_key
         FROM teams t JOIN team_keys k ON k.team_id = t.id
         ORDER BY t.created_at DESC, t.id LIMIT $1",
    )
    .bind(LIST_SCAN)
    .fetch_all(&state.db)
    .await?;
    tracing::info!(admin_id = %admin.user_id, teams = rows.len(), key_use = KeyUse::Admin.as_str(), "administrator listed teams");
    rows.into_iter()
        .map(
            |(id, name, created, owners, members, agents, invitations, kek_id, wrapped)| {
                let key = keystore::open_team_key(&state.crypto.keyring, id, kek_id, wrapped)?;
                Ok(super::AdminTeam {
                    id: id.to_string(),
                    name: key.open_text(
                        crate::platform::crypto::Place::new("teams", "name", id, id),
                        &name,
                    )?,
                    created: created.format("%Y-%m-%d").to_string(),
                    owners,
                    members,
                    agents,
                    invitations,
                })
            },
        )
        .collect()
}

fn not_yourself(admin: Actor, user: Uuid) -> Result<(), AppError> {
    if admin.admin_id() == Some(user) {
        return Err(AppError::invalid(
            "user",
            "That is your own account: another administrator can do this.",
        ));
    }
    Ok(())
}

/// Ends everything the account has running here and now: its sessions and
/// the replies being written. (Its API keys, agent MCP tokens, schedules
/// and Telegram bots check the account on each use.)
async fn cut_off(state: &AppState, user: Uuid) -> Result<(), AppError> {
    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user)
        .execute(&state.db)
        .await?;
    let stopped = state.runs.stop_owner(user);
    // And on every other server (the operator's command line runs none).
    if let Err(err) = control::send(&state.db, control::Signal::StopOwner(user)).await {
        tracing::warn!(error = %err, "could not tell the other servers to stop the account's replies");
    }
    tracing::info!(user_id = %user, replies_stopped = stopped, "account cut off");
    Ok(())
}

/// Writes `event` to the account's own activity (what happened to it).
async fn tell(state: &AppState, user: Uuid, event: Event) {
    match keystore::user_key(&state.db, &state.crypto.keyring, user, KeyUse::Admin).await {
        Ok(key) => note_for(state, user, &key, event, None, None).await,
        Err(err) => {
            tracing::warn!(user_id = %user, error = %err, "could not write an administrator's action");
        }
    }
}

/// Disables (`true`) or enables the account `user`.
pub async fn set_disabled(
    state: &AppState,
    admin: impl Into<Actor>,
    user: Uuid,
    disabled: bool,
) -> Result<(), AppError> {
    let admin: Actor = admin.into();
    not_yourself(admin, user)?;
    let found: Option<Uuid> = sqlx::query_scalar(
        "UPDATE users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END
         WHERE id = $1 RETURNING id",
    )
    .bind(user)
    .bind(disabled)
    .fetch_optional(&state.db)
    .await?;
    found.ok_or(AppError::NotFound)?;
    tracing::info!(admin_id = ?admin.admin_id(), user_id = %user, disabled, "account access changed by an administrator");
    if disabled {
        cut_off(state, user).await?;
        tell(state, user, Event::AccountDisabled).await;
    } else {
        tell(state, user, Event::AccountEnabled).await;
    }
    Ok(())
}

/// Deletes the account `user`: disabled at once, erased with everything
/// it holds after the deletion grace period (as when its owner asks).
pub async fn delete_user(
    state: &AppState,
    admin: impl Into<Actor>,
    user: Uuid,
) -> Result<(), AppError> {
    let admin: Actor = admin.into();
    not_yourself(admin, user)?;
    let found: Option<Uuid> = sqlx::query_scalar(
        "UPDATE users SET deleted_at = coalesce(deleted_at, now()),
                          disabled_at = coalesce(disabled_at, now())
         WHERE id = $1 RETURNING id",
    )
    .bind(user)
    .fetch_optional(&state.db)
    .await?;
    found.ok_or(AppError::NotFound)?;
    tracing::info!(admin_id = ?admin.admin_id(), user_id = %user, "account deletion asked for by an administrator");
    cut_off(state, user).await?;
    tell(state, user, Event::DeletionRequested).await;
    Ok(())
}
