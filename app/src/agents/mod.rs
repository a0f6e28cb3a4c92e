//! Agents: a model with its own instructions and settings.
//!
//! `domain` validates configuration and defines the export format, `api`
//! holds the server functions, `server` (ssr) the rules and queries, `pages`
//! the UI. Which API key an agent uses is `provider_keys`' business.

pub mod api;
pub mod domain;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod server;

use serde::{Deserialize, Serialize};

use self::domain::{AgentSpec, Provider};
use crate::provider_keys::KeySource;

/// One agent in the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSummary {
    pub id: String,
    pub name: String,
    pub description: String,
    pub provider: Provider,
    pub model: String,
    pub avatar: String,
}

/// One agent, in full (never with a key's secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentDetail {
    pub id: String,
    pub spec: AgentSpec,
    pub provider_key_id: Option<String>,
    pub key_source: KeySource,
    /// The knowledge bases it answers from.
    pub knowledge: Vec<crate::knowledge::BaseRef>,
}
