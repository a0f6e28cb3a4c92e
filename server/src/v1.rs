//! The OpenAI-compatible API under `/v1`, for programs holding a personal
//! API key (`Authorization: Bearer enc_…`). Errors have OpenAI's shape
//! (`{"error": {"message", "type", "code", "param"}}`), so its SDKs read
//! them.
//!
//! - `GET /v1/models`: the caller's agents as models.
//! - `POST /v1/chat/completions`: `model` names an agent (its id, or its
//!   name as a slug); the agent's prompt, model, tools and knowledge apply.
//!   The caller's messages start a new conversation, stored sealed like one
//!   typed in the chat (`"store": false`: deleted once the reply ends), and
//!   the reply is the same server-owned run the chat page follows.
//!   Streaming (`"stream": true`) sends OpenAI's chunks, and the usage chunk
//!   with `stream_options.include_usage`.
//!
//! Every request counts against its key's limit (kept in PostgreSQL, so
//! replicas share it); a reply also counts against its owner's chat limit.
//! A key revoked while its reply is written ends the reply and the stream
//! within a second, on whichever replica serves it.

use std::{convert::Infallible, time::Duration};

use app::{
    api_keys::{
        Scope,
        server::{KeyHolder, authenticate, still_works},
    },
    chat::{MessageStatus, StreamUpdate, server::Transcript},
    error::AppError,
    llm::Role,
    platform::{crypto::DataKey, rate_limit},
    state::AppState,
};
use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

/// The largest request body `/v1/chat/completions` reads: a long
/// transcript is bigger than a form.
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// Names the stored conversation a reply belongs to (absent when it is not
/// kept).
const CONVERSATION_HEADER: &str = "x-enclave-conversation-id";

/// How often a live reply checks that its key still works.
const KEY_CHECK_EVERY: Duration = Duration::from_secs(1);

/// An error as OpenAI's API answers it.
pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    error_with(status, code, message, None)
}

pub(crate) fn error_body(
    status: StatusCode,
    code: &str,
    message: &str,
    param: Option<&str>,
) -> Value {
    let kind = match status {
        StatusCode::UNAUTHORIZED | StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST => {
            "invalid_request_error"
        }
        StatusCode::FORBIDDEN => "permission_error",
        StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
        _ => "server_error",
    };
    json!({"error": {"message": message, "type": kind, "code": code, "param": param}})
}

fn error_with(status: StatusCode, code: &str, message: &str, param: Option<&str>) -> Response {
    (status, Json(error_body(status, code, message, param))).into_response()
}

pub(crate) fn invalid(param: Option<&str>, message: &str) -> Response {
    error_with(StatusCode::BAD_REQUEST, "invalid_request", message, param)
}

pub(crate) fn unavailable(what: &str) -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        &format!("Enclave could not {what} just now; try again."),
    )
}

/// An `AppError` in OpenAI's shape (its sentence is already plain: no
/// internals, at most a log reference).
pub(crate) fn app_error(err: &AppError) -> Response {
    match err {
        AppError::Invalid(fields) => {
            let param = fields.first().map(|f| match f.field.as_str() {
                "message" => "messages",
                other => other,
            });
            invalid(param, &err.sentence())
        }
        AppError::NotFound => error(StatusCode::NOT_FOUND, "not_found", &err.sentence()),
        AppError::RateLimited { retry_after_secs } => rate_limited(*retry_after_secs),
        AppError::EmailNotVerified => {
            error(StatusCode::FORBIDDEN, "email_not_verified", &err.sentence())
        }
        AppError::Internal { .. } => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            &err.sentence(),
        ),
        _ => unavailable("answer"),
    }
}

