//! Enclave's server: wiring only. Configuration ([`config`]), logging
//! ([`telemetry`]), middleware ([`middleware`]), the router and graceful
//! startup/shutdown (here). Application logic lives in the `app` crate.

pub mod admin_cli;
pub mod api_v1;
pub mod billing;
pub mod billing_cli;
pub mod chat_stream;
pub mod config;
pub mod config_check;
pub mod doctor;
pub mod fake_mcp;
pub mod fake_oauth;
pub mod fake_oidc;
pub mod fake_provider;
pub mod fake_services;
pub mod fake_stripe;
pub mod forms;
pub mod keys;
pub mod metrics;
pub mod middleware;
pub mod oidc;
pub mod policy;
pub mod telemetry;
pub mod uploads;
pub mod users_cli;
pub mod v1;

use std::{sync::Arc, time::Duration};

use app::{App, platform::keystore::Crypto, shell, state::AppState};
use axum::{
    Router, http::StatusCode, middleware::from_fn, middleware::from_fn_with_state, routing::get,
};
use leptos::prelude::*;
use leptos_axum::{LeptosRoutes, generate_route_list};
use sqlx::{PgPool, postgres::PgPoolOptions};

/// The migrations in `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// How long a pooled connection may sit idle and still be handed out
/// without a ping.
const IDLE_BEFORE_PING: Duration = Duration::from_millis(500);

/// Connects to PostgreSQL and brings the schema up to date.
pub async fn connect_db(url: &str) -> anyhow::Result<PgPool> {
    connect_db_with(url, &MIGRATOR).await
}

/// `connect_db` with `migrator`'s migrations. Each runs in a transaction
/// of its own (sqlx's default; none of ours opts out), under PostgreSQL's
/// advisory lock, so two servers starting together migrate once; a failing
/// one leaves the database as it was before it, and the error names it.
pub async fn connect_db_with(
    url: &str,
    migrator: &sqlx::migrate::Migrator,
) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(20)
        .acquire_timeout(Duration::from_secs(5))
        // sqlx pings every idle connection before handing it out: a round
        // trip before each query (a send made about a dozen, half of them
        // pings). Ping only one that sat idle for a while, as HikariCP's
        // alive-bypass window does (500 ms); sqlx also pings each connection
        // as it is released, and closes one that does not answer.
        .test_before_acquire(false)
        // Every statement is prepared once per connection (sqlx caches it),
        // and by default PostgreSQL plans each of its first five runs anew
        // before it keeps a generic plan. A send's one statement of reads
        // (`chat::server::SEND_READS`) took 0.63 ms a run while custom
        // plans were made and 0.2 ms on the generic one, and with 20 pooled
        // connections most of a quiet server's sends were among the first
        // five. Our statements look rows up by key, where a generic plan is
        // the plan; `BENCHMARKS.md` has the before and after. A `SET` rather
        // than a startup option, so poolers that refuse unknown startup
        // parameters still connect.
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                sqlx::Executor::execute(&mut *conn, "SET plan_cache_mode = force_generic_plan")
                    .await?;
                // A send's statement, parsed and planned before a send
                // waits for it (`chat::server::warm`). Before migrations
                // have run it fails, and the connection is used as it is.
                if let Err(err) = app::chat::server::warm(conn).await {
                    tracing::debug!(error = %err, "did not prepare the send's statement");
                }
                Ok(())
            })
        })
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > IDLE_BEFORE_PING {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect(url)
        .await
        .map_err(|e| anyhow::anyhow!("could not connect to PostgreSQL: {e}"))?;
    migrator.run(&pool).await.map_err(|e| match &e {
        sqlx::migrate::MigrateError::ExecuteMigration(cause, version) => {
            let name = migrator
                .iter()
                .find(|m| m.version == *version)
                .map(|m| m.description.to_string())
                .unwrap_or_default();
            anyhow::anyhow!(
                "database migration {version} ({name}) failed and was rolled back; \
                 the database is as it was before it: {cause}"
            )
        }
        _ => anyhow::anyhow!("could not apply database migrations: {e}"),
    })?;
    // The connection that ran the migrations opened before the schema
    // was there to prepare against.
    if let Ok(mut conn) = pool.acquire().await
        && let Err(err) = app::chat::server::warm(&mut conn).await
    {
        tracing::warn!(error = %err, "could not prepare the send's statement");
    }
    Ok(pool)
}

