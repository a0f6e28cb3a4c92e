//! Sign-in with Google and other OpenID Connect providers (server only),
//! through `openidconnect`: discovery, the authorization code flow with
//! PKCE (S256), `state` and `nonce` checked, the ID token verified against
//! the provider's published keys (signature, issuer, audience, expiry).
//! Every request to the provider goes through the egress client.
//!
//! A sign-in in progress lives in `oidc_states`, found by the SHA-256 of
//! its `state`, used once, for ten minutes, and bound to the browser that
//! started it (a random token in its session cookie, or the signed-in
//! session when connecting a provider from settings). The PKCE verifier and
//! the nonce are derived from `state` with the server's keyed hash, so
//! nothing secret is stored.
//!
//! No account takeover: a provider account joins an existing Enclave
//! account by address only when the provider says the address is verified
//! and the Enclave account's address is confirmed too; otherwise its owner
//! signs in with the password and connects the provider in settings.

use std::{future::Future, pin::Pin, time::Duration};

use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse as _,
    core::{CoreClient, CoreProviderMetadata, CoreResponseType},
};
use uuid::Uuid;

use super::{
    IdentityView,
    server::{AuthSession, SessionToken, create_session_with, users_place},
};
use crate::{
    error::AppError,
    platform::{
        crypto::{DataKey, Place, Sealed, random_token, token_hash},
        keystore::{self, KeyUse, SealedColumn},
        rate_limit,
        request::ClientInfo,
        settings::{Limit, OidcProvider},
    },
    state::AppState,
};

pub const SEALED: &[SealedColumn] = &[identities_column("subject"), identities_column("email")];

const fn identities_column(column: &'static str) -> SealedColumn {
    SealedColumn {
        table: "user_identities",
        column,
        id: "id",
        owner: "user_id",
    }
}

fn identity_place(column: &'static str, id: Uuid, user: Uuid) -> Place {
    Place::new("user_identities", column, id, user)
}

/// How long a sign-in may take at the provider.
const STATE_TTL: Duration = Duration::from_secs(10 * 60);
/// Sign-ins started and finished per client address per 15 minutes.
const PER_IP: Limit = Limit::new(30, 900);
/// The most a provider's answer may weigh.
const MAX_BODY: usize = 256 * 1024;

/// Why a provider sign-in did not work: a fixed word in the URL of the page
/// that says it (`?problem=`), never free text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The provider's answer could not be verified, or it refused.
    Failed,
    /// `state` unknown, used, expired, or another browser's.
    Expired,
    /// An Enclave account has this address, and the addresses cannot be
    /// matched safely: sign in with the password and connect from settings.
    AccountExists,
    /// No account has this address, and the flow was a sign-in.
    NoAccount,
    /// The provider has not verified the address.
    Unverified,
    /// This provider account is connected to another Enclave account.
    LinkedElsewhere,
    /// The provider is not configured here.
    Unknown,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Failed => "failed",
            Problem::Expired => "expired",
            Problem::AccountExists => "account-exists",
            Problem::NoAccount => "no-account",
            Problem::Unverified => "unverified",
            Problem::LinkedElsewhere => "linked-elsewhere",
            Problem::Unknown => "unknown",
        }
    }
}

/// What the user asked for when they pressed the button.
#[derive(Debug, Clone)]
pub enum Intent {
    /// "Sign in with …": an existing account.
    SignIn,
    /// "Sign up with …", the age box ticked: a new account if none has the
    /// address.
    SignUp,
    /// Settings → Sign-in methods → "Connect …".
    Link(AuthSession),
}

/// Where to send the browser, and (signing in) the value its session
/// cookie must hold meanwhile, to bind the flow to it.
pub struct Started {
    pub authorize_url: String,
    pub binding: Option<String>,
}

/// What a finished flow did.
pub enum Finished {
    SignedIn {
        token: SessionToken,
        next: String,
    },
    /// The account has a second factor: the pending session's token.
    NeedsSecondFactor {
        token: SessionToken,
        next: String,
    },
    Linked,
}

pub fn provider<'a>(state: &'a AppState, id: &str) -> Result<&'a OidcProvider, Problem> {
    state
        .settings
        .oidc_providers
        .iter()
        .find(|p| p.id == id)
        .ok_or(Problem::Unknown)
}

fn redirect_url(state: &AppState, provider: &OidcProvider) -> String {
    format!(
        "{}/auth/oidc/{}/callback",
        state.settings.public_url.trim_end_matches('/'),
        provider.id
    )
}

