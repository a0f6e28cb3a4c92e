//! Model providers over their real streaming wire formats (server only).
//!
//! Each adapter turns a [`ChatRequest`] into the provider's HTTP request and
//! the provider's server-sent events into [`StreamEvent`]s:
//! - [`openai`] speaks Chat Completions (`stream: true`, `stream_options.include_usage`,
//!   `store: false`), also used for OpenAI-compatible servers (Ollama, vLLM,
//!   LM Studio) with their known deviations tolerated;
//! - [`anthropic`] speaks Messages (`message_start`, `content_block_*`,
//!   `message_delta`, `message_stop`, `ping`, `error`);
//! - [`gemini`] speaks `streamGenerateContent?alt=sse`.
//!
//! [`stream`] drives one request: it retries 429/5xx/connection failures with
//! backoff (honouring `Retry-After`) only before the first token, and applies
//! first-token and idle-gap timeouts. Errors reach users as one plain
//! sentence ([`LlmError`]), never as a provider's raw body.

pub mod anthropic;
pub mod gemini;
pub mod models;
pub mod openai;

use std::time::Duration;

use futures::StreamExt as _;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{
    platform::egress::{Egress, EgressError},
    provider::Provider,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One piece of a turn, in Enclave's own terms; each adapter translates it
/// to its provider's shape (OpenAI `tool_calls` and `tool` messages,
/// Anthropic `tool_use` and `tool_result` blocks, Gemini `functionCall` and
/// `functionResponse` parts).
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    /// The model asked for a tool (in an assistant turn).
    ToolCall {
        id: String,
        name: String,
        arguments: serde_json::Value,
    },
    /// What a tool answered (in a user turn, after the call).
    ToolResult {
        id: String,
        name: String,
        content: String,
        is_error: bool,
    },
}

/// One message of the conversation so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Turn {
    pub role: Role,
    pub parts: Vec<Part>,
}

impl Turn {
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Turn {
            role,
            parts: vec![Part::Text(text.into())],
        }
    }

    /// The turn's text parts, joined.
    pub fn text_content(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A tool the model may call: its name, what it does, and the JSON schema
/// of its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDecl {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

/// Everything an adapter needs for one completion.
#[derive(Clone)]
pub struct ChatRequest {
    pub provider: Provider,
    /// The API root, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: String,
    pub model: String,
    pub system_prompt: String,
    pub turns: Vec<Turn>,
    /// The tools offered (none: a plain completion).
    pub tools: Vec<ToolDecl>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_output_tokens: Option<u32>,
}

impl std::fmt::Debug for ChatRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatRequest")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("turns", &self.turns.len())
            .field("tools", &self.tools.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// A piece of a tool call as it streams: the first piece of a call carries
/// its id and name, later pieces more of its JSON arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolCallDelta {
    pub index: u32,
    pub id: Option<String>,
    pub name: Option<String>,
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    Text(String),
    ToolCall(ToolCallDelta),
    /// Token counts so far (each provider's totals, not increments).
    Usage(Usage),
    /// Why the model stopped (`stop`, `length`, `tool_calls`, `end_turn`, ...).
    Finish(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    #[error("The provider rejected the API key: it is invalid or has been revoked.")]
    InvalidKey,
    #[error("The provider says the key's quota is used up: check the plan and billing.")]
    Quota,
    #[error("The provider is rate limiting requests: try again in a minute.")]
    RateLimited { retry_after: Option<Duration> },
    #[error("The provider does not know this model: check the agent's model name.")]
    ModelNotFound,
    #[error("The provider is overloaded or unavailable right now: try again shortly.")]
    Overloaded,
    #[error(
        "The provider refused the request: check the agent's settings (model, temperature, max tokens)."
    )]
    Rejected,
    /// The address was refused or could not be reached before anything was
    /// sent (its text can name the host, so it is stored sealed).
    #[error("{0}")]
    Egress(EgressError),
    #[error("The connection to the provider failed.")]
    Network,
    #[error("The provider did not answer in time.")]
    Timeout,
    #[error("The provider sent a reply Enclave could not read.")]
    Protocol,
    #[error("The reply reached the length limit of {limit_kib} KiB and was cut off there.")]
    TooLong { limit_kib: usize },
    #[error("The reply took longer than the {minutes}-minute limit and was stopped there.")]
    Deadline { minutes: u64 },
}

