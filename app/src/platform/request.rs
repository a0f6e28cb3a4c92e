//! What the server's middleware put in a request for the code that serves
//! it: the request parts, the client address, and a way to set cookies.

use std::net::IpAddr;

use http::request::Parts;
use leptos::prelude::use_context;
use leptos_axum::ResponseOptions;

use uuid::Uuid;

use crate::error::AppError;

/// The client's address as the middleware determined it (the peer address,
/// or the address the trusted proxy put in `X-Forwarded-For`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

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

/// Where a request came from, as Settings → Sessions shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    pub ip: IpAddr,
    /// The `User-Agent` header, cut to 512 characters.
    pub user_agent: Option<String>,
}

impl ClientInfo {
    pub fn from_parts(ip: IpAddr, headers: &http::HeaderMap) -> Self {
        let user_agent = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect::<String>())
            .filter(|ua| !ua.trim().is_empty());
        ClientInfo { ip, user_agent }
    }
}

pub fn client_info() -> Result<ClientInfo, AppError> {
    let parts = parts()?;
    Ok(ClientInfo::from_parts(client_ip()?, &parts.headers))
}

/// The client of the request being served, if any: a job has none, and
/// that is no error (`client_info` is for code that needs one).
pub fn current_client() -> Option<ClientInfo> {
    let parts = use_context::<Parts>()?;
    let ip = parts.extensions.get::<ClientIp>()?.0;
    Some(ClientInfo::from_parts(ip, &parts.headers))
}

/// Adds a `Set-Cookie` header to the response.
pub fn set_cookie(value: &str) -> Result<(), AppError> {
    let options = use_context::<ResponseOptions>()
        .ok_or_else(|| AppError::internal("ResponseOptions missing from context"))?;
    let value = http::HeaderValue::from_str(value).map_err(AppError::internal)?;
    options.append_header(http::header::SET_COOKIE, value);
    Ok(())
}

/// Ids arrive as text; anything that is not a UUID is simply not found.
pub fn parse_id(id: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(id.trim()).map_err(|_| AppError::NotFound)
}

/// An optional id from a form: empty means none.
pub fn optional_id(value: Option<&str>) -> Result<Option<Uuid>, AppError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(id) => parse_id(id).map(Some),
    }
}
