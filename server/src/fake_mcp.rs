//! Fake MCP servers that are real ones: the official SDK's streamable HTTP
//! server on the fake provider's port, under `/mcp`, for what the reference
//! server never does. Used by the Rust tests and the browser tests.
//!
//! | path | what it is |
//! |---|---|
//! | `/mcp/open` | both protocol eras; the tools below |
//! | `/mcp/legacy` | the same, refusing `server/discover` (2025-11-25 only) |
//! | `/mcp/secret` | the same, behind `Authorization: Bearer mcp-secret-token…` or `X-Api-Key: mcp-secret-token…` (any secret starting so) |
//! | `/mcp/garbage` | answers every POST with malformed JSON |
//! | `/mcp/slow` | never answers |
//! | `/mcp/oauth` | the same and `whoami`, behind OAuth (`fake_oauth`) |
//! | `GET /mcp/seen` | the `MCP-Protocol-Version` headers `/mcp/open` and `/mcp/legacy` were sent, in order |
//!
//! Tools: `add` (`a` + `b`), `shout` (`text` in capitals), `weird` (an
//! array schema, which no model can use), `fail` (an error result), `big`
//! (100,000 characters), `flood` (6 MiB), `hang` (never answers) and `grow`
//! (adds the tool `grown` and says the list changed).

use std::{
    borrow::Cow,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{any, get},
};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, DiscoverResult,
        ErrorCode, ListToolsResult, PaginatedRequestParams, ProtocolVersion, ServerCapabilities,
        ServerConfig, Tool,
    },
    service::{MaybeSendFuture, RequestContext},
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use serde_json::{Value, json};

/// The secret `/mcp/secret` wants.
pub const SECRET: &str = "mcp-secret-token";

#[derive(Clone, Default)]
struct Shared {
    /// `grow` was called: the list has `grown` too.
    grown: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone)]
struct Fake {
    shared: Shared,
    legacy_only: bool,
    /// Behind OAuth: offers `whoami` too.
    oauth: bool,
}

fn schema(value: Value) -> Arc<serde_json::Map<String, Value>> {
    Arc::new(value.as_object().cloned().unwrap_or_default())
}

fn tools(grown: bool) -> Vec<Tool> {
    let text = || json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]});
    let none = || json!({"type": "object", "properties": {}});
    let mut list = vec![
        Tool::new(
            "add",
            "Adds two numbers.",
            schema(json!({
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"]
            })),
        ),
        Tool::new("shout", "Says the text in capitals.", schema(text())),
        Tool::new("weird", "Takes a list.", schema(json!({"type": "array"}))),
        Tool::new("fail", "Always fails.", schema(none())),
        Tool::new("big", "A long answer.", schema(none())),
        Tool::new("flood", "An answer too large to take.", schema(none())),
        Tool::new("grow", "Adds a tool.", schema(none())),
        Tool::new("hang", "Never answers.", schema(none())),
    ];
    if grown {
        list.push(Tool::new("grown", "A tool added later.", schema(none())));
    }
    list
}

