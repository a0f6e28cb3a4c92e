//! The HTTP API under `/api/v1`: what the UI does with agents and chat, for
//! programs holding a personal API key (`Authorization: Bearer enc_…`).
//! The OpenAPI document is generated from these handlers (utoipa) and
//! served at `/api/openapi.json`, with Swagger UI at `/api/docs`.
//!
//! These types are the API's contract, kept apart from the UI's view
//! models so either can change without breaking the other. Every handler
//! checks the key, its scope and its rate limit first (`v1::holder`), and
//! every query names the key's owner: another user's id is 404. Errors are
//! `{"error": {"code", "message", "type", "param"}}` with a stable `code`
//! and a plain `message`, as on `/v1`.

use std::{convert::Infallible, time::Duration};

use app::{
    agents::{self, domain::AgentForm},
    api_keys::{Scope, server::still_works},
    chat::{MessageView, StreamUpdate},
    error::AppError,
    state::AppState,
};
use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{
        IntoResponse, Response,
        sse::{Event, KeepAlive, Sse},
    },
};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::v1::{app_error, error, holder, invalid};

/// How often a stream checks that its key still works.
const KEY_CHECK_EVERY: Duration = Duration::from_secs(1);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Enclave API",
        description = "Agents and chat for programs. Authenticate with a personal API key \
            (Settings → API keys) as a bearer token; each route needs the scope it names. \
            Errors are JSON: `{\"error\": {\"code\", \"message\"}}`. Every key may make \
            `ENCLAVE_API_LIMIT_PER_KEY` requests a minute (429 with `Retry-After` past it). \
            The OpenAI-compatible endpoints are under `/v1`."
    ),
    modifiers(&BearerKey),
    security(("api_key" = [])),
    tags(
        (name = "agents", description = "Your agents (scopes agents:read, agents:write)"),
        (name = "chat", description = "Conversations and replies (scope chat)"),
        (name = "knowledge", description = "Knowledge bases (scope knowledge)"),
    )
)]
struct ApiDoc;

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The `/api/v1` routes and their OpenAPI document.
pub fn router() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_agents, create_agent))
        .routes(routes!(get_agent, update_agent, delete_agent))
        .routes(routes!(list_conversations, send_message))
        .routes(routes!(get_conversation, delete_conversation))
        .routes(routes!(get_message))
        .routes(routes!(stream_message))
        .routes(routes!(stop_message))
        .routes(routes!(list_knowledge))
        .routes(routes!(search_knowledge))
        .split_for_parts()
}

/// An error, as every route answers one.
#[derive(Serialize, ToSchema)]
pub struct ApiError {
    error: ApiErrorDetail,
}

#[derive(Serialize, ToSchema)]
struct ApiErrorDetail {
    /// Stable, for programs: `invalid_api_key`, `insufficient_scope`,
    /// `not_found`, `invalid_request`, `rate_limit_exceeded`, …
    code: String,
    /// A plain sentence, for people.
    message: String,
    #[serde(rename = "type")]
    kind: String,
    /// The field at fault, if one is.
    param: Option<String>,
}

/// An agent in a list.
#[derive(Serialize, ToSchema)]
struct AgentSummary {
    id: Uuid,
    name: String,
    /// Its name as `model` on `/v1` (lower case, words joined by `-`).
    slug: String,
    description: String,
    provider: String,
    model: String,
    avatar: String,
}

/// An agent in full (never a key).
#[derive(Serialize, ToSchema)]
struct Agent {
    id: Uuid,
    name: String,
    slug: String,
    description: String,
    system_prompt: String,
    provider: String,
    model: String,
    base_url: Option<String>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_output_tokens: Option<u32>,
    conversation_starters: Vec<String>,
    avatar: String,
    /// The tools it may call.
    tools: Vec<String>,
    /// Of those, the ones that wait for a person's approval in Enclave.
    ask_first: Vec<String>,
    /// How many model calls one reply may take.
    step_limit: u32,
}

