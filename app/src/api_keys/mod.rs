//! Personal API keys: a program acts as its owner with one, within the
//! scopes the owner chose, until it expires or is revoked. The key is shown
//! once and stored as its SHA-256; its name is sealed.
//!
//! `server` (ssr) creates, lists, revokes and checks keys, `api` the server
//! functions, `pages` Settings → API keys.

pub mod api;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod server;

use serde::{Deserialize, Serialize};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// List and read agents (and `GET /v1/models`).
    AgentsRead,
    /// Create, change and delete agents (`/api/v1/agents`).
    AgentsWrite,
    /// Chat with agents (`POST /v1/chat/completions`).
    Chat,
    /// List and search knowledge bases (`/api/v1/knowledge`).
    Knowledge,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::AgentsRead,
        Scope::AgentsWrite,
        Scope::Chat,
        Scope::Knowledge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::AgentsRead => "agents:read",
            Scope::AgentsWrite => "agents:write",
            Scope::Chat => "chat",
            Scope::Knowledge => "knowledge",
        }
    }

    pub fn parse(value: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// What it allows, for the form.
    pub fn label(self) -> &'static str {
        match self {
            Scope::AgentsRead => "List and read your agents",
            Scope::AgentsWrite => "Create, change and delete your agents",
            Scope::Chat => "Chat with your agents and read their conversations",
            Scope::Knowledge => "List and search your knowledge bases",
        }
    }
}

/// A key as its owner sees it (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    /// "enc_AbCd…": the key's first characters.
    pub prefix: String,
    pub scopes: Vec<String>,
    /// `YYYY-MM-DD`, UTC.
    pub created: String,
    pub expires: Option<String>,
    pub last_used: Option<String>,
    /// Revoked or past its expiry.
    pub active: bool,
}

/// A key just made: the only time its secret is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedKey {
    pub key: ApiKeyView,
    pub secret: String,
    /// Where programs use it: this server's `/v1`.
    pub api_base: String,
}

/// What a plain (no JavaScript) post of the new-key form comes back with:
/// the key just made, shown this once, or the reason it was refused with
/// what was chosen. The server renders the page with it (`POST
/// /settings/api-keys`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyEcho {
    pub created: Option<CreatedKey>,
    pub name: String,
    pub scopes: Vec<String>,
    pub expires: String,
    pub error: Option<crate::error::AppError>,
}
