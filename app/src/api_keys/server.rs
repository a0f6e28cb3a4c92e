//! API keys in the database (server only). Every owner-facing query names
//! the owner; a presented key is found by its SHA-256 alone.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{ApiKeyView, CreatedKey, Scope};
use crate::{
    error::AppError,
    platform::{
        crypto::{DataKey, Place, Sealed, random_token, token_hash},
        keystore::{self, KeyUse, SealedColumn},
    },
    state::AppState,
};

pub const SEALED: &[SealedColumn] = &[SealedColumn::owned("api_keys", "name")];

/// Every key starts so, which tells it from other secrets (and lets secret
/// scanners find a leaked one).
pub const KEY_PREFIX: &str = "enc_";
pub const NAME_MAX_CHARS: usize = 80;
/// Keys one account may have (revoked ones included until deleted).
pub const MAX_KEYS: i64 = 50;

fn place(id: Uuid, owner: Uuid) -> Place {
    Place::new("api_keys", "name", id, owner)
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: Uuid,
    name: Sealed,
    prefix: String,
    scopes: Vec<String>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

const KEY_COLUMNS: &str =
    "id, name, prefix, scopes, created_at, expires_at, last_used_at, revoked_at";

fn day(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

impl KeyRow {
    fn view(&self, owner: Uuid, key: &DataKey) -> Result<ApiKeyView, AppError> {
        Ok(ApiKeyView {
            id: self.id.to_string(),
            name: key.open_text(place(self.id, owner), &self.name)?,
            prefix: format!("{}…", self.prefix),
            scopes: self.scopes.clone(),
            created: day(self.created_at),
            expires: self.expires_at.map(day),
            last_used: self.last_used_at.map(day),
            active: self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > Utc::now()),
        })
    }
}

/// Makes a key named `name` with `scopes`, expiring after `days` (None:
/// never). Its secret is in the answer and nowhere else.
pub async fn create(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    name: &str,
    scopes: &[String],
    days: Option<u32>,
) -> Result<CreatedKey, AppError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX_CHARS {
        return Err(AppError::invalid(
            "name",
            format!(
                "Give the key a name of up to {NAME_MAX_CHARS} characters, like \"Reports script\"."
            ),
        ));
    }
    let mut chosen = Vec::new();
    for scope in scopes {
        let scope = Scope::parse(scope).ok_or_else(|| {
            AppError::invalid("scopes", "Choose what the key may do from the list.")
        })?;
        if !chosen.contains(&scope.as_str().to_owned()) {
            chosen.push(scope.as_str().to_owned());
        }
    }
    if chosen.is_empty() {
        return Err(AppError::invalid(
            "scopes",
            "Choose at least one thing the key may do.",
        ));
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys WHERE owner_id = $1")
        .bind(owner)
        .fetch_one(&state.db)
        .await?;
    if count >= MAX_KEYS {
        return Err(AppError::invalid(
            "name",
            format!("An account can have at most {MAX_KEYS} keys: delete some you revoked."),
        ));
    }
    let id = Uuid::new_v4();
    let secret = format!("{KEY_PREFIX}{}", random_token());
    let prefix: String = secret.chars().take(KEY_PREFIX.len() + 4).collect();
    let expires_at = days.map(|d| Utc::now() + chrono::Duration::days(i64::from(d)));
    let row: KeyRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO api_keys (id, owner_id, name, prefix, token_hash, scopes, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {KEY_COLUMNS}"
    )))
    .bind(id)
    .bind(owner)
    .bind(key.seal_str(place(id, owner), name))
    .bind(&prefix)
    .bind(token_hash(&secret))
    .bind(&chosen)
    .bind(expires_at)
    .fetch_one(&state.db)
    .await?;
    tracing::info!(api_key_id = %id, owner_id = %owner, "api key created");
    Ok(CreatedKey {
        key: row.view(owner, key)?,
        secret,
        api_base: format!("{}/v1", state.settings.public_url),
    })
}

/// `create` as the form asks for it (`expires`: days, or empty for never),
/// noted in the account activity. The server function and the plain form
/// post (`POST /settings/api-keys`) both come here.
pub async fn create_from_form(
    state: &AppState,
    session: &crate::auth::server::AuthSession,
    name: &str,
    scopes: &[String],
    expires: Option<&str>,
) -> Result<CreatedKey, AppError> {
    let days = match expires.map(str::trim) {
        None | Some("") | Some("never") => None,
        Some(days) => Some(
            days.parse::<u32>()
                .ok()
                .filter(|d| (1..=3650).contains(d))
                .ok_or_else(|| AppError::invalid("expires", "Choose when the key expires."))?,
        ),
    };
    let created = create(state, session.user_id, &session.key, name, scopes, days).await?;
    crate::data::activity::server::note(
        state,
        session,
        crate::data::activity::Event::ApiKeyCreated,
        Some(&created.key.name),
    )
    .await;
    Ok(created)
}

