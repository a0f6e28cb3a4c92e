//! Passkeys (WebAuthn), server only, with `webauthn-rs`: add, name, list
//! and delete them in settings; sign in with one alone (a discoverable
//! credential: no address typed). The relying party is this server's
//! public URL. A ceremony's state waits in `webauthn_ceremonies` between
//! its two requests (five minutes, used once), so any replica finishes it.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;
use webauthn_rs::prelude::{
    CreationChallengeResponse, DiscoverableAuthentication, Passkey, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Url, Webauthn,
    WebauthnBuilder,
};

use super::{
    PasskeyView,
    server::{AuthSession, SessionToken, create_session_with},
};
use crate::{
    error::AppError,
    platform::{
        crypto::{Place, Sealed, token_hash},
        keystore::{self, KeyUse, SealedColumn},
        rate_limit,
        request::ClientInfo,
        settings::Limit,
    },
    state::AppState,
};

pub const SEALED: &[SealedColumn] = &[
    SealedColumn {
        table: "passkeys",
        column: "name",
        id: "id",
        owner: "user_id",
    },
    SealedColumn {
        table: "passkeys",
        column: "credential",
        id: "id",
        owner: "user_id",
    },
    SealedColumn {
        table: "webauthn_ceremonies",
        column: "sealed_state",
        id: "id",
        owner: "user_id",
    },
];

const CEREMONY_TTL: Duration = Duration::from_secs(5 * 60);
/// Passkey sign-ins started or finished per client address per 15 minutes.
const PER_IP: Limit = Limit::new(60, 900);

const NOT_ACCEPTED: &str =
    "That passkey was not accepted. Try again, or sign in with your password.";

fn place(column: &'static str, id: Uuid, user: Uuid) -> Place {
    Place::new("passkeys", column, id, user)
}

fn ceremony_place(id: Uuid, user: Uuid) -> Place {
    Place::new("webauthn_ceremonies", "sealed_state", id, user)
}

/// The relying party: this server, as its users reach it.
fn webauthn(state: &AppState) -> Result<Webauthn, AppError> {
    let origin = Url::parse(&state.settings.public_url)
        .map_err(|e| AppError::internal(format!("public URL: {e}")))?;
    // WebAuthn takes a host name, never an IP address, as the site.
    let rp_id = match origin.host() {
        Some(url::Host::Domain(host)) => host.to_owned(),
        _ => {
            return Err(AppError::invalid(
                "credential",
                "Passkeys need this server to be reached by a name (its ENCLAVE_PUBLIC_URL is an IP address).",
            ));
        }
    };
    WebauthnBuilder::new(&rp_id, &origin)
        .and_then(|b| b.rp_name("Enclave").build())
        .map_err(|e| AppError::internal(format!("webauthn: {e}")))
}

fn json<T: serde::Serialize>(value: &T) -> Result<String, AppError> {
    serde_json::to_string(value).map_err(AppError::internal)
}

/// A ceremony in the browser's hands: its id, and the options for
/// `navigator.credentials`.
pub struct Ceremony {
    pub id: Uuid,
    pub options: String,
}

/// Starts adding a passkey to the signed-in account.
pub async fn start_registration(
    state: &AppState,
    session: &AuthSession,
) -> Result<Ceremony, AppError> {
    let user = session.user_id;
    let exclude = user_passkeys(&state.db, session)
        .await?
        .into_iter()
        .map(|(_, p)| p.cred_id().clone())
        .collect::<Vec<_>>();
    let display = format!("{} {}", session.user.first_name, session.user.last_name);
    let (options, registration): (CreationChallengeResponse, PasskeyRegistration) =
        webauthn(state)?
            .start_passkey_registration(user, &session.user.email, display.trim(), Some(exclude))
            .map_err(|e| AppError::internal(format!("webauthn start: {e}")))?;
    // A discoverable credential, so that signing in needs no address (the
    // server's checks do not depend on it).
    let mut options = serde_json::to_value(&options).map_err(AppError::internal)?;
    if let Some(selection) = options
        .get_mut("publicKey")
        .and_then(|p| p.get_mut("authenticatorSelection"))
        .and_then(|s| s.as_object_mut())
    {
        selection.insert("residentKey".into(), "required".into());
        selection.insert("requireResidentKey".into(), true.into());
    }
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO webauthn_ceremonies (id, user_id, kind, sealed_state, expires_at)
         VALUES ($1, $2, 'register', $3, now() + make_interval(secs => $4))",
    )
    .bind(id)
    .bind(user)
    .bind(
        session
            .key
            .seal_str(ceremony_place(id, user), &json(&registration)?),
    )
    .bind(CEREMONY_TTL.as_secs_f64())
    .execute(&state.db)
    .await?;
    Ok(Ceremony {
        id,
        options: json(&options)?,
    })
}

