//! A fake OAuth-protected MCP server that checks the whole dance, on the
//! fake provider's port: the resource `/mcp/oauth` (the fake MCP server,
//! plus a `whoami` tool naming the token's subject), its protected-resource
//! metadata (RFC 9728) and an authorization server under `/oauth` with its
//! metadata (RFC 8414), dynamic client registration (RFC 7591), an
//! authorization endpoint that signs in at once as a new subject
//! (`user-1`, `user-2`, …) and a token endpoint.
//!
//! It refuses, with a 400 that says why, anything a real one would: an
//! unknown client, a redirect URI that was not registered, no PKCE or not
//! S256, a wrong verifier, a missing or wrong `resource`, a code or refresh
//! token used twice. Access tokens live two seconds, so a client must
//! refresh. `GET /oauth/seen` lists the grants it answered, in order.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Form, Json, Router,
    extract::{Query, Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

/// How long an access token lives.
pub const ACCESS_TTL: Duration = Duration::from_secs(2);

/// The subject a request's token was issued to (for `whoami`).
#[derive(Debug, Clone)]
pub struct Subject(pub String);

struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    resource: String,
    subject: String,
}

#[derive(Default)]
struct Inner {
    counter: u64,
    subjects: u64,
    /// client id → its redirect URIs.
    clients: HashMap<String, Vec<String>>,
    codes: HashMap<String, Grant>,
    /// access token → (subject, resource, expiry).
    access: HashMap<String, (String, String, Instant)>,
    /// refresh token → (subject, client id, resource).
    refresh: HashMap<String, (String, String, String)>,
    seen: Vec<String>,
}

#[derive(Clone, Default)]
pub struct Fake(Arc<Mutex<Inner>>);

fn base(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

fn refuse(why: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, why.into()).into_response()
}

fn token_error(error: &str, why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": error, "error_description": why})),
    )
        .into_response()
}

async fn resource_metadata(headers: HeaderMap) -> Json<Value> {
    let base = base(&headers);
    Json(json!({
        "resource": format!("{base}/mcp/oauth"),
        "authorization_servers": [format!("{base}/oauth")],
        "scopes_supported": ["mcp:tools"],
        "bearer_methods_supported": ["header"],
    }))
}

async fn server_metadata(headers: HeaderMap) -> Json<Value> {
    let base = base(&headers);
    Json(json!({
        "issuer": format!("{base}/oauth"),
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "registration_endpoint": format!("{base}/oauth/register"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "scopes_supported": ["mcp:tools", "offline_access"],
    }))
}

async fn register(State(fake): State<Fake>, Json(body): Json<Value>) -> Response {
    let uris: Vec<String> = body["redirect_uris"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if uris.is_empty() {
        return token_error("invalid_redirect_uri", "redirect_uris is required");
    }
    let mut inner = fake.0.lock().unwrap();
    inner.counter += 1;
    let client_id = format!("fake-client-{}", inner.counter);
    inner.clients.insert(client_id.clone(), uris.clone());
    inner.seen.push("register".into());
    (
        StatusCode::CREATED,
        Json(json!({
            "client_id": client_id,
            "redirect_uris": uris,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        })),
    )
        .into_response()
}

async fn authorize(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let base = base(&headers);
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("response_type") != "code" {
        return refuse("response_type must be code");
    }
    let mut inner = fake.0.lock().unwrap();
    let Some(uris) = inner.clients.get(&get("client_id")) else {
        return refuse("unknown client_id");
    };
    let redirect_uri = get("redirect_uri");
    if !uris.contains(&redirect_uri) {
        return refuse("redirect_uri was not registered");
    }
    if get("code_challenge").is_empty() || get("code_challenge_method") != "S256" {
        return refuse("PKCE with S256 is required");
    }
    if get("state").is_empty() {
        return refuse("state is required");
    }
    if get("resource") != format!("{base}/mcp/oauth") {
        return refuse("resource must name the MCP server");
    }
    inner.counter += 1;
    inner.subjects += 1;
    let code = format!("fake-code-{}", inner.counter);
    let subject = format!("user-{}", inner.subjects);
    inner.codes.insert(
        code.clone(),
        Grant {
            client_id: get("client_id"),
            redirect_uri: redirect_uri.clone(),
            challenge: get("code_challenge"),
            resource: get("resource"),
            subject,
        },
    );
    let mut target = url::Url::parse(&redirect_uri).expect("a registered URI parses");
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &get("state"))
        .append_pair("iss", &format!("{base}/oauth"));
    Redirect::to(target.as_str()).into_response()
}

fn issue(inner: &mut Inner, subject: &str, client_id: &str, resource: &str) -> Value {
    inner.counter += 1;
    let n = inner.counter;
    let access = format!("fake-access-{n}");
    let refresh = format!("fake-refresh-{n}");
    inner.access.insert(
        access.clone(),
        (
            subject.to_owned(),
            resource.to_owned(),
            Instant::now() + ACCESS_TTL,
        ),
    );
    inner.refresh.insert(
        refresh.clone(),
        (
            subject.to_owned(),
            client_id.to_owned(),
            resource.to_owned(),
        ),
    );
    json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ACCESS_TTL.as_secs(),
        "refresh_token": refresh,
        "scope": "mcp:tools offline_access",
    })
}