impl LlmError {
    /// Worth another try, if the provider provably did not start on the
    /// request: it could not be reached, or it answered with an error status
    /// that says it refused (rate limit, overload). A timeout or a broken
    /// connection after the request went out is not retried: the provider
    /// may be generating (and billing) already.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            LlmError::RateLimited { .. }
                | LlmError::Overloaded
                | LlmError::Egress(EgressError::Connect { .. })
        )
    }

    /// A short, stable name for the kind of failure (stored in plain text
    /// next to the sealed sentence; never user-derived).
    pub fn code(&self) -> &'static str {
        match self {
            LlmError::InvalidKey => "invalid_key",
            LlmError::Quota => "quota",
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::ModelNotFound => "model_not_found",
            LlmError::Overloaded => "overloaded",
            LlmError::Rejected => "rejected",
            LlmError::Egress(_) => "unreachable",
            LlmError::Network => "network",
            LlmError::Timeout => "timeout",
            LlmError::Protocol => "protocol",
            LlmError::TooLong { .. } => "too_long",
            LlmError::Deadline { .. } => "deadline",
        }
    }
}

/// Maps an HTTP error answer to a plain error. Only status codes and known
/// error codes are read; the provider's message is never repeated (it may
/// echo part of the key).
pub fn classify(status: u16, headers: &HeaderMap, body: &[u8]) -> LlmError {
    let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let code = json["error"]["code"]
        .as_str()
        .or_else(|| json["error"]["type"].as_str())
        .or_else(|| json["error"]["status"].as_str())
        .unwrap_or_default();
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(300.0)));
    match status {
        401 => LlmError::InvalidKey,
        400 if json["error"]["details"][0]["reason"] == "API_KEY_INVALID" => LlmError::InvalidKey,
        403 if code == "PERMISSION_DENIED" => LlmError::InvalidKey,
        403 => LlmError::InvalidKey,
        404 => LlmError::ModelNotFound,
        429 if code == "insufficient_quota" => LlmError::Quota,
        429 => LlmError::RateLimited { retry_after },
        // 529 is Anthropic's "overloaded".
        500..=599 => LlmError::Overloaded,
        _ if code == "model_not_found" || code == "not_found_error" || code == "NOT_FOUND" => {
            LlmError::ModelNotFound
        }
        _ => LlmError::Rejected,
    }
}

/// Limits for one streamed completion.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// From sending the request to the first piece of the reply.
    pub first_token: Duration,
    /// Between two pieces of the reply (keep-alive pings do not count).
    pub idle_gap: Duration,
    /// The whole completion, retries included.
    pub deadline: Duration,
    /// The reply's text, in bytes.
    pub max_reply_bytes: usize,
    pub max_attempts: u32,
    pub backoff: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            first_token: Duration::from_secs(60),
            idle_gap: Duration::from_secs(60),
            deadline: Duration::from_secs(15 * 60),
            max_reply_bytes: 1024 * 1024,
            max_attempts: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

/// The most of an error answer that is read (only its status and error code
/// matter), and how long reading it may take.
const ERROR_BODY_MAX: usize = 64 * 1024;
const ERROR_BODY_TIME: Duration = Duration::from_secs(10);

/// The pieces of one provider's protocol.
trait Adapter: Send {
    /// The URL, headers and JSON body of the request.
    fn request(&self, req: &ChatRequest) -> (String, HeaderMap, serde_json::Value);
    /// Feeds one server-sent event; returns what it meant.
    fn feed(&mut self, event: &str, data: &str) -> Result<Vec<StreamEvent>, LlmError>;
    /// True once the provider has said the reply is complete.
    fn finished(&self) -> bool;
    /// Whether the stream may simply end without an explicit terminator.
    fn ends_at_eof(&self) -> bool {
        false
    }
}

