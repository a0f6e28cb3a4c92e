//! A fake OpenID Connect provider (tests and the browser tests), under
//! `/oidc` on the fake provider's port, speaking the real protocol with
//! real signed ID tokens: discovery (`/oidc/.well-known/openid-configuration`,
//! the issuer is `http://<host>/oidc`), the keys (`/oidc/jwks`, RS256), an
//! authorization page (`/oidc/authorize`: a form where the test says who
//! signs in, and how the answer should be wrong) and the token endpoint.
//!
//! The token endpoint refuses what a real one would: an unknown client or
//! wrong secret, a code used twice, another redirect URI, a missing or wrong
//! PKCE verifier. The flaws a test can ask for (`flaw` on the form):
//! `bad-signature` (signed with a key it does not publish), `wrong-audience`,
//! `wrong-issuer`, `wrong-nonce`, `expired`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Form, Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use openidconnect::{
    AccessToken, Audience, AuthUrl, EmptyAdditionalClaims, EmptyAdditionalProviderMetadata,
    EmptyExtraTokenFields, EndUserEmail, EndUserFamilyName, EndUserGivenName, IssuerUrl,
    JsonWebKeyId, JsonWebKeySetUrl, LocalizedClaim, Nonce, PrivateSigningKey, ResponseTypes,
    StandardClaims, SubjectIdentifier, TokenUrl,
    core::{
        CoreIdToken, CoreIdTokenClaims, CoreIdTokenFields, CoreJsonWebKeySet,
        CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreResponseType, CoreRsaPrivateSigningKey,
        CoreSubjectIdentifierType, CoreTokenResponse, CoreTokenType,
    },
};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The client the fake knows.
pub const CLIENT_ID: &str = "enclave-test-client";
pub const CLIENT_SECRET: &str = "fake-oidc-client-secret";

/// The fake's two RSA keys (PKCS#1 PEM), made once per process: the first
/// signs its ID tokens and is in its JWKS, the second signs the
/// "bad-signature" tokens and is published nowhere. No key is kept in the
/// repository.
fn keys() -> &'static (String, String) {
    static KEYS: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let make = || {
            use rsa::pkcs1::EncodeRsaPrivateKey as _;
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                .expect("an RSA key for the fake provider");
            key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF)
                .expect("a PEM of that key")
                .to_string()
        };
        (make(), make())
    })
}

struct Grant {
    redirect_uri: String,
    challenge: String,
    nonce: String,
    who: Who,
}

#[derive(Clone, Deserialize)]
struct Who {
    sub: String,
    email: String,
    #[serde(default)]
    email_verified: Option<String>,
    #[serde(default)]
    given_name: String,
    #[serde(default)]
    family_name: String,
    #[serde(default)]
    flaw: String,
}

#[derive(Clone, Default)]
pub struct Fake(Arc<Mutex<HashMap<String, Grant>>>);

fn issuer(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}/oidc")
}

fn key(pem: &str) -> CoreRsaPrivateSigningKey {
    CoreRsaPrivateSigningKey::from_pem(pem, Some(JsonWebKeyId::new("fake-key-1".into())))
        .expect("the fake's test key is valid")
}

fn bad(why: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({"error": "invalid_grant", "error_description": why})),
    )
        .into_response()
}

pub fn router() -> Router {
    Router::new()
        .route("/oidc/.well-known/openid-configuration", get(discovery))
        .route("/oidc/jwks", get(jwks))
        .route("/oidc/authorize", get(authorize_page).post(authorize))
        .route("/oidc/token", axum::routing::post(token))
        .with_state(Fake::default())
}

async fn discovery(headers: HeaderMap) -> Response {
    let issuer = issuer(&headers);
    let url = |path: &str| format!("{issuer}{path}");
    let metadata = CoreProviderMetadata::new(
        IssuerUrl::new(issuer.clone()).expect("issuer"),
        AuthUrl::new(url("/authorize")).expect("url"),
        JsonWebKeySetUrl::new(url("/jwks")).expect("url"),
        vec![ResponseTypes::new(vec![CoreResponseType::Code])],
        vec![CoreSubjectIdentifierType::Public],
        vec![CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256],
        EmptyAdditionalProviderMetadata {},
    )
    .set_token_endpoint(Some(TokenUrl::new(url("/token")).expect("url")));
    Json(metadata).into_response()
}

async fn jwks() -> Response {
    Json(CoreJsonWebKeySet::new(vec![
        key(&keys().0).as_verification_key(),
    ]))
    .into_response()
}

/// The sign-in page: who signs in, and what to get wrong.
async fn authorize_page(Query(q): Query<HashMap<String, String>>) -> Response {
    let field = |name: &str| {
        html_escape::encode_double_quoted_attribute(q.get(name).map_or("", String::as_str))
            .into_owned()
    };
    let hidden: String = [
        "client_id",
        "redirect_uri",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
        "response_type",
        "scope",
    ]
    .iter()
    .map(|n| {
        format!(
            "<input type=\"hidden\" name=\"{n}\" value=\"{}\">",
            field(n)
        )
    })
    .collect();
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Fake identity provider</title></head><body>\
         <h1>Fake identity provider</h1><form method=\"post\">{hidden}\
         <label>Subject <input name=\"sub\" value=\"fake-subject-1\"></label>\
         <label>Email <input name=\"email\" value=\"\"></label>\
         <label><input type=\"checkbox\" name=\"email_verified\" value=\"true\" checked> Email verified</label>\
         <label>Given name <input name=\"given_name\" value=\"Grace\"></label>\
         <label>Family name <input name=\"family_name\" value=\"Hopper\"></label>\
         <label>Flaw <input name=\"flaw\" value=\"\"></label>\
         <button type=\"submit\">Continue</button></form></body></html>"
    ))
    .into_response()
}

