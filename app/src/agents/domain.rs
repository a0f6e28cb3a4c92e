//! Agent configuration as domain types: `AgentForm` is what a form or an
//! imported file says; `AgentSpec::parse` checks every rule and reports every
//! problem next to its field.

use serde::{Deserialize, Serialize};

use crate::error::{AppError, FieldError};
pub use crate::provider::Provider;
use crate::tools::ToolConfig;

pub const NAME_MAX: usize = 80;
pub const DESCRIPTION_MAX: usize = 500;
pub const SYSTEM_PROMPT_MAX: usize = 32_000;
pub use crate::provider::MODEL_MAX;
pub const STARTERS_MAX: usize = 4;
pub const STARTER_MAX: usize = 200;
pub const MAX_OUTPUT_TOKENS_MAX: u32 = 1_000_000;

/// An agent's configuration as a form or a file gives it: unchecked strings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentForm {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub system_prompt: String,
    pub provider: String,
    pub model: String,
    #[serde(default)]
    pub base_url: String,
    #[serde(default)]
    pub temperature: String,
    #[serde(default)]
    pub top_p: String,
    #[serde(default)]
    pub max_output_tokens: String,
    #[serde(default)]
    pub starters: Vec<String>,
    #[serde(default)]
    pub avatar: String,
    #[serde(default)]
    pub tools: ToolConfig,
}

/// A valid agent configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub name: String,
    pub description: String,
    pub system_prompt: String,
    pub provider: Provider,
    pub model: String,
    pub base_url: Option<String>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_output_tokens: Option<u32>,
    pub starters: Vec<String>,
    pub avatar: String,
    /// Which tools it may call, which ask first, and its step limit.
    #[serde(default)]
    pub tools: ToolConfig,
}

pub const DEFAULT_AVATAR: &str = "🤖";

fn chars(s: &str) -> usize {
    s.chars().count()
}

/// An avatar is an emoji (one short symbol, not letters) or a `#rrggbb` colour.
pub fn valid_avatar(avatar: &str) -> bool {
    let is_colour = avatar.len() == 7
        && avatar.starts_with('#')
        && avatar[1..].chars().all(|c| c.is_ascii_hexdigit());
    let is_symbol = !avatar.is_empty()
        && avatar.len() <= 32
        && chars(avatar) <= 8
        && !avatar
            .chars()
            .any(|c| c.is_ascii() || c.is_control() || c.is_whitespace());
    is_colour || is_symbol
}

/// An http(s) URL with a host and no credentials in it. (Whether Enclave may
/// connect to it is the egress policy's decision, at connection time.)
pub fn valid_base_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("Use an http:// or https:// address, like http://localhost:11434/v1.")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err("The address needs a host name.".into());
    }
    if authority.contains('@') {
        return Err("Put credentials in an API key, not in the address.".into());
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) || url.len() > 2000 {
        return Err("That address is not valid.".into());
    }
    Ok(())
}

fn parse_number<T: std::str::FromStr>(raw: &str) -> Result<Option<T>, ()> {
    let raw = raw.trim();
    if raw.is_empty() {
        Ok(None)
    } else {
        raw.parse().map(Some).map_err(|_| ())
    }
}