async fn token(State(fake): State<Fake>, Form(form): Form<HashMap<String, String>>) -> Response {
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let mut inner = fake.0.lock().unwrap();
    match get("grant_type").as_str() {
        "authorization_code" => {
            let Some(grant) = inner.codes.remove(&get("code")) else {
                return token_error("invalid_grant", "unknown or used code");
            };
            if grant.client_id != get("client_id") {
                return token_error("invalid_grant", "the code is another client's");
            }
            if grant.redirect_uri != get("redirect_uri") {
                return token_error("invalid_grant", "redirect_uri differs");
            }
            let verifier = get("code_verifier");
            let challenge = URL_SAFE_NO_PAD.encode(sha256(verifier.as_bytes()));
            if verifier.is_empty() || challenge != grant.challenge {
                return token_error("invalid_grant", "the PKCE verifier does not match");
            }
            if get("resource") != grant.resource {
                return token_error("invalid_target", "resource differs");
            }
            inner.seen.push("authorization_code".into());
            let body = issue(
                &mut inner,
                &grant.subject,
                &grant.client_id,
                &grant.resource,
            );
            Json(body).into_response()
        }
        "refresh_token" => {
            let Some((subject, client_id, resource)) = inner.refresh.remove(&get("refresh_token"))
            else {
                return token_error("invalid_grant", "unknown or used refresh token");
            };
            if client_id != get("client_id") {
                return token_error("invalid_grant", "the token is another client's");
            }
            if get("resource") != resource {
                return token_error("invalid_target", "resource differs");
            }
            inner.seen.push("refresh_token".into());
            let body = issue(&mut inner, &subject, &client_id, &resource);
            Json(body).into_response()
        }
        _ => token_error("unsupported_grant_type", "unsupported grant_type"),
    }
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).to_vec()
}

/// Lets through only a live access token issued for this resource, with
/// its subject for the handler; else the 401 that starts discovery.
async fn require_token(State(fake): State<Fake>, mut request: Request, next: Next) -> Response {
    let base = base(request.headers());
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    let subject = token.and_then(|token| {
        let inner = fake.0.lock().unwrap();
        inner
            .access
            .get(&token)
            .filter(|(_, resource, expiry)| {
                *resource == format!("{base}/mcp/oauth") && *expiry > Instant::now()
            })
            .map(|(subject, _, _)| subject.clone())
    });
    match subject {
        Some(subject) => {
            request.extensions_mut().insert(Subject(subject));
            next.run(request).await
        }
        None => (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                format!(
                    "Bearer resource_metadata=\"{base}/.well-known/oauth-protected-resource/mcp/oauth\", scope=\"mcp:tools\""
                ),
            )],
            "unauthorized",
        )
            .into_response(),
    }
}

impl Fake {
    /// The protected MCP endpoint's layer (for `fake_mcp` to wrap its service).
    pub fn guard<S: Clone + Send + Sync + 'static>(&self, router: Router<S>) -> Router<S> {
        router.layer(middleware::from_fn_with_state(self.clone(), require_token))
    }

    /// The authorization server and the metadata, at the root of the fake.
    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/.well-known/oauth-protected-resource/mcp/oauth",
                get(resource_metadata),
            )
            .route(
                "/.well-known/oauth-authorization-server/oauth",
                get(server_metadata),
            )
            .route("/oauth/register", post(register))
            .route("/oauth/authorize", get(authorize))
            .route("/oauth/token", post(token))
            .route(
                "/oauth/seen",
                get(|State(fake): State<Fake>| async move {
                    Json(fake.0.lock().unwrap().seen.clone())
                }),
            )
            .with_state(self.clone())
    }
}