/// An agent to create, or what an agent becomes (all of it: fields left
/// out take their defaults). Its provider key, connections and knowledge
/// bases are chosen in Enclave and kept on a change.
#[derive(Deserialize, ToSchema)]
struct AgentInput {
    #[schema(min_length = 1, max_length = 80)]
    name: String,
    #[serde(default)]
    #[schema(max_length = 500)]
    description: String,
    #[serde(default)]
    #[schema(max_length = 32000)]
    system_prompt: String,
    /// Who runs the model (`demo` only on a development server).
    provider: ProviderName,
    #[schema(min_length = 1, max_length = 200)]
    model: String,
    /// Only for `openai_compatible`: the server's address.
    #[serde(default)]
    base_url: Option<String>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2)]
    temperature: Option<f32>,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1)]
    top_p: Option<f32>,
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1000000)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    conversation_starters: Vec<String>,
    #[serde(default)]
    avatar: Option<String>,
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    ask_first: Vec<String>,
    #[serde(default)]
    step_limit: Option<u32>,
}

/// A model provider.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum ProviderName {
    Openai,
    Anthropic,
    Google,
    OpenaiCompatible,
    Demo,
}

impl ProviderName {
    fn as_str(self) -> &'static str {
        match self {
            ProviderName::Openai => "openai",
            ProviderName::Anthropic => "anthropic",
            ProviderName::Google => "google",
            ProviderName::OpenaiCompatible => "openai_compatible",
            ProviderName::Demo => "demo",
        }
    }
}

#[derive(Serialize, ToSchema)]
struct Created {
    id: Uuid,
}

#[derive(Serialize, ToSchema)]
struct ConversationSummary {
    id: Uuid,
    title: String,
    /// When retention erases it unless a message comes first (YYYY-MM-DD).
    expires_on: String,
}

/// A conversation with its newest messages (oldest first).
#[derive(Serialize, ToSchema)]
struct Conversation {
    id: Uuid,
    agent_id: Uuid,
    title: String,
    messages: Vec<Message>,
    /// Whether older messages exist before the first one here.
    has_more: bool,
}

#[derive(Serialize, ToSchema)]
struct Message {
    id: Uuid,
    /// `user` or `assistant`.
    role: String,
    content: String,
    /// `streaming`, `complete`, `stopped`, `interrupted` or
    /// `awaiting_approval`.
    status: String,
    /// Why a reply did not complete, in a sentence.
    error: Option<String>,
    input_tokens: Option<u32>,
    output_tokens: Option<u32>,
}

/// A message to send: in a new conversation, or in `conversation_id`.
#[derive(Deserialize, ToSchema)]
struct NewMessage {
    #[schema(min_length = 1, max_length = 32000)]
    message: String,
    #[serde(default)]
    conversation_id: Option<Uuid>,
}

/// What sending started: follow the reply at
/// `/api/v1/messages/{reply_id}/stream`, or read it at
/// `/api/v1/messages/{reply_id}`.
#[derive(Serialize, ToSchema)]
struct Started {
    conversation_id: Uuid,
    user_message_id: Uuid,
    reply_id: Uuid,
}

/// One server-sent event of a reply's stream.
#[derive(Serialize, ToSchema)]
struct ReplyEvent {
    /// `snapshot`, `delta`, `part`, `done`, or `error` (the key stopped
    /// working).
    event: String,
    /// The event as JSON, its `type` the event's name: `snapshot` has
    /// `text` and `parts`, `delta` `text`, `part` `index` and `part`,
    /// `done` `status`, `error`, `input_tokens` and `output_tokens`.
    data: String,
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "Not found.")
}

/// A JSON body, or a sentence that says what is wrong with it.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, String> {
    serde_json::from_slice(bytes)
        .map_err(|err| format!("The request body could not be read: {err}."))
}

fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap_or_default()
}

fn message(view: MessageView) -> Message {
    Message {
        id: uuid(&view.id),
        role: view.role,
        content: view.body,
        status: view.status.as_str().to_owned(),
        error: view.error,
        input_tokens: view.input_tokens,
        output_tokens: view.output_tokens,
    }
}

fn json<T: Serialize>(status: StatusCode, value: T) -> Response {
    (status, Json(value)).into_response()
}

/// A value as JSON with `status`, or the error.
fn answer<T: Serialize>(status: StatusCode, result: Result<T, AppError>) -> Response {
    match result {
        Ok(value) => json(status, value),
        Err(err) => app_error(&err),
    }
}

macro_rules! caller {
    ($state:expr, $headers:expr, $scope:expr) => {
        match holder(&$state, &$headers, $scope).await {
            Ok(found) => found,
            Err(res) => return res,
        }
    };
}