impl AgentSpec {
    pub fn parse(form: &AgentForm) -> Result<AgentSpec, AppError> {
        let mut errors = Vec::new();
        let mut fail = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.to_owned(),
                message,
            })
        };
        let name = form.name.trim().to_owned();
        if name.is_empty() {
            fail("name", "Give the agent a name.".into());
        } else if chars(&name) > NAME_MAX {
            fail("name", format!("A name has at most {NAME_MAX} characters."));
        }
        let description = form.description.trim().to_owned();
        if chars(&description) > DESCRIPTION_MAX {
            fail(
                "description",
                format!("A description has at most {DESCRIPTION_MAX} characters."),
            );
        }
        let system_prompt = form.system_prompt.trim_end().to_owned();
        if chars(&system_prompt) > SYSTEM_PROMPT_MAX {
            fail(
                "system_prompt",
                format!("The system prompt has at most {SYSTEM_PROMPT_MAX} characters."),
            );
        }
        let provider = Provider::parse(form.provider.trim());
        if provider.is_none() {
            fail("provider", "Choose a provider.".into());
        }
        let model = form.model.trim().to_owned();
        if let Err(message) = provider
            .unwrap_or(Provider::OpenaiCompatible)
            .check_model(&model)
        {
            fail("model", message);
        }
        let base_url = form.base_url.trim().trim_end_matches('/').to_owned();
        let base_url = if base_url.is_empty() {
            if provider.is_some_and(Provider::needs_base_url) {
                fail(
                    "base_url",
                    "An OpenAI-compatible server needs its address, like http://localhost:11434/v1.".into(),
                );
            }
            None
        } else if provider.is_some_and(|p| !p.needs_base_url()) {
            fail(
                "base_url",
                "Only OpenAI-compatible servers take a base URL: leave it empty, or choose that provider."
                    .into(),
            );
            None
        } else {
            if let Err(message) = valid_base_url(&base_url) {
                fail("base_url", message);
            }
            Some(base_url)
        };
        let temperature = match parse_number::<f32>(&form.temperature) {
            Err(()) => {
                fail("temperature", "Enter a number, like 0.7.".into());
                None
            }
            Ok(Some(t)) => {
                if let Some(p) = provider {
                    let (low, high) = p.temperature_range();
                    if !(t.is_finite() && (low..=high).contains(&t)) {
                        fail(
                            "temperature",
                            format!("{} accepts a temperature from {low} to {high}.", p.label()),
                        );
                    }
                }
                Some(t)
            }
            Ok(None) => None,
        };
        let top_p = match parse_number::<f32>(&form.top_p) {
            Ok(Some(p)) if p.is_finite() && (0.0..=1.0).contains(&p) => Some(p),
            Ok(None) => None,
            _ => {
                fail("top_p", "Top-p is a number from 0 to 1.".into());
                None
            }
        };
        let max_output_tokens = match parse_number::<u32>(&form.max_output_tokens) {
            Ok(Some(n)) if (1..=MAX_OUTPUT_TOKENS_MAX).contains(&n) => Some(n),
            Ok(None) => None,
            _ => {
                fail(
                    "max_output_tokens",
                    format!(
                        "Max output tokens is a whole number from 1 to {MAX_OUTPUT_TOKENS_MAX}."
                    ),
                );
                None
            }
        };
        let starters: Vec<String> = form
            .starters
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        if starters.len() > STARTERS_MAX {
            fail(
                "starters",
                format!("An agent has at most {STARTERS_MAX} conversation starters."),
            );
        } else if starters.iter().any(|s| chars(s) > STARTER_MAX) {
            fail(
                "starters",
                format!("A conversation starter has at most {STARTER_MAX} characters."),
            );
        }
        let avatar = match form.avatar.trim() {
            "" => DEFAULT_AVATAR.to_owned(),
            a if valid_avatar(a) => a.to_owned(),
            _ => {
                fail("avatar", "Use one emoji, or a colour like #3b5bdb.".into());
                String::new()
            }
        };
        if let Err(message) = form.tools.check() {
            fail("tools", message);
        }
        match provider {
            Some(provider) if errors.is_empty() => Ok(AgentSpec {
                name,
                description,
                system_prompt,
                provider,
                model,
                base_url,
                temperature,
                top_p,
                max_output_tokens,
                starters,
                avatar,
                tools: form.tools.clone(),
            }),
            _ => Err(AppError::Invalid(errors)),
        }
    }

    /// The form that produces this spec (to edit it, or to export it).
    pub fn to_form(&self) -> AgentForm {
        AgentForm {
            name: self.name.clone(),
            description: self.description.clone(),
            system_prompt: self.system_prompt.clone(),
            provider: self.provider.as_str().to_owned(),
            model: self.model.clone(),
            base_url: self.base_url.clone().unwrap_or_default(),
            temperature: self.temperature.map(|t| t.to_string()).unwrap_or_default(),
            top_p: self.top_p.map(|t| t.to_string()).unwrap_or_default(),
            max_output_tokens: self
                .max_output_tokens
                .map(|t| t.to_string())
                .unwrap_or_default(),
            starters: self.starters.clone(),
            avatar: self.avatar.clone(),
            tools: self.tools.clone(),
        }
    }
}

/// The file format of an exported agent. Never holds a secret: keys stay
/// with their owner, and an imported agent picks its key automatically.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentExport {
    /// Format version; 1 today.
    pub enclave_agent: u32,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub system_prompt: String,
    pub provider: Provider,
    pub model: String,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default)]
    pub max_output_tokens: Option<u32>,
    #[serde(default)]
    pub conversation_starters: Vec<String>,
    #[serde(default)]
    pub avatar: Option<String>,
    /// Tool settings (names and limits; never a credential).
    #[serde(default)]
    pub tools: Option<ToolConfig>,
}

pub const IMPORT_MAX_BYTES: usize = 256 * 1024;