impl ServerHandler for Fake {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
    }

    fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> impl Future<Output = Result<DiscoverResult, ErrorData>> + MaybeSendFuture + '_ {
        let _ = context;
        std::future::ready(if self.legacy_only {
            Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                "Method not found",
                None,
            ))
        } else {
            Ok(DiscoverResult::from_server_info(
                self.supported_protocol_versions().into_owned(),
                self.get_info(),
            ))
        })
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut list = tools(self.shared.grown.load(Ordering::SeqCst));
        if self.oauth {
            list.push(Tool::new(
                "whoami",
                "Says who the token was issued to.",
                schema(json!({"type": "object", "properties": {}})),
            ));
        }
        Ok(ListToolsResult::with_all_items(list))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = Value::Object(request.arguments.unwrap_or_default());
        let result = match request.name.as_ref() {
            "add" => {
                let (a, b) = (args["a"].as_f64(), args["b"].as_f64());
                match (a, b) {
                    (Some(a), Some(b)) => CallToolResult::success(vec![ContentBlock::text(
                        format!("{a} + {b} = {}", a + b),
                    )]),
                    _ => CallToolResult::error(vec![ContentBlock::text("a and b must be numbers")]),
                }
            }
            "shout" => CallToolResult::success(vec![ContentBlock::text(
                args["text"].as_str().unwrap_or_default().to_uppercase(),
            )]),
            "fail" => {
                CallToolResult::error(vec![ContentBlock::text("The fake tool failed on purpose.")])
            }
            "big" => CallToolResult::success(vec![ContentBlock::text("b".repeat(100_000))]),
            "flood" => {
                CallToolResult::success(vec![ContentBlock::text("f".repeat(6 * 1024 * 1024))])
            }
            "grow" => {
                self.shared.grown.store(true, Ordering::SeqCst);
                let _ = context.peer.notify_tool_list_changed().await;
                CallToolResult::success(vec![ContentBlock::text("A tool was added.")])
            }
            "grown" => CallToolResult::success(vec![ContentBlock::text("I was added later.")]),
            "whoami" if self.oauth => {
                let subject = context
                    .extensions
                    .get::<axum::http::request::Parts>()
                    .and_then(|p| p.extensions.get::<crate::fake_oauth::Subject>())
                    .map(|s| s.0.clone())
                    .unwrap_or_default();
                CallToolResult::success(vec![ContentBlock::text(subject)])
            }
            "hang" => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                CallToolResult::success(vec![])
            }
            other => {
                return Err(ErrorData::new(
                    ErrorCode::INVALID_PARAMS,
                    format!("There is no tool {other}."),
                    None,
                ));
            }
        };
        Ok(result.into())
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        if self.legacy_only {
            Cow::Borrowed(&[
                ProtocolVersion::V_2025_03_26,
                ProtocolVersion::V_2025_06_18,
                ProtocolVersion::V_2025_11_25,
            ])
        } else {
            Cow::Borrowed(ProtocolVersion::KNOWN_VERSIONS)
        }
    }
}

fn service(shared: Shared, legacy_only: bool) -> StreamableHttpService<Fake, LocalSessionManager> {
    service_with(shared, legacy_only, false)
}

fn service_with(
    shared: Shared,
    legacy_only: bool,
    oauth: bool,
) -> StreamableHttpService<Fake, LocalSessionManager> {
    StreamableHttpService::new(
        move || {
            Ok(Fake {
                shared: shared.clone(),
                legacy_only,
                oauth,
            })
        },
        Default::default(),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(legacy_only)
            .with_sse_keep_alive(None),
    )
}

async fn record(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let version = request
        .headers()
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    if request.method() == axum::http::Method::POST {
        shared.seen.lock().unwrap().push(version);
    }
    next.run(request).await
}

async fn require_secret(headers: HeaderMap, request: Request, next: Next) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|v| v.starts_with(SECRET));
    let key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(SECRET));
    if bearer || key {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "unauthorized",
        )
            .into_response()
    }
}

/// The routes, for the fake provider to nest under `/mcp`; `/mcp/oauth`
/// answers only to tokens `oauth` issued.
pub fn router(oauth: &crate::fake_oauth::Fake) -> Router {
    let shared = Shared::default();
    let recorded = |service: StreamableHttpService<Fake, LocalSessionManager>| {
        Router::new()
            .route_service("/", service)
            .layer(middleware::from_fn_with_state(shared.clone(), record))
    };
    Router::new()
        .nest("/open", recorded(service(shared.clone(), false)))
        .nest("/legacy", recorded(service(shared.clone(), true)))
        .nest(
            "/oauth",
            oauth
                .guard(Router::new().route_service("/", service_with(shared.clone(), false, true))),
        )
        .nest(
            "/secret",
            Router::new()
                .route_service("/", service(shared.clone(), false))
                .layer(middleware::from_fn(require_secret)),
        )
        .route(
            "/garbage",
            any(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    "{\"jsonrpc\": \"2.0\", \"result\": {oops",
                )
            }),
        )
        .route(
            "/slow",
            any(|| async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                StatusCode::OK
            }),
        )
        .route(
            "/seen",
            get({
                let shared = shared.clone();
                move || {
                    let seen = shared.seen.lock().unwrap().clone();
                    async move { Json(seen) }
                }
            }),
        )
}
