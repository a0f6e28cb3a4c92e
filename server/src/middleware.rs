//! HTTP middleware, outermost first: security headers (with the per-request CSP
//! nonce), the cross-origin check, session resolution (which also sends a
//! signed-out visitor of a protected page to sign-in), a Leptos owner of
//! the request's own, and the status of server function errors.

use std::net::{IpAddr, SocketAddr};

use app::{
    GUEST_PATHS, PROTECTED_PATHS,
    auth::server::{AuthSession, UnreadSession, read_cookie, resolve_session, session_cookie_name},
    chat::api::SendMessage,
    error::AppError,
    path_matches,
    platform::request::ClientIp,
    state::AppState,
    ui::encode_component,
};
use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use base64::{Engine as _, engine::general_purpose::STANDARD_NO_PAD};
use leptos::server_fn::ServerFn;
use rand::RngCore as _;

/// The nonce that this response's inline scripts carry and its CSP allows.
#[derive(Debug, Clone)]
pub struct CspNonce(pub String);

fn content_security_policy(nonce: &str, form_targets: &str) -> String {
    // 'wasm-unsafe-eval' lets the page compile its WASM; it does not allow eval().
    format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; form-action 'self'{form_targets}; \
         frame-ancestors 'none'"
    )
}

/// The origins of the configured sign-in providers and of Stripe's payment
/// pages: a "Sign in with …" or "Pay with card" form posts here and is
/// redirected there, which `form-action` must allow.
fn provider_origins(state: &AppState) -> String {
    let stripe = state
        .settings
        .billing
        .stripe
        .as_ref()
        .and_then(app::usage::stripe::page_origin);
    state
        .settings
        .oidc_providers
        .iter()
        .filter_map(|p| url::Url::parse(&p.issuer).ok())
        .map(|u| u.origin().ascii_serialization())
        .chain(stripe)
        .map(|origin| format!(" {origin}"))
        .collect()
}

