//! MCP servers (server only): the queries, the protocol client and the tool
//! every enabled MCP tool becomes. Every query names the owner: another
//! user's server is `NotFound`, exactly like one that does not exist.
//!
//! The client is the official SDK (`rmcp`) over a reqwest client from the
//! egress policy, pinned to the address it checked and following no
//! redirect. It tries the stateless 2026-07-28 revision first
//! (`server/discover`) and falls back to the 2025-11-25 handshake
//! (`initialize`, `Mcp-Session-Id`, SSE answers).
//!
//! Sealed here: `mcp_servers.name`, `url`, `header_name`, `secret`,
//! `masked`, `tools`, `last_error`.

use std::{borrow::Cow, collections::HashMap, sync::Arc, time::Duration};

use futures::future::BoxFuture;
use rmcp::{
    ClientHandler, RoleClient, ServiceError,
    model::{
        CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ContentBlock,
        Implementation, ProtocolVersion, ResourceContents,
    },
    service::{
        ClientInitializeError, ClientLifecycleMode, ClientServiceExt, NotificationContext,
        RunningService,
    },
    transport::{
        StreamableHttpClientTransport,
        streamable_http_client::{StreamableHttpClientTransportConfig, StreamableHttpError},
    },
};
use serde_json::Value;
use uuid::Uuid;

use super::{
    DESCRIPTION_MAX, MAX_TOOLS, McpAuth, McpServerView, McpToolInfo, NewMcpServer, SCHEMA_MAX,
    parse_tool_key, shown_url,
};
use crate::{
    error::AppError,
    llm::ToolDecl,
    platform::{
        crypto::{DataKey, Place, Sealed},
        egress::EgressError,
        keystore::SealedColumn,
    },
    state::AppState,
    tools::server::{Tool, ToolCtx, ToolError, ToolOutput},
};

/// The sealed columns of this slice (`keys verify` opens them all).
pub const SEALED: &[SealedColumn] = &[
    SealedColumn::owned("mcp_servers", "name"),
    SealedColumn::owned("mcp_servers", "url"),
    SealedColumn::owned("mcp_servers", "header_name"),
    SealedColumn::owned("mcp_servers", "secret"),
    SealedColumn::owned("mcp_servers", "masked"),
    SealedColumn::owned("mcp_servers", "tools"),
    SealedColumn::owned("mcp_servers", "last_error"),
];

/// The largest answer read from a server (one JSON body or one SSE event).
const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// The longest listing a server's tools may take (the tool timeout, when
/// the operator set a shorter one).
const REFRESH_TIMEOUT: Duration = Duration::from_secs(30);

fn refresh_timeout(state: &AppState) -> Duration {
    state.settings.tool_timeout.min(REFRESH_TIMEOUT)
}

fn place(column: &'static str, id: Uuid, owner: Uuid) -> Place {
    Place::new("mcp_servers", column, id, owner)
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    name: Sealed,
    url: Sealed,
    auth: String,
    header_name: Option<Sealed>,
    masked: Option<Sealed>,
    tools: Option<Sealed>,
    refreshed_at: Option<chrono::DateTime<chrono::Utc>>,
    last_error: Option<Sealed>,
    signed_in: bool,
}

/// The columns `Row` reads.
const ROW_COLUMNS: &str = "id, name, url, auth, header_name, masked, tools, refreshed_at, \
                           last_error, (oauth_tokens IS NOT NULL) AS signed_in";

impl Row {
    fn view(&self, key: &DataKey, owner: Uuid) -> Result<McpServerView, AppError> {
        let open = |column, sealed: &Sealed| key.open_text(place(column, self.id, owner), sealed);
        let open_opt =
            |column, sealed: &Option<Sealed>| sealed.as_ref().map(|s| open(column, s)).transpose();
        let tools = match open_opt("tools", &self.tools)? {
            Some(json) => serde_json::from_str(&json).map_err(AppError::internal)?,
            None => Vec::new(),
        };
        Ok(McpServerView {
            id: self.id.to_string(),
            name: open("name", &self.name)?,
            url: shown_url(&open("url", &self.url)?),
            auth: McpAuth::parse(&self.auth)
                .ok_or_else(|| AppError::internal(format!("unknown MCP auth {:?}", self.auth)))?,
            header_name: open_opt("header_name", &self.header_name)?,
            masked: open_opt("masked", &self.masked)?,
            tools,
            refreshed_at: self.refreshed_at.map(|t| t.to_rfc3339()),
            last_error: open_opt("last_error", &self.last_error)?,
            signed_in: self.signed_in,
        })
    }
}

