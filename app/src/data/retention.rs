//! Retention: what is past its time is erased by a job (`jobs::Kind::
//! Retention`). Every server enqueues one an hour under the same
//! idempotency key, so exactly one runs per hour however many servers
//! there are; each step works in batches (`FOR UPDATE SKIP LOCKED`) and
//! can stop anywhere, so a job that dies is simply run again.
//!
//! - Accounts deleted longer ago than the grace period (30 days): erased,
//!   data key first (`deletion::server::erase_due`).
//! - Conversations whose last message is older than the user's retention
//!   (the server's, 90 days by default, or the user's own shorter one).
//! - The activity log and tool call records older than 90 days.
//! - Exports 24 hours after they were ready.

use serde::{Deserialize, Serialize};

/// The conversation retention a user may choose, shortest first (only
/// those shorter than the server's are offered).
pub const USER_CHOICES: &[u32] = &[1, 7, 30, 60];

/// How long conversations are kept for the signed-in user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionView {
    /// The server's period, in days.
    pub server_days: u32,
    /// The user's own shorter period, if they chose one.
    pub own_days: Option<u32>,
    /// What the user may choose (each shorter than the server's).
    pub choices: Vec<u32>,
    /// How long a deleted account can still be restored.
    pub deletion_grace_days: u32,
}

impl RetentionView {
    /// The period in force.
    pub fn days(&self) -> u32 {
        self.own_days
            .map_or(self.server_days, |own| own.min(self.server_days))
    }
}

#[cfg(feature = "ssr")]
pub mod server {
    use chrono::Utc;
    use sqlx::PgPool;
    use uuid::Uuid;

    use super::{RetentionView, USER_CHOICES};
    use crate::{
        error::AppError,
        platform::{
            jobs::{self, Kind, NewJob},
            settings::Retention,
        },
        state::AppState,
    };

    /// Rows one statement deletes at most.
    const BATCH: i64 = 500;

    /// What one pass erased.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct Report {
        pub accounts: u64,
        pub conversations: u64,
        pub activity: u64,
        pub tool_calls: u64,
        pub exports: u64,
        pub unsent_files: u64,
        pub schedule_runs: u64,
        pub api_keys: u64,
        pub transient_conversations: u64,
        pub team_invitations: u64,
        pub usage_entries: u64,
        pub credit_holds: u64,
    }

    /// Enqueues this hour's retention job, unless a server did already.
    pub async fn schedule(state: &AppState) -> Result<(), AppError> {
        let hour = Utc::now().format("%Y-%m-%dT%H");
        let mut conn = state.db.acquire().await?;
        if jobs::enqueue(
            &mut conn,
            NewJob::new(Kind::Retention).idempotency_key(format!("retention:{hour}")),
        )
        .await?
        .is_some()
        {
            state.jobs.wake();
        }
        Ok(())
    }

    /// Runs every step to the end, batch by batch.
    pub async fn run(db: &PgPool, retention: &Retention) -> Result<Report, sqlx::Error> {
        let accounts = drain(|| {
            crate::data::deletion::server::erase_due(db, retention.deletion_grace_days, 100)
        })
        .await?;
        let conversations = drain(|| expire_conversations(db, retention.conversation_days)).await?;
        let activity =
            drain(|| crate::data::activity::server::purge(db, retention.activity_days, BATCH))
                .await?;
        let tool_calls =
            drain(|| crate::tools::activity::server::purge(db, retention.activity_days, BATCH))
                .await?;
        let exports = drain(|| crate::data::export::server::purge(db, BATCH)).await?;
        let unsent_files = drain(|| crate::chat::files::purge_unsent(db, BATCH)).await?;
        let schedule_runs =
            drain(|| crate::schedules::server::purge_runs(db, retention.conversation_days, BATCH))
                .await?;
        let api_keys =
            drain(|| crate::api_keys::server::purge(db, retention.activity_days, BATCH)).await?;
        let transient_conversations =
            drain(|| crate::chat::server::purge_transient(db, BATCH)).await?;
        let team_invitations = drain(|| crate::teams::server::purge_invitations(db, BATCH)).await?;
        let usage_entries =
            drain(|| crate::usage::server::purge(db, retention.conversation_days, BATCH)).await?;
        let credit_holds = crate::usage::server::release_orphan_holds(db).await?;
        Ok(Report {
            accounts,
            conversations,
            activity,
            tool_calls,
            exports,
            unsent_files,
            schedule_runs,
            api_keys,
            transient_conversations,
            team_invitations,
            usage_entries,
            credit_holds,
        })
    }

    /// Calls `step` until it deletes nothing; the total.
    async fn drain<F, Fut>(mut step: F) -> Result<u64, sqlx::Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<u64, sqlx::Error>>,
    {
        let mut total = 0;
        loop {
            let n = step().await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Deletes up to `BATCH` conversations whose last message is older than
    /// their owner's retention (the server's `days`, or the owner's own
    /// shorter choice). A conversation with a reply being written is left
    /// for the next pass.
    async fn expire_conversations(db: &PgPool, days: u32) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "DELETE FROM conversations WHERE id IN (
                 SELECT c.id FROM conversations c JOIN users u ON u.id = c.owner_id
                 WHERE c.updated_at < now() - make_interval(
                           days => least(coalesce(u.conversation_retention_days, $1), $1))
                   AND NOT EXISTS (SELECT 1 FROM messages m
                                   WHERE m.conversation_id = c.id AND m.status = 'streaming')
                 LIMIT $2 FOR UPDATE OF c SKIP LOCKED)",
        )
        .bind(days as i32)
        .bind(BATCH)
        .execute(db)
        .await?
        .rows_affected())
    }

    /// The user's conversation retention.
    pub async fn view(state: &AppState, owner: Uuid) -> Result<RetentionView, AppError> {
        let own: Option<i32> =
            sqlx::query_scalar("SELECT conversation_retention_days FROM users WHERE id = $1")
                .bind(owner)
                .fetch_one(&state.db)
                .await?;
        let server_days = state.settings.retention.conversation_days;
        Ok(RetentionView {
            server_days,
            own_days: own.and_then(|d| u32::try_from(d).ok()),
            choices: USER_CHOICES
                .iter()
                .copied()
                .filter(|d| *d < server_days)
                .collect(),
            deletion_grace_days: state.settings.retention.deletion_grace_days,
        })
    }

    /// Sets the user's own retention (`None`: the server's). Only the
    /// offered choices are accepted.
    pub async fn set(state: &AppState, owner: Uuid, days: Option<u32>) -> Result<(), AppError> {
        if let Some(days) = days
            && !(USER_CHOICES.contains(&days) && days < state.settings.retention.conversation_days)
        {
            return Err(AppError::invalid(
                "days",
                "Choose one of the periods offered.",
            ));
        }
        sqlx::query("UPDATE users SET conversation_retention_days = $2 WHERE id = $1")
            .bind(owner)
            .bind(days.map(|d| d as i32))
            .execute(&state.db)
            .await?;
        Ok(())
    }
}
