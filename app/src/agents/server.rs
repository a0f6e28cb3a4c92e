//! Agents and provider keys (server only). Every query names the owner
//! (`WHERE id = $1 AND owner_id = $2`): another user's id is `NotFound`,
//! exactly like an id that does not exist.

use sqlx::PgPool;
use uuid::Uuid;

use super::{
    AgentDetail, AgentSummary, KeySource, KeyTest, ProviderKeyView,
    domain::{AgentExport, AgentSpec, NAME_MAX, Provider, mask_key},
    providers,
};
use crate::{
    error::AppError,
    platform::{
        AppState,
        crypto::{DataKey, Place, Sealed},
    },
};

/// Ids arrive as text; anything that is not a UUID is simply not found.
pub fn parse_id(id: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(id.trim()).map_err(|_| AppError::NotFound)
}

fn agent_place(column: &'static str, id: Uuid, owner: Uuid) -> Place {
    Place::new("agents", column, id, owner)
}

fn key_place(column: &'static str, id: Uuid, owner: Uuid) -> Place {
    Place::new("provider_keys", column, id, owner)
}

fn open(key: &DataKey, place: Place, sealed: &Sealed) -> Result<String, AppError> {
    key.open_string(place, sealed).map_err(|e| {
        AppError::internal(format!(
            "{}.{} of {}: {e}",
            place.table, place.column, place.row
        ))
    })
}

fn provider_of(value: &str) -> Result<Provider, AppError> {
    Provider::parse(value)
        .ok_or_else(|| AppError::internal(format!("unknown provider {value:?} in the database")))
}

// ---- agents --------------------------------------------------------------------

type AgentRow = (
    Uuid,
    Sealed,
    Sealed,
    Sealed,
    String,
    String,
    Option<Sealed>,
    Option<f32>,
    Option<f32>,
    Option<i32>,
    Sealed,
    String,
    Option<Uuid>,
);

const AGENT_COLUMNS: &str = "id, name, description, system_prompt, provider, model, base_url, \
     temperature, top_p, max_output_tokens, starters, avatar, provider_key_id";

fn spec_from_row(key: &DataKey, owner: Uuid, row: &AgentRow) -> Result<AgentSpec, AppError> {
    let (
        id,
        name,
        description,
        prompt,
        provider,
        model,
        base_url,
        temperature,
        top_p,
        max_tokens,
        starters,
        avatar,
        _,
    ) = row;
    let starters_json = open(key, agent_place("starters", *id, owner), starters)?;
    Ok(AgentSpec {
        name: open(key, agent_place("name", *id, owner), name)?,
        description: open(key, agent_place("description", *id, owner), description)?,
        system_prompt: open(key, agent_place("system_prompt", *id, owner), prompt)?,
        provider: provider_of(provider)?,
        model: model.clone(),
        base_url: base_url
            .as_ref()
            .map(|b| open(key, agent_place("base_url", *id, owner), b))
            .transpose()?,
        temperature: *temperature,
        top_p: *top_p,
        max_output_tokens: max_tokens.map(|n| n as u32),
        starters: serde_json::from_str(&starters_json).map_err(AppError::internal)?,
        avatar: avatar.clone(),
    })
}

struct SealedAgent {
    name: Sealed,
    description: Sealed,
    system_prompt: Sealed,
    base_url: Option<Sealed>,
    starters: Sealed,
}

fn seal_agent(
    key: &DataKey,
    id: Uuid,
    owner: Uuid,
    spec: &AgentSpec,
) -> Result<SealedAgent, AppError> {
    let starters = serde_json::to_string(&spec.starters).map_err(AppError::internal)?;
    Ok(SealedAgent {
        name: key.seal_str(agent_place("name", id, owner), &spec.name),
        description: key.seal_str(agent_place("description", id, owner), &spec.description),
        system_prompt: key.seal_str(agent_place("system_prompt", id, owner), &spec.system_prompt),
        base_url: spec
            .base_url
            .as_deref()
            .map(|b| key.seal_str(agent_place("base_url", id, owner), b)),
        starters: key.seal_str(agent_place("starters", id, owner), &starters),
    })
}