/// The provider's failure, for the log: no URLs, codes or tokens.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpFailure(&'static str);

type HttpFuture<'a> =
    Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, HttpFailure>> + Send + 'a>>;

/// `openidconnect`'s HTTP client: our egress client (address checked and
/// pinned, no redirects), with a size cap on the answer.
fn http(state: &AppState) -> impl Fn(openidconnect::HttpRequest) -> HttpFuture<'static> + use<> {
    let egress = state.egress.clone();
    move |request| {
        let egress = egress.clone();
        Box::pin(async move {
            let url = request.uri().to_string();
            let client = egress
                .client_for(&url)
                .await
                .map_err(|_| HttpFailure("the provider's address is not allowed"))?;
            let (parts, body) = request.into_parts();
            let response = client
                .request(parts.method, &url)
                .headers(parts.headers)
                .body(body)
                .timeout(Duration::from_secs(15))
                .send()
                .await
                .map_err(|_| HttpFailure("the provider could not be reached"))?;
            let status = response.status();
            let headers = response.headers().clone();
            let mut body = Vec::new();
            let mut stream = response;
            while let Some(chunk) = stream
                .chunk()
                .await
                .map_err(|_| HttpFailure("the provider's answer broke off"))?
            {
                if body.len() + chunk.len() > MAX_BODY {
                    return Err(HttpFailure("the provider's answer is too large"));
                }
                body.extend_from_slice(&chunk);
            }
            let mut out = http::Response::builder().status(status);
            if let Some(h) = out.headers_mut() {
                *h = headers;
            }
            out.body(body)
                .map_err(|_| HttpFailure("the provider's answer is malformed"))
        })
    }
}

/// Discovery, then a client for `provider` with our callback.
async fn client(
    state: &AppState,
    provider: &OidcProvider,
) -> Result<
    openidconnect::core::CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    Problem,
> {
    let issuer = IssuerUrl::new(provider.issuer.clone()).map_err(|_| Problem::Failed)?;
    let metadata = CoreProviderMetadata::discover_async(issuer, &http(state))
        .await
        .map_err(|e| {
            tracing::warn!(provider = %provider.id, error = %e, "OpenID discovery failed");
            Problem::Failed
        })?;
    let redirect = RedirectUrl::new(redirect_url(state, provider)).map_err(|_| Problem::Failed)?;
    Ok(CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(provider.client_id.clone()),
        Some(ClientSecret::new(provider.client_secret.clone())),
    )
    .set_redirect_uri(redirect))
}

fn verifier_for(state: &AppState, csrf: &str) -> PkceCodeVerifier {
    PkceCodeVerifier::new(state.crypto.derived_secret("oidc-pkce", csrf))
}

fn nonce_for(state: &AppState, csrf: &str) -> Nonce {
    Nonce::new(state.crypto.derived_secret("oidc-nonce", csrf))
}

async fn limit(state: &AppState, client: &ClientInfo) -> Result<(), AppError> {
    let bucket = state
        .crypto
        .rate_bucket("oidc:ip", &rate_limit::ip_subject(client.ip));
    rate_limit::hit(&state.db, &bucket, PER_IP).await
}

/// Starts a sign-in (or a connection) with `provider_id`.
pub async fn start(
    state: &AppState,
    provider_id: &str,
    intent: Intent,
    next: &str,
    client_info: &ClientInfo,
) -> Result<Started, StartError> {
    limit(state, client_info).await.map_err(StartError::App)?;
    let provider = provider(state, provider_id).map_err(StartError::Problem)?;
    let client = client(state, provider).await.map_err(StartError::Problem)?;
    let csrf = random_token();
    let verifier = verifier_for(state, &csrf);
    let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
    let (binding, browser_hash, link_user) = match &intent {
        Intent::Link(session) => (
            None,
            token_hash(session.session_id.as_bytes()),
            Some(session.user_id),
        ),
        Intent::SignIn | Intent::SignUp => {
            let binding = random_token();
            let hash = token_hash(&binding);
            (Some(binding), hash, None)
        }
    };
    let state_for_url = csrf.clone();
    let nonce = nonce_for(state, &csrf);
    let (url, _, _) = client
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            move || CsrfToken::new(state_for_url),
            move || nonce,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    sqlx::query("DELETE FROM oidc_states WHERE expires_at < now()")
        .execute(&state.db)
        .await
        .map_err(|e| StartError::App(e.into()))?;
    sqlx::query(
        "INSERT INTO oidc_states
           (state_hash, provider, browser_hash, link_user, create_account, next, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7))",
    )
    .bind(token_hash(&csrf))
    .bind(&provider.id)
    .bind(browser_hash)
    .bind(link_user)
    .bind(matches!(intent, Intent::SignUp))
    // The path only: a query string could hold what the user typed.
    .bind(
        super::domain::safe_next(Some(next))
            .split(['?', '#'])
            .next()
            .unwrap_or("/dashboard")
            .to_owned(),
    )
    .bind(STATE_TTL.as_secs_f64())
    .execute(&state.db)
    .await
    .map_err(|e| StartError::App(e.into()))?;
    Ok(Started {
        authorize_url: url.to_string(),
        binding,
    })
}