/// Connects, migrates, loads the keys, starts the background sweeper (and
/// the demo model when asked): everything the router needs.
pub async fn app_state(
    config: &config::Config,
    leptos_options: LeptosOptions,
) -> anyhow::Result<AppState> {
    let db = connect_db(&config.database_url).await?;
    let crypto = Crypto::load(&db, config.keyring.clone()).await?;
    let mut settings = config.settings.clone();
    if config.demo_model {
        enable_demo_model(&mut settings).await?;
    }
    let state = AppState::new(leptos_options, db, settings, crypto);
    // Replies this process was writing when it last stopped end now, so
    // their conversations open for new messages at once.
    match app::chat::runs::recover_own(&state.db, &state.runs).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(replies = n, "ended replies left by this server's last run"),
        Err(err) => tracing::warn!(error = %err, "could not end this server's unfinished replies"),
    }
    if let Err(err) = app::data::policies::server::ensure_shipped(&state.db).await {
        tracing::warn!(error = %err, "could not store the shipped policy versions");
    }
    spawn_interrupted_sweeper(state.clone());
    spawn_scheduler(state.clone());
    spawn_telegram_poller(state.clone());
    start_jobs(&state).await;
    Ok(state)
}

/// Starts this process's background workers, and its ear on the control
/// channel (signals from the other servers and the operator's command line).
pub async fn start_jobs(state: &AppState) {
    state
        .jobs
        .start(state.db.clone(), app::background::handler(state.clone()))
        .await;
    // This server's heartbeat: its replies are never taken for orphans
    // while it beats.
    let beating = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(app::chat::runs::HEARTBEAT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(err) = app::chat::runs::heartbeat(&beating.db, &beating.runs).await {
                tracing::warn!(error = %err, "could not write this server's heartbeat");
            }
        }
    });
    let (runs, db) = (state.runs.clone(), state.db.clone());
    let (ready, listening) = tokio::sync::oneshot::channel();
    tokio::spawn(app::platform::control::listen(
        state.db.clone(),
        move |signal| runs.on_signal(&db, signal),
        Some(ready),
    ));
    // Serve only once signals reach this server (at most a few seconds).
    let _ = tokio::time::timeout(Duration::from_secs(5), listening).await;
}

/// Runs the fake provider in-process on a loopback port as the offline demo
/// model, and lets outbound requests reach exactly that address.
pub async fn enable_demo_model(settings: &mut app::platform::Settings) -> anyhow::Result<()> {
    let addr = fake_provider::start()
        .await
        .map_err(|e| anyhow::anyhow!("could not start the offline demo model: {e}"))?;
    settings.demo_url = Some(format!("http://{addr}/demo/v1"));
    settings
        .egress_allow
        .push(app::platform::egress::AllowEntry {
            host: addr.ip().to_string(),
            port: addr.port(),
        });
    tracing::info!("offline demo model enabled (development only)");
    Ok(())
}

/// Replies left `streaming` by a server that stopped are marked interrupted:
/// at startup and then every minute. A live run writes its row every second
/// while tokens flow and gives up after its own timeouts (at most three
/// attempts of 60 s), so five silent minutes mean nobody is writing it.
pub const INTERRUPTED_AFTER: Duration = Duration::from_secs(300);