/// The user's agents, newest first, optionally only those whose name or
/// description contains `query` (names are sealed, so the filter runs here).
pub async fn list_agents(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    query: &str,
) -> Result<Vec<AgentSummary>, AppError> {
    let rows: Vec<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {AGENT_COLUMNS} FROM agents WHERE owner_id = $1 ORDER BY created_at DESC, id"
    )))
    .bind(owner)
    .fetch_all(&state.db)
    .await?;
    let needle = query.trim().to_lowercase();
    let mut agents = Vec::with_capacity(rows.len());
    for row in &rows {
        let spec = spec_from_row(key, owner, row)?;
        if needle.is_empty()
            || spec.name.to_lowercase().contains(&needle)
            || spec.description.to_lowercase().contains(&needle)
        {
            agents.push(AgentSummary {
                id: row.0.to_string(),
                name: spec.name,
                description: spec.description,
                provider: spec.provider,
                model: spec.model,
                avatar: spec.avatar,
            });
        }
    }
    Ok(agents)
}

/// Every function here takes the owner's data key from its caller: the
/// request's `AuthSession`, where the session middleware unwrapped it.
async fn load_agent(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<(AgentSpec, Option<Uuid>), AppError> {
    let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {AGENT_COLUMNS} FROM agents WHERE id = $1 AND owner_id = $2"
    )))
    .bind(id)
    .bind(owner)
    .fetch_optional(&state.db)
    .await?;
    let row = row.ok_or(AppError::NotFound)?;
    Ok((spec_from_row(key, owner, &row)?, row.12))
}

pub async fn get_agent(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<AgentDetail, AppError> {
    let (spec, provider_key_id) = load_agent(state, owner, key, id).await?;
    let key_source = key_source(state, owner, key, spec.provider, provider_key_id).await?;
    Ok(AgentDetail {
        id: id.to_string(),
        spec,
        provider_key_id: provider_key_id.map(|k| k.to_string()),
        key_source,
    })
}

/// A chosen key must be the owner's own and for the agent's provider.
async fn check_chosen_key(
    state: &AppState,
    owner: Uuid,
    provider: Provider,
    key_id: Option<Uuid>,
) -> Result<(), AppError> {
    let Some(key_id) = key_id else { return Ok(()) };
    let found: Option<String> =
        sqlx::query_scalar("SELECT provider FROM provider_keys WHERE id = $1 AND owner_id = $2")
            .bind(key_id)
            .bind(owner)
            .fetch_optional(&state.db)
            .await?;
    match found {
        None => Err(AppError::NotFound),
        Some(p) if p == provider.as_str() => Ok(()),
        Some(_) => Err(AppError::invalid(
            "provider_key_id",
            format!("That key is not a {} key.", provider.label()),
        )),
    }
}

/// Seals `spec` for row `id` and runs `sql`, an INSERT or UPDATE whose
/// parameters are numbered as in `INSERT_AGENT` ($1 id, $2 owner, ...).
async fn write_agent(
    state: &AppState,
    sql: &'static str,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
    spec: &AgentSpec,
    provider_key_id: Option<Uuid>,
) -> Result<u64, AppError> {
    check_chosen_key(state, owner, spec.provider, provider_key_id).await?;
    let sealed = seal_agent(key, id, owner, spec)?;
    let done = sqlx::query(sql)
        .bind(id)
        .bind(owner)
        .bind(&sealed.name)
        .bind(&sealed.description)
        .bind(&sealed.system_prompt)
        .bind(spec.provider.as_str())
        .bind(&spec.model)
        .bind(&sealed.base_url)
        .bind(spec.temperature)
        .bind(spec.top_p)
        .bind(spec.max_output_tokens.map(|n| n as i32))
        .bind(&sealed.starters)
        .bind(&spec.avatar)
        .bind(provider_key_id)
        .execute(&state.db)
        .await?;
    Ok(done.rows_affected())
}

const INSERT_AGENT: &str = "INSERT INTO agents (id, owner_id, name, description, system_prompt,
       provider, model, base_url, temperature, top_p, max_output_tokens, starters, avatar,
       provider_key_id)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

const UPDATE_AGENT: &str = "UPDATE agents SET name = $3, description = $4, system_prompt = $5,
       provider = $6, model = $7, base_url = $8, temperature = $9, top_p = $10,
       max_output_tokens = $11, starters = $12, avatar = $13, provider_key_id = $14,
       updated_at = now()
     WHERE id = $1 AND owner_id = $2";

pub async fn create_agent(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    spec: &AgentSpec,
    provider_key_id: Option<Uuid>,
) -> Result<Uuid, AppError> {
    insert_agent(state, owner, key, spec, provider_key_id).await
}

async fn insert_agent(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    spec: &AgentSpec,
    provider_key_id: Option<Uuid>,
) -> Result<Uuid, AppError> {
    let id = Uuid::new_v4();
    write_agent(state, INSERT_AGENT, owner, key, id, spec, provider_key_id).await?;
    tracing::info!(agent_id = %id, owner_id = %owner, "agent created");
    Ok(id)
}