/// A start that could not go to the provider.
#[derive(Debug)]
pub enum StartError {
    Problem(Problem),
    App(AppError),
}

/// What the provider sent back to the callback.
pub struct Callback {
    pub code: Option<String>,
    pub state: String,
    pub error: Option<String>,
}

/// The claims Enclave uses from a verified ID token.
struct Claims {
    subject: String,
    email: Option<String>,
    email_verified: bool,
    given_name: Option<String>,
    family_name: Option<String>,
}

/// An `oidc_states` row as the callback takes it: provider, browser hash,
/// the user connecting (if any), whether to create an account, where to go
/// next, and whether it is still live.
type StateRow = (String, Vec<u8>, Option<Uuid>, bool, String, bool);

/// Finishes a flow. `cookie` is what the browser's session cookie holds,
/// `session` its signed-in session if any.
pub async fn finish(
    state: &AppState,
    provider_id: &str,
    callback: &Callback,
    cookie: Option<&str>,
    session: Option<&AuthSession>,
    client_info: &ClientInfo,
) -> Result<Finished, (Problem, bool)> {
    // The bool: whether the failure happened while connecting from settings.
    limit(state, client_info)
        .await
        .map_err(|_| (Problem::Failed, false))?;
    let row: Option<StateRow> = sqlx::query_as(
        "DELETE FROM oidc_states WHERE state_hash = $1
         RETURNING provider, browser_hash, link_user, create_account, next, expires_at > now()",
    )
    .bind(token_hash(&callback.state))
    .fetch_optional(&state.db)
    .await
    .map_err(|_| (Problem::Failed, false))?;
    let Some((provider_id_stored, browser_hash, link_user, create_account, next, live)) = row
    else {
        tracing::info!(provider = %provider_id, "OpenID sign-in: unknown or used state");
        return Err((Problem::Expired, false));
    };
    let linking = link_user.is_some();
    let fail = |p| (p, linking);
    if !live || provider_id_stored != provider_id {
        return Err(fail(Problem::Expired));
    }
    let bound = match link_user {
        Some(user) => session.is_some_and(|s| {
            s.user_id == user && token_hash(s.session_id.as_bytes()) == browser_hash
        }),
        None => cookie.is_some_and(|c| token_hash(c) == browser_hash),
    };
    if !bound {
        tracing::info!(provider = %provider_id, "OpenID sign-in finished in another browser");
        return Err(fail(Problem::Expired));
    }
    if callback.error.is_some() {
        return Err(fail(Problem::Failed));
    }
    let Some(code) = callback.code.clone() else {
        return Err(fail(Problem::Failed));
    };
    let provider = provider(state, provider_id).map_err(fail)?;
    let claims = verified_claims(state, provider, &callback.state, code)
        .await
        .map_err(fail)?;
    let index = state.crypto.identity_index(&provider.id, &claims.subject);
    let known: Option<Uuid> = sqlx::query_scalar(
        "UPDATE user_identities SET last_used_at = now()
         WHERE provider = $1 AND subject_index = $2 RETURNING user_id",
    )
    .bind(&provider.id)
    .bind(&index)
    .fetch_optional(&state.db)
    .await
    .map_err(|_| fail(Problem::Failed))?;

    if let Some(user) = link_user {
        return match known {
            Some(owner) if owner == user => Ok(Finished::Linked),
            Some(_) => Err(fail(Problem::LinkedElsewhere)),
            None => {
                let key = session
                    .map(|s| s.key.clone())
                    .ok_or(fail(Problem::Expired))?;
                connect(state, user, &key, provider, &index, &claims)
                    .await
                    .map_err(|_| fail(Problem::Failed))?;
                tracing::info!(user_id = %user, provider = %provider.id, "sign-in provider connected");
                crate::data::activity::server::note_for(
                    state,
                    user,
                    &key,
                    crate::data::activity::Event::SignInMethodLinked,
                    Some(client_info),
                    Some(&provider.name),
                )
                .await;
                Ok(Finished::Linked)
            }
        };
    }

    let user = match known {
        Some(user) => user,
        None => {
            let Some(email) = claims.email.clone() else {
                return Err(fail(Problem::Unverified));
            };
            let existing: Option<(Uuid, bool)> = sqlx::query_as(
                "SELECT id, email_verified_at IS NOT NULL FROM users WHERE email_index = $1",
            )
            .bind(state.crypto.email_index(&email))
            .fetch_optional(&state.db)
            .await
            .map_err(|_| fail(Problem::Failed))?;
            match existing {
                Some((user, account_verified)) => {
                    if !(claims.email_verified && account_verified) {
                        return Err(fail(Problem::AccountExists));
                    }
                    let key =
                        keystore::user_key(&state.db, &state.crypto.keyring, user, KeyUse::SignIn)
                            .await
                            .map_err(|_| fail(Problem::Failed))?;
                    connect(state, user, &key, provider, &index, &claims)
                        .await
                        .map_err(|_| fail(Problem::Failed))?;
                    user
                }
                None if !create_account => return Err(fail(Problem::NoAccount)),
                None if !claims.email_verified => return Err(fail(Problem::Unverified)),
                None => create_account_for(state, provider, &index, &email, &claims)
                    .await
                    .map_err(|_| fail(Problem::Failed))?,
            }
        }
    };
    let key = keystore::user_key(&state.db, &state.crypto.keyring, user, KeyUse::SignIn)
        .await
        .map_err(|_| fail(Problem::Failed))?;
    let pending = super::two_factor::required(&state.db, user)
        .await
        .map_err(|_| fail(Problem::Failed))?;
    let token = create_session_with(state, user, &key, client_info, pending)
        .await
        .map_err(|_| fail(Problem::Failed))?;
    tracing::info!(user_id = %user, provider = %provider.id, pending, "signed in with a provider");
    Ok(if pending {
        Finished::NeedsSecondFactor { token, next }
    } else {
        Finished::SignedIn { token, next }
    })
}