fn rate_limited(retry_after_secs: u64) -> Response {
    let mut res = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
        &format!("Too many requests: try again in {retry_after_secs} seconds."),
    );
    if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, value);
    }
    res
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The key's holder and their data key, or the answer for a missing,
/// wrong, revoked or expired key (all alike), one without `scope`, or one
/// over its rate limit.
pub(crate) async fn holder(
    state: &AppState,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<(KeyHolder, DataKey), Response> {
    let unauthorized = || {
        error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Incorrect API key provided. Make one in Enclave under Settings -> API keys.",
        )
    };
    let Some(secret) = bearer(headers) else {
        return Err(unauthorized());
    };
    let holder = match authenticate(state, secret).await {
        Ok(Some(holder)) if holder.may(scope) => holder,
        Ok(Some(_)) => {
            return Err(error(
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                &format!(
                    "This API key may not do that: it needs the \"{}\" scope.",
                    scope.as_str()
                ),
            ));
        }
        Ok(None) => return Err(unauthorized()),
        Err(_) => return Err(unavailable("check the key")),
    };
    match rate_limit::hit(
        &state.db,
        &format!("api:key:{}", holder.key_id),
        state.settings.api_requests_per_key,
    )
    .await
    {
        Ok(()) => {}
        Err(AppError::RateLimited { retry_after_secs }) => {
            return Err(rate_limited(retry_after_secs));
        }
        Err(_) => return Err(unavailable("check the key")),
    }
    let key = holder.data_key.clone();
    Ok((holder, key))
}

/// `GET /v1/models`: the key holder's agents, each a model named by its id
/// (its slug works as well, and is listed with it).
pub async fn models(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (holder, key) = match holder(&state, &headers, Scope::AgentsRead).await {
        Ok(found) => found,
        Err(res) => return res,
    };
    match app::agents::server::list_agents(&state, holder.owner, &key, "").await {
        Ok(agents) => Json(json!({
            "object": "list",
            "data": agents.iter().map(|a| json!({
                "id": a.id,
                "object": "model",
                "created": 0,
                "owned_by": "enclave",
                "name": a.name,
                "slug": app::agents::slug(&a.name),
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(_) => unavailable("list the agents"),
    }
}

#[derive(Deserialize)]
struct CompletionRequest {
    model: String,
    messages: Vec<InMessage>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    /// OpenAI's own flag: false keeps the conversation only while the
    /// reply is written.
    #[serde(default)]
    store: Option<bool>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default)]
    functions: Option<Value>,
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
}

/// The caller's messages, read: instructions, earlier turns, the last
/// user message.
struct Parsed {
    instructions: Option<String>,
    earlier: Vec<(Role, String)>,
    message: String,
}

/// A request refused before anything is done: the parameter at fault and
/// why.
type Refused = (&'static str, &'static str);

/// A message's text: a string, or text parts (anything else is refused).
fn text_of(content: &Option<Value>) -> Result<String, Refused> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => {
            let mut out = Vec::new();
            for part in parts {
                match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("text"), Some(text)) => out.push(text),
                    _ => {
                        return Err((
                            "messages",
                            "Only text content is supported: send images and files through \
                             a knowledge base or the chat page.",
                        ));
                    }
                }
            }
            Ok(out.join("\n"))
        }
        Some(_) => Err((
            "messages",
            "A message's content must be a string or a list of text parts.",
        )),
    }
}

impl CompletionRequest {
    fn parse(&self) -> Result<Parsed, Refused> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(("n", "Only one choice (n = 1) is supported."));
        }
        if self.tools.as_ref().is_some_and(|t| !t.is_null())
            || self.functions.as_ref().is_some_and(|t| !t.is_null())
        {
            return Err((
                "tools",
                "An agent uses the tools set on it in Enclave: send no tools with the request.",
            ));
        }
        let mut instructions = Vec::new();
        let mut turns = Vec::new();
        for message in &self.messages {
            let text = text_of(&message.content)?;
            match message.role.as_str() {
                "system" | "developer" => instructions.push(text),
                "user" => turns.push((Role::User, text)),
                "assistant" => turns.push((Role::Assistant, text)),
                "tool" | "function" => {
                    return Err((
                        "messages",
                        "Tool results come from the agent's own tools: send no tool messages.",
                    ));
                }
                _ => {
                    return Err((
                        "messages",
                        "A message's role must be system, developer, user or assistant.",
                    ));
                }
            }
        }
        let Some((Role::User, message)) = turns.pop() else {
            return Err((
                "messages",
                "The last message must be the user's: it is the one the agent answers.",
            ));
        };
        let instructions = instructions.join("\n\n");
        Ok(Parsed {
            instructions: (!instructions.trim().is_empty()).then_some(instructions),
            earlier: turns,
            message,
        })
    }
}

