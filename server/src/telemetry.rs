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

/// Adds one log line per request: method, path (never the query string, which
/// may carry one-time tokens), status and latency. No headers, no bodies.
pub fn with_request_log(router: axum::Router) -> axum::Router {
    use axum::{body::Body, http};
    let layer = tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(|req: &http::Request<Body>| {
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path())
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
    router.layer(layer)
}
