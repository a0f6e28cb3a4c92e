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
    /// Whose it is, for the user looking.
    #[serde(flatten)]
    pub sharing: crate::teams::Sharing,
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
    /// Whose it is, for the user looking.
    #[serde(flatten)]
    pub sharing: crate::teams::Sharing,
}

/// An agent's name as a programs write it (`model` in the OpenAI-compatible
/// API): lower case, words joined by `-`. "Research Helper" is
/// `research-helper`.
pub fn slug(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::slug;

    #[test]
    fn slugs_join_words_with_dashes() {
        assert_eq!(slug("Research Helper"), "research-helper");
        assert_eq!(slug("  Ünïcode & Co. (v2)  "), "ünïcode-co-v2");
        assert_eq!(slug("🤖"), "");
    }
}
