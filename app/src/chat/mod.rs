//! Conversations with agents: messages stored sealed, replies streamed by
//! runs that belong to the server (closing the tab does not stop them).
//!
//! `api` holds the server functions, `server` (ssr) the queries and rules,
//! `runs` (ssr) the live runs and their subscribers.

pub mod api;
#[cfg(feature = "ssr")]
pub mod files;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod runs;
#[cfg(feature = "ssr")]
pub mod server;
pub mod sidebar;

use serde::{Deserialize, Serialize};

pub const MESSAGE_MAX_CHARS: usize = 32_000;
pub const TITLE_MAX_CHARS: usize = 80;
/// Messages per page when opening a conversation (older ones load on demand).
pub const PAGE: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    Streaming,
    Complete,
    Stopped,
    Interrupted,
    /// Paused: a tool set to "ask first" waits for the user's decision. A
    /// stored state, not a task in memory: it survives reloads and restarts.
    AwaitingApproval,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Streaming => "streaming",
            MessageStatus::Complete => "complete",
            MessageStatus::Stopped => "stopped",
            MessageStatus::Interrupted => "interrupted",
            MessageStatus::AwaitingApproval => "awaiting_approval",
        }
    }

    pub fn parse(value: &str) -> MessageStatus {
        match value {
            "streaming" => MessageStatus::Streaming,
            "complete" => MessageStatus::Complete,
            "stopped" => MessageStatus::Stopped,
            "awaiting_approval" => MessageStatus::AwaitingApproval,
            _ => MessageStatus::Interrupted,
        }
    }
}

/// The sentence for a reply's error code, where no sealed sentence was
/// written (a server that restarted writes only the code: it holds no key).
pub fn error_sentence(code: &str) -> &'static str {
    match code {
        "server_stopped" => "The server stopped while this reply was being written.",
        "run_failed" => "Something went wrong on our side while writing this reply.",
        _ => "This reply could not be finished.",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationSummary {
    pub id: String,
    pub title: String,
    /// When the retention job erases it unless a message comes first
    /// (`YYYY-MM-DD`, UTC).
    pub expires_on: String,
}

/// Every conversation of a user across agents, newest first, as the
/// sidebar and the "All chats" page show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatList {
    pub chats: Vec<ChatListItem>,
    /// The agents the user can chat with (for avatars and "New chat").
    pub agents: Vec<ChatListAgent>,
    /// More conversations matched than were sent.
    pub more: bool,
    /// The agent of the conversation used last, if any: "New chat" picks it.
    pub last_agent: Option<String>,
    /// The server's clock (Unix seconds) when it answered: the groups
    /// (Today, Yesterday, ...) render the same on the server and in the
    /// browser until the browser regroups them by its own time zone.
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatListItem {
    pub id: String,
    pub agent_id: String,
    pub title: String,
    /// When a message last came (Unix seconds).
    pub updated: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatListAgent {
    pub id: String,
    pub name: String,
    pub avatar: String,
}

/// How long ago a conversation was last used, as the sidebar groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Age {
    Today,
    Yesterday,
    PreviousWeek,
    Older,
}

impl Age {
    pub fn label(self) -> &'static str {
        match self {
            Age::Today => "Today",
            Age::Yesterday => "Yesterday",
            Age::PreviousWeek => "Previous 7 days",
            Age::Older => "Older",
        }
    }

    /// The group of a conversation last used at `updated`, seen at `now`
    /// (both Unix seconds) by someone `east` seconds east of UTC: by
    /// calendar days in their time zone, not by 24-hour spans.
    pub fn of(updated: i64, now: i64, east: i64) -> Age {
        let day = |t: i64| (t + east).div_euclid(86_400);
        match day(now) - day(updated) {
            i64::MIN..=0 => Age::Today,
            1 => Age::Yesterday,
            2..=7 => Age::PreviousWeek,
            _ => Age::Older,
        }
    }
}

/// Where a tool call stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolStatus {
    Running,
    Done,
    /// The tool answered with an error (the model was told).
    Failed,
    /// The reply was stopped (or the server restarted) during the call.
    Cancelled,
    /// Waiting for the user to approve it ("ask first").
    AwaitingApproval,
    /// Approved, and about to run.
    Approved,
    /// The user said no (the model was told).
    Denied,
}

impl ToolStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolStatus::Running => "running",
            ToolStatus::Done => "done",
            ToolStatus::Failed => "failed",
            ToolStatus::Cancelled => "cancelled",
            ToolStatus::AwaitingApproval => "awaiting_approval",
            ToolStatus::Approved => "approved",
            ToolStatus::Denied => "denied",
        }
    }
}

/// One call of a tool within a reply, as the user sees it. Never holds a
/// secret: connections are resolved inside the tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCallView {
    /// The model's id for the call.
    pub id: String,
    pub tool: String,
    /// The arguments, as JSON text.
    pub arguments: String,
    pub status: ToolStatus,
    /// What the tool answered (given to the model too).
    pub result: Option<String>,
    /// Why it failed, in plain words.
    pub error: Option<String>,
    pub duration_ms: Option<u64>,
}