fn spawn_interrupted_sweeper(state: AppState) {
    tokio::spawn(async move {
        // Every 5 s: a server that stopped beating has its replies marked
        // within seconds (`runs::HEARTBEAT_DEAD` plus this).
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        let mut round: u64 = 0;
        loop {
            tick.tick().await;
            round += 1;
            match app::chat::runs::recover_interrupted(&state.db, &state.runs, INTERRUPTED_AFTER)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    replies = n,
                    "marked replies of a stopped server as interrupted"
                ),
                Err(err) => tracing::warn!(error = %err, "could not sweep interrupted replies"),
            }
            // This hour's retention job, unless another server queued it
            // (looked at once a minute).
            if round % 12 != 1 {
                continue;
            }
            // Servers gone for a day leave their heartbeat row behind.
            if let Err(err) =
                sqlx::query("DELETE FROM instances WHERE heartbeat_at < now() - interval '1 day'")
                    .execute(&state.db)
                    .await
            {
                tracing::warn!(error = %err, "could not forget stopped servers");
            }
            if let Err(err) = app::data::retention::server::schedule(&state).await {
                tracing::warn!(error = %err, "could not queue the retention job");
            }
        }
    });
}

/// How often this server looks for due schedules: a schedule runs at most
/// this late.
pub const SCHEDULER_TICK: Duration = Duration::from_secs(10);

/// Fires due schedules, every few seconds. Every server does it; the row
/// locks and the run's unique key make each run start once.
fn spawn_scheduler(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SCHEDULER_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match app::schedules::server::tick(&state, chrono::Utc::now()).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(runs = n, "scheduled runs started"),
                Err(err) => tracing::warn!(error = %err, "could not look for due schedules"),
            }
        }
    });
}

/// How long one long poll of Telegram waits for an update.
pub const TELEGRAM_POLL_SECS: u64 = 20;

/// Long-polls the bots that have no webhook (this server has no https
/// address Telegram can post to): one server at a time per bot, by a lease.
fn spawn_telegram_poller(state: AppState) {
    tokio::spawn(async move {
        loop {
            let started = tokio::time::Instant::now();
            if let Err(err) = app::telegram::server::poll(&state, TELEGRAM_POLL_SECS).await {
                tracing::warn!(error = %err, "could not poll Telegram");
            }
            // A round with no bots (or a quick answer) waits a little.
            tokio::time::sleep_until(started + Duration::from_secs(2)).await;
        }
    });
}

/// Leptos' build settings: from the variables cargo-leptos sets (at build or
/// run time), or the workspace defaults when run some other way. The site
/// is found by `site_root`.
pub fn leptos_options() -> LeptosOptions {
    let mut options = match get_configuration(None) {
        Ok(conf) => conf.leptos_options,
        Err(_) => LeptosOptions::builder()
            .output_name("enclave")
            .site_pkg_dir("pkg")
            .build(),
    };
    // Built without cargo-leptos (`cargo bench`, say), Leptos knows no name:
    // the pages would ask for `/pkg/.js` and never come alive.
    if options.output_name.is_empty() {
        options.output_name = "enclave".into();
    }
    options.site_root = site_root().into();
    options
}

/// Where the site (CSS, JS, WASM) is: `LEPTOS_SITE_ROOT`, else the `site`
/// folder next to the server binary (the release folder's layout), else
/// `target/site` (a checkout).
pub fn site_root() -> String {
    if let Ok(root) = std::env::var("LEPTOS_SITE_ROOT")
        && !root.is_empty()
    {
        return root;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("site")))
        .filter(|site| site.join("pkg").is_dir())
        .map(|site| site.to_string_lossy().into_owned())
        .unwrap_or_else(|| "target/site".into())
}

/// The largest request body accepted (an agent import is at most 256 KiB).
pub const MAX_REQUEST_BODY: usize = 1024 * 1024;