pub async fn update_agent(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
    spec: &AgentSpec,
    provider_key_id: Option<Uuid>,
) -> Result<(), AppError> {
    if write_agent(state, UPDATE_AGENT, owner, key, id, spec, provider_key_id).await? == 0 {
        return Err(AppError::NotFound);
    }
    Ok(())
}

pub async fn delete_agent(state: &AppState, owner: Uuid, id: Uuid) -> Result<(), AppError> {
    let done = sqlx::query("DELETE FROM agents WHERE id = $1 AND owner_id = $2")
        .bind(id)
        .bind(owner)
        .execute(&state.db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::NotFound);
    }
    tracing::info!(agent_id = %id, owner_id = %owner, "agent deleted");
    Ok(())
}

/// A copy named "Copy of …", with the same key choice.
pub async fn duplicate_agent(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<Uuid, AppError> {
    let (mut spec, provider_key_id) = load_agent(state, owner, key, id).await?;
    spec.name = format!("Copy of {}", spec.name)
        .chars()
        .take(NAME_MAX)
        .collect();
    insert_agent(state, owner, key, &spec, provider_key_id).await
}

/// The agent as an export file (no key, no ids).
pub async fn export_agent(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<AgentExport, AppError> {
    let (spec, _) = load_agent(state, owner, key, id).await?;
    Ok(AgentExport::from_spec(&spec))
}

pub async fn import_agent(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    json: &str,
) -> Result<Uuid, AppError> {
    let spec = AgentExport::parse(json)?;
    create_agent(state, owner, key, &spec, None).await
}

// ---- provider keys ---------------------------------------------------------------

type KeyRow = (Uuid, String, Sealed, Sealed, Option<Sealed>);

fn key_view(data_key: &DataKey, owner: Uuid, row: &KeyRow) -> Result<ProviderKeyView, AppError> {
    let (id, provider, label, masked, base_url) = row;
    Ok(ProviderKeyView {
        id: id.to_string(),
        provider: provider_of(provider)?,
        label: open(data_key, key_place("label", *id, owner), label)?,
        masked: open(data_key, key_place("masked", *id, owner), masked)?,
        base_url: base_url
            .as_ref()
            .map(|b| open(data_key, key_place("base_url", *id, owner), b))
            .transpose()?,
    })
}

pub async fn list_keys(
    state: &AppState,
    owner: Uuid,
    data_key: &DataKey,
) -> Result<Vec<ProviderKeyView>, AppError> {
    let rows: Vec<KeyRow> = sqlx::query_as(
        "SELECT id, provider, label, masked, base_url FROM provider_keys
         WHERE owner_id = $1 ORDER BY provider, created_at",
    )
    .bind(owner)
    .fetch_all(&state.db)
    .await?;
    rows.iter()
        .map(|row| key_view(data_key, owner, row))
        .collect()
}

pub async fn add_key(
    state: &AppState,
    owner: Uuid,
    data_key: &DataKey,
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
    .bind(data_key.seal_str(key_place("label", id, owner), label))
    .bind(data_key.seal_str(key_place("secret", id, owner), secret))
    .bind(data_key.seal_str(key_place("masked", id, owner), &mask_key(secret)))
    .bind(base_url.map(|b| data_key.seal_str(key_place("base_url", id, owner), b)))
    .execute(&state.db)
    .await?;
    tracing::info!(key_id = %id, owner_id = %owner, provider = provider.as_str(), "provider key added");
    Ok(id)
}

/// Replaces the secret of a stored key (label and provider stay).
pub async fn replace_key(
    state: &AppState,
    owner: Uuid,
    data_key: &DataKey,
    id: Uuid,
    secret: &str,
) -> Result<(), AppError> {
    let done = sqlx::query(
        "UPDATE provider_keys SET secret = $3, masked = $4, updated_at = now()
         WHERE id = $1 AND owner_id = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(data_key.seal_str(key_place("secret", id, owner), secret))
    .bind(data_key.seal_str(key_place("masked", id, owner), &mask_key(secret)))
    .execute(&state.db)
    .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::NotFound);
    }
    tracing::info!(key_id = %id, owner_id = %owner, "provider key replaced");
    Ok(())
}

pub async fn delete_key(state: &AppState, owner: Uuid, id: Uuid) -> Result<(), AppError> {
    let done = sqlx::query("DELETE FROM provider_keys WHERE id = $1 AND owner_id = $2")
        .bind(id)
        .bind(owner)
        .execute(&state.db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::NotFound);
    }
    tracing::info!(key_id = %id, owner_id = %owner, "provider key deleted");
    Ok(())
}

