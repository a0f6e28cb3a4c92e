//! Provider keys (server only). Every query names the owner: another user's
//! key is `NotFound`, exactly like one that does not exist.
//!
//! Sealed here: `provider_keys.label`, `secret`, `masked`, `base_url`.

use uuid::Uuid;

use super::{KeySource, KeyTest, ProviderKeyView, mask_key};
use crate::{
    error::AppError,
    llm::models,
    platform::{
        crypto::{DataKey, Place, Sealed},
        keystore::SealedColumn,
        rate_limit,
    },
    provider::Provider,
    state::AppState,
};

/// The sealed columns of this slice (`keys verify` opens them all).
pub const SEALED: &[SealedColumn] = &[
    SealedColumn::owned("provider_keys", "label"),
    SealedColumn::owned("provider_keys", "secret"),
    SealedColumn::owned("provider_keys", "masked"),
    SealedColumn::owned("provider_keys", "base_url"),
];

fn place(column: &'static str, id: Uuid, owner: Uuid) -> Place {
    Place::new("provider_keys", column, id, owner)
}

fn provider_of(value: &str) -> Result<Provider, AppError> {
    Provider::parse(value)
        .ok_or_else(|| AppError::internal(format!("unknown provider {value:?} in the database")))
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: Uuid,
    provider: String,
    label: Sealed,
    masked: Sealed,
    base_url: Option<Sealed>,
}

impl KeyRow {
    fn view(&self, key: &DataKey, owner: Uuid) -> Result<ProviderKeyView, AppError> {
        Ok(ProviderKeyView {
            id: self.id.to_string(),
            provider: provider_of(&self.provider)?,
            label: key.open_text(place("label", self.id, owner), &self.label)?,
            masked: key.open_text(place("masked", self.id, owner), &self.masked)?,
            base_url: key
                .open_optional(place("base_url", self.id, owner), self.base_url.as_ref())?,
        })
    }
}

pub async fn list_keys(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
) -> Result<Vec<ProviderKeyView>, AppError> {
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT id, provider, label, masked, base_url FROM provider_keys
         WHERE owner_id = $1 ORDER BY provider, created_at",
    )
    .bind(owner)
    .fetch_all(&state.db)
    .await?;
    rows.iter().map(|row| row.view(key, owner)).collect()
}

pub async fn add_key(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    provider: Provider,
    label: &str,
    secret: &str,
    base_url: Option<&str>,
) -> Result<Uuid, AppError> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO provider_keys (id, owner_id, provider, label, secret, masked, base_url)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(owner)
    .bind(provider.as_str())
    .bind(key.seal_str(place("label", id, owner), label))
    .bind(key.seal_str(place("secret", id, owner), secret))
    .bind(key.seal_str(place("masked", id, owner), &mask_key(secret)))
    .bind(base_url.map(|b| key.seal_str(place("base_url", id, owner), b)))
    .execute(&state.db)
    .await?;
    tracing::info!(key_id = %id, owner_id = %owner, provider = provider.as_str(), "provider key added");
    Ok(id)
}

