//! Agents and the provider keys they use.
//!
//! `domain` validates configuration and defines the export format, `api`
//! holds the server functions, `server` (ssr) the rules and queries,
//! `providers` (ssr) the calls to providers' model listings, `pages` the UI.

pub mod api;
pub mod domain;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod providers;
#[cfg(feature = "ssr")]
pub mod server;

use serde::{Deserialize, Serialize};

use self::domain::{AgentSpec, Provider};

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

/// Which API key an agent will use, in the order Enclave looks:
/// the key chosen for the agent, the user's key for that provider, the
/// operator's platform key, or nothing (with what to do about it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeySource {
    Chosen {
        label: String,
        masked: String,
    },
    Yours {
        label: String,
        masked: String,
    },
    Platform,
    /// The offline demo model needs none.
    NotNeeded,
    Missing {
        message: String,
    },
}

impl KeySource {
    pub fn describe(&self) -> String {
        match self {
            KeySource::Chosen { label, masked } => {
                format!("Your key “{label}” ({masked}), chosen for this agent")
            }
            KeySource::Yours { label, masked } => format!("Your key “{label}” ({masked})"),
            KeySource::Platform => "The platform's key, provided by your operator".to_owned(),
            KeySource::NotNeeded => {
                "None needed: the offline demo model runs inside Enclave".to_owned()
            }
            KeySource::Missing { message } => message.clone(),
        }
    }
}

/// One agent, in full (never with a key's secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentDetail {
    pub id: String,
    pub spec: AgentSpec,
    pub provider_key_id: Option<String>,
    pub key_source: KeySource,
}

/// A stored provider key as the UI sees it: masked, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderKeyView {
    pub id: String,
    pub provider: Provider,
    pub label: String,
    pub masked: String,
    pub base_url: Option<String>,
}

/// The outcome of testing a key against its provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyTest {
    pub ok: bool,
    pub message: String,
}
