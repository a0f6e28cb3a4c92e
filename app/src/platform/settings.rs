//! Settings the application logic needs at request time. The server binary
//! builds them from `ENCLAVE_*` environment variables (see `server::config`);
//! tests build them directly.

use std::time::Duration;

/// A fixed-window limit: at most `max` events per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: Duration,
}

impl Limit {
    pub const fn new(max: u32, window_secs: u64) -> Self {
        Limit {
            max,
            window: Duration::from_secs(window_secs),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    /// Cookies get `Secure` and the `__Host-` prefix (set when the public URL is https).
    pub secure_cookies: bool,
    /// How long a session lasts after sign-in.
    pub session_ttl: Duration,
    /// Sign-in attempts per client address (all attempts count).
    pub sign_in_per_ip: Limit,
    /// Failed sign-ins per account (a success resets it).
    pub sign_in_per_account: Limit,
    /// Sign-ups per client address.
    pub sign_up_per_ip: Limit,
    /// Trust the first `X-Forwarded-For` address (only behind a proxy that sets it).
    pub trust_forwarded_for: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            secure_cookies: false,
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            sign_in_per_ip: Limit::new(30, 15 * 60),
            sign_in_per_account: Limit::new(5, 15 * 60),
            sign_up_per_ip: Limit::new(10, 60 * 60),
            trust_forwarded_for: false,
        }
    }
}