/// A path id: not a UUID is simply not found.
macro_rules! path_id {
    ($raw:expr) => {
        match Uuid::parse_str(&$raw) {
            Ok(id) => id,
            Err(_) => return not_found(),
        }
    };
}

/// The request's JSON body, or the 400 that says what is wrong with it.
macro_rules! json_body {
    ($bytes:expr) => {
        match body(&$bytes) {
            Ok(value) => value,
            Err(why) => return invalid(None, &why),
        }
    };
}

/// List your agents.
#[utoipa::path(get, path = "/api/v1/agents", tag = "agents",
    responses(
        (status = 200, description = "Your agents, newest first", body = Vec<AgentSummary>),
        (status = 401, description = "No valid key", body = ApiError),
        (status = 403, description = "The key lacks agents:read", body = ApiError),
        (status = 429, description = "Over the key's limit", body = ApiError),
    ))]
async fn list_agents(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (holder, key) = caller!(state, headers, Scope::AgentsRead);
    let listed = agents::server::list_agents(&state, holder.owner, &key, "")
        .await
        .map(|list| {
            list.into_iter()
                .map(|a| AgentSummary {
                    id: uuid(&a.id),
                    slug: agents::slug(&a.name),
                    name: a.name,
                    description: a.description,
                    provider: a.provider.as_str().to_owned(),
                    model: a.model,
                    avatar: a.avatar,
                })
                .collect::<Vec<_>>()
        });
    answer(StatusCode::OK, listed)
}

/// One of your agents.
#[utoipa::path(get, path = "/api/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "The agent", body = Agent),
        (status = 404, description = "No such agent of yours", body = ApiError),
        (status = 401, description = "No valid key", body = ApiError),
        (status = 403, description = "The key lacks agents:read", body = ApiError),
    ))]
async fn get_agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let (holder, key) = caller!(state, headers, Scope::AgentsRead);
    let id = path_id!(raw);
    let found = agents::server::load_agent(&state, holder.owner, &key, id)
        .await
        .map(|(spec, _)| Agent {
            id,
            slug: agents::slug(&spec.name),
            name: spec.name,
            description: spec.description,
            system_prompt: spec.system_prompt,
            provider: spec.provider.as_str().to_owned(),
            model: spec.model,
            base_url: spec.base_url,
            temperature: spec.temperature,
            top_p: spec.top_p,
            max_output_tokens: spec.max_output_tokens,
            conversation_starters: spec.starters,
            avatar: spec.avatar,
            tools: spec.tools.enabled,
            ask_first: spec.tools.ask_first,
            step_limit: spec.tools.step_limit,
        });
    answer(StatusCode::OK, found)
}

impl AgentInput {
    /// Through the same rules as the agent form.
    fn spec(
        self,
        keep: Option<&app::tools::ToolConfig>,
    ) -> Result<agents::domain::AgentSpec, AppError> {
        let number = |n: Option<f32>| n.map(|n| n.to_string()).unwrap_or_default();
        let tools = app::tools::ToolConfig {
            enabled: self.tools,
            ask_first: self.ask_first,
            step_limit: self.step_limit.unwrap_or(app::tools::DEFAULT_STEP_LIMIT),
            allowed_hosts: keep.map(|t| t.allowed_hosts.clone()).unwrap_or_default(),
            connections: keep.map(|t| t.connections.clone()).unwrap_or_default(),
        };
        agents::domain::AgentSpec::parse(&AgentForm {
            name: self.name,
            description: self.description,
            system_prompt: self.system_prompt,
            provider: self.provider.as_str().to_owned(),
            model: self.model,
            base_url: self.base_url.unwrap_or_default(),
            temperature: number(self.temperature),
            top_p: number(self.top_p),
            max_output_tokens: self
                .max_output_tokens
                .map(|n| n.to_string())
                .unwrap_or_default(),
            starters: self.conversation_starters,
            avatar: self.avatar.unwrap_or_default(),
            tools,
        })
    }
}

/// Create an agent.
#[utoipa::path(post, path = "/api/v1/agents", tag = "agents",
    request_body = AgentInput,
    responses(
        (status = 201, description = "Created", body = Created),
        (status = 400, description = "The body is not an agent, or a field is wrong (`param` names it)", body = ApiError),
        (status = 401, description = "No valid key", body = ApiError),
        (status = 403, description = "The key lacks agents:write", body = ApiError),
    ))]