/// The owner's keys, newest first.
pub async fn list(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
) -> Result<Vec<ApiKeyView>, AppError> {
    let rows: Vec<KeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {KEY_COLUMNS} FROM api_keys WHERE owner_id = $1 ORDER BY created_at DESC, id"
    )))
    .bind(owner)
    .fetch_all(&state.db)
    .await?;
    rows.iter().map(|r| r.view(owner, key)).collect()
}

/// Revokes one of the owner's keys: it stops working at once. Its name for
/// the activity log.
pub async fn revoke(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<String, AppError> {
    let name: Option<Sealed> = sqlx::query_scalar(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
         WHERE id = $1 AND owner_id = $2 RETURNING name",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(&state.db)
    .await?;
    let name = name.ok_or(AppError::NotFound)?;
    tracing::info!(api_key_id = %id, owner_id = %owner, "api key revoked");
    key.open_text(place(id, owner), &name)
}

/// Who a presented key acts for, with their data key (opened in the same
/// round trip that found the key).
#[derive(Debug, Clone)]
pub struct KeyHolder {
    pub key_id: Uuid,
    pub owner: Uuid,
    pub scopes: Vec<String>,
    pub data_key: DataKey,
}

impl KeyHolder {
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| s == scope.as_str())
    }
}

/// The holder of `secret`, if it is a live key of an account that is not
/// being deleted; marks it used (at most once a minute).
pub async fn authenticate(state: &AppState, secret: &str) -> Result<Option<KeyHolder>, AppError> {
    if !secret.starts_with(KEY_PREFIX) {
        return Ok(None);
    }
    // The key, its owner, scopes, and the owner's wrapped data key.
    type Found = (Uuid, Uuid, Vec<String>, String, Vec<u8>);
    let found: Option<Found> = sqlx::query_as(
        "UPDATE api_keys k SET last_used_at = CASE
             WHEN k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute'
             THEN now() ELSE k.last_used_at END
         FROM users u JOIN user_keys uk ON uk.user_id = u.id
         WHERE k.token_hash = $1 AND u.id = k.owner_id AND u.deleted_at IS NULL
           AND u.disabled_at IS NULL
           AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
         RETURNING k.id, k.owner_id, k.scopes, uk.kek_id, uk.wrapped_key",
    )
    .bind(token_hash(secret))
    .fetch_optional(&state.db)
    .await?;
    let Some((key_id, owner, scopes, kek_id, wrapped)) = found else {
        return Ok(None);
    };
    tracing::debug!(user_id = %owner, why = KeyUse::ApiKey.as_str(), "data key opened without a session");
    let data_key = keystore::open_user_key(&state.crypto.keyring, owner, kek_id, wrapped)?;
    Ok(Some(KeyHolder {
        key_id,
        owner,
        scopes,
        data_key,
    }))
}

/// Whether the key `key_id` still works (not revoked, not expired, its
/// account not disabled or being deleted): a live stream asks this as it goes, so a
/// revoked key's streams end at once, on every replica.
pub async fn still_works(db: &sqlx::PgPool, key_id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM api_keys k JOIN users u ON u.id = k.owner_id
           WHERE k.id = $1 AND u.deleted_at IS NULL AND u.disabled_at IS NULL
             AND k.revoked_at IS NULL
             AND (k.expires_at IS NULL OR k.expires_at > now()))",
    )
    .bind(key_id)
    .fetch_one(db)
    .await
}

/// Erases up to `batch` keys revoked or expired more than `days` ago (a
/// dead key's name and hash are kept that long, so the owner sees what
/// stopped working; then they go, like other revoked credentials).
pub async fn purge(db: &sqlx::PgPool, days: u32, batch: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM api_keys WHERE id IN (
             SELECT id FROM api_keys
             WHERE coalesce(revoked_at, expires_at) < now() - make_interval(days => $1)
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(days as i32)
    .bind(batch)
    .execute(db)
    .await?
    .rows_affected())
}

/// The owner's keys for their export (never a secret: there is none kept).
pub async fn export(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
) -> Result<serde_json::Value, AppError> {
    serde_json::to_value(list(state, owner, key).await?).map_err(AppError::internal)
}
