//! Talking to providers about keys: list the models a key can use (the
//! cheapest authenticated call each API has). Requests go through the egress
//! client; answers become one plain sentence, never a raw provider body.

use reqwest::{
    Method,
    header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue},
};

use crate::platform::{egress::Egress, settings::ProviderUrls};
use crate::provider::Provider;

pub const ANTHROPIC_VERSION: &str = "2023-06-01";

fn header(value: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(value)
        .map_err(|_| "That API key contains characters no provider uses.".to_owned())
}

/// The models `key` can use at `provider`, or why not, in plain words.
pub async fn list_models(
    egress: &Egress,
    urls: &ProviderUrls,
    provider: Provider,
    base_url: Option<&str>,
    key: &str,
) -> Result<Vec<String>, String> {
    if provider == Provider::Demo {
        return Err("The offline demo model needs no key.".into());
    }
    let mut headers = HeaderMap::new();
    let url = match provider {
        Provider::Demo => unreachable!("returned above"),
        Provider::Openai => {
            headers.insert(AUTHORIZATION, header(&format!("Bearer {key}"))?);
            format!("{}/models", urls.openai)
        }
        Provider::OpenaiCompatible => {
            headers.insert(AUTHORIZATION, header(&format!("Bearer {key}"))?);
            let base = base_url.ok_or("This key has no server address to test against.")?;
            format!("{base}/models")
        }
        Provider::Anthropic => {
            headers.insert(HeaderName::from_static("x-api-key"), header(key)?);
            headers.insert(
                HeaderName::from_static("anthropic-version"),
                HeaderValue::from_static(ANTHROPIC_VERSION),
            );
            format!("{}/models", urls.anthropic)
        }
        Provider::Google => {
            headers.insert(HeaderName::from_static("x-goog-api-key"), header(key)?);
            format!("{}/models", urls.google)
        }
    };
    let res = egress
        .send(Method::GET, &url, headers)
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status.as_u16();
    let body: serde_json::Value = serde_json::from_slice(&res.body).unwrap_or_default();
    if (200..300).contains(&status) {
        let ids: Vec<String> = match provider {
            Provider::Google => body["models"]
                .as_array()
                .map(|models| {
                    models
                        .iter()
                        .filter_map(|m| m["name"].as_str())
                        .map(|n| n.trim_start_matches("models/").to_owned())
                        .collect()
                })
                .unwrap_or_default(),
            _ => body["data"]
                .as_array()
                .map(|models| {
                    models
                        .iter()
                        .filter_map(|m| m["id"].as_str())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        };
        if body.is_null() {
            return Err(format!(
                "{} answered, but not with a model list. Check the address.",
                provider.label()
            ));
        }
        return Ok(ids);
    }
    Err(explain(provider, status, &body))
}

/// A provider's error as one sentence. Only known codes are looked at; the
/// provider's own message is not repeated (it can echo part of the key).
fn explain(provider: Provider, status: u16, body: &serde_json::Value) -> String {
    let name = provider.label();
    let google_reason = body["error"]["details"][0]["reason"]
        .as_str()
        .unwrap_or_default();
    let openai_code = body["error"]["code"].as_str().unwrap_or_default();
    match status {
        401 => format!("{name} rejected this key: it is invalid or has been revoked."),
        400 if google_reason == "API_KEY_INVALID" => {
            format!("{name} rejected this key: it is invalid or has been revoked.")
        }
        403 => {
            format!("{name} accepted the key but refused access: check its permissions or project.")
        }
        404 => format!("{name} has no model list at this address: check the address."),
        429 if openai_code == "insufficient_quota" => {
            format!("{name} says this key's quota is used up: check the plan and billing.")
        }
        429 => format!("{name} is rate limiting this key right now: try again in a minute."),
        500..=599 => format!(
            "{name} is having problems right now (status {status}): try again in a few minutes."
        ),
        _ => format!("{name} answered with an unexpected status {status}."),
    }
}