/// Trades the code for tokens and verifies the ID token: signature against
/// the provider's keys, issuer, audience, expiry, and our nonce.
async fn verified_claims(
    state: &AppState,
    provider: &OidcProvider,
    csrf: &str,
    code: String,
) -> Result<Claims, Problem> {
    let client = client(state, provider).await?;
    let request = client.exchange_code(AuthorizationCode::new(code)).map_err(|e| {
        tracing::warn!(provider = %provider.id, error = %e, "OpenID provider has no token endpoint");
        Problem::Failed
    })?;
    let response = request
        .set_pkce_verifier(verifier_for(state, csrf))
        .request_async(&http(state))
        .await
        .map_err(|e| {
            tracing::warn!(provider = %provider.id, error = %e, "OpenID code exchange refused");
            Problem::Failed
        })?;
    let Some(id_token) = response.id_token() else {
        tracing::warn!(provider = %provider.id, "OpenID provider sent no ID token");
        return Err(Problem::Failed);
    };
    let claims = id_token
        .claims(&client.id_token_verifier(), &nonce_for(state, csrf))
        .map_err(|e| {
            tracing::warn!(provider = %provider.id, error = %e, "OpenID ID token refused");
            Problem::Failed
        })?;
    let name = |n: Option<&openidconnect::LocalizedClaim<openidconnect::EndUserGivenName>>| {
        n.and_then(|c| c.get(None)).map(|v| v.to_string())
    };
    Ok(Claims {
        subject: claims.subject().to_string(),
        email: claims.email().map(|e| e.to_string().trim().to_lowercase()),
        email_verified: claims.email_verified() == Some(true),
        given_name: name(claims.given_name()),
        family_name: claims
            .family_name()
            .and_then(|c| c.get(None))
            .map(|v| v.to_string()),
    })
}