#[derive(Deserialize)]
struct AuthorizeForm {
    client_id: String,
    redirect_uri: String,
    state: String,
    nonce: String,
    code_challenge: String,
    code_challenge_method: String,
    #[serde(flatten)]
    who: Who,
}

async fn authorize(State(fake): State<Fake>, Form(form): Form<AuthorizeForm>) -> Response {
    if form.client_id != CLIENT_ID {
        return bad("unknown client");
    }
    if form.code_challenge_method != "S256" || form.code_challenge.is_empty() {
        return bad("PKCE with S256 is required");
    }
    let code = format!("fake-oidc-code-{}", uuid::Uuid::new_v4().simple());
    let mut redirect = url::Url::parse(&form.redirect_uri).expect("redirect URI");
    redirect
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &form.state);
    fake.0.lock().expect("fake lock").insert(
        code,
        Grant {
            redirect_uri: form.redirect_uri,
            challenge: form.code_challenge,
            nonce: form.nonce,
            who: form.who,
        },
    );
    Redirect::to(redirect.as_str()).into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    code: String,
    redirect_uri: String,
    code_verifier: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

async fn token(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    // Client authentication: HTTP Basic (what openidconnect sends) or the form.
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())));
    let (id, secret) = basic.unwrap_or((
        form.client_id.clone().unwrap_or_default(),
        form.client_secret.clone().unwrap_or_default(),
    ));
    let decode = |v: &str| percent_decode(v);
    if decode(&id) != CLIENT_ID || decode(&secret) != CLIENT_SECRET {
        return (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "invalid_client"})),
        )
            .into_response();
    }
    if form.grant_type != "authorization_code" {
        return bad("only authorization_code");
    }
    let Some(grant) = fake.0.lock().expect("fake lock").remove(&form.code) else {
        return bad("unknown or used code");
    };
    if grant.redirect_uri != form.redirect_uri {
        return bad("another redirect URI");
    }
    let Some(verifier) = form.code_verifier else {
        return bad("no PKCE verifier");
    };
    if URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes())) != grant.challenge {
        return bad("wrong PKCE verifier");
    }
    let who = grant.who;
    let flaw = who.flaw.as_str();
    let mut issuer = issuer(&headers);
    if flaw == "wrong-issuer" {
        issuer.push_str("-elsewhere");
    }
    let audience = if flaw == "wrong-audience" {
        "another-client"
    } else {
        CLIENT_ID
    };
    let now = chrono::Utc::now();
    let expires = if flaw == "expired" {
        now - chrono::Duration::minutes(10)
    } else {
        now + chrono::Duration::minutes(5)
    };
    let nonce = if flaw == "wrong-nonce" {
        "not-the-nonce".to_owned()
    } else {
        grant.nonce
    };
    let mut given = LocalizedClaim::new();
    given.insert(None, EndUserGivenName::new(who.given_name.clone()));
    let mut family = LocalizedClaim::new();
    family.insert(None, EndUserFamilyName::new(who.family_name.clone()));
    let mut standard = StandardClaims::new(SubjectIdentifier::new(who.sub.clone()))
        .set_email_verified(Some(who.email_verified.as_deref() == Some("true")));
    if !who.email.is_empty() {
        standard = standard.set_email(Some(EndUserEmail::new(who.email.clone())));
    }
    if !who.given_name.is_empty() {
        standard = standard.set_given_name(Some(given));
    }
    if !who.family_name.is_empty() {
        standard = standard.set_family_name(Some(family));
    }
    let claims = CoreIdTokenClaims::new(
        IssuerUrl::new(issuer).expect("issuer"),
        vec![Audience::new(audience.into())],
        expires,
        now - chrono::Duration::minutes(if flaw == "expired" { 15 } else { 0 }),
        standard,
        EmptyAdditionalClaims {},
    )
    .set_nonce(Some(Nonce::new(nonce)));
    let access = AccessToken::new(format!(
        "fake-oidc-access-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let signer = key(if flaw == "bad-signature" {
        &keys().1
    } else {
        &keys().0
    });
    let id_token = match CoreIdToken::new(
        claims,
        &signer,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        Some(&access),
        None,
    ) {
        Ok(t) => t,
        Err(_) => return bad("could not sign"),
    };
    Json(CoreTokenResponse::new(
        access,
        CoreTokenType::Bearer,
        CoreIdTokenFields::new(Some(id_token), EmptyExtraTokenFields {}),
    ))
    .into_response()
}

/// OAuth clients URL-encode the id and secret inside Basic credentials.
fn percent_decode(value: &str) -> String {
    url::form_urlencoded::parse(format!("v={value}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
