//! A Telegram bot per agent: people write to the bot and the agent
//! answers, each Telegram chat a conversation of the agent. Only people the
//! owner lets in are answered (an allowlist of Telegram user ids, joined
//! with a `/start CODE` the owner shares); strangers get a polite refusal.
//!
//! `botapi` (ssr) the Bot API calls, `format` (ssr) Markdown to Telegram's
//! MarkdownV2 and the 4,096-character cut, `server` (ssr) channels, the
//! webhook, long polling under a lease, and the job that answers an update;
//! `api` the server functions, `pages` the agent's Telegram card.

pub mod api;
#[cfg(feature = "ssr")]
pub mod botapi;
#[cfg(feature = "ssr")]
pub mod format;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod server;

use serde::{Deserialize, Serialize};

/// An agent's bot as its owner sees it (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelView {
    pub bot_username: String,
    /// Telegram posts updates here (true) or a server asks for them.
    pub webhook: bool,
    /// Telegram user ids who may write.
    pub allowed_users: Vec<i64>,
    /// What a person sends the bot to be let in: `/start CODE`.
    pub start_code: String,
}