fn adapter(provider: Provider) -> Box<dyn Adapter> {
    match provider {
        Provider::Openai => Box::new(openai::OpenAi::new(false)),
        // The demo model is served by Enclave's fake provider in the OpenAI format.
        Provider::OpenaiCompatible | Provider::Demo => Box::new(openai::OpenAi::new(true)),
        Provider::Anthropic => Box::new(anthropic::Anthropic::default()),
        Provider::Google => Box::new(gemini::Gemini::default()),
    }
}

/// Starts a streamed completion. Events (or one final error) arrive on the
/// returned channel; it closes when the reply is complete.
pub fn stream(
    egress: Egress,
    req: ChatRequest,
    limits: StreamLimits,
) -> mpsc::Receiver<Result<StreamEvent, LlmError>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let run = run(&egress, &req, limits, &tx);
        let result = match tokio::time::timeout(limits.deadline, run).await {
            Ok(result) => result,
            Err(_) => Err(LlmError::Deadline {
                minutes: limits.deadline.as_secs().div_ceil(60),
            }),
        };
        if let Err(err) = result {
            let _ = tx.send(Err(err)).await;
        }
    });
    rx
}

async fn run(
    egress: &Egress,
    req: &ChatRequest,
    limits: StreamLimits,
    tx: &mpsc::Sender<Result<StreamEvent, LlmError>>,
) -> Result<(), LlmError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut adapter = adapter(req.provider);
        match attempt_stream(egress, req, limits, adapter.as_mut(), tx).await {
            Ok(()) => return Ok(()),
            // The provider may have started: no second try, keep what came.
            Err((Started::Maybe, err)) => return Err(err),
            Err((Started::No, err)) if err.is_retryable() && attempt < limits.max_attempts => {
                let wait = match &err {
                    LlmError::RateLimited {
                        retry_after: Some(after),
                    } => *after,
                    _ => limits.backoff * 2u32.pow(attempt - 1),
                };
                tracing::info!(
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    error = err.code(),
                    "retrying provider request"
                );
                tokio::time::sleep(wait).await;
            }
            Err((Started::No, err)) => return Err(err),
        }
    }
}

/// Whether the provider may have begun work on a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Started {
    /// It was not reached, or it answered with an error status.
    No,
    /// The request went out and was not refused.
    Maybe,
}

