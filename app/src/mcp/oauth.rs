//! OAuth 2.1 for the user's MCP servers (server only), with the official
//! SDK's client (rmcp `auth`): protected-resource metadata (RFC 9728), then
//! the authorization server's metadata (RFC 8414 / OpenID discovery),
//! dynamic client registration (RFC 7591), PKCE S256, the `resource`
//! parameter (RFC 8707) on every token request, and refresh.
//!
//! Everything the SDK would keep in memory is kept here instead, so a
//! sign-in started on one replica finishes on another and survives a
//! restart: the registered client (`mcp_servers.oauth_client`), the tokens
//! (`mcp_servers.oauth_tokens`) and a sign-in in progress
//! (`mcp_oauth_states`, found by the SHA-256 of its `state` and only by
//! the user who started it, for ten minutes). All sealed with the user's
//! key, in the user's own rows: a token is never used for another user.
//! Refreshes of one server's token wait for each other (an advisory lock),
//! so a rotating refresh token is never spent twice.
//!
//! Every request goes through the egress policy. The SDK's error texts may
//! name URLs (which can hold keys), so the user sees our own words.
//!
//! Sealed here: `mcp_servers.oauth_client`, `oauth_tokens`,
//! `mcp_oauth_states.state`.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use rmcp::transport::auth::{
    AuthError, AuthorizationManager, AuthorizationRequest, AuthorizationSession,
    CredentialRefreshGuard, CredentialStore, OAuthClientConfig, OAuthHttpClient,
    OAuthHttpClientFuture, OAuthHttpRedirectPolicy, OAuthHttpRequest, StateStore,
    StoredAuthorizationState, StoredCredentials,
};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    error::AppError,
    platform::{
        crypto::{DataKey, Place, Sealed, token_hash},
        egress::Egress,
        keystore::SealedColumn,
    },
    state::AppState,
};

pub const SEALED: &[SealedColumn] = &[
    SealedColumn::owned("mcp_servers", "oauth_client"),
    SealedColumn::owned("mcp_servers", "oauth_tokens"),
    SealedColumn::owned("mcp_oauth_states", "state"),
];

/// How long a sign-in may take between leaving for the authorization
/// server and coming back.
const SIGN_IN_MINUTES: i32 = 10;
/// The name Enclave registers under.
const CLIENT_NAME: &str = "Enclave";

fn server_place(column: &'static str, id: Uuid, owner: Uuid) -> Place {
    Place::new("mcp_servers", column, id, owner)
}

/// Where authorization servers send the user back.
pub fn redirect_uri(state: &AppState) -> String {
    format!(
        "{}/settings/mcp/oauth/callback",
        state.settings.public_url.trim_end_matches('/')
    )
}

/// The client Enclave registered (or was given) at a server.
#[derive(Clone, Serialize, Deserialize)]
struct Registration {
    client_id: String,
    client_secret: Option<String>,
    redirect_uri: String,
    scopes: Vec<String>,
}

impl Registration {
    fn config(&self) -> OAuthClientConfig {
        let mut config = OAuthClientConfig::new(&self.client_id, &self.redirect_uri)
            .with_scopes(self.scopes.clone());
        if let Some(secret) = &self.client_secret {
            config = config.with_client_secret(secret);
        }
        config
    }
}

// ---- HTTP through the egress policy ---------------------------------------------------

/// The SDK's HTTP, sent by the egress client: every host checked and
/// pinned, answers capped, redirects followed only where the SDK allows.
struct EgressHttp(Egress);