async fn create_agent(State(state): State<AppState>, headers: HeaderMap, bytes: Bytes) -> Response {
    let (holder, key) = caller!(state, headers, Scope::AgentsWrite);
    let input: AgentInput = json_body!(bytes);
    let created = async {
        let spec = input.spec(None)?;
        agents::server::create_agent(&state, holder.owner, &key, &spec, None, &[]).await
    }
    .await;
    answer(StatusCode::CREATED, created.map(|id| Created { id }))
}

/// Change an agent: the body is the whole agent, as for creating one.
#[utoipa::path(put, path = "/api/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    request_body = AgentInput,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "A field is wrong", body = ApiError),
        (status = 404, description = "No such agent of yours", body = ApiError),
        (status = 403, description = "The key lacks agents:write", body = ApiError),
    ))]
async fn update_agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    bytes: Bytes,
) -> Response {
    let (holder, key) = caller!(state, headers, Scope::AgentsWrite);
    let id = path_id!(raw);
    let input: AgentInput = json_body!(bytes);
    let updated = async {
        // What is chosen in Enclave stays: the provider key, the
        // connections, the hosts, the knowledge bases.
        let detail = agents::server::get_agent(&state, holder.owner, &key, id).await?;
        let spec = input.spec(Some(&detail.spec.tools))?;
        let provider_key = detail
            .provider_key_id
            .as_deref()
            .and_then(|k| Uuid::parse_str(k).ok())
            .filter(|_| spec.provider == detail.spec.provider);
        let bases: Vec<Uuid> = detail
            .knowledge
            .iter()
            .filter_map(|b| Uuid::parse_str(&b.id).ok())
            .collect();
        agents::server::update_agent(&state, holder.owner, &key, id, &spec, provider_key, &bases)
            .await
    }
    .await;
    match updated {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => app_error(&err),
    }
}

/// Delete an agent and its conversations.
#[utoipa::path(delete, path = "/api/v1/agents/{id}", tag = "agents",
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such agent of yours", body = ApiError),
        (status = 403, description = "The key lacks agents:write", body = ApiError),
    ))]
async fn delete_agent(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let (holder, _) = caller!(state, headers, Scope::AgentsWrite);
    let id = path_id!(raw);
    match agents::server::delete_agent(&state, holder.owner, id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => app_error(&err),
    }
}

/// An agent's conversations, newest first.
#[utoipa::path(get, path = "/api/v1/agents/{id}/conversations", tag = "chat",
    params(("id" = String, Path, description = "The agent's id")),
    responses(
        (status = 200, description = "Its conversations", body = Vec<ConversationSummary>),
        (status = 404, description = "No such agent of yours", body = ApiError),
        (status = 403, description = "The key lacks chat", body = ApiError),
    ))]
async fn list_conversations(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let (holder, key) = caller!(state, headers, Scope::Chat);
    let id = path_id!(raw);
    let listed = app::chat::server::list_conversations(&state, holder.owner, &key, id)
        .await
        .map(|list| {
            list.into_iter()
                .map(|c| ConversationSummary {
                    id: uuid(&c.id),
                    title: c.title,
                    expires_on: c.expires_on,
                })
                .collect::<Vec<_>>()
        });
    answer(StatusCode::OK, listed)
}

/// Send a message to an agent; its reply is written by the server whether
/// or not anyone follows it.
#[utoipa::path(post, path = "/api/v1/agents/{id}/conversations", tag = "chat",
    params(("id" = String, Path, description = "The agent's id")),
    request_body = NewMessage,
    responses(
        (status = 202, description = "The reply is being written", body = Started),
        (status = 400, description = "No message, or the conversation is busy", body = ApiError),
        (status = 404, description = "No such agent or conversation of yours", body = ApiError),
        (status = 403, description = "The key lacks chat", body = ApiError),
        (status = 429, description = "Over the key's or the chat limit", body = ApiError),
    ))]
async fn send_message(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    bytes: Bytes,
) -> Response {
    let (holder, key) = caller!(state, headers, Scope::Chat);
    let agent = path_id!(raw);
    let input: NewMessage = json_body!(bytes);
    let sent = app::chat::server::send(
        &state,
        holder.owner,
        &key,
        agent,
        input.conversation_id,
        &input.message,
        &[],
    )
    .await
    .map(|sent| Started {
        conversation_id: uuid(&sent.conversation_id),
        user_message_id: uuid(&sent.user_message_id),
        reply_id: uuid(&sent.reply_id),
    });
    answer(StatusCode::ACCEPTED, sent)
}

