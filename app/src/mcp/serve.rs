//! Agents served as MCP servers (server only): `/mcp/agents/{id}` speaks
//! streamable HTTP in both protocol eras and offers one tool, `ask`, that
//! runs a turn of the agent through the same run engine as the chat page
//! and answers with the reply. The conversation appears in the owner's
//! chat list like any other.
//!
//! Off by default. The owner turns it on from the agent's page, which makes
//! a token for that agent alone (`agent_mcp_tokens`: sealed, so the page can
//! show it again, and found by its SHA-256). A request without a known token
//! is 401; a known token for another agent is 404, like every other id that
//! is not the caller's. Revoking deletes the row.
//!
//! Served statelessly in both eras (no `Mcp-Session-Id`): every request
//! carries the token, so any replica can answer any request.
//!
//! Sealed here: `agent_mcp_tokens.token`.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use futures::StreamExt as _;
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode,
        Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
        Tool, ToolAnnotations,
    },
    service::RequestContext,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::never::NeverSessionManager,
    },
};
use serde_json::{Value, json};
use uuid::Uuid;

use super::AgentMcpAccess;
use crate::{
    chat::{MessageStatus, ReplyPart, StreamUpdate},
    error::AppError,
    platform::{
        crypto::{DataKey, Place, Sealed, random_token, token_hash},
        keystore::{self, KeyUse, SealedColumn},
    },
    state::AppState,
};

/// The sealed columns of this part of the slice.
pub const SEALED: &[SealedColumn] = &[SealedColumn::owned("agent_mcp_tokens", "token")];

/// Tokens start so, which tells a secret scanner (and a person) what they are.
pub const TOKEN_PREFIX: &str = "enclave_mcp_";
/// The one tool an agent offers.
pub const ASK_TOOL: &str = "ask";

fn place(id: Uuid, owner: Uuid) -> Place {
    Place::new("agent_mcp_tokens", "token", id, owner)
}

fn new_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_token())
}

/// Where the agent answers.
pub fn endpoint(state: &AppState, agent: Uuid) -> String {
    format!(
        "{}/mcp/agents/{agent}",
        state.settings.public_url.trim_end_matches('/')
    )
}

async fn require_agent(state: &AppState, owner: Uuid, agent: Uuid) -> Result<(), AppError> {
    crate::agents::server::check_usable(&state.db, owner, agent).await
}

/// Whether the owner's agent is served, with its token when it is.
pub async fn access(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    agent: Uuid,
) -> Result<AgentMcpAccess, AppError> {
    require_agent(state, owner, agent).await?;
    type Row = (
        Uuid,
        Sealed,
        chrono::DateTime<chrono::Utc>,
        Option<chrono::DateTime<chrono::Utc>>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT id, token, created_at, last_used_at FROM agent_mcp_tokens
         WHERE agent_id = $1 AND owner_id = $2",
    )
    .bind(agent)
    .bind(owner)
    .fetch_optional(&state.db)
    .await?;
    let mut access = AgentMcpAccess {
        url: endpoint(state, agent),
        ..AgentMcpAccess::default()
    };
    if let Some((id, token, created, used)) = row {
        access.token = Some(key.open_text(place(id, owner), &token)?);
        access.created_at = Some(created.to_rfc3339());
        access.last_used_at = used.map(|t| t.to_rfc3339());
    }
    Ok(access)
}

/// Serves the owner's agent with a new token; a token it had stops working.
pub async fn enable(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    agent: Uuid,
) -> Result<AgentMcpAccess, AppError> {
    require_agent(state, owner, agent).await?;
    let token = new_token();
    let id = Uuid::new_v4();
    let mut tx = state.db.begin().await?;
    sqlx::query("DELETE FROM agent_mcp_tokens WHERE agent_id = $1 AND owner_id = $2")
        .bind(agent)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO agent_mcp_tokens (id, owner_id, agent_id, token, token_hash)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(owner)
    .bind(agent)
    .bind(key.seal_str(place(id, owner), &token))
    .bind(token_hash(&token))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(agent_id = %agent, owner_id = %owner, "agent served over MCP with a new token");
    access(state, owner, key, agent).await
}