/// The agent `model` names among the owner's: its id, or a slug that names
/// exactly one of them. None when it names none.
async fn find_agent(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    model: &str,
) -> Result<Option<Uuid>, AppError> {
    if let Ok(id) = Uuid::parse_str(model.trim()) {
        return match app::agents::server::check_usable(&state.db, owner, id).await {
            Ok(()) => Ok(Some(id)),
            Err(AppError::NotFound) => Ok(None),
            Err(err) => Err(err),
        };
    }
    let wanted = app::agents::slug(model);
    if wanted.is_empty() {
        return Ok(None);
    }
    let agents = app::agents::server::list_agents(state, owner, key, "").await?;
    let mut named = agents
        .iter()
        .filter(|a| app::agents::slug(&a.name) == wanted);
    match (named.next(), named.next()) {
        (Some(agent), None) => Ok(Uuid::parse_str(&agent.id).ok()),
        (Some(_), Some(_)) => Err(AppError::invalid(
            "model",
            "More than one of your agents has that name: name the agent by its id.",
        )),
        (None, _) => Ok(None),
    }
}

/// What the response says about a reply that ended.
struct Ending {
    text: String,
    status: MessageStatus,
    error: Option<String>,
    input_tokens: u32,
    output_tokens: u32,
}

/// Why a reply's stream ended before its `Done`.
enum Cut {
    /// The key was revoked (or expired, or its account is being deleted).
    KeyRevoked,
    /// The run is no longer here (it ended without a word to this reader).
    Lost,
}

fn usage(ending: &Ending) -> Value {
    json!({
        "prompt_tokens": ending.input_tokens,
        "completion_tokens": ending.output_tokens,
        "total_tokens": ending.input_tokens + ending.output_tokens,
    })
}

/// The error a reply that did not complete answers with, if any: a status,
/// a code and a plain sentence.
fn failure(ending: &Ending) -> Option<(StatusCode, &'static str, String)> {
    match ending.status {
        MessageStatus::Complete | MessageStatus::Stopped => None,
        MessageStatus::AwaitingApproval => Some((
            StatusCode::FORBIDDEN,
            "approval_required",
            "The agent asks before calling one of its tools: approve or deny the call in \
             Enclave, in the conversation this request started."
                .to_owned(),
        )),
        MessageStatus::Interrupted | MessageStatus::Streaming => Some((
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            ending
                .error
                .clone()
                .unwrap_or_else(|| "The reply could not be finished.".to_owned()),
        )),
    }
}

fn cut_error(cut: Cut) -> (StatusCode, &'static str, &'static str) {
    match cut {
        Cut::KeyRevoked => (
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "This API key stopped working while the reply was written.",
        ),
        Cut::Lost => (
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "The reply ended unexpectedly; it is kept in Enclave as far as it got.",
        ),
    }
}

/// Where a streamed reply's text goes, as chunks.
struct Sink<'a> {
    tx: &'a tokio::sync::mpsc::Sender<Event>,
    meta: &'a Meta,
}

/// A reply's updates (`chat::server::reply_updates`).
type Updates = futures::stream::BoxStream<'static, app::chat::StreamUpdate>;

