//! The platform administrator: the first account, or one named with
//! `server admin grant EMAIL`. The admin page (`/admin`) lists accounts
//! (address, name, dates, counts: never content), disables and enables them
//! (a disabled account's sessions, API keys, agent MCP tokens, schedules,
//! Telegram bots and live replies stop at once), schedules their deletion,
//! and shows usage totals and the job queue's health.
//!
//! `server` (ssr) the rules and queries, `api` the server functions,
//! `pages` the page. Anyone else meets "Not found." on all of it.

pub mod api;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod server;

use serde::{Deserialize, Serialize};

/// What a disabled account is told when it tries to sign in.
pub const DISABLED_SENTENCE: &str =
    "This account is disabled. Ask the person who runs this Enclave to enable it.";

/// An account as the administrator sees it: metadata and counts only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminUser {
    pub id: String,
    pub email: String,
    pub name: String,
    /// `YYYY-MM-DD`, UTC.
    pub created: String,
    /// The newest session's last request (`YYYY-MM-DD`), if one is live.
    pub last_seen: Option<String>,
    pub agents: i64,
    pub conversations: i64,
    pub is_admin: bool,
    pub disabled: bool,
    /// Deletion asked for (by the account or an administrator): erased
    /// after the grace period.
    pub deleting: bool,
    /// The administrator's own account (no actions: another administrator
    /// takes them).
    pub you: bool,
}

/// A team as the administrator sees it: its name and counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminTeam {
    pub id: String,
    pub name: String,
    /// `YYYY-MM-DD`, UTC.
    pub created: String,
    pub owners: i64,
    pub members: i64,
    pub agents: i64,
    pub invitations: i64,
}

/// How many jobs are in one state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCount {
    pub state: String,
    pub count: i64,
}

/// The platform at a glance: counts, never content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    pub users: i64,
    pub disabled: i64,
    pub agents: i64,
    pub conversations: i64,
    /// Messages in the last 30 days.
    pub messages_30d: i64,
    /// Tokens the providers reported in the last 30 days.
    pub input_tokens_30d: i64,
    pub output_tokens_30d: i64,
    pub live_api_keys: i64,
    /// Jobs by state (queued, running, done, dead).
    pub jobs: Vec<JobCount>,
    /// How long the oldest due job has waited, in seconds.
    pub oldest_due_secs: Option<i64>,
    /// Replies being written by this server now.
    pub live_replies: usize,
}
