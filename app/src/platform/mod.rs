//! The ground floor (compiled with `ssr` only): settings, encryption and
//! keys, outbound HTTP, password hashing, rate limiting, the background job
//! queue, writes retried until they land, Enclave's own mail and what the middleware leaves in a request. It imports no slice; slices import it.
//! (`AppState`, which also holds slice machinery, is the crate's `state`.)

pub mod control;
pub mod crypto;
pub mod egress;
pub mod jobs;
pub mod keystore;
pub mod mail;
pub mod passwords;
pub mod persist;
pub mod rate_limit;
pub mod request;
pub mod settings;
pub mod tls;

pub use settings::Settings;