/// Follows the `updates` of the owner's `reply`, sending what it adds (text
/// only) to `sink` as it comes, and checking every second that `key_id`
/// still works (when it stops working, the run is stopped). Returns how it
/// ended.
async fn follow(
    state: &AppState,
    (owner, reply): (Uuid, Uuid),
    key_id: Uuid,
    mut updates: Updates,
    sink: Option<Sink<'_>>,
) -> Result<Ending, Cut> {
    let mut sent = String::new();
    let mut check = tokio::time::interval(KEY_CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    check.tick().await;
    loop {
        tokio::select! {
            update = updates.next() => {
                let added = match update {
                    None => return Err(Cut::Lost),
                    Some(StreamUpdate::Snapshot { text, .. }) => {
                        // Whole text so far: only what this reader lacks.
                        let added = text
                            .strip_prefix(sent.as_str())
                            .unwrap_or_default()
                            .to_owned();
                        sent = text;
                        added
                    }
                    Some(StreamUpdate::Delta { text }) => {
                        sent.push_str(&text);
                        text
                    }
                    Some(StreamUpdate::Part { .. }) => String::new(),
                    Some(StreamUpdate::Done { status, error, input_tokens, output_tokens }) => {
                        // Stopped because its key or account was cut off
                        // (not by a person pressing Stop): say so.
                        if status == MessageStatus::Stopped
                            && matches!(still_works(&state.db, key_id).await, Ok(false))
                        {
                            return Err(Cut::KeyRevoked);
                        }
                        return Ok(Ending {
                            text: sent,
                            status,
                            error,
                            input_tokens: input_tokens.unwrap_or(0),
                            output_tokens: output_tokens.unwrap_or(0),
                        });
                    }
                };
                if let Some(sink) = &sink
                    && !added.is_empty()
                    && sink
                        .tx
                        .send(data(&sink.meta.chunk(json!({"content": added}), None)))
                        .await
                        .is_err()
                {
                    // The reader is gone; the run goes on and is kept.
                    return Err(Cut::Lost);
                }
            }
            _ = check.tick() => {
                if matches!(still_works(&state.db, key_id).await, Ok(false)) {
                    state.runs.stop(reply, owner);
                    tracing::info!(api_key_id = %key_id, message_id = %reply, "reply ended: its api key stopped working");
                    return Err(Cut::KeyRevoked);
                }
            }
        }
    }
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (holder, key) = match holder(&state, &headers, Scope::Chat).await {
        Ok(found) => found,
        Err(res) => return res,
    };
    let request: CompletionRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return invalid(
                None,
                &format!("The request body is not a chat completion request: {err}."),
            );
        }
    };
    let parsed = match request.parse() {
        Ok(parsed) => parsed,
        Err((param, message)) => return invalid(Some(param), message),
    };
    let owner = holder.owner;
    let agent = match find_agent(&state, owner, &key, &request.model).await {
        Ok(Some(agent)) => agent,
        Ok(None) => {
            return error_with(
                StatusCode::NOT_FOUND,
                "model_not_found",
                &format!(
                    "The model `{}` does not exist or you do not have access to it: name one \
                     of your agents (GET /v1/models lists them).",
                    request.model.chars().take(100).collect::<String>()
                ),
                Some("model"),
            );
        }
        Err(err) => return app_error(&err),
    };
    let transient = request.store == Some(false);
    let sent = match app::chat::server::send_transcript(
        &state,
        owner,
        &key,
        agent,
        Transcript {
            earlier: &parsed.earlier,
            message: &parsed.message,
            instructions: parsed.instructions.as_deref(),
            transient,
        },
    )
    .await
    {
        Ok(sent) => sent,
        Err(err) => return app_error(&err),
    };
    let (Ok(reply), Ok(conversation)) = (
        Uuid::parse_str(&sent.reply_id),
        Uuid::parse_str(&sent.conversation_id),
    ) else {
        return unavailable("start the reply");
    };
    tracing::info!(api_key_id = %holder.key_id, message_id = %reply, transient, "api reply started");
    // Taken before a transient reply can be discarded: a short reply may
    // have ended already, and is then read from its row.
    let updates = match app::chat::server::reply_updates(&state, owner, &key, reply).await {
        Ok(updates) => updates,
        Err(err) => return app_error(&err),
    };
    if transient {
        // Deleted once the reply ends, whether or not anyone still reads it.
        let state = state.clone();
        tokio::spawn(async move {
            state.runs.ended(reply).await;
            if let Err(err) =
                app::chat::server::discard_transient(&state.db, owner, conversation).await
            {
                tracing::warn!(error = %err, "a transient conversation was not deleted (retention will)");
            }
        });
    }
    let meta = Meta {
        id: format!("chatcmpl-{}", reply.simple()),
        created: chrono::Utc::now().timestamp(),
        model: request.model.clone(),
        conversation: (!transient).then_some(conversation),
    };
    if request.stream {
        let include_usage = request.stream_options.unwrap_or_default().include_usage;
        stream(
            state,
            (owner, reply),
            holder.key_id,
            updates,
            meta,
            include_usage,
        )
    } else {
        complete(&state, (owner, reply), holder.key_id, updates, meta).await
    }
}