pub async fn list(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
) -> Result<Vec<McpServerView>, AppError> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ROW_COLUMNS} FROM mcp_servers WHERE owner_id = $1 ORDER BY created_at"
    )))
    .bind(owner)
    .fetch_all(&state.db)
    .await?;
    rows.iter().map(|row| row.view(key, owner)).collect()
}

pub async fn get(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<McpServerView, AppError> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {ROW_COLUMNS} FROM mcp_servers WHERE id = $1 AND owner_id = $2"
    )))
    .bind(id)
    .bind(owner)
    .fetch_optional(&state.db)
    .await?;
    row.ok_or(AppError::NotFound)?.view(key, owner)
}

/// Stores a new server, then lists its tools. A server that cannot be
/// reached is kept all the same, with the reason shown beside it: the user
/// loses nothing they typed and can refresh once it is up.
pub async fn add(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    new: &NewMcpServer,
) -> Result<McpServerView, AppError> {
    let id = Uuid::new_v4();
    let seal = |column, value: &str| key.seal_str(place(column, id, owner), value);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM mcp_servers WHERE owner_id = $1")
        .bind(owner)
        .fetch_one(&state.db)
        .await?;
    if count >= 50 {
        return Err(AppError::invalid(
            "url",
            "You have 50 MCP servers already; delete one first.",
        ));
    }
    sqlx::query(
        "INSERT INTO mcp_servers (id, owner_id, name, url, auth, header_name, secret, masked)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(owner)
    .bind(seal("name", &new.name))
    .bind(seal("url", &new.url))
    .bind(new.auth.as_str())
    .bind(new.header_name.as_deref().map(|h| seal("header_name", h)))
    .bind(new.secret.as_deref().map(|s| seal("secret", s)))
    .bind(
        new.secret
            .as_deref()
            .map(|s| seal("masked", &crate::provider_keys::mask_key(s))),
    )
    .execute(&state.db)
    .await?;
    tracing::info!(mcp_server_id = %id, owner_id = %owner, auth = new.auth.as_str(), "MCP server added");
    if new.auth == McpAuth::OAuth {
        // Its tools are listed once the user has signed in.
        return get(state, owner, key, id).await;
    }
    refresh(state, owner, key, id).await
}

pub async fn replace_secret(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
    secret: &str,
) -> Result<(), AppError> {
    let done = sqlx::query(
        "UPDATE mcp_servers SET secret = $3, masked = $4, updated_at = now()
         WHERE id = $1 AND owner_id = $2 AND auth = 'header'",
    )
    .bind(id)
    .bind(owner)
    .bind(key.seal_str(place("secret", id, owner), secret))
    .bind(key.seal_str(
        place("masked", id, owner),
        &crate::provider_keys::mask_key(secret),
    ))
    .execute(&state.db)
    .await?;
    crate::error::found(done)?;
    tracing::info!(mcp_server_id = %id, owner_id = %owner, "MCP server secret replaced");
    Ok(())
}

pub async fn delete(state: &AppState, owner: Uuid, id: Uuid) -> Result<(), AppError> {
    let done = sqlx::query("DELETE FROM mcp_servers WHERE id = $1 AND owner_id = $2")
        .bind(id)
        .bind(owner)
        .execute(&state.db)
        .await?;
    crate::error::found(done)?;
    tracing::info!(mcp_server_id = %id, owner_id = %owner, "MCP server deleted");
    Ok(())
}

/// Reads the server's tools and keeps them. A failure is kept as the
/// server's last error (and the tools it had stay), so Settings can show
/// it; only a missing server is an `Err`.
pub async fn refresh(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<McpServerView, AppError> {
    let target = Target::load(state, owner, key, id).await?;
    let limit = refresh_timeout(state);
    let listed = tokio::time::timeout(limit, async {
        let client = connect(state, &target, Listener::quiet()).await?;
        let tools = client.list_all_tools().await.map_err(|e| {
            describe_service_error(&e, &target.host)
                .unwrap_or_else(|| format!("{} did not list its tools.", target.host))
        });
        // Close the session (a DELETE for servers that keep one).
        let _ = client.cancel().await;
        tools
    })
    .await
    .unwrap_or_else(|_| {
        let secs = limit.as_secs();
        Err(format!(
            "{} did not answer within {secs} second{}.",
            target.host,
            if secs == 1 { "" } else { "s" }
        ))
    });
    match listed {
        Ok(tools) => store_tools(state, owner, key, id, &keep_tools(tools)).await?,
        Err(message) => {
            tracing::info!(mcp_server_id = %id, owner_id = %owner, "MCP server refresh failed");
            record_error(state, owner, key, id, &message).await?;
        }
    }
    get(state, owner, key, id).await
}

/// Keeps `message` as the server's last error, for Settings.
pub(super) async fn record_error(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
    message: &str,
) -> Result<(), AppError> {
    sqlx::query(
        "UPDATE mcp_servers SET last_error = $3, updated_at = now()
         WHERE id = $1 AND owner_id = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(key.seal_str(place("last_error", id, owner), message))
    .execute(&state.db)
    .await?;
    Ok(())
}

async fn store_tools(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
    tools: &[McpToolInfo],
) -> Result<(), AppError> {
    let json = serde_json::to_string(tools).map_err(AppError::internal)?;
    sqlx::query(
        "UPDATE mcp_servers SET tools = $3, refreshed_at = now(), last_error = NULL,
                updated_at = now()
         WHERE id = $1 AND owner_id = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(key.seal_str(place("tools", id, owner), &json))
    .execute(&state.db)
    .await?;
    tracing::info!(mcp_server_id = %id, owner_id = %owner, tools = tools.len(), "MCP tools listed");
    Ok(())
}

/// What Enclave keeps of a server's tool list: at most `MAX_TOOLS`, text
/// cut to size, and a tool whose schema no model could use marked so.
fn keep_tools(tools: Vec<rmcp::model::Tool>) -> Vec<McpToolInfo> {
    tools
        .into_iter()
        .take(MAX_TOOLS)
        .map(|tool| {
            let schema = Value::Object((*tool.input_schema).clone());
            let schema_len = schema.to_string().len();
            let unusable = if tool.name.is_empty() || tool.name.len() > 128 {
                Some("Its name is empty or longer than 128 characters.".to_owned())
            } else if schema.get("type").and_then(Value::as_str) != Some("object") {
                Some("Its input schema is not a JSON object schema.".to_owned())
            } else if schema_len > SCHEMA_MAX {
                Some(format!(
                    "Its input schema is larger than {} KiB.",
                    SCHEMA_MAX / 1024
                ))
            } else {
                None
            };
            McpToolInfo {
                name: tool.name.chars().take(128).collect(),
                title: tool
                    .title
                    .or_else(|| tool.annotations.and_then(|a| a.title))
                    .map(|t| t.chars().take(200).collect()),
                description: tool
                    .description
                    .map(|d| d.chars().take(DESCRIPTION_MAX).collect())
                    .unwrap_or_default(),
                input_schema: if unusable.is_some() {
                    Value::Null
                } else {
                    schema
                },
                unusable,
            }
        })
        .collect()
}

/// What it takes to reach one server: its address and credentials, opened
/// for one use and never logged.
#[derive(Clone)]
struct Target {
    id: Uuid,
    url: String,
    /// Only the host, for messages.
    host: String,
    header: Option<(String, String)>,
    /// Why no request can be made (an OAuth server the user must sign in
    /// to again), in words.
    blocked: Option<String>,
    oauth: bool,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("id", &self.id)
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl Target {
    async fn load(
        state: &AppState,
        owner: Uuid,
        key: &DataKey,
        id: Uuid,
    ) -> Result<Target, AppError> {
        #[derive(sqlx::FromRow)]
        struct SecretRow {
            url: Sealed,
            auth: String,
            header_name: Option<Sealed>,
            secret: Option<Sealed>,
        }
        let row: SecretRow = sqlx::query_as(
            "SELECT url, auth, header_name, secret FROM mcp_servers
             WHERE id = $1 AND owner_id = $2",
        )
        .bind(id)
        .bind(owner)
        .fetch_optional(&state.db)
        .await?
        .ok_or(AppError::NotFound)?;
        let open = |column, sealed: &Sealed| key.open_text(place(column, id, owner), sealed);
        let url = open("url", &row.url)?;
        let mut header = match (&row.header_name, &row.secret) {
            (Some(name), Some(secret)) => {
                Some((open("header_name", name)?, open("secret", secret)?))
            }
            _ => None,
        };
        let oauth = row.auth == McpAuth::OAuth.as_str();
        let mut blocked = None;
        if oauth {
            match super::oauth::access_token(state, owner, key, id).await {
                Ok(token) => header = Some(("Authorization".to_owned(), token)),
                Err(message) => blocked = Some(message),
            }
        }
        let host = url::Url::parse(&url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "The MCP server".to_owned());
        Ok(Target {
            id,
            url,
            host,
            header,
            blocked,
            oauth,
        })
    }
}

/// The client side of a session: says who Enclave is, and refreshes the
/// stored tool list when the server says it changed.
#[derive(Clone)]
struct Listener {
    on_change: Option<Arc<ChangeRefresh>>,
}

struct ChangeRefresh {
    state: AppState,
    owner: Uuid,
    key: DataKey,
    id: Uuid,
    host: String,
}

impl Listener {
    fn quiet() -> Self {
        Listener { on_change: None }
    }
}

impl ClientHandler for Listener {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("enclave", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::V_2025_11_25)
    }

    async fn on_tool_list_changed(&self, context: NotificationContext<RoleClient>) {
        let Some(change) = self.on_change.clone() else {
            return;
        };
        let peer = context.peer;
        // Not awaited here: the notification handler must not hold up the
        // session that is answering a call.
        tokio::spawn(async move {
            let limit = refresh_timeout(&change.state);
            let listed = tokio::time::timeout(limit, peer.list_all_tools()).await;
            match listed {
                Ok(Ok(tools)) => {
                    let kept = keep_tools(tools);
                    if let Err(err) =
                        store_tools(&change.state, change.owner, &change.key, change.id, &kept)
                            .await
                    {
                        tracing::warn!(mcp_server_id = %change.id, error = %err, "could not store changed MCP tools");
                    }
                }
                _ => {
                    // The call's session may be closed already: its answer
                    // came and its caller ended it before this task ran (a
                    // loaded machine). Read them in a session of our own;
                    // `refresh` keeps a failure as the server's last error.
                    tracing::info!(
                        mcp_server_id = %change.id,
                        host = %change.host,
                        "MCP server said its tools changed; listing them in a new session"
                    );
                    if let Err(err) =
                        refresh(&change.state, change.owner, &change.key, change.id).await
                    {
                        tracing::warn!(mcp_server_id = %change.id, error = %err, "could not read changed MCP tools");
                    }
                }
            }
        });
    }
}

type Client = RunningService<RoleClient, Listener>;

/// Opens a session with the server: over the egress client, both protocol
/// eras, with the server's secret header if it has one.
async fn connect(state: &AppState, target: &Target, listener: Listener) -> Result<Client, String> {
    if let Some(message) = &target.blocked {
        return Err(message.clone());
    }
    let http = state
        .egress
        .client_for(&target.url)
        .await
        .map_err(|e| egress_message(&e))?;
    let mut config = StreamableHttpClientTransportConfig::with_uri(target.url.as_str())
        .max_json_response_size(MAX_RESPONSE_BYTES)
        .max_sse_event_size(MAX_RESPONSE_BYTES)
        .max_error_response_size(4096);
    if let Some((name, secret)) = &target.header {
        if name.eq_ignore_ascii_case("authorization") {
            // rmcp adds the "Bearer " itself.
            let token = secret
                .strip_prefix("Bearer ")
                .or_else(|| secret.strip_prefix("bearer "))
                .unwrap_or(secret);
            config = config.auth_header(token.to_owned());
        } else {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| "The secret's header name is not a valid header.".to_owned())?;
            let mut value = reqwest::header::HeaderValue::from_str(secret)
                .map_err(|_| "The secret holds characters no server accepts.".to_owned())?;
            value.set_sensitive(true);
            config = config.custom_headers(HashMap::from([(name, value)]));
        }
    }
    let start = |mode: ClientLifecycleMode| {
        let transport = StreamableHttpClientTransport::with_client(http.clone(), config.clone());
        listener.clone().serve_with_lifecycle(transport, mode)
    };
    let mut outcome = start(ClientLifecycleMode::Auto {
        preferred_versions: vec![ProtocolVersion::V_2026_07_28],
        legacy_version: Some(ProtocolVersion::V_2025_11_25),
    })
    .await;
    // A server that answers `server/discover` with only versions of the
    // handshake era: speak that era.
    if let Err(ClientInitializeError::NoCompatibleProtocolVersion {
        server_supported, ..
    }) = &outcome
        && server_supported.iter().any(ProtocolVersion::has_initialize)
    {
        outcome = start(ClientLifecycleMode::Initialize).await;
    }
    outcome.map_err(|e| {
        if e.is_authorization_required() {
            return if target.oauth {
                format!(
                    "{} refused the sign-in. Sign in to it again (Settings → MCP servers).",
                    target.host
                )
            } else {
                format!(
                    "{} refused the credentials (it asks for authorization).",
                    target.host
                )
            };
        }
        describe_init_error(&e, &target.host)
            .unwrap_or_else(|| format!("{} did not answer as an MCP server.", target.host))
    })
}

fn describe_init_error(err: &ClientInitializeError, host: &str) -> Option<String> {
    match err {
        ClientInitializeError::TransportError { error, .. } => describe_error(error, host),
        ClientInitializeError::LegacyFallbackFailed { fallback, .. } => {
            describe_init_error(fallback, host)
        }
        ClientInitializeError::JsonRpcError(data) => Some(format!(
            "{host} said: {}",
            data.message.chars().take(300).collect::<String>()
        )),
        ClientInitializeError::NoCompatibleProtocolVersion { .. } => Some(format!(
            "{host} speaks no version of MCP that Enclave does."
        )),
        ClientInitializeError::ConnectionClosed(_) => Some(format!(
            "The connection to {host} closed during the handshake."
        )),
        other => describe_error(other, host),
    }
}

fn egress_message(err: &EgressError) -> String {
    err.to_string()
}

/// Words for an error from the SDK, found by walking its causes: never the
/// URL (it may hold a key) and never a raw body.
fn describe_error(err: &(dyn std::error::Error + 'static), host: &str) -> Option<String> {
    let mut current = Some(err);
    while let Some(e) = current {
        if let Some(e) = e.downcast_ref::<reqwest::Error>() {
            return Some(if e.is_timeout() {
                format!("{host} did not answer in time.")
            } else if e.is_connect() {
                format!("Could not connect to {host}.")
            } else if let Some(status) = e.status() {
                format!("{host} answered HTTP {}.", status.as_u16())
            } else {
                format!("The connection to {host} broke.")
            });
        }
        if let Some(e) = e.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
            match e {
                StreamableHttpError::HttpStatus(s) => {
                    return Some(format!("{host} answered HTTP {}.", s.status));
                }
                StreamableHttpError::ResponseBodyTooLarge { max_size } => {
                    return Some(format!(
                        "{host} sent an answer larger than {} MiB.",
                        max_size / (1024 * 1024)
                    ));
                }
                StreamableHttpError::SessionExpired => {
                    return Some(format!("{host} ended the session."));
                }
                StreamableHttpError::Deserialize(_)
                | StreamableHttpError::UnexpectedServerResponse(_)
                | StreamableHttpError::UnexpectedContentType(_) => {
                    return Some(format!(
                        "{host} answered with something that is not MCP (malformed JSON-RPC)."
                    ));
                }
                StreamableHttpError::Client(inner) => return describe_error(inner, host),
                _ => {}
            }
        }
        if e.downcast_ref::<serde_json::Error>().is_some() {
            return Some(format!(
                "{host} answered with something that is not MCP (malformed JSON-RPC)."
            ));
        }
        current = e.source();
    }
    None
}

fn describe_service_error(err: &ServiceError, host: &str) -> Option<String> {
    match err {
        ServiceError::McpError(data) => Some(format!(
            "{host} said: {}",
            data.message.chars().take(300).collect::<String>()
        )),
        ServiceError::Timeout { .. } => Some(format!("{host} did not answer in time.")),
        // The session ended under the call: the server hung up, or sent
        // what the client refuses (an answer over the size cap).
        ServiceError::TransportClosed => Some(format!(
            "The connection to {host} closed before it answered (answers over {} MiB are refused).",
            MAX_RESPONSE_BYTES / (1024 * 1024)
        )),
        ServiceError::TransportSend(error) => describe_error(error, host),
        ServiceError::UnexpectedResponse => Some(format!(
            "{host} answered with something that is not MCP (malformed JSON-RPC)."
        )),
        other => describe_error(other, host),
    }
}

// ---- the tools of a run -------------------------------------------------------

/// One server's session for one run, opened at its first call and shared
/// by the calls after it.
struct Session {
    target: Target,
    client: tokio::sync::OnceCell<Client>,
    listener: Listener,
}

impl Session {
    async fn client(&self, state: &AppState) -> Result<&Client, String> {
        self.client
            .get_or_try_init(|| connect(state, &self.target, self.listener.clone()))
            .await
    }
}

/// One MCP tool, as the run loop sees it.
pub struct McpTool {
    session: Arc<Session>,
    info: McpToolInfo,
    /// The name the model calls it by (unique in the run).
    model_name: String,
    server_name: String,
}

/// A name every provider accepts (`[a-zA-Z0-9_-]`, at most 64, starting
/// with a letter) for tool `tool` of server `id`.
fn model_name(id: Uuid, tool: &str) -> String {
    let short = &id.simple().to_string()[..8];
    let clean: String = tool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("mcp_{short}_{clean}").chars().take(64).collect()
}

impl Tool for McpTool {
    fn decl(&self) -> ToolDecl {
        let description = if self.info.description.is_empty() {
            format!(
                "{} (from the MCP server {})",
                self.info.label(),
                self.server_name
            )
        } else {
            format!(
                "{} (from the MCP server {})",
                self.info.description, self.server_name
            )
        };
        ToolDecl {
            name: self.model_name.clone(),
            description,
            parameters: self.info.input_schema.clone(),
        }
    }

    /// An MCP server's own hints are not to be trusted: every MCP tool may
    /// be set to ask first.
    fn side_effects(&self) -> bool {
        true
    }

    fn call<'a>(
        &'a self,
        ctx: &'a ToolCtx,
        arguments: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let host = self.session.target.host.clone();
            let arguments = match arguments {
                Value::Object(map) => map,
                Value::Null => Default::default(),
                _ => {
                    return Err(ToolError::Invalid(
                        "The arguments must be a JSON object.".into(),
                    ));
                }
            };
            let sent = serde_json::to_string(&arguments).map_or(0, |s| s.len() as u64);
            let client = self
                .session
                .client(&ctx.state)
                .await
                .map_err(ToolError::Failed)?;
            let params = CallToolRequestParams::new(Cow::Owned(self.info.name.clone()))
                .with_arguments(arguments);
            let result = client.call_tool(params).await.map_err(|e| {
                ToolError::Failed(
                    describe_service_error(&e, &host)
                        .unwrap_or_else(|| format!("The call to {host} failed.")),
                )
            })?;
            let failed = result.is_error == Some(true);
            let content = result_text(result);
            let received = content.len() as u64;
            if failed {
                let message: String = content.chars().take(2000).collect();
                return Err(ToolError::Failed(if message.is_empty() {
                    format!("{host} said the call failed.")
                } else {
                    message
                }));
            }
            Ok(ToolOutput {
                content,
                target: Some(host),
                bytes_sent: sent,
                bytes_received: received,
            })
        })
    }
}

