//! Logging. Log lines carry ids, paths and outcomes, never request bodies,
//! cookies, passwords or tokens: handlers log explicit fields only (no
//! `#[instrument]` without `skip_all`), and nothing logs headers.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

pub fn init(json: bool) {
    let filter = filter(
        EnvFilter::try_from_env("ENCLAVE_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
    );
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry.with(fmt::layer().json()).init();
    } else {
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        registry.with(fmt::layer().with_ansi(ansi)).init();
    }
}

/// `base` with what is never logged, whatever the operator asks for: the
/// MCP SDK's own lines, which print transport errors whole, naming the
/// server's URL (where some services put a key). `mcp::server` logs what
/// failed without it.
pub fn filter(base: EnvFilter) -> EnvFilter {
    base.add_directive("rmcp=off".parse().expect("a valid directive"))
}

/// This request's id: made by the server for every request (a client's
/// `X-Request-Id` is never taken: it would let anyone write into the log),
/// in the request's log span (so every line of the request, and of a reply
/// it starts, carries it) and sent back as `X-Request-Id`.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

async fn request_id(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let id = uuid::Uuid::new_v4().simple().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut res = next.run(req).await;
    if let Ok(value) = axum::http::HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", value);
    }
    res
}

/// Adds one log line per request: method, path (never the query string, which
/// may carry one-time tokens), status and latency, in a span with the
/// request's id. No headers, no bodies.
pub fn with_request_log(router: axum::Router) -> axum::Router {
    use axum::{body::Body, http};
    let layer = tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(|req: &http::Request<Body>| {
            let id = req
                .extensions()
                .get::<RequestId>()
                .map(|r| r.0.as_str())
                .unwrap_or_default();
            tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
        })
        .on_request(())
        .on_response(
            |res: &http::Response<Body>, latency: std::time::Duration, _span: &tracing::Span| {
                tracing::info!(
                    status = res.status().as_u16(),
                    latency_ms = latency.as_secs_f64() * 1000.0,
                    "request"
                );
            },
        )
        .on_body_chunk(())
        .on_eos(())
        .on_failure(());
    // The id is made outside the trace layer, so its span can carry it.
    router
        .layer(layer)
        .layer(axum::middleware::from_fn(request_id))
}