impl OAuthHttpClient for EgressHttp {
    fn execute(&self, request: OAuthHttpRequest) -> OAuthHttpClientFuture<'_> {
        Box::pin(async move {
            let follow = matches!(request.redirect_policy, OAuthHttpRedirectPolicy::Follow);
            let limit = request.timeout.unwrap_or(Duration::from_secs(30));
            let (parts, body) = request.request.into_parts();
            let url = parts.uri.to_string();
            let body = (!body.is_empty()).then_some(body);
            let sent = async {
                if follow {
                    self.0
                        .send_body(parts.method, &url, parts.headers, body)
                        .await
                } else {
                    self.0
                        .send_once(parts.method, &url, parts.headers, body)
                        .await
                }
            };
            let fetched = tokio::time::timeout(limit, sent)
                .await
                .map_err(|_| Box::new(Timeout) as rmcp::transport::auth::OAuthHttpClientError)?
                .map_err(|e| Box::new(e) as rmcp::transport::auth::OAuthHttpClientError)?;
            let mut response = http::Response::new(fetched.body);
            *response.status_mut() = fetched.status;
            *response.headers_mut() = fetched.headers;
            Ok(response)
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the authorization server did not answer in time")]
struct Timeout;

// ---- the stores -------------------------------------------------------------------------

/// One user's tokens for one server.
struct Tokens {
    db: PgPool,
    owner: Uuid,
    id: Uuid,
    key: DataKey,
}

fn store_error(err: impl std::fmt::Display) -> AuthError {
    AuthError::CredentialStoreError(err.to_string())
}

#[async_trait]
impl CredentialStore for Tokens {
    async fn load(&self) -> Result<Option<StoredCredentials>, AuthError> {
        let sealed: Option<Option<Sealed>> = sqlx::query_scalar(
            "SELECT oauth_tokens FROM mcp_servers WHERE id = $1 AND owner_id = $2",
        )
        .bind(self.id)
        .bind(self.owner)
        .fetch_optional(&self.db)
        .await
        .map_err(store_error)?;
        let Some(sealed) = sealed.flatten() else {
            return Ok(None);
        };
        let json = self
            .key
            .open_text(server_place("oauth_tokens", self.id, self.owner), &sealed)
            .map_err(store_error)?;
        serde_json::from_str(&json).map(Some).map_err(store_error)
    }

    async fn save(&self, credentials: StoredCredentials) -> Result<(), AuthError> {
        let json = serde_json::to_string(&credentials).map_err(store_error)?;
        sqlx::query(
            "UPDATE mcp_servers SET oauth_tokens = $3, updated_at = now()
             WHERE id = $1 AND owner_id = $2",
        )
        .bind(self.id)
        .bind(self.owner)
        .bind(
            self.key
                .seal_str(server_place("oauth_tokens", self.id, self.owner), &json),
        )
        .execute(&self.db)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn clear(&self) -> Result<(), AuthError> {
        sqlx::query(
            "UPDATE mcp_servers SET oauth_tokens = NULL, updated_at = now()
             WHERE id = $1 AND owner_id = $2",
        )
        .bind(self.id)
        .bind(self.owner)
        .execute(&self.db)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn on_refresh_token_rejected(
        &self,
        _credentials: &StoredCredentials,
    ) -> Result<(), AuthError> {
        // Spent or revoked: the user has to sign in again.
        self.clear().await
    }

    async fn acquire_refresh_guard(&self) -> Result<Option<CredentialRefreshGuard>, AuthError> {
        // A transaction holding an advisory lock on this server: another
        // refresh (on any replica) waits until this one has saved.
        let mut tx = self.db.begin().await.map_err(store_error)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text, 1201))")
            .bind(self.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(store_error)?;
        Ok(Some(CredentialRefreshGuard::new(tx)))
    }
}

/// Sign-ins in progress for one user's server.
struct States {
    db: PgPool,
    owner: Uuid,
    server: Uuid,
    key: DataKey,
}

fn state_place(id: Uuid, owner: Uuid) -> Place {
    Place::new("mcp_oauth_states", "state", id, owner)
}

#[async_trait]
impl StateStore for States {
    async fn save(&self, csrf: &str, state: StoredAuthorizationState) -> Result<(), AuthError> {
        let id = Uuid::new_v4();
        let json = serde_json::to_string(&state).map_err(store_error)?;
        // Abandoned sign-ins go as new ones start.
        sqlx::query(
            "DELETE FROM mcp_oauth_states
             WHERE created_at < now() - make_interval(mins => $1)",
        )
        .bind(SIGN_IN_MINUTES)
        .execute(&self.db)
        .await
        .map_err(store_error)?;
        sqlx::query(
            "INSERT INTO mcp_oauth_states (id, owner_id, server_id, state_hash, state)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(self.owner)
        .bind(self.server)
        .bind(token_hash(csrf))
        .bind(self.key.seal_str(state_place(id, self.owner), &json))
        .execute(&self.db)
        .await
        .map_err(store_error)?;
        Ok(())
    }

    async fn load(&self, csrf: &str) -> Result<Option<StoredAuthorizationState>, AuthError> {
        let row: Option<(Uuid, Sealed)> = sqlx::query_as(
            "SELECT id, state FROM mcp_oauth_states
             WHERE state_hash = $1 AND owner_id = $2 AND server_id = $3
               AND created_at > now() - make_interval(mins => $4)",
        )
        .bind(token_hash(csrf))
        .bind(self.owner)
        .bind(self.server)
        .bind(SIGN_IN_MINUTES)
        .fetch_optional(&self.db)
        .await
        .map_err(store_error)?;
        let Some((id, sealed)) = row else {
            return Ok(None);
        };
        let json = self
            .key
            .open_text(state_place(id, self.owner), &sealed)
            .map_err(store_error)?;
        serde_json::from_str(&json).map(Some).map_err(store_error)
    }

    async fn delete(&self, csrf: &str) -> Result<(), AuthError> {
        sqlx::query("DELETE FROM mcp_oauth_states WHERE state_hash = $1 AND owner_id = $2")
            .bind(token_hash(csrf))
            .bind(self.owner)
            .execute(&self.db)
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

// ---- the flows ----------------------------------------------------------------------------

struct Server {
    url: String,
    host: String,
    registration: Option<Registration>,
}

async fn load_server(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<Server, AppError> {
    let row: Option<(Sealed, Option<Sealed>)> = sqlx::query_as(
        "SELECT url, oauth_client FROM mcp_servers
         WHERE id = $1 AND owner_id = $2 AND auth = 'oauth'",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(&state.db)
    .await?;
    let (url, client) = row.ok_or(AppError::NotFound)?;
    let url = key.open_text(server_place("url", id, owner), &url)?;
    let registration = match client {
        Some(sealed) => {
            let json = key.open_text(server_place("oauth_client", id, owner), &sealed)?;
            Some(serde_json::from_str(&json).map_err(AppError::internal)?)
        }
        None => None,
    };
    let host = url::Url::parse(&url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "The MCP server".to_owned());
    Ok(Server {
        url,
        host,
        registration,
    })
}

async fn manager(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
    url: &str,
) -> Result<AuthorizationManager, AuthError> {
    let mut manager = AuthorizationManager::new_with_oauth_http_client(
        url,
        Arc::new(EgressHttp(state.egress.clone())),
    )
    .await?;
    manager.set_credential_store(Tokens {
        db: state.db.clone(),
        owner,
        id,
        key: key.clone(),
    });
    manager.set_state_store(States {
        db: state.db.clone(),
        owner,
        server: id,
        key: key.clone(),
    });
    Ok(manager)
}

/// Discovers how the server's users sign in, and keeps it in `manager`.
async fn discover(manager: &mut AuthorizationManager, host: &str) -> Result<(), String> {
    let resolution = manager.resolve_metadata().await.map_err(|err| {
        tracing::info!(error = %kind(&err), "MCP OAuth discovery failed");
        format!("{host} does not say how to sign in to it (no usable OAuth metadata).")
    })?;
    if !resolution.source.is_discovered() {
        return Err(format!(
            "{host} publishes no OAuth metadata, so Enclave cannot sign in to it."
        ));
    }
    manager.set_metadata(resolution.metadata);
    Ok(())
}

/// The kind of an SDK error, for the log: never its text, which may hold a URL.
fn kind(err: &AuthError) -> &'static str {
    match err {
        AuthError::AuthorizationRequired => "authorization_required",
        AuthError::AuthorizationFailed(_) => "authorization_failed",
        AuthError::TokenExchangeFailed(_) => "token_exchange_failed",
        AuthError::TokenRefreshFailed(_) => "token_refresh_failed",
        AuthError::TokenRefreshRejected(_) => "token_refresh_rejected",
        AuthError::CredentialStoreError(_) => "credential_store",
        AuthError::HttpError(_) => "http",
        AuthError::MetadataError(_) => "metadata",
        AuthError::PkceUnsupported => "pkce_unsupported",
        AuthError::NoAuthorizationSupport => "no_authorization_support",
        AuthError::RegistrationFailed(_) => "registration_failed",
        AuthError::TokenExpired => "token_expired",
        _ => "other",
    }
}

/// Starts a sign-in: discovers the authorization server, registers Enclave
/// with it (once per server), and returns the address to send the user to.
/// `Err` holds a sentence for the user, also kept as the server's error.
pub async fn start(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<Result<String, String>, AppError> {
    let server = load_server(state, owner, key, id).await?;
    let outcome = start_flow(state, owner, key, id, &server).await;
    if let Err(message) = &outcome {
        super::server::record_error(state, owner, key, id, message).await?;
    }
    Ok(outcome)
}

async fn start_flow(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
    server: &Server,
) -> Result<String, String> {
    let host = &server.host;
    let broken = |err: AuthError| {
        tracing::warn!(mcp_server_id = %id, error = kind(&err), "MCP OAuth sign-in could not start");
        format!("Could not start signing in to {host}.")
    };
    let mut manager = manager(state, owner, key, id, &server.url)
        .await
        .map_err(broken)?;
    discover(&mut manager, host).await?;
    let redirect = redirect_uri(state);
    let registration = match &server.registration {
        Some(known) if known.redirect_uri == redirect => known.clone(),
        _ => {
            let scopes = manager.select_scopes(None, &[]);
            let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let config = manager
                .register_client(CLIENT_NAME, &redirect, &scope_refs)
                .await
                .map_err(|err| {
                    tracing::info!(mcp_server_id = %id, error = kind(&err), "MCP OAuth registration failed");
                    format!(
                        "{host}'s sign-in does not let Enclave register itself (dynamic client \
                         registration), so Enclave cannot sign in to it."
                    )
                })?;
            let registration = Registration {
                client_id: config.client_id,
                client_secret: config.client_secret,
                redirect_uri: redirect.clone(),
                scopes,
            };
            let json = serde_json::to_string(&registration)
                .map_err(|_| format!("Could not start signing in to {host}."))?;
            sqlx::query(
                "UPDATE mcp_servers SET oauth_client = $3, updated_at = now()
                 WHERE id = $1 AND owner_id = $2",
            )
            .bind(id)
            .bind(owner)
            .bind(key.seal_str(server_place("oauth_client", id, owner), &json))
            .execute(&state.db)
            .await
            .map_err(|_| format!("Could not start signing in to {host}."))?;
            registration
        }
    };
    let mut request = AuthorizationRequest::new(&redirect)
        .with_client_name(CLIENT_NAME)
        .with_preregistered_client(&registration.client_id)
        .with_scopes(registration.scopes.iter().map(String::as_str));
    if let Some(secret) = &registration.client_secret {
        request = request.with_client_secret(secret);
    }
    let session = AuthorizationSession::new(manager, request)
        .await
        .map_err(|(_, err)| broken(err))?;
    tracing::info!(mcp_server_id = %id, owner_id = %owner, "MCP OAuth sign-in started");
    Ok(session.get_authorization_url().to_owned())
}

/// What came back from the authorization server.
pub struct Callback {
    pub code: Option<String>,
    pub state: String,
    pub issuer: Option<String>,
    /// `error` (the user said no, say).
    pub error: Option<String>,
}

/// Finishes a sign-in the user started: exchanges the code (with the PKCE
/// verifier and the `resource`) and keeps the tokens. Returns the server's
/// id. `NotFound` for a `state` that is not this user's (or expired).
pub async fn finish(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    callback: &Callback,
) -> Result<Uuid, AppError> {
    let id: Option<Uuid> = sqlx::query_scalar(
        "SELECT server_id FROM mcp_oauth_states
         WHERE state_hash = $1 AND owner_id = $2
           AND created_at > now() - make_interval(mins => $3)",
    )
    .bind(token_hash(&callback.state))
    .bind(owner)
    .bind(SIGN_IN_MINUTES)
    .fetch_optional(&state.db)
    .await?;
    let id = id.ok_or(AppError::NotFound)?;
    let server = load_server(state, owner, key, id).await?;
    let host = &server.host;
    let outcome = async {
        let Some(code) = callback
            .code
            .as_deref()
            .filter(|_| callback.error.is_none())
        else {
            return Err(format!("The sign-in to {host} was refused or cancelled."));
        };
        let registration = server
            .registration
            .as_ref()
            .ok_or_else(|| format!("Sign in to {host} again."))?;
        let failed = |err: AuthError| {
            tracing::info!(mcp_server_id = %id, error = kind(&err), "MCP OAuth sign-in failed");
            format!("{host} did not accept the sign-in. Try again.")
        };
        let mut manager = manager(state, owner, key, id, &server.url)
            .await
            .map_err(failed)?;
        discover(&mut manager, host).await?;
        manager
            .configure_client(registration.config())
            .map_err(failed)?;
        manager
            .exchange_code_for_token_with_issuer(code, &callback.state, callback.issuer.as_deref())
            .await
            .map_err(failed)?;
        Ok(())
    }
    .await;
    sqlx::query("DELETE FROM mcp_oauth_states WHERE state_hash = $1 AND owner_id = $2")
        .bind(token_hash(&callback.state))
        .bind(owner)
        .execute(&state.db)
        .await?;
    match outcome {
        Ok(()) => {
            tracing::info!(mcp_server_id = %id, owner_id = %owner, "MCP OAuth sign-in finished");
            super::server::refresh(state, owner, key, id).await?;
        }
        Err(message) => super::server::record_error(state, owner, key, id, &message).await?,
    }
    Ok(id)
}

/// A current access token for the user's server, refreshed when it is about
/// to expire. `Err` is a sentence for the user.
pub async fn access_token(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<String, String> {
    let server = load_server(state, owner, key, id)
        .await
        .map_err(|_| "The MCP server is gone.".to_owned())?;
    let host = &server.host;
    let again = || format!("Sign in to {host} again (Settings → MCP servers).");
    let Some(registration) = &server.registration else {
        return Err(again());
    };
    // A token that is not about to expire is used as it is: no discovery,
    // no request to the authorization server (every run connects).
    let tokens = Tokens {
        db: state.db.clone(),
        owner,
        id,
        key: key.clone(),
    };
    if let Ok(Some(stored)) = tokens.load().await
        && let Some(token) = still_fresh(&stored, now_secs())
    {
        return Ok(token);
    }
    let mut manager = manager(state, owner, key, id, &server.url)
        .await
        .map_err(|_| again())?;
    let signed_in = manager.initialize_from_store().await.map_err(|err| {
        tracing::info!(mcp_server_id = %id, error = kind(&err), "MCP OAuth tokens could not be loaded");
        match err {
            AuthError::CredentialStoreError(_) => again(),
            _ => format!("{host} does not say how to sign in to it any more."),
        }
    })?;
    if !signed_in {
        return Err(again());
    }
    manager
        .configure_client(registration.config())
        .map_err(|_| again())?;
    manager.get_access_token().await.map_err(|err| {
        tracing::info!(mcp_server_id = %id, error = kind(&err), "MCP OAuth token not available");
        match err {
            AuthError::HttpError(_) => format!("Could not reach {host}'s sign-in to renew it."),
            _ => again(),
        }
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The stored access token, if it is not within the SDK's refresh margin
/// of expiring (`min(30 s, half its life)`): then it needs no refresh.
fn still_fresh(stored: &StoredCredentials, now: u64) -> Option<String> {
    let json = serde_json::to_value(stored).ok()?;
    let response = json.get("token_response")?;
    let token = response.get("access_token")?.as_str()?.to_owned();
    let Some(lifetime) = response
        .get("expires_in")
        .and_then(serde_json::Value::as_u64)
    else {
        return Some(token);
    };
    let received = stored.token_received_at?;
    let margin = 30.min(lifetime / 2);
    (received + lifetime)
        .checked_sub(now)?
        .gt(&margin)
        .then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(expires_in: Option<u64>, received: u64) -> StoredCredentials {
        let mut response = serde_json::json!({"access_token": "t", "token_type": "bearer"});
        if let Some(seconds) = expires_in {
            response["expires_in"] = seconds.into();
        }
        StoredCredentials::new(
            "client".into(),
            Some(serde_json::from_value(response).unwrap()),
            vec![],
            Some(received),
        )
    }

    #[test]
    fn a_token_is_used_as_it_is_until_it_nears_expiry() {
        assert_eq!(
            still_fresh(&stored(Some(3600), 1000), 1000),
            Some("t".into())
        );
        assert_eq!(
            still_fresh(&stored(Some(3600), 1000), 1000 + 3569),
            Some("t".into())
        );
        assert_eq!(still_fresh(&stored(Some(3600), 1000), 1000 + 3570), None);
        assert_eq!(still_fresh(&stored(Some(3600), 1000), 1000 + 9999), None);
        // Short-lived: half its life is the margin.
        assert_eq!(still_fresh(&stored(Some(2), 1000), 1000), Some("t".into()));
        assert_eq!(still_fresh(&stored(Some(2), 1000), 1001), None);
        assert_eq!(still_fresh(&stored(None, 1000), 99_999), Some("t".into()));
    }
}
