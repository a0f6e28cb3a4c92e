//! `AppState`: the composition root. It holds the ground floor's pieces
//! (`platform`: database, settings, keys, egress, password hashing) and the
//! slices' shared machinery (the live runs), so it sits above both: the
//! platform never names a slice.

use std::sync::Arc;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use sqlx::PgPool;

use crate::{
    chat::runs::Runs,
    knowledge::vectors::Cache,
    platform::{
        egress::Egress, jobs::Jobs, keystore::Crypto, passwords::Passwords, settings::Settings,
    },
};

/// The most memory opened knowledge vectors may take in one process (about
/// 40,000 passages of 1,536 dimensions).
pub const KNOWLEDGE_CACHE_BYTES: usize = 300 * 1024 * 1024;

/// Everything a request handler or server function needs, cloned cheaply per
/// request. Reached in server functions through context (`ctx::state`),
/// never a global.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub db: PgPool,
    pub settings: Arc<Settings>,
    pub passwords: Passwords,
    pub crypto: Arc<Crypto>,
    pub egress: Egress,
    /// Replies being written right now, by this server process.
    pub runs: Runs,
    /// This process's background workers (`platform::jobs`).
    pub jobs: Jobs,
    /// Knowledge bases' opened vectors, bounded (`knowledge::vectors`).
    pub knowledge: Cache,
}

impl AppState {
    pub fn new(
        leptos_options: LeptosOptions,
        db: PgPool,
        settings: Settings,
        crypto: Crypto,
    ) -> Self {
        AppState {
            leptos_options,
            db,
            egress: Egress::new(settings.egress_allow.clone()),
            runs: Runs::new(settings.instance.clone()),
            jobs: Jobs::new(&settings.instance),
            knowledge: Cache::new(KNOWLEDGE_CACHE_BYTES),
            settings: Arc::new(settings),
            passwords: Passwords::new(),
            crypto: Arc::new(crypto),
        }
    }
}