/// A tool's answer as text for the model: text as it is, anything else
/// named rather than pasted (an image is not text to a model here).
fn result_text(result: CallToolResult) -> String {
    let mut parts = Vec::new();
    for block in result.content {
        parts.push(match block {
            ContentBlock::Text(t) => t.text,
            ContentBlock::Image(i) => format!("[an image ({}) was returned]", i.mime_type),
            ContentBlock::Audio(_) => "[an audio clip was returned]".to_owned(),
            ContentBlock::Resource(r) => match r.resource {
                ResourceContents::TextResourceContents { uri, text, .. } => {
                    format!("[resource {uri}]\n{text}")
                }
                ResourceContents::BlobResourceContents { uri, .. } => {
                    format!("[a binary resource was returned: {uri}]")
                }
                _ => "[a resource was returned]".to_owned(),
            },
            ContentBlock::ResourceLink(link) => format!("[link: {} ({})]", link.name, link.uri),
            _ => "[content Enclave does not read was returned]".to_owned(),
        });
    }
    if parts.is_empty()
        && let Some(structured) = result.structured_content
    {
        parts.push(structured.to_string());
    }
    parts.join("\n")
}

/// The MCP tools among an agent's enabled `keys`, with the key each came
/// from. A tool whose server is gone, or is not the owner's, or that the
/// server no longer lists, is left out.
pub async fn tools_for(ctx: &ToolCtx, keys: &[String]) -> Vec<(String, Arc<dyn Tool>)> {
    let mut by_server: Vec<(Uuid, Vec<(&String, &str)>)> = Vec::new();
    for key in keys {
        if let Some((id, tool)) = parse_tool_key(key)
            && let Ok(id) = Uuid::parse_str(id)
        {
            match by_server.iter_mut().find(|(s, _)| *s == id) {
                Some((_, list)) => list.push((key, tool)),
                None => by_server.push((id, vec![(key, tool)])),
            }
        }
    }
    let mut out: Vec<(String, Arc<dyn Tool>)> = Vec::new();
    for (id, wanted) in by_server {
        let (view, target) = match (
            get(&ctx.state, ctx.owner, &ctx.key, id).await,
            Target::load(&ctx.state, ctx.owner, &ctx.key, id).await,
        ) {
            (Ok(view), Ok(target)) => (view, target),
            _ => continue,
        };
        let listener = Listener {
            on_change: Some(Arc::new(ChangeRefresh {
                state: ctx.state.clone(),
                owner: ctx.owner,
                key: ctx.key.clone(),
                id,
                host: target.host.clone(),
            })),
        };
        let session = Arc::new(Session {
            target,
            client: tokio::sync::OnceCell::new(),
            listener,
        });
        for (key, tool) in wanted {
            let Some(info) = view
                .tools
                .iter()
                .find(|t| t.name == tool && t.unusable.is_none())
            else {
                continue;
            };
            let mut name = model_name(id, tool);
            if out.iter().any(|(_, t)| t.decl().name == name) {
                let n = out.len();
                name = format!("{}_{n}", &name[..name.len().min(58)]);
            }
            out.push((
                key.clone(),
                Arc::new(McpTool {
                    session: session.clone(),
                    info: info.clone(),
                    model_name: name,
                    server_name: view.name.clone(),
                }),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_are_ones_every_provider_accepts() {
        let id = Uuid::parse_str("1a2b3c4d-0000-0000-0000-000000000000").unwrap();
        assert_eq!(model_name(id, "get-sum"), "mcp_1a2b3c4d_get-sum");
        assert_eq!(
            model_name(id, "files/read.all"),
            "mcp_1a2b3c4d_files_read_all"
        );
        let long = model_name(id, &"x".repeat(200));
        assert_eq!(long.len(), 64);
    }

    #[test]
    fn unusable_schemas_are_marked_and_text_is_cut() {
        let good: rmcp::model::Tool = serde_json::from_value(serde_json::json!({
            "name": "echo",
            "description": "d".repeat(5000),
            "inputSchema": {"type": "object", "properties": {"m": {"type": "string"}}}
        }))
        .unwrap();
        let bad: rmcp::model::Tool = serde_json::from_value(serde_json::json!({
            "name": "weird",
            "inputSchema": {"type": "array"}
        }))
        .unwrap();
        let kept = keep_tools(vec![good, bad]);
        assert_eq!(kept[0].unusable, None);
        assert_eq!(kept[0].description.chars().count(), DESCRIPTION_MAX);
        assert!(kept[1].unusable.is_some());
    }

    #[test]
    fn a_result_is_text_with_other_content_named() {
        let result: CallToolResult = serde_json::from_value(serde_json::json!({
            "content": [
                {"type": "text", "text": "hello"},
                {"type": "image", "data": "AAAA", "mimeType": "image/png"}
            ]
        }))
        .unwrap();
        assert_eq!(
            result_text(result),
            "hello\n[an image (image/png) was returned]"
        );
        let structured: CallToolResult = serde_json::from_value(
            serde_json::json!({"content": [], "structuredContent": {"sum": 3}}),
        )
        .unwrap();
        assert_eq!(result_text(structured), r#"{"sum":3}"#);
    }
}
