//! Schedules: an agent runs on its own, at the times a cron expression
//! names in the user's time zone, with a prompt; each run is recorded.
//!
//! `plan` (ssr) reads expressions and finds times, `server` (ssr) stores
//! schedules sealed, fires due ones exactly once across servers and runs
//! them as jobs, `api` holds the server functions, `pages` the UI.

pub mod api;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod plan;
#[cfg(feature = "ssr")]
pub mod server;

use serde::{Deserialize, Serialize};

/// Schedules one agent may have.
pub const MAX_PER_AGENT: usize = 100;
pub const NAME_MAX_CHARS: usize = 80;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Due, and waiting for a worker.
    Queued,
    /// The agent is answering.
    Running,
    Complete,
    /// The reply waits for the owner to approve a tool call.
    Waiting,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Complete => "complete",
            RunStatus::Waiting => "waiting",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> RunStatus {
        match value {
            "running" => RunStatus::Running,
            "complete" => RunStatus::Complete,
            "waiting" => RunStatus::Waiting,
            "failed" => RunStatus::Failed,
            _ => RunStatus::Queued,
        }
    }

    /// What the run history says.
    pub fn label(self) -> &'static str {
        match self {
            RunStatus::Queued => "Queued",
            RunStatus::Running => "Running",
            RunStatus::Complete => "Done",
            RunStatus::Waiting => "Waiting for your approval",
            RunStatus::Failed => "Failed",
        }
    }
}

/// A schedule as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleView {
    pub id: String,
    pub agent_id: String,
    pub name: String,
    pub cron: String,
    pub time_zone: String,
    pub prompt: String,
    pub continue_conversation: bool,
    pub deliver_mail: bool,
    /// Send each reply to the agent's Telegram chats.
    #[serde(default)]
    pub deliver_telegram: bool,
    pub enabled: bool,
    /// The expression in words, with its zone.
    pub description: String,
    /// The next five times, on the schedule's wall clock (none while off).
    pub next_runs: Vec<String>,
    /// The conversation it continues, once it has one.
    pub conversation_id: Option<String>,
}

/// One run of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunView {
    pub id: String,
    /// When it was due, on the schedule's wall clock.
    pub due: String,
    pub manual: bool,
    pub status: RunStatus,
    pub duration_ms: Option<u64>,
    pub input_tokens: Option<u32>,
    pub output_tokens: Option<u32>,
    pub conversation_id: Option<String>,
    pub error: Option<String>,
}

/// A schedule's page: it, its agent's name, and its runs (newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchedulePage {
    pub schedule: ScheduleView,
    pub agent_name: String,
    pub runs: Vec<RunView>,
}

/// What an expression means, before it is saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    pub description: String,
    pub next_runs: Vec<String>,
}