/// The app's routes, listed once per process. Listing renders the app with
/// every resource load suppressed through a process-wide flag
/// (`leptos_server::SuppressResourceLoad`): a page rendering at that moment in
/// another server of the same process (the integration tests run many) would
/// get resources that never load, and hang. Listed once, before any router
/// serves, nothing renders while the flag is up.
fn route_list() -> Vec<leptos_axum::AxumRouteListing> {
    static ROUTES: std::sync::OnceLock<Vec<leptos_axum::AxumRouteListing>> =
        std::sync::OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// The whole HTTP surface: pages, server functions, static files, health.
pub fn router(state: AppState, public_url: &str) -> Router {
    let routes = route_list();
    let public_url: Arc<str> = Arc::from(public_url.trim_end_matches('/'));
    let context_state = state.clone();
    let (api_v1_routes, openapi) = api_v1::router();
    let api_docs: Router<AppState> = utoipa_swagger_ui::SwaggerUi::new("/api/docs")
        .url("/api/openapi.json", openapi)
        .into();
    let router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/api/agents/{id}/export", get(export_agent))
        .route("/api/chat/stream/{id}", get(chat_stream::stream_reply))
        .route("/settings/mcp/oauth/callback", get(mcp_oauth_callback))
        .route("/settings/data/exports/{id}", get(download_export))
        .route("/dev/mail", get(dev_mail))
        .route("/sign-up", axum::routing::post(forms::sign_up))
        .route(
            "/settings/api-keys",
            axum::routing::post(forms::create_api_key),
        )
        .route("/usage.csv", get(billing::csv))
        .route("/usage/credits", axum::routing::post(billing::top_up))
        .route("/stripe/webhook", axum::routing::post(billing::webhook))
        .route("/v1/models", get(v1::models))
        .merge(api_v1_routes)
        .merge(api_docs)
        .route(
            "/telegram/webhook/{id}",
            axum::routing::post(telegram_webhook),
        )
        .route("/auth/oidc/{provider}", axum::routing::post(oidc::start))
        .route("/auth/oidc/{provider}/callback", get(oidc::callback))
        .merge(app::mcp::serve::router(state.clone()))
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_page_context(&context_state),
            {
                let options = state.leptos_options.clone();
                move || shell(options.clone())
            },
        )
        // The "Not found" page is rendered here: it needs the nonce too,
        // or its scripts are refused and it never comes alive.
        .fallback(leptos_axum::file_and_error_handler_with_context::<
            AppState,
            _,
        >(
            {
                let state = state.clone();
                move || provide_page_context(&state)
            },
            shell,
        ))
        .layer(from_fn(middleware::server_fn_errors))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_REQUEST_BODY,
        ))
        // Uploads have a limit of their own (after the one above, so it
        // does not apply to them).
        .merge(
            Router::new()
                .route(
                    "/knowledge/{id}/upload",
                    axum::routing::post(uploads::upload),
                )
                .route("/chat/files", axum::routing::post(uploads::chat_files))
                .route(
                    "/v1/chat/completions",
                    axum::routing::post(v1::chat_completions)
                        .layer(tower_http::limit::RequestBodyLimitLayer::new(v1::MAX_BODY)),
                )
                .layer(axum::extract::DefaultBodyLimit::disable())
                .layer(tower_http::limit::RequestBodyLimitLayer::new(
                    uploads::MAX_UPLOAD_BYTES,
                )),
        )
        .layer(from_fn(middleware::own_owner))
        .layer(from_fn_with_state(state.clone(), middleware::session))
        .layer(from_fn_with_state(public_url, middleware::origin_check))
        .layer(from_fn_with_state(
            state.clone(),
            middleware::security_headers,
        ))
        .with_state(state);
    telemetry::with_request_log(router)
}

/// An `AppError` as a plain-text answer with its own status, for routes
/// that are not server functions (its sentence is safe to show: no
/// internals, at most a log reference).
pub(crate) fn plain_error(err: &app::error::AppError) -> axum::response::Response {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    axum::response::IntoResponse::into_response((status, err.sentence()))
}

/// What every rendered page has in context: the state, and the nonce the
/// security-headers middleware put in this response's CSP, so Leptos' inline
/// scripts carry it.
pub fn provide_page_context(state: &AppState) {
    provide_context(state.clone());
    if let Some(nonce) = use_context::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<middleware::CspNonce>().cloned())
    {
        provide_context(leptos::nonce::Nonce::from_value(nonce.0));
    }
}