/// Stops serving the owner's agent: its token stops working at once.
pub async fn disable(state: &AppState, owner: Uuid, agent: Uuid) -> Result<(), AppError> {
    require_agent(state, owner, agent).await?;
    sqlx::query("DELETE FROM agent_mcp_tokens WHERE agent_id = $1 AND owner_id = $2")
        .bind(agent)
        .bind(owner)
        .execute(&state.db)
        .await?;
    tracing::info!(agent_id = %agent, owner_id = %owner, "agent no longer served over MCP");
    Ok(())
}

// ---- the endpoint ----------------------------------------------------------------------

/// Who a request to `/mcp/agents/{id}` proved to be (its token's owner and
/// agent), for the handler.
#[derive(Debug, Clone, Copy)]
struct Caller {
    owner: Uuid,
    agent: Uuid,
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer realm=\"enclave\"")],
        "This agent answers only to the token made for it on its page in Enclave.",
    )
        .into_response()
}

/// Checks the token against the agent in the path.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let agent = request
        .uri()
        .path()
        .rsplit('/')
        .find(|s| !s.is_empty())
        .and_then(|s| Uuid::parse_str(s).ok());
    let Some(agent) = agent else {
        return (StatusCode::NOT_FOUND, "Not found.").into_response();
    };
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| t.starts_with(TOKEN_PREFIX));
    let Some(token) = token else {
        return unauthorized();
    };
    let found: Result<Option<(Uuid, Uuid)>, sqlx::Error> = sqlx::query_as(
        "UPDATE agent_mcp_tokens t SET last_used_at = now()
         FROM users u
         WHERE t.token_hash = $1 AND u.id = t.owner_id AND u.deleted_at IS NULL
           AND u.disabled_at IS NULL
         RETURNING t.owner_id, t.agent_id",
    )
    .bind(token_hash(token))
    .fetch_optional(&state.db)
    .await;
    match found {
        Ok(None) => unauthorized(),
        Ok(Some((_, served))) if served != agent => {
            (StatusCode::NOT_FOUND, "Not found.").into_response()
        }
        Ok(Some((owner, agent))) => {
            request.extensions_mut().insert(Caller { owner, agent });
            next.run(request).await
        }
        Err(err) => {
            let err = AppError::from(err);
            (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response()
        }
    }
}

/// The routes, for the server's router.
pub fn router<S: Clone + Send + Sync + 'static>(state: AppState) -> axum::Router<S> {
    let service = StreamableHttpService::new(
        {
            let state = state.clone();
            move || {
                Ok(AgentServer {
                    state: state.clone(),
                })
            }
        },
        Arc::new(NeverSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            // The token, not the Host, is what lets a request in; the
            // public URL behind a proxy may be any name.
            .disable_allowed_hosts()
            .with_sse_keep_alive(Some(std::time::Duration::from_secs(15))),
    );
    axum::Router::new()
        .route_service("/mcp/agents/{id}", service)
        .layer(middleware::from_fn_with_state(state, authenticate))
}

#[derive(Clone)]
struct AgentServer {
    state: AppState,
}

fn caller(context: &RequestContext<RoleServer>) -> Result<Caller, ErrorData> {
    context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>().copied())
        .ok_or_else(|| ErrorData::new(ErrorCode::INTERNAL_ERROR, "No caller.", None))
}

/// A tool result that says what went wrong (never internals).
fn failed(text: impl Into<String>) -> CallToolResponse {
    CallToolResult::error(vec![ContentBlock::text(text.into())]).into()
}

impl AgentServer {
    async fn key(&self, owner: Uuid) -> Result<DataKey, AppError> {
        keystore::user_key(
            &self.state.db,
            &self.state.crypto.keyring,
            owner,
            KeyUse::AgentMcpServer,
        )
        .await
    }

    async fn tool(&self, caller: Caller) -> Result<Tool, AppError> {
        let key = self.key(caller.owner).await?;
        let (spec, _) =
            crate::agents::server::load_agent(&self.state, caller.owner, &key, caller.agent)
                .await?;
        let mut description = format!(
            "Sends a message to the agent \u{201c}{}\u{201d} in Enclave and returns its reply. \
             Pass the conversation_id of an earlier answer to continue that conversation.",
            spec.name
        );
        if !spec.description.trim().is_empty() {
            description.push_str(" About the agent: ");
            description.push_str(spec.description.trim());
        }
        let schema = json!({
            "type": "object",
            "properties": {
                "message": {"type": "string", "description": "What to say to the agent."},
                "conversation_id": {
                    "type": "string",
                    "description": "Continue this conversation (from an earlier answer's structured content)."
                }
            },
            "required": ["message"]
        });
        Ok(Tool::new(
            ASK_TOOL,
            description,
            Arc::new(schema.as_object().cloned().unwrap_or_default()),
        )
        .with_title(format!("Ask {}", spec.name))
        .with_annotations(ToolAnnotations::new().read_only(false).open_world(true)))
    }