/// Replaces the secret of a stored key (label and provider stay).
pub async fn replace_key(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
    secret: &str,
) -> Result<(), AppError> {
    let done = sqlx::query(
        "UPDATE provider_keys SET secret = $3, masked = $4, updated_at = now()
         WHERE id = $1 AND owner_id = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(key.seal_str(place("secret", id, owner), secret))
    .bind(key.seal_str(place("masked", id, owner), &mask_key(secret)))
    .execute(&state.db)
    .await?;
    crate::error::found(done)?;
    tracing::info!(key_id = %id, owner_id = %owner, "provider key replaced");
    Ok(())
}

pub async fn delete_key(state: &AppState, owner: Uuid, id: Uuid) -> Result<(), AppError> {
    let done = sqlx::query("DELETE FROM provider_keys WHERE id = $1 AND owner_id = $2")
        .bind(id)
        .bind(owner)
        .execute(&state.db)
        .await?;
    crate::error::found(done)?;
    tracing::info!(key_id = %id, owner_id = %owner, "provider key deleted");
    Ok(())
}

/// The provider of one of the owner's keys (to check an agent's choice).
pub async fn provider_of_key(
    state: &AppState,
    owner: Uuid,
    id: Uuid,
) -> Result<Provider, AppError> {
    let found: Option<String> =
        sqlx::query_scalar("SELECT provider FROM provider_keys WHERE id = $1 AND owner_id = $2")
            .bind(id)
            .bind(owner)
            .fetch_optional(&state.db)
            .await?;
    provider_of(&found.ok_or(AppError::NotFound)?)
}

/// Asks the provider which models the key can use. Each test calls the
/// provider, so it counts against the user's key-test limit.
pub async fn test_key(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<KeyTest, AppError> {
    #[derive(sqlx::FromRow)]
    struct SecretRow {
        provider: String,
        secret: Sealed,
        base_url: Option<Sealed>,
    }
    let row: Option<SecretRow> = sqlx::query_as(
        "SELECT provider, secret, base_url FROM provider_keys WHERE id = $1 AND owner_id = $2",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(&state.db)
    .await?;
    let row = row.ok_or(AppError::NotFound)?;
    rate_limit::hit(
        &state.db,
        &format!("key-test:user:{owner}"),
        state.settings.key_tests_per_user,
    )
    .await?;
    let provider = provider_of(&row.provider)?;
    let secret = key.open_text(place("secret", id, owner), &row.secret)?;
    let base_url = key.open_optional(place("base_url", id, owner), row.base_url.as_ref())?;
    let result = models::list_models(
        &state.egress,
        &state.settings.provider_urls,
        provider,
        base_url.as_deref(),
        &secret,
    )
    .await;
    tracing::info!(key_id = %id, owner_id = %owner, ok = result.is_ok(), "provider key tested");
    Ok(match result {
        Ok(models) => {
            let shown: Vec<&str> = models.iter().take(5).map(String::as_str).collect();
            let more = models.len().saturating_sub(shown.len());
            let list = if shown.is_empty() {
                "no models listed".to_owned()
            } else if more > 0 {
                format!("{} and {more} more", shown.join(", "))
            } else {
                shown.join(", ")
            };
            KeyTest {
                ok: true,
                message: format!("The key works. {} offers: {list}.", provider.label()),
            }
        }
        Err(message) => KeyTest { ok: false, message },
    })
}

// ---- which key a run uses ------------------------------------------------------------

/// The key an agent resolves to, found once and used both to describe it
/// (`source`) and to call the provider (`secret`).
pub struct Resolved {
    pub source: KeySource,
    /// What to send the provider; empty means "no key" (a keyless
    /// OpenAI-compatible server). Never logged, never stored elsewhere.
    secret: Option<Sealed>,
    secret_place: Option<Place>,
    platform: Option<String>,
}

impl Resolved {
    /// The call goes on the operator's key (or the demo model): what
    /// budgets and credits charge.
    pub fn is_operators(&self) -> bool {
        matches!(self.source, KeySource::Platform | KeySource::NotNeeded)
    }

    /// The secret for the request to the provider, or `Missing`'s message.
    pub fn secret(&self, key: &DataKey) -> Result<String, AppError> {
        match (&self.source, &self.secret, self.secret_place) {
            (KeySource::Missing { message }, _, _) => {
                Err(AppError::invalid("message", message.clone()))
            }
            (_, Some(sealed), Some(place)) => key.open_text(place, sealed),
            (KeySource::Platform, _, _) => Ok(self.platform.clone().unwrap_or_default()),
            // Not a secret: the in-process demo server only wants a key present.
            (KeySource::NotNeeded, _, _) => Ok("enclave-demo".to_owned()),
            _ => Ok(String::new()),
        }
    }
}

/// Which key an agent on `provider` uses: the key chosen for it (if it is
/// still the owner's and for that provider), else the owner's newest key for
/// the provider, else the operator's platform key, else none. One query.
/// (Platform keys exist only for the hosted providers, whose URLs only the
/// operator sets: an agent cannot send the operator's key elsewhere.)
pub async fn resolve(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    provider: Provider,
    chosen: Option<Uuid>,
) -> Result<Resolved, AppError> {
    if provider == Provider::Demo {
        return settle(state, owner, key, provider, None);
    }
    static PICK: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| pick_sql("$1", "$2", "$3"));
    let pick: Option<Pick> = sqlx::query_as(sqlx::AssertSqlSafe(PICK.as_str()))
        .bind(owner)
        .bind(provider.as_str())
        .bind(chosen)
        .fetch_optional(&state.db)
        .await?;
    settle(state, owner, key, provider, pick)
}

/// The statement that picks `Pick`'s row, the SQL expressions `owner`,
/// `provider` and `chosen` naming the user, the provider and the key chosen
/// for the agent: that key if it is the owner's for the provider, else their
/// newest. `resolve` runs it alone; a send runs it as a `LATERAL` join in
/// the statement that reads its agent (`chat::server::SEND_READS`).
pub(crate) fn pick_sql(owner: &str, provider: &str, chosen: &str) -> String {
    format!(
        "SELECT id, label, masked, secret, id IS NOT DISTINCT FROM {chosen} AS chosen
         FROM provider_keys WHERE owner_id = {owner} AND provider = {provider}
         ORDER BY id IS NOT DISTINCT FROM {chosen} DESC, created_at DESC LIMIT 1"
    )
}

/// The owner's stored key `resolve` would pick, as stored (`pick_sql`).
#[derive(sqlx::FromRow)]
pub struct Pick {
    pub(crate) id: Uuid,
    pub(crate) label: Sealed,
    pub(crate) masked: Sealed,
    pub(crate) secret: Sealed,
    pub(crate) chosen: bool,
}

/// The key an agent on `provider` uses, given the owner's stored key
/// `pick` (see `resolve`).
pub fn settle(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    provider: Provider,
    pick: Option<Pick>,
) -> Result<Resolved, AppError> {
    let none = |source| Resolved {
        source,
        secret: None,
        secret_place: None,
        platform: None,
    };
    if provider == Provider::Demo {
        return Ok(none(KeySource::NotNeeded));
    }
    if let Some(pick) = pick {
        let label = key.open_text(place("label", pick.id, owner), &pick.label)?;
        let masked = key.open_text(place("masked", pick.id, owner), &pick.masked)?;
        let source = if pick.chosen {
            KeySource::Chosen { label, masked }
        } else {
            KeySource::Yours { label, masked }
        };
        return Ok(Resolved {
            source,
            secret: Some(pick.secret),
            secret_place: Some(place("secret", pick.id, owner)),
            platform: None,
        });
    }
    if provider == Provider::OpenaiCompatible {
        return Ok(none(KeySource::Keyless));
    }
    if let Some(platform) = state.settings.platform_keys.expose(provider) {
        return Ok(Resolved {
            platform: Some(platform.to_owned()),
            ..none(KeySource::Platform)
        });
    }
    Ok(none(KeySource::Missing {
        message: format!(
            "No {} key: add one under Settings → Provider keys, or ask your operator to set a platform key.",
            provider.label()
        ),
    }))
}