/// The secret of one of the owner's keys, with its provider and base URL.
async fn key_secret(
    db: &PgPool,
    data_key: &DataKey,
    owner: Uuid,
    id: Uuid,
) -> Result<(Provider, String, Option<String>), AppError> {
    let row: Option<(String, Sealed, Option<Sealed>)> = sqlx::query_as(
        "SELECT provider, secret, base_url FROM provider_keys WHERE id = $1 AND owner_id = $2",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(db)
    .await?;
    let (provider, secret, base_url) = row.ok_or(AppError::NotFound)?;
    Ok((
        provider_of(&provider)?,
        open(data_key, key_place("secret", id, owner), &secret)?,
        base_url
            .as_ref()
            .map(|b| open(data_key, key_place("base_url", id, owner), b))
            .transpose()?,
    ))
}

/// Asks the provider which models the key can use.
pub async fn test_key(
    state: &AppState,
    owner: Uuid,
    data_key: &DataKey,
    id: Uuid,
) -> Result<KeyTest, AppError> {
    let (provider, secret, base_url) = key_secret(&state.db, data_key, owner, id).await?;
    let result = providers::list_models(
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

/// Which key an agent would use: the chosen key, else the user's newest key
/// for the provider, else the platform's, else an explanation.
pub async fn key_source(
    state: &AppState,
    owner: Uuid,
    data_key: &DataKey,
    provider: Provider,
    chosen: Option<Uuid>,
) -> Result<KeySource, AppError> {
    if provider == Provider::Demo {
        return Ok(KeySource::NotNeeded);
    }
    let label_of = |row: &(Uuid, Sealed, Sealed)| -> Result<(String, String), AppError> {
        Ok((
            open(data_key, key_place("label", row.0, owner), &row.1)?,
            open(data_key, key_place("masked", row.0, owner), &row.2)?,
        ))
    };
    if let Some(chosen) = chosen {
        let row: Option<(Uuid, Sealed, Sealed)> = sqlx::query_as(
            "SELECT id, label, masked FROM provider_keys WHERE id = $1 AND owner_id = $2",
        )
        .bind(chosen)
        .bind(owner)
        .fetch_optional(&state.db)
        .await?;
        if let Some(row) = row {
            let (label, masked) = label_of(&row)?;
            return Ok(KeySource::Chosen { label, masked });
        }
    }
    let newest: Option<(Uuid, Sealed, Sealed)> = sqlx::query_as(
        "SELECT id, label, masked FROM provider_keys WHERE owner_id = $1 AND provider = $2
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(owner)
    .bind(provider.as_str())
    .fetch_optional(&state.db)
    .await?;
    if let Some(row) = newest {
        let (label, masked) = label_of(&row)?;
        return Ok(KeySource::Yours { label, masked });
    }
    if state.settings.platform_keys.has(provider) {
        return Ok(KeySource::Platform);
    }
    Ok(KeySource::Missing {
        message: format!(
            "No {} key: add one under Settings → Provider keys, or ask your operator to set a platform key.",
            provider.label()
        ),
    })
}

/// The secret to call `provider` with, in the order `key_source` describes.
pub async fn resolve_secret(
    state: &AppState,
    owner: Uuid,
    data_key: &DataKey,
    provider: Provider,
    chosen: Option<Uuid>,
) -> Result<String, AppError> {
    if provider == Provider::Demo {
        // Not a secret: the in-process demo server only wants a key present.
        return Ok("enclave-demo".to_owned());
    }
    let mut ids = Vec::new();
    if let Some(chosen) = chosen {
        ids.push(chosen);
    }
    let newest: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM provider_keys WHERE owner_id = $1 AND provider = $2
         ORDER BY created_at DESC LIMIT 1",
    )
    .bind(owner)
    .bind(provider.as_str())
    .fetch_optional(&state.db)
    .await?;
    ids.extend(newest);
    for id in ids {
        match key_secret(&state.db, data_key, owner, id).await {
            Ok((_, secret, _)) => return Ok(secret),
            Err(AppError::NotFound) => continue,
            Err(other) => return Err(other),
        }
    }
    if let Some(platform) = state.settings.platform_keys.expose(provider) {
        return Ok(platform.to_owned());
    }
    match key_source(state, owner, data_key, provider, None).await? {
        KeySource::Missing { message } => Err(AppError::invalid("message", message)),
        _ => Err(AppError::internal("a key source was found but no secret")),
    }
}

/// What a run needs from the agent: its spec and its chosen key.
pub async fn agent_for_chat(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<(AgentSpec, Option<Uuid>), AppError> {
    load_agent(state, owner, key, id).await
}
