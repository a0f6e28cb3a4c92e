//! Server-side infrastructure shared by every slice (compiled with `ssr` only):
//! the application state, settings, encryption and keys, password hashing,
//! rate limiting and the request context helpers server functions use.

pub mod crypto;
pub mod egress;
pub mod keystore;
pub mod passwords;
pub mod rate_limit;
pub mod request;
pub mod settings;
pub mod state;

pub use settings::Settings;
pub use state::AppState;
