//! Logging. Log lines carry ids, paths and outcomes, never request bodies,
//! cookies, passwords or tokens: handlers log explicit fields only (no
//! `#[instrument]` without `skip_all`), and nothing logs headers.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_env("ENCLAVE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry.with(fmt::layer().json()).init();
    } else {
        registry.with(fmt::layer()).init();
    }
}
