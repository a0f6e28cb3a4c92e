//! The user's API keys for model providers: stored sealed, shown only
//! masked, tested against the provider, and resolved for each run (the key
//! chosen for an agent, else the user's newest for the provider, else the
//! operator's platform key).
//!
//! `api` holds the server functions, `server` (ssr) the queries and the
//! resolution, `pages` the Settings → Provider keys page.

pub mod api;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod server;

use serde::{Deserialize, Serialize};

use crate::{
    agents::domain::valid_base_url,
    error::{AppError, FieldError},
    provider::Provider,
};

pub const KEY_LABEL_MAX: usize = 60;
pub const API_KEY_MAX: usize = 512;

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
    /// An OpenAI-compatible server called without a key (Ollama needs none).
    Keyless,
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
            KeySource::Keyless => "None: the server is called without a key (add one under \
                 Settings → Provider keys if it asks for one)"
                .to_owned(),
            KeySource::Missing { message } => message.clone(),
        }
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// A provider key as typed in: label, provider, the secret, and for
/// OpenAI-compatible servers the address to test it against.
pub fn validate_key_input(
    provider: &str,
    label: &str,
    secret: &str,
    base_url: &str,
) -> Result<(Provider, String, String, Option<String>), AppError> {
    let mut errors = Vec::new();
    let mut fail = |field: &str, message: &str| {
        errors.push(FieldError {
            field: field.to_owned(),
            message: message.to_owned(),
        })
    };
    let provider = Provider::parse(provider.trim()).filter(|p| Provider::WITH_KEYS.contains(p));
    if provider.is_none() {
        fail(
            "provider",
            "Choose a provider (the demo model needs no key).",
        );
    }
    let label = label.trim().to_owned();
    if label.is_empty() || chars(&label) > KEY_LABEL_MAX {
        fail(
            "label",
            "Name the key (up to 60 characters), like \"Work\".",
        );
    }
    let secret = secret.trim().to_owned();
    if secret.is_empty() {
        fail("secret", "Paste the API key.");
    } else if secret.len() > API_KEY_MAX
        || secret.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        fail("secret", "That does not look like an API key.");
    }
    let base_url = base_url.trim().trim_end_matches('/').to_owned();
    let base_url = if base_url.is_empty() {
        if provider.is_some_and(Provider::needs_base_url) {
            fail(
                "base_url",
                "An OpenAI-compatible key needs its server's address.",
            );
        }
        None
    } else {
        if let Err(message) = valid_base_url(&base_url) {
            fail("base_url", &message);
        }
        Some(base_url)
    };
    match provider {
        Some(p) if errors.is_empty() => Ok((p, label, secret, base_url)),
        _ => Err(AppError::Invalid(errors)),
    }
}

/// What the UI shows instead of a key: its last four characters.
pub fn mask_key(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_masked_to_their_last_four_characters() {
        assert_eq!(mask_key("sk-proj-abcdef1234"), "…1234");
        assert_eq!(mask_key("ab"), "…ab");
    }
}
