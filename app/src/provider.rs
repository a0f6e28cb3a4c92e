//! The model providers an agent can run on, and what Enclave knows about
//! each: its label, its temperature range, suggested models and which model
//! names it accepts. Shared by the browser and the server, below every slice.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Openai,
    Anthropic,
    Google,
    OpenaiCompatible,
    /// Enclave's offline demo model (development servers only): canned,
    /// streamed replies with no API key, so chat can be tried at once.
    Demo,
}

impl Provider {
    pub const ALL: [Provider; 5] = [
        Provider::Openai,
        Provider::Anthropic,
        Provider::Google,
        Provider::OpenaiCompatible,
        Provider::Demo,
    ];

    /// Providers a user can store an API key for.
    pub const WITH_KEYS: [Provider; 4] = [
        Provider::Openai,
        Provider::Anthropic,
        Provider::Google,
        Provider::OpenaiCompatible,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Openai => "openai",
            Provider::Anthropic => "anthropic",
            Provider::Google => "google",
            Provider::OpenaiCompatible => "openai_compatible",
            Provider::Demo => "demo",
        }
    }

    pub fn parse(value: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == value)
    }

    pub fn label(self) -> &'static str {
        match self {
            Provider::Openai => "OpenAI",
            Provider::Anthropic => "Anthropic",
            Provider::Google => "Google Gemini",
            Provider::OpenaiCompatible => "OpenAI-compatible (Ollama, vLLM, LM Studio, …)",
            Provider::Demo => "Offline demo model (canned replies, no API key)",
        }
    }

    /// The valid temperature range of the provider's API.
    pub fn temperature_range(self) -> (f32, f32) {
        match self {
            Provider::Anthropic => (0.0, 1.0),
            Provider::Openai | Provider::Google | Provider::OpenaiCompatible | Provider::Demo => {
                (0.0, 2.0)
            }
        }
    }

    /// Model names offered as suggestions; any name is accepted.
    pub fn suggested_models(self) -> &'static [&'static str] {
        match self {
            Provider::Openai => &[
                "gpt-4.1",
                "gpt-4.1-mini",
                "gpt-4o",
                "gpt-4o-mini",
                "o4-mini",
            ],
            Provider::Anthropic => &["claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5"],
            Provider::Google => &[
                "gemini-2.5-pro",
                "gemini-2.5-flash",
                "gemini-2.5-flash-lite",
            ],
            Provider::OpenaiCompatible => &["llama3.1", "qwen2.5", "mistral"],
            Provider::Demo => &["demo"],
        }
    }

    pub fn needs_base_url(self) -> bool {
        self == Provider::OpenaiCompatible
    }

    /// Whether `model` is a name this provider can be asked for. Every name
    /// is at most `MODEL_MAX` characters with no spaces or control
    /// characters. Gemini puts the name in the URL path
    /// (`models/{model}:streamGenerateContent`), so its names are held to
    /// what Google uses, letters, digits, `.`, `-` and `_`: a `/`, `?`, `#`
    /// or `..` would reach other Google API paths with the caller's key.
    /// (The adapter percent-encodes the segment as well.) The others carry
    /// the name only in the JSON body.
    pub fn check_model(self, model: &str) -> Result<(), String> {
        if model.is_empty() {
            return Err("Name the model, for example gpt-4o-mini.".into());
        }
        if model.chars().count() > MODEL_MAX
            || model.chars().any(|c| c.is_control() || c.is_whitespace())
        {
            return Err("That model name is not valid.".into());
        }
        if self == Provider::Google
            && !model
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        {
            return Err(
                "A Gemini model name has only letters, digits, '.', '-' and '_', like gemini-2.5-flash."
                    .into(),
            );
        }
        Ok(())
    }
}

/// The longest model name accepted.
pub const MODEL_MAX: usize = 200;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_model_names_cannot_leave_their_path_segment() {
        for hostile in [
            "../files",
            "gemini-2.5-flash/../../files",
            "gemini?alt=json",
            "gemini#x",
            "models/gemini-2.5-flash",
            "gemini%2F..",
            "gemini:generateContent",
        ] {
            assert!(
                Provider::Google.check_model(hostile).is_err(),
                "{hostile} was accepted"
            );
        }
        assert!(Provider::Google.check_model("gemini-2.5-flash").is_ok());
        assert!(
            Provider::Google
                .check_model("gemini-2.0-flash-exp_01")
                .is_ok()
        );
    }

    #[test]
    fn other_providers_take_any_printable_name_without_spaces() {
        for provider in [
            Provider::Openai,
            Provider::OpenaiCompatible,
            Provider::Anthropic,
        ] {
            assert!(provider.check_model("ft:gpt-4o-mini:org:name:abc").is_ok());
            assert!(provider.check_model("meta-llama/Llama-3.1-8B").is_ok());
            assert!(provider.check_model("two words").is_err());
            assert!(provider.check_model("").is_err());
            assert!(provider.check_model(&"m".repeat(MODEL_MAX + 1)).is_err());
        }
    }
}
