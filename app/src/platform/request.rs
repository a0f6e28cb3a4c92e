//! What a server function knows about the request it serves, put there by the
//! server's middleware: the state, the client address and the signed-in user.

use std::net::IpAddr;

use http::request::Parts;
use leptos::prelude::use_context;
use leptos_axum::ResponseOptions;

use super::state::AppState;
use crate::{auth::server::AuthSession, error::AppError};

/// The client's address as the middleware determined it (peer address, or the
/// first `X-Forwarded-For` hop when the operator said a proxy sets it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

pub fn state() -> Result<AppState, AppError> {
    use_context::<AppState>().ok_or_else(|| AppError::internal("AppState missing from context"))
}

pub fn parts() -> Result<Parts, AppError> {
    use_context::<Parts>().ok_or_else(|| AppError::internal("request parts missing from context"))
}

pub fn client_ip() -> Result<IpAddr, AppError> {
    parts()?
        .extensions
        .get::<ClientIp>()
        .map(|ip| ip.0)
        .ok_or_else(|| AppError::internal("client address missing: middleware not installed"))
}

/// The signed-in user's session, if any.
pub fn session() -> Option<AuthSession> {
    use_context::<Parts>().and_then(|p| p.extensions.get::<AuthSession>().cloned())
}

/// The signed-in user's session, or `Unauthorized`.
pub fn require_session() -> Result<AuthSession, AppError> {
    session().ok_or(AppError::Unauthorized)
}

/// Adds a `Set-Cookie` header to the response.
pub fn set_cookie(value: &str) -> Result<(), AppError> {
    let options = use_context::<ResponseOptions>()
        .ok_or_else(|| AppError::internal("ResponseOptions missing from context"))?;
    let value = http::HeaderValue::from_str(value).map_err(AppError::internal)?;
    options.append_header(http::header::SET_COOKIE, value);
    Ok(())
}