/// Reads at most `ERROR_BODY_MAX` of an error answer, for at most
/// `ERROR_BODY_TIME`: a server that never ends its error body cannot hold
/// the reply, and one that sends gigabytes cannot fill memory.
async fn error_body(mut res: reqwest::Response) -> Vec<u8> {
    let mut body = Vec::new();
    let read = async {
        while let Ok(Some(chunk)) = res.chunk().await {
            let room = ERROR_BODY_MAX - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() >= ERROR_BODY_MAX {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(ERROR_BODY_TIME, read).await;
    body
}

/// One attempt. On failure, says whether the provider may have started.
async fn attempt_stream(
    egress: &Egress,
    req: &ChatRequest,
    limits: StreamLimits,
    adapter: &mut dyn Adapter,
    tx: &mpsc::Sender<Result<StreamEvent, LlmError>>,
) -> Result<(), (Started, LlmError)> {
    use eventsource_stream::Eventsource as _;
    use tokio::time::Instant;

    let (url, headers, body) = adapter.request(req);
    let body = serde_json::to_vec(&body).map_err(|_| (Started::No, LlmError::Protocol))?;
    let sent = Instant::now();
    let res = tokio::time::timeout(limits.first_token, egress.post_stream(&url, headers, body))
        .await
        .map_err(|_| (Started::Maybe, LlmError::Timeout))?
        .map_err(|e| match e {
            // Nothing was sent: safe to try again.
            EgressError::Connect { .. } => (Started::No, LlmError::Egress(e)),
            EgressError::Timeout { .. } => (Started::Maybe, LlmError::Timeout),
            EgressError::Broken { .. } => (Started::Maybe, LlmError::Network),
            refused => (Started::No, LlmError::Egress(refused)),
        })?;
    let status = res.status().as_u16();
    if !(200..300).contains(&status) {
        let headers = res.headers().clone();
        let body = error_body(res).await;
        return Err((Started::No, classify(status, &headers, &body)));
    }
    let mut events = res.bytes_stream().eventsource();
    let mut streamed = false;
    let mut bytes = 0usize;
    // Only pieces of the reply move this: pings and comments do not.
    let mut progress = sent;
    loop {
        let wait = if streamed {
            limits.idle_gap
        } else {
            limits.first_token
        };
        let next = tokio::time::timeout_at(progress + wait, events.next())
            .await
            .map_err(|_| (Started::Maybe, LlmError::Timeout))?;
        match next {
            None => {
                return if adapter.finished() || adapter.ends_at_eof() {
                    Ok(())
                } else {
                    // The connection dropped before the provider said it was done.
                    Err((Started::Maybe, LlmError::Network))
                };
            }
            Some(Err(_)) => return Err((Started::Maybe, LlmError::Network)),
            Some(Ok(event)) => {
                for item in adapter
                    .feed(&event.event, &event.data)
                    .map_err(|e| (Started::Maybe, e))?
                {
                    streamed = true;
                    progress = Instant::now();
                    let item = match item {
                        StreamEvent::Text(text) if bytes + text.len() > limits.max_reply_bytes => {
                            let mut cut = limits.max_reply_bytes - bytes;
                            while !text.is_char_boundary(cut) {
                                cut -= 1;
                            }
                            let _ = tx.send(Ok(StreamEvent::Text(text[..cut].to_owned()))).await;
                            return Err((
                                Started::Maybe,
                                LlmError::TooLong {
                                    limit_kib: limits.max_reply_bytes / 1024,
                                },
                            ));
                        }
                        StreamEvent::Text(text) => {
                            bytes += text.len();
                            StreamEvent::Text(text)
                        }
                        other => other,
                    };
                    if tx.send(Ok(item)).await.is_err() {
                        // Nobody listens any more: stop quietly.
                        return Ok(());
                    }
                }
                if adapter.finished() {
                    return Ok(());
                }
            }
        }
    }
}

/// Joins a base URL and a path without doubling or losing a slash.
pub(crate) fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_without_repeating_the_body() {
        let headers = HeaderMap::new();
        let openai_bad_key = br#"{"error":{"message":"Incorrect API key provided: sk-abc","type":"invalid_request_error","code":"invalid_api_key"}}"#;
        let err = classify(401, &headers, openai_bad_key);
        assert_eq!(err, LlmError::InvalidKey);
        assert!(!err.to_string().contains("sk-abc"));
        assert_eq!(
            classify(
                429,
                &headers,
                br#"{"error":{"type":"insufficient_quota","code":"insufficient_quota"}}"#
            ),
            LlmError::Quota
        );
        assert_eq!(
            classify(
                529,
                &headers,
                br#"{"type":"error","error":{"type":"overloaded_error"}}"#
            ),
            LlmError::Overloaded
        );
        assert_eq!(classify(404, &headers, b"{}"), LlmError::ModelNotFound);
        assert_eq!(
            classify(400, &headers, br#"{"error":{"code":400,"status":"INVALID_ARGUMENT","details":[{"reason":"API_KEY_INVALID"}]}}"#),
            LlmError::InvalidKey
        );
        assert_eq!(
            classify(400, &headers, br#"{"error":{"message":"temperature"}}"#),
            LlmError::Rejected
        );
        let mut with_retry = HeaderMap::new();
        with_retry.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(
            classify(429, &with_retry, b"{}"),
            LlmError::RateLimited {
                retry_after: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn urls_join_cleanly() {
        assert_eq!(
            join("http://x/v1/", "/chat/completions"),
            "http://x/v1/chat/completions"
        );
        assert_eq!(join("http://x/v1", "models"), "http://x/v1/models");
    }
}