pub async fn security_headers(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let nonce = STANDARD_NO_PAD.encode(bytes);
    req.extensions_mut().insert(CspNonce(nonce.clone()));
    let is_asset = req.uri().path().starts_with("/pkg/");

    let mut res = next.run(req).await;
    let headers = res.headers_mut();
    let mut set = |name: header::HeaderName, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(
        header::CONTENT_SECURITY_POLICY,
        &content_security_policy(&nonce, &provider_origins(&state)),
    );
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    // Same-origin requests keep the Referer, which plain form posts need to
    // come back to their page; other sites get nothing.
    set(header::REFERRER_POLICY, "same-origin");
    set(header::X_FRAME_OPTIONS, "DENY");
    set(
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    set(
        header::HeaderName::from_static("permissions-policy"),
        "camera=(), microphone=(), geolocation=(), payment=()",
    );
    if !is_asset && !res.headers().contains_key(header::CACHE_CONTROL) {
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// Whether a state-changing request comes from our own pages. Browsers send
/// `Sec-Fetch-Site` (and `Origin`) with every such request, and no page on
/// another site can forge them; a request without either comes from a
/// non-browser client, which cannot carry a victim's cookies, so it passes.
/// This is the check Go's `http.CrossOriginProtection` makes.
pub fn same_origin(headers: &HeaderMap, public_url: &str) -> bool {
    let get = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = get(header::HeaderName::from_static("sec-fetch-site")) {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = get(header::ORIGIN) else {
        return true;
    };
    if origin.eq_ignore_ascii_case(public_url.trim_end_matches('/')) {
        return true;
    }
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    get(header::HOST)
        .is_some_and(|host| !origin_host.is_empty() && origin_host.eq_ignore_ascii_case(host))
}

pub async fn origin_check(
    State(public_url): State<std::sync::Arc<str>>,
    req: Request,
    next: Next,
) -> Response {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && !same_origin(req.headers(), &public_url) {
        tracing::warn!(method = %req.method(), path = req.uri().path(), "cross-origin request refused");
        return (
            StatusCode::FORBIDDEN,
            "Cross-origin request refused: this action must come from Enclave's own pages.",
        )
            .into_response();
    }
    next.run(req).await
}

/// The client's address: the TCP peer, or, behind `hops` proxies that each
/// append the address they saw to `X-Forwarded-For`, the entry the outermost
/// trusted proxy added: `hops` from the right. Entries to its left came from
/// the client and are never believed. With fewer entries than that, the
/// request did not come through the proxies: the peer it is.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, hops: u8) -> IpAddr {
    if hops == 0 {
        return peer;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    entries
        .len()
        .checked_sub(hops as usize)
        .and_then(|i| entries[i].parse().ok())
        .unwrap_or(peer)
}

pub async fn session(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if path.starts_with("/pkg/") {
        return next.run(req).await;
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let ip = client_ip(peer, req.headers(), state.settings.proxy_hops);
    req.extensions_mut().insert(ClientIp(ip));

    let cookie_name = session_cookie_name(&state.settings);
    let token = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| read_cookie(h, cookie_name));
    // A send reads its session in the statement that reads everything else
    // it needs (`chat::server::send_signed_in`): one round trip before the
    // provider is asked, not two. It is a POST to an API path, so nothing
    // below needs the session first.
    if req.method() == Method::POST && path == <SendMessage as ServerFn>::PATH {
        if let Some(token) = token {
            req.extensions_mut().insert(UnreadSession::of(&token));
        }
        return next.run(req).await;
    }
    let session: Option<AuthSession> = match token {
        None => None,
        Some(token) => match resolve_session(&state.db, &state.crypto, &token).await {
            Ok(session) => session,
            Err(_) => {
                // The cause is logged by AppError::internal; answer without detail.
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Enclave could not load your session right now. Please try again shortly.",
                )
                    .into_response();
            }
        },
    };

    let is_page = req.method() == Method::GET && !path.starts_with("/api/");
    if is_page && session.is_none() && path_matches(PROTECTED_PATHS, &path) {
        let here = req
            .uri()
            .path_and_query()
            .map_or(path.clone(), |pq| pq.as_str().to_owned());
        return Redirect::to(&format!("/sign-in?next={}", encode_component(&here))).into_response();
    }
    if is_page && session.is_some() && path_matches(GUEST_PATHS, &path) {
        return Redirect::to("/dashboard").into_response();
    }
    if let Some(session) = session {
        req.extensions_mut().insert(session);
    }
    next.run(req).await
}

/// Server functions answer every error with 500; this gives each `AppError`
/// its own status (422, 401, 429 with `Retry-After`, ...), including errors
/// raised before the function body ran, such as a form with a missing field.
pub async fn server_fn_errors(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    if res.status().is_redirection() {
        drop_bare_query(res.headers_mut());
    }
    // A plain form post's error is a redirect back to the form: leave it be.
    if res.status() != StatusCode::INTERNAL_SERVER_ERROR
        || !res.headers().contains_key("serverfnerror")
    {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    // Error bodies are a few hundred bytes; anything larger is not ours.
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "Internal error").into_response();
    };
    if let Ok(err) = serde_json::from_slice::<AppError>(&bytes) {
        parts.status =
            StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if let AppError::RateLimited { retry_after_secs } = err {
            parts
                .headers
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
    }
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

/// A plain form post is sent back to its page (the Referer), from whose
/// query `server_fn` first removes an earlier error; it rebuilds the query
/// even when nothing is left, so `/dashboard` came back as `/dashboard?`.
fn drop_bare_query(headers: &mut HeaderMap) {
    let Some(bare) = headers
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| l.strip_suffix('?'))
        .and_then(|l| HeaderValue::from_str(l).ok())
    else {
        return;
    };
    headers.insert(header::LOCATION, bare);
}

/// Polls a request with no current Leptos owner, and leaves none behind.
///
/// Leptos keeps the current owner (the scope contexts are read from) in a
/// thread-local. A page's render sets it to the page's root
/// (`Owner::new_root`) and leaves it there while the page is alive; the next
/// request polled on that worker thread then makes its own owner
/// (`Owner::new()`: server functions, the static-file handler, `in_request`)
/// a child of that page and reads the page's contexts as its own. A WASM
/// chunk served that way took a "Not found" page's 404, and the page that
/// asked for it died. Contexts are each request's own.
pub async fn own_owner(req: Request, next: Next) -> Response {
    fn clear() {
        if let Some(owner) = leptos::prelude::Owner::current() {
            owner.unset();
        }
    }
    let mut response = std::pin::pin!(next.run(req));
    std::future::poll_fn(|cx| {
        clear();
        let polled = response.as_mut().poll(cx);
        clear();
        polled
    })
    .await
}

/// Runs app code from a plain axum handler with the request's parts in
/// Leptos's context, as a server function has them: the activity log
/// reads the client's address and browser from there.
pub async fn in_request<F: std::future::Future>(parts: &http::request::Parts, fut: F) -> F::Output {
    use leptos::prelude::{Owner, provide_context};
    let owner = Owner::new();
    owner.with(|| provide_context(parts.clone()));
    owner
        .with(|| leptos::reactive::computed::ScopedFuture::new_untracked(fut))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    const PUBLIC: &str = "https://enclave.example.com";

    #[test]
    fn fetch_metadata_decides_when_present() {
        assert!(same_origin(
            &headers(&[("sec-fetch-site", "same-origin")]),
            PUBLIC
        ));
        assert!(same_origin(&headers(&[("sec-fetch-site", "none")]), PUBLIC));
        assert!(!same_origin(
            &headers(&[("sec-fetch-site", "cross-site")]),
            PUBLIC
        ));
        assert!(!same_origin(
            &headers(&[("sec-fetch-site", "same-site")]),
            PUBLIC
        ));
        // A matching Origin does not override a cross-site fetch.
        assert!(!same_origin(
            &headers(&[("sec-fetch-site", "cross-site"), ("origin", PUBLIC)]),
            PUBLIC
        ));
    }

    #[test]
    fn origin_must_match_public_url_or_host() {
        assert!(same_origin(&headers(&[("origin", PUBLIC)]), PUBLIC));
        assert!(same_origin(
            &headers(&[
                ("origin", "http://localhost:3000"),
                ("host", "localhost:3000")
            ]),
            PUBLIC
        ));
        assert!(!same_origin(
            &headers(&[
                ("origin", "https://evil.example"),
                ("host", "enclave.example.com")
            ]),
            PUBLIC
        ));
        assert!(!same_origin(
            &headers(&[("origin", "null"), ("host", "null")]),
            PUBLIC
        ));
    }

    #[test]
    fn the_client_is_the_address_the_trusted_proxy_added() {
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let spoofed = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.9")]);
        assert_eq!(client_ip(peer, &spoofed, 0), peer, "not behind a proxy");
        assert_eq!(
            client_ip(peer, &spoofed, 1),
            "203.0.113.9".parse::<IpAddr>().unwrap(),
            "the rightmost entry, not the one the client wrote"
        );
        assert_eq!(
            client_ip(peer, &spoofed, 2),
            "6.6.6.6".parse::<IpAddr>().unwrap(),
            "two proxies: two from the right"
        );
        assert_eq!(
            client_ip(peer, &spoofed, 3),
            peer,
            "fewer entries than proxies"
        );
        assert_eq!(client_ip(peer, &HeaderMap::new(), 1), peer);
        // Several header lines are one list, in order.
        let mut two_lines = HeaderMap::new();
        two_lines.append("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        two_lines.append("x-forwarded-for", HeaderValue::from_static("198.51.100.4"));
        assert_eq!(
            client_ip(peer, &two_lines, 1),
            "198.51.100.4".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn non_browser_clients_without_origin_pass() {
        assert!(same_origin(&HeaderMap::new(), PUBLIC));
    }
}
