//! What a server function knows about the request it serves: the
//! application state and the signed-in user, both put in context by the
//! server (the state by the router, the session by the session middleware).
//! The lower-level pieces (client address, cookies) are in
//! `platform::request` and re-exported here.

use leptos::prelude::use_context;

pub use crate::platform::request::{
    client_info, client_ip, optional_id, parse_id, parts, set_cookie,
};
use crate::{
    auth::server::{AuthSession, UnreadSession},
    error::AppError,
    state::AppState,
};

pub fn state() -> Result<AppState, AppError> {
    use_context::<AppState>().ok_or_else(|| AppError::internal("AppState missing from context"))
}

/// The signed-in user's session, if any.
pub fn session() -> Option<AuthSession> {
    use_context::<http::request::Parts>().and_then(|p| p.extensions.get::<AuthSession>().cloned())
}

/// The session of a request the middleware left unread: a send reads it
/// with the rest of what it needs (`auth::server::UnreadSession`).
pub fn unread_session() -> Option<UnreadSession> {
    use_context::<http::request::Parts>().and_then(|p| p.extensions.get::<UnreadSession>().cloned())
}

/// The signed-in user's session, or `Unauthorized`.
pub fn require_session() -> Result<AuthSession, AppError> {
    session().ok_or(AppError::Unauthorized)
}

/// The signed-in user's session, if this server lets them use agents and
/// chat: with `ENCLAVE_REQUIRE_VERIFIED_EMAIL`, only once their address is
/// confirmed. Every agents and chat server function starts here.
pub fn require_verified_session() -> Result<AuthSession, AppError> {
    let session = require_session()?;
    session.require_verified(&state()?.settings)?;
    Ok(session)
}

/// Redirects a plain form post (JavaScript off) to `path`; the hydrated app
/// gets the server function's value instead and moves on by itself.
pub fn redirect_plain_post(path: &str) {
    let plain = use_context::<http::request::Parts>().is_some_and(|parts| {
        parts
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("text/html"))
    });
    if plain {
        leptos_axum::redirect(path);
    }
}