impl AgentExport {
    pub fn from_spec(spec: &AgentSpec) -> Self {
        AgentExport {
            enclave_agent: 1,
            name: spec.name.clone(),
            description: spec.description.clone(),
            system_prompt: spec.system_prompt.clone(),
            provider: spec.provider,
            model: spec.model.clone(),
            base_url: spec.base_url.clone(),
            temperature: spec.temperature,
            top_p: spec.top_p,
            max_output_tokens: spec.max_output_tokens,
            conversation_starters: spec.starters.clone(),
            avatar: Some(spec.avatar.clone()),
            tools: Some(spec.tools.portable()),
        }
    }

    /// Reads an exported file, with a message that says what is wrong with it.
    pub fn parse(json: &str) -> Result<AgentSpec, AppError> {
        let bad = |message: String| AppError::invalid("file", message);
        if json.len() > IMPORT_MAX_BYTES {
            return Err(bad(format!(
                "The file is larger than {} KiB; an agent export is much smaller.",
                IMPORT_MAX_BYTES / 1024
            )));
        }
        if json.trim().is_empty() {
            return Err(bad("The file is empty.".into()));
        }
        let export: AgentExport = serde_json::from_str(json).map_err(|e| {
            let what = match e.classify() {
                serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                    "This is not valid JSON"
                }
                _ => "This is not an Enclave agent export",
            };
            // serde_json's message names the field or token, never more of the input.
            let detail = e.to_string();
            let detail = detail.split(" at line").next().unwrap_or(&detail);
            bad(format!(
                "{what} (line {}, column {}): {detail}.",
                e.line(),
                e.column()
            ))
        })?;
        if export.enclave_agent != 1 {
            return Err(bad(format!(
                "This export is format version {}; this Enclave reads version 1.",
                export.enclave_agent
            )));
        }
        let form = AgentForm {
            name: export.name,
            description: export.description,
            system_prompt: export.system_prompt,
            provider: export.provider.as_str().to_owned(),
            model: export.model,
            base_url: export.base_url.unwrap_or_default(),
            temperature: export
                .temperature
                .map(|t| t.to_string())
                .unwrap_or_default(),
            top_p: export.top_p.map(|t| t.to_string()).unwrap_or_default(),
            max_output_tokens: export
                .max_output_tokens
                .map(|t| t.to_string())
                .unwrap_or_default(),
            starters: export.conversation_starters,
            avatar: export.avatar.unwrap_or_default(),
            tools: export.tools.unwrap_or_default(),
        };
        AgentSpec::parse(&form)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form() -> AgentForm {
        AgentForm {
            name: "Researcher".into(),
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            ..AgentForm::default()
        }
    }