/// Finishes adding a passkey: checks the browser's answer against the
/// ceremony and stores the credential under `name`.
pub async fn finish_registration(
    state: &AppState,
    session: &AuthSession,
    ceremony: Uuid,
    name: &str,
    credential: &str,
) -> Result<(), AppError> {
    let user = session.user_id;
    let name = name.trim();
    let name = if name.is_empty() { "Passkey" } else { name };
    if name.chars().count() > 60 {
        return Err(AppError::invalid(
            "name",
            "A name has at most 60 characters.",
        ));
    }
    let row: Option<(Option<Sealed>, bool)> = sqlx::query_as(
        "DELETE FROM webauthn_ceremonies
         WHERE id = $1 AND user_id = $2 AND kind = 'register'
         RETURNING sealed_state, expires_at > now()",
    )
    .bind(ceremony)
    .bind(user)
    .fetch_optional(&state.db)
    .await?;
    let Some((Some(sealed), true)) = row else {
        return Err(AppError::invalid(
            "credential",
            "That took too long. Start adding the passkey again.",
        ));
    };
    let registration: PasskeyRegistration = serde_json::from_str(
        &session
            .key
            .open_text(ceremony_place(ceremony, user), &sealed)?,
    )
    .map_err(AppError::internal)?;
    let answer: RegisterPublicKeyCredential = serde_json::from_str(credential)
        .map_err(|_| AppError::invalid("credential", "The browser's answer could not be read."))?;
    let passkey = webauthn(state)?
        .finish_passkey_registration(&answer, &registration)
        .map_err(|e| {
            tracing::info!(user_id = %user, error = %e, "passkey registration refused");
            AppError::invalid("credential", "The passkey could not be added. Try again.")
        })?;
    let id = Uuid::new_v4();
    let stored = sqlx::query(
        "INSERT INTO passkeys (id, user_id, credential_index, name, credential)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (credential_index) DO NOTHING",
    )
    .bind(id)
    .bind(user)
    .bind(token_hash(passkey.cred_id().as_slice()))
    .bind(session.key.seal_str(place("name", id, user), name))
    .bind(
        session
            .key
            .seal_str(place("credential", id, user), &json(&passkey)?),
    )
    .execute(&state.db)
    .await?;
    if stored.rows_affected() == 0 {
        return Err(AppError::invalid(
            "credential",
            "That passkey is added already.",
        ));
    }
    tracing::info!(user_id = %user, passkey_id = %id, "passkey added");
    Ok(())
}

async fn user_passkeys(
    db: &PgPool,
    session: &AuthSession,
) -> Result<Vec<(Uuid, Passkey)>, AppError> {
    passkeys_of(db, session.user_id, &session.key).await
}

async fn passkeys_of(
    db: &PgPool,
    user: Uuid,
    key: &crate::platform::crypto::DataKey,
) -> Result<Vec<(Uuid, Passkey)>, AppError> {
    let rows: Vec<(Uuid, Sealed)> =
        sqlx::query_as("SELECT id, credential FROM passkeys WHERE user_id = $1")
            .bind(user)
            .fetch_all(db)
            .await?;
    rows.into_iter()
        .map(|(id, sealed)| {
            let text = key.open_text(place("credential", id, user), &sealed)?;
            let passkey: Passkey = serde_json::from_str(&text).map_err(AppError::internal)?;
            Ok((id, passkey))
        })
        .collect()
}

/// The account's passkeys, for settings.
pub async fn list(state: &AppState, session: &AuthSession) -> Result<Vec<PasskeyView>, AppError> {
    type Row = (
        Uuid,
        Sealed,
        chrono::DateTime<chrono::Utc>,
        Option<chrono::DateTime<chrono::Utc>>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, name, created_at, last_used_at FROM passkeys
         WHERE user_id = $1 ORDER BY created_at",
    )
    .bind(session.user_id)
    .fetch_all(&state.db)
    .await?;
    rows.into_iter()
        .map(|(id, name, created, used)| {
            Ok(PasskeyView {
                id: id.to_string(),
                name: session
                    .key
                    .open_text(place("name", id, session.user_id), &name)?,
                added: created.format("%Y-%m-%d").to_string(),
                last_used: used.map(|u| u.format("%Y-%m-%d %H:%M UTC").to_string()),
            })
        })
        .collect()
}

