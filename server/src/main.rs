use std::process::ExitCode;

use server::config::{Config, Mode};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("enclave: configuration error: {err}");
            return ExitCode::FAILURE;
        }
    };
    server::telemetry::init(config.log_json);
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("enclave: {err:#}");
            eprintln!("enclave: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    if config.mode == Mode::Development && config.master_key.is_none() {
        tracing::warn!("no ENCLAVE_MASTER_KEY set (allowed in development mode only)");
    }
    let leptos_options = server::leptos_options();
    let addr = config.addr.unwrap_or(leptos_options.site_addr);
    let db = server::connect_db(&config.database_url).await?;
    let state = app::platform::AppState::new(leptos_options, db, config.settings.clone());
    let router = server::router(state, &config.public_url);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("could not listen on {addr}: {e}"))?;
    tracing::info!("Enclave listening on http://{}", listener.local_addr()?);
    server::serve(listener, router, server::shutdown_signal()).await?;
    Ok(())
}