    fn field_errors(form: &AgentForm) -> Vec<String> {
        match AgentSpec::parse(form) {
            Err(AppError::Invalid(errors)) => errors.into_iter().map(|e| e.field).collect(),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_minimal_agent_is_valid_with_defaults() {
        let spec = AgentSpec::parse(&form()).unwrap();
        assert_eq!(spec.avatar, DEFAULT_AVATAR);
        assert_eq!(spec.temperature, None);
        assert!(spec.starters.is_empty());
    }

    #[test]
    fn every_rule_names_its_field() {
        let cases: Vec<(AgentForm, &str)> = vec![
            (
                AgentForm {
                    name: " ".into(),
                    ..form()
                },
                "name",
            ),
            (
                AgentForm {
                    name: "n".repeat(81),
                    ..form()
                },
                "name",
            ),
            (
                AgentForm {
                    description: "d".repeat(501),
                    ..form()
                },
                "description",
            ),
            (
                AgentForm {
                    system_prompt: "p".repeat(32_001),
                    ..form()
                },
                "system_prompt",
            ),
            (
                AgentForm {
                    provider: "cohere".into(),
                    ..form()
                },
                "provider",
            ),
            (
                AgentForm {
                    model: "".into(),
                    ..form()
                },
                "model",
            ),
            (
                AgentForm {
                    provider: "openai_compatible".into(),
                    ..form()
                },
                "base_url",
            ),
            (
                AgentForm {
                    base_url: "ftp://x".into(),
                    ..form()
                },
                "base_url",
            ),
            (
                AgentForm {
                    base_url: "http://user:pw@x".into(),
                    ..form()
                },
                "base_url",
            ),
            (
                AgentForm {
                    temperature: "warm".into(),
                    ..form()
                },
                "temperature",
            ),
            (
                AgentForm {
                    temperature: "2.5".into(),
                    ..form()
                },
                "temperature",
            ),
            (
                AgentForm {
                    top_p: "1.5".into(),
                    ..form()
                },
                "top_p",
            ),
            (
                AgentForm {
                    max_output_tokens: "0".into(),
                    ..form()
                },
                "max_output_tokens",
            ),
            (
                AgentForm {
                    max_output_tokens: "1.5".into(),
                    ..form()
                },
                "max_output_tokens",
            ),
            (
                AgentForm {
                    starters: vec!["a".into(); 5],
                    ..form()
                },
                "starters",
            ),
            (
                AgentForm {
                    starters: vec!["s".repeat(201)],
                    ..form()
                },
                "starters",
            ),
            (
                AgentForm {
                    avatar: "robot".into(),
                    ..form()
                },
                "avatar",
            ),
        ];
        for (form, field) in cases {
            assert_eq!(
                field_errors(&form),
                vec![field.to_owned()],
                "{field}: {form:?}"
            );
        }
    }

    #[test]
    fn only_openai_compatible_agents_take_a_base_url() {
        for provider in ["anthropic", "openai", "google"] {
            let with_url = AgentForm {
                provider: provider.into(),
                model: "m".into(),
                base_url: "https://gateway.example.com/v1".into(),
                ..form()
            };
            assert_eq!(field_errors(&with_url), vec!["base_url"], "{provider}");
        }
        let compatible = AgentForm {
            provider: "openai_compatible".into(),
            base_url: "http://localhost:11434/v1".into(),
            ..form()
        };
        assert!(AgentSpec::parse(&compatible).is_ok());
    }

    #[test]
    fn limits_are_inclusive() {
        let spec = AgentSpec::parse(&AgentForm {
            name: "n".repeat(80),
            description: "d".repeat(500),
            system_prompt: "p".repeat(32_000),
            starters: vec!["s".repeat(200); 4],
            max_output_tokens: "1000000".into(),
            ..form()
        })
        .unwrap();
        assert_eq!(spec.starters.len(), 4);
    }

    #[test]
    fn temperature_range_depends_on_the_provider() {
        let anthropic = |t: &str| AgentForm {
            provider: "anthropic".into(),
            temperature: t.into(),
            ..form()
        };
        assert!(AgentSpec::parse(&anthropic("1.0")).is_ok());
        assert_eq!(field_errors(&anthropic("1.5")), vec!["temperature"]);
        assert!(
            AgentSpec::parse(&AgentForm {
                temperature: "1.5".into(),
                ..form()
            })
            .is_ok()
        );
        assert_eq!(
            field_errors(&AgentForm {
                temperature: "NaN".into(),
                ..form()
            }),
            vec!["temperature"]
        );
    }

    #[test]
    fn avatars_are_an_emoji_or_a_colour() {
        for good in ["🤖", "🦀", "👩‍🔬", "#3b5bdb"] {
            assert!(valid_avatar(good), "{good}");
        }
        for bad in ["", "abc", "#12345", "#ggg000", "🤖 x", "<script>"] {
            assert!(!valid_avatar(bad), "{bad}");
        }
    }

    #[test]
    fn export_round_trips_and_has_no_key_fields() {
        let spec = AgentSpec::parse(&AgentForm {
            temperature: "0.5".into(),
            starters: vec!["Hi".into()],
            ..form()
        })
        .unwrap();
        let json = serde_json::to_string(&AgentExport::from_spec(&spec)).unwrap();
        assert!(!json.contains("key"), "{json}");
        assert_eq!(AgentExport::parse(&json).unwrap(), spec);
    }

    #[test]
    fn malformed_imports_get_clear_errors() {
        let message = |json: &str| match AgentExport::parse(json) {
            Err(err) => err
                .field_message("file")
                .unwrap_or_else(|| format!("{err:?}")),
            Ok(_) => panic!("{json} was accepted"),
        };
        assert!(message("").contains("empty"));
        assert!(message("{not json").contains("not valid JSON"));
        assert!(message("[1,2]").contains("not an Enclave agent export"));
        assert!(message(r#"{"enclave_agent":1,"provider":"openai","model":"m"}"#).contains("name"));
        assert!(
            message(r#"{"enclave_agent":1,"name":"x","provider":"skynet","model":"m"}"#)
                .contains("skynet")
        );
        assert!(
            message(r#"{"enclave_agent":2,"name":"x","provider":"openai","model":"m"}"#)
                .contains("version 2")
        );
        assert!(
            message(
                r#"{"enclave_agent":1,"name":"x","provider":"openai","model":"m","api_key":"sk"}"#
            )
            .contains("api_key")
        );
        // Valid JSON with an invalid value reports the agent field.
        let err =
            AgentExport::parse(r#"{"enclave_agent":1,"name":"","provider":"openai","model":"m"}"#)
                .unwrap_err();
        assert!(err.field_message("name").is_some());
    }
}