/// Deletes one of the user's passkeys (another user's is not found).
pub async fn delete(state: &AppState, session: &AuthSession, id: Uuid) -> Result<(), AppError> {
    let done = sqlx::query("DELETE FROM passkeys WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(session.user_id)
        .execute(&state.db)
        .await?;
    crate::error::found(done)?;
    tracing::info!(user_id = %session.user_id, passkey_id = %id, "passkey deleted");
    Ok(())
}

/// Starts a passkey sign-in (nobody known yet: the browser offers the
/// passkeys it has for this site).
pub async fn start_sign_in(state: &AppState, client: &ClientInfo) -> Result<Ceremony, AppError> {
    limit(state, client).await?;
    let (options, authentication): (RequestChallengeResponse, DiscoverableAuthentication) =
        webauthn(state)?
            .start_discoverable_authentication()
            .map_err(|e| AppError::internal(format!("webauthn start: {e}")))?;
    let id = Uuid::new_v4();
    sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at < now()")
        .execute(&state.db)
        .await?;
    sqlx::query(
        "INSERT INTO webauthn_ceremonies (id, kind, public_state, expires_at)
         VALUES ($1, 'sign_in', $2, now() + make_interval(secs => $3))",
    )
    .bind(id)
    .bind(sqlx::types::Json(&authentication))
    .bind(CEREMONY_TTL.as_secs_f64())
    .execute(&state.db)
    .await?;
    Ok(Ceremony {
        id,
        options: json(&options)?,
    })
}

async fn limit(state: &AppState, client: &ClientInfo) -> Result<(), AppError> {
    let bucket = state
        .crypto
        .rate_bucket("passkey:ip", &rate_limit::ip_subject(client.ip));
    rate_limit::hit(&state.db, &bucket, PER_IP).await
}

/// Finishes a passkey sign-in: the session (pending when the account has a
/// second factor? No: a passkey is itself two factors, something held and
/// something known or are, so it signs in fully).
pub async fn finish_sign_in(
    state: &AppState,
    ceremony: Uuid,
    credential: &str,
    client: &ClientInfo,
) -> Result<SessionToken, AppError> {
    limit(state, client).await?;
    let row: Option<(Option<sqlx::types::Json<DiscoverableAuthentication>>, bool)> =
        sqlx::query_as(
            "DELETE FROM webauthn_ceremonies WHERE id = $1 AND kind = 'sign_in'
             RETURNING public_state, expires_at > now()",
        )
        .bind(ceremony)
        .fetch_optional(&state.db)
        .await?;
    let Some((Some(sqlx::types::Json(authentication)), true)) = row else {
        return Err(AppError::invalid(
            "credential",
            "That took too long. Try the passkey again.",
        ));
    };
    let answer: PublicKeyCredential = serde_json::from_str(credential)
        .map_err(|_| AppError::invalid("credential", "The browser's answer could not be read."))?;
    let webauthn = webauthn(state)?;
    let (user, cred_id) = webauthn
        .identify_discoverable_authentication(&answer)
        .map_err(|_| AppError::invalid("credential", NOT_ACCEPTED))?;
    let found: Option<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT id, user_id FROM passkeys WHERE credential_index = $1 AND user_id = $2",
    )
    .bind(token_hash(cred_id))
    .bind(user)
    .fetch_optional(&state.db)
    .await?;
    let Some((passkey_id, user)) = found else {
        tracing::info!("passkey sign-in with an unknown credential");
        return Err(AppError::invalid("credential", NOT_ACCEPTED));
    };
    let key = keystore::user_key(&state.db, &state.crypto.keyring, user, KeyUse::SignIn).await?;
    let mut passkeys = passkeys_of(&state.db, user, &key).await?;
    let Some(index) = passkeys.iter().position(|(id, _)| *id == passkey_id) else {
        return Err(AppError::invalid("credential", NOT_ACCEPTED));
    };
    let result = webauthn
        .finish_discoverable_authentication_v2(&answer, authentication, &passkeys[index].1)
        .map_err(|e| {
            tracing::info!(user_id = %user, error = %e, "passkey sign-in refused");
            AppError::invalid("credential", NOT_ACCEPTED)
        })?;
    // Keep the counter current (a cloned authenticator shows up as a
    // counter that goes back).
    let (id, passkey) = &mut passkeys[index];
    if passkey.update_credential(&result) == Some(true) {
        sqlx::query("UPDATE passkeys SET credential = $3 WHERE id = $1 AND user_id = $2")
            .bind(*id)
            .bind(user)
            .bind(key.seal_str(place("credential", *id, user), &json(&*passkey)?))
            .execute(&state.db)
            .await?;
    }
    sqlx::query("UPDATE passkeys SET last_used_at = now() WHERE id = $1")
        .bind(passkey_id)
        .execute(&state.db)
        .await?;
    tracing::info!(user_id = %user, passkey_id = %passkey_id, "signed in with a passkey");
    create_session_with(state, user, &key, client, false).await
}
