//! Prometheus metrics for the operator, off by default. With
//! `ENCLAVE_METRICS_ADDR` they are served at `/metrics` on that address of
//! their own (kept off the public one, say on 127.0.0.1); with
//! `ENCLAVE_METRICS_TOKEN` at `/metrics` on the main address to requests
//! carrying `Authorization: Bearer <token>`. Both may be set.
//!
//! Recorded with the `metrics` facade (the app records runs and provider
//! errors with it too) and rendered by `metrics-exporter-prometheus`, so the
//! exposition format is the exporter's, not ours. Labels hold route
//! templates, methods, status codes, provider names and error kinds, never
//! a user id, an address a user typed, or model output.

use std::sync::OnceLock;

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use app::state::AppState;

/// Where the metrics are served (`Config::metrics`).
#[derive(Clone, Default)]
pub struct MetricsConfig {
    /// A listening address of their own.
    pub addr: Option<std::net::SocketAddr>,
    /// The bearer token that opens `/metrics` on the main address.
    pub token: Option<String>,
}

impl std::fmt::Debug for MetricsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsConfig")
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl MetricsConfig {
    pub fn enabled(&self) -> bool {
        self.addr.is_some() || self.token.is_some()
    }
}

/// Seconds: the buckets of every latency histogram (5 ms to 2 min).
const SECONDS_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use (one per process: the
/// integration tests run many servers in one).
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets(SECONDS_BUCKETS)
            .expect("the buckets are not empty")
            .install_recorder()
            .unwrap_or_else(|_| {
                // Another recorder is in place (never in Enclave itself):
                // serve an empty one rather than fail.
                PrometheusBuilder::new().build_recorder().handle()
            });
        describe();
        handle
    })
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "enclave_http_requests_total",
        "HTTP requests answered, by route template, method and status."
    );
    describe_histogram!(
        "enclave_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer an HTTP request (to its headers; a stream goes on after)."
    );
    describe_gauge!(
        "enclave_runs_live",
        "Replies being written by this server now."
    );
    describe_histogram!(
        "enclave_time_to_first_token_seconds",
        metrics::Unit::Seconds,
        "From a reply's start to its first piece of text, by provider."
    );
    describe_counter!(
        "enclave_provider_errors_total",
        "Model calls that ended in an error, by provider and kind."
    );
    describe_counter!("enclave_runs_total", "Replies ended, by how they ended.");
    describe_gauge!(
        "enclave_jobs_queued",
        "Background jobs waiting or running, by kind."
    );
    describe_gauge!(
        "enclave_jobs_oldest_age_seconds",
        metrics::Unit::Seconds,
        "How long the oldest due job has waited."
    );
    describe_gauge!(
        "enclave_jobs_dead",
        "Background jobs that failed every attempt (kept for the operator)."
    );
    describe_gauge!(
        "enclave_db_pool_connections",
        "Database connections of this server, by state (idle, in_use)."
    );
    describe_gauge!(
        "enclave_db_pool_max_connections",
        "The most database connections this server opens."
    );
}

/// Counts and times every request, by the route it matched.
pub async fn track(req: Request, next: Next) -> Response {
    let route = match req.extensions().get::<MatchedPath>() {
        Some(path) => path.as_str().to_owned(),
        // Files of the site, and paths that match nothing: never the path
        // itself, which anyone can make up.
        None if req.uri().path().starts_with("/pkg/") => "/pkg/{file}".to_owned(),
        None => "unmatched".to_owned(),
    };
    let method = req.method().as_str().to_owned();
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::histogram!(
        "enclave_http_request_duration_seconds",
        "route" => route.clone(),
        "method" => method.clone()
    )
    .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "enclave_http_requests_total",
        "route" => route,
        "method" => method,
        "status" => status
    )
    .increment(1);
    res
}

/// The gauges read when scraped, then the whole exposition.
pub async fn render(state: &AppState) -> String {
    let handle = handle();
    metrics::gauge!("enclave_runs_live").set(state.runs.live_count() as f64);
    let size = state.db.size() as f64;
    let idle = state.db.num_idle() as f64;
    metrics::gauge!("enclave_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("enclave_db_pool_connections", "state" => "in_use").set(size - idle);
    metrics::gauge!("enclave_db_pool_max_connections")
        .set(f64::from(state.db.options().get_max_connections()));
    // The queue, from the database: every server sees the same one.
    let queued: Result<Vec<(String, i64)>, _> = sqlx::query_as(
        "SELECT kind, count(*) FROM jobs WHERE state IN ('queued', 'running') GROUP BY kind",
    )
    .fetch_all(&state.db)
    .await;
    if let Ok(rows) = queued {
        for (kind, count) in rows {
            metrics::gauge!("enclave_jobs_queued", "kind" => kind).set(count as f64);
        }
    }
    let ages: Result<(Option<f64>, i64), _> = sqlx::query_as(
        "SELECT (SELECT extract(epoch FROM now() - min(run_at))::float8 FROM jobs \
                 WHERE state = 'queued' AND run_at <= now()), \
                (SELECT count(*) FROM jobs WHERE state = 'dead')",
    )
    .fetch_one(&state.db)
    .await;
    if let Ok((oldest, dead)) = ages {
        metrics::gauge!("enclave_jobs_oldest_age_seconds").set(oldest.unwrap_or(0.0));
        metrics::gauge!("enclave_jobs_dead").set(dead as f64);
    }
    handle.render()
}

async fn exposition(state: &AppState) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(state).await,
    )
        .into_response()
}

/// `/metrics` on the main address: only with the configured bearer token
/// (compared as SHA-256 digests, in constant time, with `subtle` as the
/// Telegram webhook's secret is).
async fn guarded(
    State((state, digest)): State<(AppState, [u8; 32])>,
    headers: HeaderMap,
) -> Response {
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|token| <[u8; 32]>::from(Sha256::digest(token.trim().as_bytes())));
    let matches = offered.is_some_and(|offered| bool::from(offered.ct_eq(&digest)));
    if !matches {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "Metrics need the operator's bearer token.",
        )
            .into_response();
    }
    exposition(&state).await
}

/// The main router with request metrics, and `/metrics` when a token is set.
/// Installs the recorder when metrics are on.
pub fn attach(router: Router, state: &AppState, config: &MetricsConfig) -> Router {
    if !config.enabled() {
        return router;
    }
    handle();
    let router = router.layer(axum::middleware::from_fn(track));
    match &config.token {
        Some(token) => {
            let digest = <[u8; 32]>::from(Sha256::digest(token.trim().as_bytes()));
            router.merge(
                Router::new()
                    .route("/metrics", get(guarded))
                    .with_state((state.clone(), digest)),
            )
        }
        None => router,
    }
}

/// The operator's own address: `/metrics` and nothing else.
pub fn operator_router(state: AppState) -> Router {
    handle();
    Router::new()
        .route(
            "/metrics",
            get(|State(state): State<AppState>| async move { exposition(&state).await }),
        )
        .with_state(state)
}