/// A passage of the agent's knowledge the reply was given, cited as `[n]`.
/// Holds where it is, not its text: opening it reads the passage, so a
/// deleted document leaves no copy behind in the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Citation {
    pub n: u32,
    pub chunk_id: String,
    pub document: String,
    /// "page 3 · Installation" (may be empty).
    pub location: String,
}

/// A reply is a list of parts: the passages it was given (first, when the
/// agent has knowledge), what the model said (each planning step is a text
/// part) and the tools it called, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReplyPart {
    Text { text: String },
    ToolCall(ToolCallView),
    Sources { sources: Vec<Citation> },
}

impl ReplyPart {
    /// The text of a list of parts, joined (what the reply "says").
    pub fn text_of(parts: &[ReplyPart]) -> String {
        parts
            .iter()
            .filter_map(|p| match p {
                ReplyPart::Text { text } => Some(text.as_str()),
                ReplyPart::ToolCall(_) | ReplyPart::Sources { .. } => None,
            })
            .collect()
    }
}

/// A file attached to a message: its text went to the model with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileView {
    pub id: String,
    pub name: String,
    pub kind: crate::knowledge::DocKind,
    pub size_bytes: u64,
    /// Characters of text it gave.
    pub chars: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    pub id: String,
    /// "user" or "assistant".
    pub role: String,
    pub body: String,
    /// The reply's steps and tool calls, when it called any (else empty:
    /// the body is all there is).
    #[serde(default)]
    pub parts: Vec<ReplyPart>,
    /// The files a user message carries.
    #[serde(default)]
    pub files: Vec<FileView>,
    pub status: MessageStatus,
    pub error: Option<String>,
    pub model: Option<String>,
    pub input_tokens: Option<u32>,
    pub output_tokens: Option<u32>,
}

impl MessageView {
    /// A stored reply as a reader of its stream gets it: its whole text,
    /// then how it ended (still `streaming` when another server writes it).
    pub fn into_updates(self) -> [StreamUpdate; 2] {
        [
            StreamUpdate::Snapshot {
                text: self.body,
                parts: self.parts,
            },
            StreamUpdate::Done {
                status: self.status,
                error: self.error,
                input_tokens: self.input_tokens,
                output_tokens: self.output_tokens,
            },
        ]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationView {
    pub id: String,
    pub agent_id: String,
    pub title: String,
    /// When the retention job erases it unless a message comes first
    /// (`YYYY-MM-DD`, UTC).
    pub expires_on: String,
    /// The newest messages, oldest first.
    pub messages: Vec<MessageView>,
    /// Whether older messages exist before the first one here.
    pub has_more: bool,
}

/// What `send_message` started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub conversation_id: String,
    pub user_message_id: String,
    pub reply_id: String,
}

/// What a stream subscriber receives (also the SSE event payloads).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamUpdate {
    /// The whole reply so far: replaces what the client shows. `text` is
    /// its text alone; `parts` the steps and tool calls in order.
    Snapshot {
        text: String,
        #[serde(default)]
        parts: Vec<ReplyPart>,
    },
    /// More text: appended (to the last text part).
    Delta { text: String },
    /// A part was added or changed (a tool call started, finished, ...).
    Part { index: usize, part: ReplyPart },
    /// The reply is over.
    Done {
        status: MessageStatus,
        error: Option<String>,
        input_tokens: Option<u32>,
        output_tokens: Option<u32>,
    },
}

#[cfg(test)]
mod tests {
    use super::Age;

    #[test]
    fn conversations_are_grouped_by_calendar_day_in_the_readers_zone() {
        // 2026-12-02 10:00 UTC.
        let now = 1_796_205_600;
        let hour = 3_600;
        assert_eq!(Age::of(now - hour, now, 0), Age::Today);
        // 11 hours ago is yesterday evening in UTC ...
        assert_eq!(Age::of(now - 11 * hour, now, 0), Age::Yesterday);
        // ... but this morning for a reader at UTC+2 (12:00 there now).
        assert_eq!(Age::of(now - 11 * hour, now, 2 * hour), Age::Today);
        // At UTC-11 it is 23:00 on the 1st: 1 hour ago was still the 1st.
        assert_eq!(Age::of(now - hour, now, -11 * hour), Age::Today);
        assert_eq!(Age::of(now - 24 * hour, now, -11 * hour), Age::Yesterday);
        assert_eq!(Age::of(now - 2 * 86_400, now, 0), Age::PreviousWeek);
        assert_eq!(Age::of(now - 7 * 86_400, now, 0), Age::PreviousWeek);
        assert_eq!(Age::of(now - 8 * 86_400, now, 0), Age::Older);
        // A clock a little behind the server's is not "the future".
        assert_eq!(Age::of(now + 30, now, 0), Age::Today);
    }
}