/// `POST /telegram/webhook/{id}`: an update from Telegram, proven by its
/// secret header. 401 (and nothing changes) for a wrong or missing one.
async fn telegram_webhook(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    use app::telegram::server::{Accepted, accept};
    let secret = headers
        .get("x-telegram-bot-api-secret-token")
        .and_then(|v| v.to_str().ok());
    match accept(&state, &id, secret, &body).await {
        Ok(Accepted::Ok) => StatusCode::OK,
        Ok(Accepted::Unauthorized) => StatusCode::UNAUTHORIZED,
        Ok(Accepted::BadRequest) => StatusCode::BAD_REQUEST,
        // Telegram tries again later.
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// An agent as a JSON download (a plain route: the browser saves the file).
async fn export_agent(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    session: Option<axum::Extension<app::auth::server::AuthSession>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(axum::Extension(session)) = session else {
        return (StatusCode::UNAUTHORIZED, "Please sign in to continue.").into_response();
    };
    let result = async {
        let id = app::ctx::parse_id(&id)?;
        app::agents::server::export_agent(&state, session.user_id, &session.key, id).await
    }
    .await;
    match result {
        Ok(export) => {
            let body = serde_json::to_string_pretty(&export).unwrap_or_default();
            let slug: String = export
                .name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            let disposition = format!(
                "attachment; filename=\"agent-{}.json\"",
                slug.trim_matches('-')
            );
            (
                [
                    (http::header::CONTENT_TYPE, "application/json".to_owned()),
                    (http::header::CONTENT_DISPOSITION, disposition),
                ],
                body,
            )
                .into_response()
        }
        Err(err) => crate::plain_error(&err),
    }
}

/// A ready export of the signed-in user's data, as a zip download. Another
/// user's, an unfinished or an expired one is not found.
async fn download_export(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
    session: Option<axum::Extension<app::auth::server::AuthSession>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::{IntoResponse, Redirect};
    let Some(axum::Extension(session)) = session else {
        return Redirect::to("/sign-in?next=/settings/data").into_response();
    };
    let (parts, _) = req.into_parts();
    let result = middleware::in_request(&parts, async {
        let id = app::ctx::parse_id(&id)?;
        app::data::export::server::download(&state, &session, id).await
    })
    .await;
    match result {
        Ok((bytes, name)) => (
            [
                (http::header::CONTENT_TYPE, "application/zip".to_owned()),
                (
                    http::header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
                (http::header::CACHE_CONTROL, "no-store".to_owned()),
            ],
            bytes,
        )
            .into_response(),
        Err(err) => crate::plain_error(&err),
    }
}

/// Where an MCP server's authorization server sends the user back: the
/// sign-in they started finishes (or its failure is kept beside the
/// server), and they land on Settings → MCP servers. A `state` that is not
/// theirs is not found.
async fn mcp_oauth_callback(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
    session: Option<axum::Extension<app::auth::server::AuthSession>>,
) -> axum::response::Response {
    use axum::response::{IntoResponse, Redirect};
    let Some(axum::Extension(session)) = session else {
        return Redirect::to("/sign-in").into_response();
    };
    let Some(csrf) = query
        .get("state")
        .filter(|s| !s.is_empty() && s.len() <= 512)
    else {
        return (StatusCode::NOT_FOUND, "Not found.").into_response();
    };
    let callback = app::mcp::oauth::Callback {
        code: query.get("code").cloned(),
        state: csrf.clone(),
        issuer: query.get("iss").cloned(),
        error: query.get("error").cloned(),
    };
    match app::mcp::oauth::finish(&state, session.user_id, &session.key, &callback).await {
        Ok(_) => Redirect::to("/settings/mcp").into_response(),
        Err(err) => crate::plain_error(&err),
    }
}

/// The development mail catcher's page (`ENCLAVE_MAIL_CATCHER`): every
/// mail the app sent, newest first, as text with its links clickable. Not
/// found on any other server.
async fn dev_mail(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::response::{Html, IntoResponse};
    if !state.settings.mailer.is_catcher() {
        return (StatusCode::NOT_FOUND, "Not found.").into_response();
    }
    let escape = |s: &str| html_escape::encode_text(s).into_owned();
    let mut page = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>Mail sent (development)</title><link rel=\"stylesheet\" href=\"/pkg/enclave.css\">\
         </head><body><main id=\"main\"><h1>Mail sent (development)</h1>\
         <p class=\"muted\">The mail catcher keeps the last 100 mails in memory. \
         Production servers refuse it.</p>",
    );
    let caught = state.settings.mailer.caught();
    if caught.is_empty() {
        page.push_str("<p class=\"card muted\">No mail yet.</p>");
    }
    for mail in caught {
        page.push_str("<article class=\"card\" data-testid=\"caught-mail\">");
        page.push_str(&format!(
            "<h2>{}</h2><p class=\"muted\">To {} · {}</p><pre class=\"prompt\">",
            escape(&mail.mail.subject),
            escape(&mail.mail.to),
            mail.at.format("%Y-%m-%d %H:%M:%S UTC"),
        ));
        for line in mail.mail.text.lines() {
            if line.starts_with("http://") || line.starts_with("https://") {
                let href = html_escape::encode_double_quoted_attribute(line);
                page.push_str(&format!("<a href=\"{href}\">{}</a>\n", escape(line)));
            } else {
                page.push_str(&escape(line));
                page.push('\n');
            }
        }
        page.push_str("</pre></article>");
    }
    page.push_str("</main></body></html>");
    Html(page).into_response()
}

/// Liveness and database reachability.
async fn health(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> (StatusCode, &'static str) {
    match sqlx::query("SELECT 1").execute(&state.db).await {
        Ok(_) => (StatusCode::OK, "ok"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unreachable"),
    }
}

/// Whether this server can serve, or the plain reason it cannot: the
/// database answers, every migration this binary knows is applied, and
/// the master key opens the database's keys. Never an internal detail.
pub async fn readiness(state: &AppState) -> Result<(), &'static str> {
    const DATABASE: &str = "The database is not reachable.";
    let applied: Option<i64> =
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&state.db)
            .await
            .map_err(|_| DATABASE)?;
    let latest = MIGRATOR.iter().map(|m| m.version).max();
    if applied < latest {
        return Err(
            "The database schema is older than this server: restart it to apply the migrations.",
        );
    }
    if !state
        .crypto
        .still_opens(&state.db)
        .await
        .map_err(|_| DATABASE)?
    {
        return Err("The master key does not open this database's keys.");
    }
    Ok(())
}

/// `GET /ready`: 200 when the server can serve (for a load balancer), else
/// 503 with the reason. `/health` stays liveness.
async fn ready(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> (StatusCode, &'static str) {
    match readiness(&state).await {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

/// How long shutdown waits for live replies to be saved.
pub const SHUTDOWN_PATIENCE: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves. Then every live
/// reply is ended as interrupted and saved (which also ends its readers'
/// streams), and requests in flight finish. HTTP/1.1 (and h2c when built
/// with the `h2c` feature, which only `make bench` does).
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shutdown = async move {
        shutdown.await;
        let (ended, ()) = tokio::join!(
            state.runs.shutdown(SHUTDOWN_PATIENCE),
            state.jobs.shutdown()
        );
        if ended > 0 {
            tracing::info!(replies = ended, "live replies saved and ended");
        }
    };
    axum::serve(
        no_delay(listener),
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Sends small writes at once: without `TCP_NODELAY`, a streamed token
/// written right after another waits for the client's delayed ACK (up to
/// 40 ms on Linux). Measured by `make bench`.
pub fn no_delay(listener: tokio::net::TcpListener) -> NoDelay {
    use axum::serve::ListenerExt as _;
    listener.tap_io(set_no_delay)
}

/// A listener whose connections have `TCP_NODELAY` set.
pub type NoDelay = axum::serve::TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)>;

fn set_no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(error = %err, "could not set TCP_NODELAY");
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

#[cfg(test)]
mod options_tests {
    /// Whether or not cargo-leptos built this test, the pages name the
    /// site's files `enclave.*` (the release folder's and `make bench`'s).
    #[test]
    fn the_sites_files_are_named_enclave() {
        assert_eq!(&*super::leptos_options().output_name, "enclave");
    }
}