/// Records that `user` signs in with this provider account.
async fn connect(
    state: &AppState,
    user: Uuid,
    key: &DataKey,
    provider: &OidcProvider,
    index: &[u8],
    claims: &Claims,
) -> Result<(), AppError> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO user_identities (id, user_id, provider, subject_index, subject, email, last_used_at)
         VALUES ($1, $2, $3, $4, $5, $6, now())",
    )
    .bind(id)
    .bind(user)
    .bind(&provider.id)
    .bind(index)
    .bind(key.seal_str(identity_place("subject", id, user), &claims.subject))
    .bind(
        claims
            .email
            .as_deref()
            .map(|e| key.seal_str(identity_place("email", id, user), e)),
    )
    .execute(&state.db)
    .await?;
    Ok(())
}

/// A new account from a provider's verified claims: confirmed address, no
/// password (the owner confirmed their age on the sign-up page).
async fn create_account_for(
    state: &AppState,
    provider: &OidcProvider,
    index: &[u8],
    email: &str,
    claims: &Claims,
) -> Result<Uuid, AppError> {
    let user = Uuid::new_v4();
    let key = DataKey::generate();
    let local = email.split('@').next().unwrap_or(email).to_owned();
    let first = claims
        .given_name
        .clone()
        .filter(|n| super::domain::PersonName::parse(n, "first name").is_ok())
        .unwrap_or(local);
    let last = claims
        .family_name
        .clone()
        .filter(|n| super::domain::PersonName::parse(n, "last name").is_ok())
        .unwrap_or_default();
    let seal = |column, value: &str| key.seal_str(users_place(column, user), value);
    let mut tx = state.db.begin().await?;
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO users
           (id, email_index, email, first_name, last_name, password_hash,
            age_confirmed_at, email_verified_at)
         VALUES ($1, $2, $3, $4, $5, NULL, now(), now())
         ON CONFLICT (email_index) DO NOTHING
         RETURNING id",
    )
    .bind(user)
    .bind(state.crypto.email_index(email))
    .bind(seal("email", email))
    .bind(seal("first_name", &first))
    .bind(seal("last_name", &last))
    .fetch_optional(&mut *tx)
    .await?;
    if inserted.is_none() {
        return Err(AppError::internal("an account took the address meanwhile"));
    }
    keystore::store_user_key(&mut tx, &state.crypto.keyring, user, &key).await?;
    crate::admin::server::make_first_admin(&mut tx, user).await?;
    tx.commit().await?;
    connect(state, user, &key, provider, index, claims).await?;
    tracing::info!(user_id = %user, provider = %provider.id, "account created with a provider");
    Ok(user)
}

/// The provider accounts connected to the user, for settings.
pub async fn identities(
    state: &AppState,
    session: &AuthSession,
) -> Result<Vec<IdentityView>, AppError> {
    let rows: Vec<(Uuid, String, Option<Sealed>, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT id, provider, email, created_at FROM user_identities
         WHERE user_id = $1 ORDER BY created_at",
    )
    .bind(session.user_id)
    .fetch_all(&state.db)
    .await?;
    rows.into_iter()
        .map(|(id, provider, email, created)| {
            let email = session
                .key
                .open_optional(identity_place("email", id, session.user_id), email.as_ref())?;
            let name = state
                .settings
                .oidc_providers
                .iter()
                .find(|p| p.id == provider)
                .map_or_else(|| provider.clone(), |p| p.name.clone());
            Ok(IdentityView {
                id: id.to_string(),
                provider: name,
                email: email.unwrap_or_default(),
                connected: created.format("%Y-%m-%d").to_string(),
            })
        })
        .collect()
}

/// Disconnects one of the user's provider accounts, while another way to
/// sign in remains (a password, or another provider).
pub async fn disconnect(state: &AppState, session: &AuthSession, id: Uuid) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    let (has_password, others): (bool, i64) = sqlx::query_as(
        "SELECT u.password_hash IS NOT NULL,
                (SELECT count(*) FROM user_identities i WHERE i.user_id = u.id AND i.id <> $2)
         FROM users u WHERE u.id = $1 FOR UPDATE",
    )
    .bind(session.user_id)
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM user_identities WHERE id = $1 AND user_id = $2)",
    )
    .bind(id)
    .bind(session.user_id)
    .fetch_one(&mut *tx)
    .await?;
    if !exists {
        return Err(AppError::NotFound);
    }
    if !has_password && others == 0 {
        return Err(AppError::invalid(
            "id",
            "This is your only way to sign in. Choose a password first (\"Forgot your password?\" on the sign-in page mails you a link).",
        ));
    }
    sqlx::query("DELETE FROM user_identities WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(session.user_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(user_id = %session.user_id, "sign-in provider disconnected");
    Ok(())
}
