//! `server`            serve Enclave
//! `server keys generate`  print a new random master key (base64)
//! `server keys rotate`    re-wrap every key under ENCLAVE_MASTER_KEY
//! `server keys verify`    open every key and sealed value; report failures
//! `server admin grant|revoke EMAIL`  make an account an administrator, or not
//! `server policy publish privacy|cookies FILE YYYY-MM-DD SUMMARY`
//!                         publish a new policy version (mails every user)
//! `server prices list|set PROVIDER MODEL INPUT OUTPUT`  model prices
//! `server credits grant EMAIL AMOUNT`  add credits to an account
//! `server users list [TEXT] | users disable|enable|delete EMAIL`  accounts
//! `server doctor`     check the database, key, providers, mail; what to fix
//! `server config check`  every setting in force, where it came from, and
//!                     what production refuses (exit 1 if the server would)
//! `server config reference`  the README's configuration tables
//! `server fake-provider ADDR`  serve the fake model provider (tests, demos)

use std::process::ExitCode;

use server::config::Config;

/// mimalloc returns freed memory to the system; glibc's malloc kept several
/// times the live heap resident under streaming load (`make bench`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: server [serve | keys generate | keys rotate | keys verify | \
     admin grant|revoke EMAIL | policy publish privacy|cookies FILE YYYY-MM-DD SUMMARY | \
     prices list|set PROVIDER MODEL INPUT OUTPUT | credits grant EMAIL AMOUNT | \
     users list [TEXT] | users disable|enable|delete EMAIL | doctor | config check | \
     config reference | fake-provider ADDR]";

#[tokio::main]
async fn main() -> ExitCode {
    app::platform::tls::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if let ["fake-provider", addr] = args.as_slice() {
        return match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                println!("fake provider on http://{addr}");
                match server::fake_provider::serve(listener).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(err) => {
                        eprintln!("fake provider: {err}");
                        ExitCode::FAILURE
                    }
                }
            }
            Err(err) => {
                eprintln!("fake provider: could not listen on {addr}: {err}");
                ExitCode::FAILURE
            }
        };
    }
    if args == ["config", "check"] {
        let environment: Vec<String> = std::env::vars_os()
            .filter_map(|(k, _)| k.into_string().ok())
            .collect();
        let mut out = String::new();
        let fine = server::config_check::check(&server::config::Env, &environment, &mut out);
        print!("{out}");
        return if fine {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    if args == ["config", "reference"] {
        println!("{}", server::config_check::reference());
        return ExitCode::SUCCESS;
    }
    if args == ["keys", "generate"] {
        println!("{}", server::keys::generate());
        return ExitCode::SUCCESS;
    }
    if !matches!(
        args.as_slice(),
        [] | ["serve"]
            | ["keys", "rotate"]
            | ["keys", "verify"]
            | ["admin", ..]
            | ["prices", ..]
            | ["credits", ..]
            | ["users", ..]
            | ["doctor"]
            | ["policy", "publish", ..]
    ) {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("enclave: configuration error: {err}");
            return ExitCode::FAILURE;
        }
    };
    server::telemetry::init(config.log_json);
    let result = match args.as_slice() {
        ["keys", "rotate"] => server::keys::rotate(&config).await,
        ["keys", "verify"] => server::keys::verify(&config).await,
        ["policy", "publish", rest @ ..] => server::policy::publish(&config, rest).await,
        ["admin", rest @ ..] => server::admin_cli::run(&config, rest).await,
        ["prices", rest @ ..] => server::billing_cli::prices(&config, rest).await,
        ["credits", rest @ ..] => server::billing_cli::credits(&config, rest).await,
        ["users", rest @ ..] => server::users_cli::run(&config, rest).await,
        ["doctor"] => server::doctor::run(&config).await,
        _ => serve(config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("enclave: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let leptos_options = server::leptos_options();
    let addr = config.addr.unwrap_or(leptos_options.site_addr);
    let state = server::app_state(&config, leptos_options).await?;
    let router = server::router(state.clone(), &config.public_url);
    let router = server::metrics::attach(router, &state, &config.metrics);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("could not listen on {addr}: {e}"))?;
    if let Some(metrics_addr) = config.metrics.addr {
        let metrics_listener = tokio::net::TcpListener::bind(metrics_addr)
            .await
            .map_err(|e| anyhow::anyhow!("could not listen on {metrics_addr} for metrics: {e}"))?;
        let metrics_router = server::metrics::operator_router(state.clone());
        tokio::spawn(async move {
            if let Err(err) = axum::serve(metrics_listener, metrics_router).await {
                tracing::error!(error = %err, "the metrics address stopped serving");
            }
        });
        tracing::info!("metrics on http://{metrics_addr}/metrics");
    }
    tracing::info!("Enclave listening on http://{}", listener.local_addr()?);
    server::serve(listener, router, state, server::shutdown_signal()).await?;
    Ok(())
}
