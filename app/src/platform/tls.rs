//! TLS for outbound connections: rustls with the `ring` provider (pure Rust
//! and assembly; aws-lc-rs would need a C build). Installed once per
//! process, before any client is built.

use std::sync::Once;

static INIT: Once = Once::new();

/// Installs the process's TLS provider; safe to call again.
pub fn init() {
    INIT.call_once(|| {
        // Err means another provider is already installed: also fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