/// A conversation with its newest messages.
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "chat",
    params(("id" = String, Path, description = "The conversation's id")),
    responses(
        (status = 200, description = "The conversation", body = Conversation),
        (status = 404, description = "No such conversation of yours", body = ApiError),
        (status = 403, description = "The key lacks chat", body = ApiError),
    ))]
async fn get_conversation(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let (holder, key) = caller!(state, headers, Scope::Chat);
    let id = path_id!(raw);
    let found = app::chat::server::get_conversation(&state, holder.owner, &key, id, None)
        .await
        .map(|c| Conversation {
            id,
            agent_id: uuid(&c.agent_id),
            title: c.title,
            messages: c.messages.into_iter().map(message).collect(),
            has_more: c.has_more,
        });
    answer(StatusCode::OK, found)
}

/// Delete a conversation (a reply being written in it is stopped first).
#[utoipa::path(delete, path = "/api/v1/conversations/{id}", tag = "chat",
    params(("id" = String, Path, description = "The conversation's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such conversation of yours", body = ApiError),
        (status = 403, description = "The key lacks chat", body = ApiError),
    ))]
async fn delete_conversation(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let (holder, _) = caller!(state, headers, Scope::Chat);
    let id = path_id!(raw);
    match app::chat::server::delete(&state, holder.owner, id).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => app_error(&err),
    }
}

/// A message as stored (a reply being written shows its last checkpoint).
#[utoipa::path(get, path = "/api/v1/messages/{id}", tag = "chat",
    params(("id" = String, Path, description = "The message's id")),
    responses(
        (status = 200, description = "The message", body = Message),
        (status = 404, description = "No such message of yours", body = ApiError),
        (status = 403, description = "The key lacks chat", body = ApiError),
    ))]
async fn get_message(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let (holder, key) = caller!(state, headers, Scope::Chat);
    let id = path_id!(raw);
    answer(
        StatusCode::OK,
        app::chat::server::stored_reply(&state, holder.owner, &key, id)
            .await
            .map(message),
    )
}

/// Stop a reply being written (what it has so far is kept).
#[utoipa::path(post, path = "/api/v1/messages/{id}/stop", tag = "chat",
    params(("id" = String, Path, description = "The reply's id")),
    responses(
        (status = 204, description = "Stopped (or it had ended)"),
        (status = 404, description = "No such reply of yours", body = ApiError),
        (status = 403, description = "The key lacks chat", body = ApiError),
    ))]
async fn stop_message(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let (holder, key) = caller!(state, headers, Scope::Chat);
    let id = path_id!(raw);
    match app::chat::server::stop(&state, holder.owner, &key, id).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => app_error(&err),
    }
}

/// Follow a reply as server-sent events: `snapshot` (everything so far),
/// then `delta`s (more text) and `part`s (tool calls), then `done` (its
/// status, error and token counts). A finished reply sends its text and
/// `done` at once. The stream ends within a second of its key being
/// revoked; the reply goes on.
#[utoipa::path(get, path = "/api/v1/messages/{id}/stream", tag = "chat",
    params(("id" = String, Path, description = "The reply's id")),
    responses(
        (status = 200, description = "Server-sent events: snapshot, delta, part, done", content_type = "text/event-stream", body = ReplyEvent),
        (status = 404, description = "No such reply of yours", body = ApiError),
        (status = 403, description = "The key lacks chat", body = ApiError),
    ))]