    /// Runs one turn of the agent and waits for its reply.
    async fn ask(
        &self,
        caller: Caller,
        args: &Value,
        context: &RequestContext<RoleServer>,
    ) -> CallToolResponse {
        let Some(message) = args.get("message").and_then(Value::as_str) else {
            return failed("Pass the message for the agent as \"message\".");
        };
        let conversation = match args.get("conversation_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) => match Uuid::parse_str(id.trim()) {
                Ok(id) => Some(id),
                Err(_) => return failed("There is no conversation with that id."),
            },
            Some(_) => return failed("conversation_id must be a string."),
        };
        let state = &self.state;
        let key = match self.key(caller.owner).await {
            Ok(key) => key,
            Err(err) => return failed(err.sentence()),
        };
        let sent = match crate::chat::server::send(
            state,
            caller.owner,
            &key,
            caller.agent,
            conversation,
            message,
            &[],
        )
        .await
        {
            Ok(sent) => sent,
            Err(AppError::NotFound) => return failed("There is no conversation with that id."),
            Err(err) => return failed(err.sentence()),
        };
        let Ok(reply) = Uuid::parse_str(&sent.reply_id) else {
            return failed("Something went wrong on our side.");
        };
        if let Some(updates) = state.runs.follow(reply, caller.owner) {
            let mut updates = std::pin::pin!(updates);
            loop {
                tokio::select! {
                    update = updates.next() => match update {
                        Some(StreamUpdate::Done { .. }) | None => break,
                        Some(_) => {}
                    },
                    () = context.ct.cancelled() => {
                        state.runs.stop(reply, caller.owner);
                        return failed("Cancelled: the agent was stopped.");
                    }
                }
            }
        }
        let view = match crate::chat::server::stored_reply(state, caller.owner, &key, reply).await {
            Ok(view) => view,
            Err(err) => return failed(err.sentence()),
        };
        let text = if view.parts.is_empty() {
            view.body.clone()
        } else {
            ReplyPart::text_of(&view.parts)
        };
        let structured = json!({
            "reply": text,
            "conversation_id": sent.conversation_id,
            "status": view.status.as_str(),
        });
        let mut result = match view.status {
            MessageStatus::Complete => CallToolResult::success(vec![ContentBlock::text(text)]),
            MessageStatus::AwaitingApproval => {
                CallToolResult::success(vec![ContentBlock::text(format!(
                    "{text}\n\n(The agent is waiting for its owner to approve a tool call in \
                     Enclave; ask again with this conversation_id once they have.)"
                ))])
            }
            _ => {
                let why = view
                    .error
                    .clone()
                    .unwrap_or_else(|| "The reply did not finish.".to_owned());
                CallToolResult::error(vec![ContentBlock::text(if text.is_empty() {
                    why
                } else {
                    format!("{text}\n\n({why})")
                })])
            }
        };
        result.structured_content = Some(structured);
        result.into()
    }
}

impl ServerHandler for AgentServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("enclave", env!("CARGO_PKG_VERSION")).with_title("Enclave"),
            )
            .with_instructions("One of your Enclave agents. Call `ask` with a message.")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = caller(&context)?;
        let tool = self
            .tool(caller)
            .await
            .map_err(|err| ErrorData::new(ErrorCode::INTERNAL_ERROR, err.sentence(), None))?;
        Ok(ListToolsResult::with_all_items(vec![tool]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = caller(&context)?;
        if request.name != ASK_TOOL {
            return Err(ErrorData::new(
                ErrorCode::INVALID_PARAMS,
                format!("This agent has one tool, {ASK_TOOL}."),
                None,
            ));
        }
        let args = Value::Object(request.arguments.unwrap_or_default());
        Ok(self.ask(caller, &args, &context).await)
    }
}