/// What every response about one reply says.
struct Meta {
    id: String,
    created: i64,
    model: String,
    /// The stored conversation (None when it is not kept).
    conversation: Option<Uuid>,
}

impl Meta {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null}],
        })
    }
}

async fn complete(
    state: &AppState,
    (owner, reply): (Uuid, Uuid),
    key_id: Uuid,
    updates: Updates,
    meta: Meta,
) -> Response {
    let ending = match follow(state, (owner, reply), key_id, updates, None).await {
        Ok(ending) => ending,
        Err(cut) => {
            let (status, code, message) = cut_error(cut);
            return error(status, code, message);
        }
    };
    if let Some((status, code, message)) = failure(&ending) {
        return error(status, code, &message);
    }
    let mut res = Json(json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": ending.text, "refusal": null},
            "finish_reason": "stop",
            "logprobs": null,
        }],
        "usage": usage(&ending),
    }))
    .into_response();
    if let Some(conversation) = meta.conversation
        && let Ok(value) = HeaderValue::from_str(&conversation.to_string())
    {
        res.headers_mut().insert(CONVERSATION_HEADER, value);
    }
    res
}

fn data(value: &Value) -> Event {
    Event::default().data(value.to_string())
}

/// The reply as OpenAI's streamed chunks. The stream is fed by a task of
/// its own, which ends when the reader goes away (the run goes on).
fn stream(
    state: AppState,
    (owner, reply): (Uuid, Uuid),
    key_id: Uuid,
    updates: Updates,
    meta: Meta,
    include_usage: bool,
) -> Response {
    let conversation = meta.conversation;
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let first = meta.chunk(json!({"role": "assistant", "content": ""}), None);
        if tx.send(data(&first)).await.is_err() {
            return;
        }
        let sink = Sink {
            tx: &tx,
            meta: &meta,
        };
        let ended = follow(&state, (owner, reply), key_id, updates, Some(sink)).await;
        let last = match ended {
            Ok(ending) => match failure(&ending) {
                None => {
                    let mut events = vec![data(&meta.chunk(json!({}), Some("stop")))];
                    if include_usage {
                        let mut chunk = meta.chunk(json!({}), None);
                        chunk["choices"] = json!([]);
                        chunk["usage"] = usage(&ending);
                        events.push(data(&chunk));
                    }
                    events.push(Event::default().data("[DONE]"));
                    events
                }
                Some((status, code, message)) => {
                    vec![data(&error_body(status, code, &message, None))]
                }
            },
            Err(cut) => {
                let (status, code, message) = cut_error(cut);
                vec![data(&error_body(status, code, message, None))]
            }
        };
        for event in last {
            if tx.send(event).await.is_err() {
                return;
            }
        }
    });
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|event| (Ok::<_, Infallible>(event), rx))
    });
    let mut res = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    // A proxy in front must pass each chunk on as it comes.
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(conversation) = conversation
        && let Ok(value) = HeaderValue::from_str(&conversation.to_string())
    {
        res.headers_mut().insert(CONVERSATION_HEADER, value);
    }
    res
}