async fn stream_message(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Response {
    let (holder, key) = caller!(state, headers, Scope::Chat);
    let id = path_id!(raw);
    let owner = holder.owner;
    let updates = match state.runs.follow(id, owner) {
        Some(updates) => updates.boxed(),
        None => {
            let stored = match app::chat::server::stored_reply(&state, owner, &key, id).await {
                Ok(stored) if stored.role == "assistant" => stored,
                Ok(_) => return not_found(),
                Err(err) => return app_error(&err),
            };
            let done = StreamUpdate::Done {
                status: stored.status,
                error: stored.error.clone(),
                input_tokens: stored.input_tokens,
                output_tokens: stored.output_tokens,
            };
            futures::stream::iter([
                StreamUpdate::Snapshot {
                    text: stored.body,
                    parts: stored.parts,
                },
                done,
            ])
            .boxed()
        }
    };
    // Ends when the reply ends, or when the key stops working.
    let key_id = holder.key_id;
    let db = state.db.clone();
    let events = futures::stream::unfold(
        (updates, tokio::time::interval(KEY_CHECK_EVERY), false),
        move |(mut updates, mut check, ended)| {
            let db = db.clone();
            async move {
                if ended {
                    return None;
                }
                loop {
                    tokio::select! {
                        update = updates.next() => {
                            let update = update?;
                            let done = matches!(update, StreamUpdate::Done { .. });
                            return Some((Ok::<_, Infallible>(crate::chat_stream::event(&update)), (updates, check, done)));
                        }
                        _ = check.tick() => {
                            if matches!(still_works(&db, key_id).await, Ok(false)) {
                                let gone = Event::default().event("error").data(
                                    serde_json::json!({"error": {"code": "invalid_api_key",
                                        "message": "This API key stopped working."}}).to_string(),
                                );
                                return Some((Ok(gone), (updates, check, true)));
                            }
                        }
                    }
                }
            }
        },
    );
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// A knowledge base (its documents' text stays in Enclave: search it).
#[derive(Serialize, ToSchema)]
struct KnowledgeBase {
    id: Uuid,
    name: String,
    description: String,
    documents: u32,
    passages: u32,
}

/// What to look for.
#[derive(Deserialize, ToSchema)]
struct KnowledgeQuery {
    #[schema(min_length = 1, max_length = 2000)]
    query: String,
}

/// A passage found, best first.
#[derive(Serialize, ToSchema)]
struct KnowledgeHit {
    document_id: Uuid,
    /// The document's name.
    document: String,
    /// Where in it: "page 3 · Installation" (may be empty).
    location: String,
    text: String,
    /// Cosine similarity to the query, from -1 to 1.
    score: f32,
}

/// List your knowledge bases.
#[utoipa::path(get, path = "/api/v1/knowledge", tag = "knowledge",
    responses(
        (status = 200, description = "Your knowledge bases, oldest first", body = Vec<KnowledgeBase>),
        (status = 401, description = "No valid key", body = ApiError),
        (status = 403, description = "The key lacks knowledge", body = ApiError),
    ))]
async fn list_knowledge(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (holder, key) = caller!(state, headers, Scope::Knowledge);
    let listed = app::knowledge::server::list_usable(&state, holder.owner, &key)
        .await
        .map(|bases| {
            bases
                .into_iter()
                .map(|b| KnowledgeBase {
                    id: uuid(&b.id),
                    name: b.name,
                    description: b.description,
                    documents: b.documents,
                    passages: b.passages,
                })
                .collect::<Vec<_>>()
        });
    answer(StatusCode::OK, listed)
}

/// Search a knowledge base for the passages most like the query (its own
/// embedding model reads the query).
#[utoipa::path(post, path = "/api/v1/knowledge/{id}/search", tag = "knowledge",
    params(("id" = String, Path, description = "The knowledge base's id")),
    request_body = KnowledgeQuery,
    responses(
        (status = 200, description = "Passages, best first (at most 5)", body = Vec<KnowledgeHit>),
        (status = 400, description = "No query, or the embedding model refused it", body = ApiError),
        (status = 404, description = "No such knowledge base of yours", body = ApiError),
        (status = 403, description = "The key lacks knowledge", body = ApiError),
    ))]
async fn search_knowledge(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    bytes: Bytes,
) -> Response {
    let (holder, key) = caller!(state, headers, Scope::Knowledge);
    let id = path_id!(raw);
    let input: KnowledgeQuery = json_body!(bytes);
    if input.query.chars().count() > 2000 {
        return invalid(Some("query"), "A query has at most 2000 characters.");
    }
    let found = app::knowledge::server::search(
        &state,
        holder.owner,
        &key,
        &[id],
        &input.query,
        app::knowledge::server::TOP_K,
    )
    .await
    .map(|hits| {
        hits.into_iter()
            .map(|p| KnowledgeHit {
                document_id: uuid(&p.document_id),
                document: p.document,
                location: p.location,
                text: p.text,
                score: p.score,
            })
            .collect::<Vec<_>>()
    });
    answer(StatusCode::OK, found)
}
