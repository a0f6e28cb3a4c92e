//! Tools: what an agent can do besides talking. A run offers the model the
//! agent's enabled tools, runs the calls it asks for (independent calls in
//! parallel), gives the results back, and goes on, up to the agent's step
//! limit (the loop is in `chat::runs`).
//!
//! This file is shared by browser and server: which tools exist (for the
//! agent form) and an agent's tool settings. `server` (ssr) holds the one
//! tool interface every source implements (built-in tools now, the user's
//! MCP servers later) and the built-in tools themselves.

pub mod activity;
#[cfg(feature = "ssr")]
pub mod builtin;
#[cfg(feature = "ssr")]
pub mod email;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
pub mod services;

use serde::{Deserialize, Serialize};

/// Steps (model calls) a run may take when the agent does not say.
pub const DEFAULT_STEP_LIMIT: u32 = 8;
/// The most steps an agent may allow.
pub const MAX_STEP_LIMIT: u32 = 50;

/// A built-in tool, as the agent form lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolInfo {
    pub name: &'static str,
    pub label: &'static str,
    pub description: &'static str,
    /// It changes something outside Enclave (sends, posts, creates): such a
    /// tool can be set to "ask first".
    pub side_effects: bool,
}

/// Every built-in tool.
pub const BUILTIN: &[ToolInfo] = &[
    ToolInfo {
        name: "current_time",
        label: "Current time",
        description: "The current date and time, in UTC or a given time zone offset.",
        side_effects: false,
    },
    ToolInfo {
        name: "calculator",
        label: "Calculator",
        description: "Works out an arithmetic expression exactly.",
        side_effects: false,
    },
    ToolInfo {
        name: "http_request",
        label: "Web request",
        description: "Fetches a web page or API (GET, or POST with a body) and returns its text. \
                      Private and local addresses are refused.",
        side_effects: false,
    },
    ToolInfo {
        name: "github_read",
        label: "GitHub: read",
        description: "Searches issues and pull requests, reads one, or reads a file (your GitHub connection).",
        side_effects: false,
    },
    ToolInfo {
        name: "github_write",
        label: "GitHub: write",
        description: "Creates an issue or comments on one (your GitHub connection).",
        side_effects: true,
    },
    ToolInfo {
        name: "slack_read",
        label: "Slack: read",
        description: "Lists channels and reads a channel's recent messages (your Slack connection).",
        side_effects: false,
    },
    ToolInfo {
        name: "slack_post",
        label: "Slack: post",
        description: "Posts a message to a channel (your Slack connection).",
        side_effects: true,
    },
    ToolInfo {
        name: "send_email",
        label: "Email: send",
        description: "Sends an email from your own account (your email connection).",
        side_effects: true,
    },
    ToolInfo {
        name: "telegram_send",
        label: "Telegram: send",
        description: "Sends a message to a chat with your bot (your Telegram connection).",
        side_effects: true,
    },
];

/// The built-in tool called `name`.
pub fn builtin(name: &str) -> Option<&'static ToolInfo> {
    BUILTIN.iter().find(|t| t.name == name)
}

/// An agent's tool settings. Stored sealed with the agent; exported without
/// connection ids (they belong to one account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolConfig {
    /// The tools the model is offered.
    #[serde(default)]
    pub enabled: Vec<String>,
    /// Of those, the ones that wait for the user's approval before each call.
    #[serde(default)]
    pub ask_first: Vec<String>,
    /// How many model calls one reply may take.
    #[serde(default = "default_step_limit")]
    pub step_limit: u32,
    /// When not empty, the only hosts the web request tool may reach.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The connection each kind of service uses (kind → connection id);
    /// without one, the user's newest connection of that kind. Not
    /// exported: ids belong to one account.
    #[serde(default)]
    pub connections: std::collections::BTreeMap<String, String>,
}

fn default_step_limit() -> u32 {
    DEFAULT_STEP_LIMIT
}

impl Default for ToolConfig {
    fn default() -> Self {
        ToolConfig {
            enabled: Vec::new(),
            ask_first: Vec::new(),
            step_limit: DEFAULT_STEP_LIMIT,
            allowed_hosts: Vec::new(),
            connections: Default::default(),
        }
    }
}

impl ToolConfig {
    /// What a new agent starts with: the tools that need no connection.
    pub fn starter() -> Self {
        ToolConfig {
            enabled: vec!["current_time".into(), "calculator".into()],
            ..ToolConfig::default()
        }
    }

    /// Checks the names and the limit; `Err` says what is wrong.
    pub fn check(&self) -> Result<(), String> {
        if let Some(unknown) = self
            .enabled
            .iter()
            .chain(&self.ask_first)
            .find(|name| builtin(name).is_none() && crate::mcp::parse_tool_key(name).is_none())
        {
            return Err(format!("There is no tool called “{unknown}”."));
        }
        if let Some(bad) = self
            .allowed_hosts
            .iter()
            .find(|h| h.is_empty() || h.len() > 253 || h.contains(['/', ':', '@', ' ']))
        {
            return Err(format!(
                "“{bad}” is not a host name (like api.example.com, without https://)."
            ));
        }
        if self.enabled.len() > 200 {
            return Err("At most 200 tools per agent.".into());
        }
        if self.allowed_hosts.len() > 50 {
            return Err("At most 50 allowed hosts.".into());
        }
        if self
            .connections
            .keys()
            .any(|kind| crate::connections::ConnectionKind::parse(kind).is_none())
        {
            return Err("A connection is chosen for a service that does not exist.".into());
        }
        if !(1..=MAX_STEP_LIMIT).contains(&self.step_limit) {
            return Err(format!(
                "The step limit is a whole number from 1 to {MAX_STEP_LIMIT}."
            ));
        }
        Ok(())
    }

    /// The settings without what belongs to one account (connection ids,
    /// the tools of the user's MCP servers): what an export carries.
    pub fn portable(&self) -> ToolConfig {
        let mine = |name: &String| crate::mcp::parse_tool_key(name).is_none();
        ToolConfig {
            enabled: self.enabled.iter().filter(|n| mine(n)).cloned().collect(),
            ask_first: self.ask_first.iter().filter(|n| mine(n)).cloned().collect(),
            connections: Default::default(),
            ..self.clone()
        }
    }

    /// The MCP servers the enabled tools come from.
    #[cfg(feature = "ssr")]
    pub fn mcp_servers(&self) -> Vec<uuid::Uuid> {
        let mut ids: Vec<uuid::Uuid> = self
            .enabled
            .iter()
            .chain(&self.ask_first)
            .filter_map(|name| crate::mcp::parse_tool_key(name))
            .filter_map(|(id, _)| uuid::Uuid::parse_str(id).ok())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    pub fn is_enabled(&self, name: &str) -> bool {
        self.enabled.iter().any(|t| t == name)
    }

    pub fn asks_first(&self, name: &str) -> bool {
        self.ask_first.iter().any(|t| t == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_settings_name_real_tools_and_a_sane_limit() {
        assert!(ToolConfig::starter().check().is_ok());
        let unknown = ToolConfig {
            enabled: vec!["rm_rf".into()],
            ..ToolConfig::default()
        };
        assert!(unknown.check().unwrap_err().contains("rm_rf"));
        let zero = ToolConfig {
            step_limit: 0,
            ..ToolConfig::default()
        };
        assert!(zero.check().is_err());
        // A stored config without a limit reads as the default.
        let read: ToolConfig = serde_json::from_str(r#"{"enabled":["calculator"]}"#).unwrap();
        assert_eq!(read.step_limit, DEFAULT_STEP_LIMIT);
    }
}
