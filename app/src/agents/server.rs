//! Agents (server only). Every query names the owner
//! (`WHERE id = $1 AND owner_id = $2`): another user's id is `NotFound`,
//! exactly like an id that does not exist.
//!
//! Sealed here: everything the user typed or chose (`name`, `description`,
//! `system_prompt`, `model`, `base_url`, `starters`, `avatar`). Only the
//! provider, the numeric settings and the chosen key's id are plain.

use uuid::Uuid;

use super::{
    AgentDetail, AgentSummary,
    domain::{AgentExport, AgentSpec, NAME_MAX, Provider},
};
use crate::{
    error::AppError,
    platform::{
        crypto::{DataKey, Place, Sealed},
        keystore::SealedColumn,
    },
    provider_keys,
    state::AppState,
};

/// The sealed columns of this slice (`keys verify` opens them all).
pub const SEALED: &[SealedColumn] = &[
    SealedColumn::owned("agents", "name"),
    SealedColumn::owned("agents", "description"),
    SealedColumn::owned("agents", "system_prompt"),
    SealedColumn::owned("agents", "model"),
    SealedColumn::owned("agents", "base_url"),
    SealedColumn::owned("agents", "starters"),
    SealedColumn::owned("agents", "avatar"),
    SealedColumn::owned("agents", "tools"),
];

fn place(column: &'static str, id: Uuid, owner: Uuid) -> Place {
    Place::new("agents", column, id, owner)
}

/// An agent as stored.
#[derive(sqlx::FromRow)]
struct AgentRow {
    id: Uuid,
    name: Sealed,
    description: Sealed,
    system_prompt: Sealed,
    provider: String,
    model: Sealed,
    base_url: Option<Sealed>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    max_output_tokens: Option<i32>,
    starters: Sealed,
    avatar: Sealed,
    provider_key_id: Option<Uuid>,
    tools: Option<Sealed>,
}

const AGENT_COLUMNS: &str = "id, name, description, system_prompt, provider, model, base_url, \
     temperature, top_p, max_output_tokens, starters, avatar, provider_key_id, tools";

impl AgentRow {
    fn spec(&self, key: &DataKey, owner: Uuid) -> Result<AgentSpec, AppError> {
        let open = |column, sealed| key.open_text(place(column, self.id, owner), sealed);
        let starters = open("starters", &self.starters)?;
        Ok(AgentSpec {
            name: open("name", &self.name)?,
            description: open("description", &self.description)?,
            system_prompt: open("system_prompt", &self.system_prompt)?,
            provider: Provider::parse(&self.provider).ok_or_else(|| {
                AppError::internal(format!(
                    "unknown provider {:?} in the database",
                    self.provider
                ))
            })?,
            model: open("model", &self.model)?,
            base_url: key
                .open_optional(place("base_url", self.id, owner), self.base_url.as_ref())?,
            temperature: self.temperature,
            top_p: self.top_p,
            max_output_tokens: self.max_output_tokens.map(|n| n as u32),
            starters: serde_json::from_str(&starters).map_err(AppError::internal)?,
            avatar: open("avatar", &self.avatar)?,
            tools: match &self.tools {
                Some(sealed) => {
                    serde_json::from_str(&open("tools", sealed)?).map_err(AppError::internal)?
                }
                None => Default::default(),
            },
        })
    }
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
        let spec = row.spec(key, owner)?;
        if needle.is_empty()
            || spec.name.to_lowercase().contains(&needle)
            || spec.description.to_lowercase().contains(&needle)
        {
            agents.push(AgentSummary {
                id: row.id.to_string(),
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

/// One of the owner's agents and the key chosen for it. Every function here
/// takes the owner's data key from its caller: the request's `AuthSession`,
/// where the session middleware unwrapped it.
pub async fn load_agent(
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
    Ok((row.spec(key, owner)?, row.provider_key_id))
}

pub async fn get_agent(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<AgentDetail, AppError> {
    let (spec, provider_key_id) = load_agent(state, owner, key, id).await?;
    let key_source =
        provider_keys::server::resolve(state, owner, key, spec.provider, provider_key_id)
            .await?
            .source;
    Ok(AgentDetail {
        id: id.to_string(),
        spec,
        provider_key_id: provider_key_id.map(|k| k.to_string()),
        key_source,
        knowledge: crate::knowledge::server::agent_bases(&state.db, owner, key, id).await?,
    })
}

/// The owner's agent `id` exists; another user's is not found, like one
/// that does not exist. For slices that hang things on an agent.
pub async fn check_owned(db: &sqlx::PgPool, owner: Uuid, id: Uuid) -> Result<(), AppError> {
    let mine: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM agents WHERE id = $1 AND owner_id = $2)")
            .bind(id)
            .bind(owner)
            .fetch_one(db)
            .await?;
    if mine {
        Ok(())
    } else {
        Err(AppError::NotFound)
    }
}

/// A chosen key must be the owner's own and for the agent's provider.
async fn check_chosen_key(
    state: &AppState,
    owner: Uuid,
    provider: Provider,
    key_id: Option<Uuid>,
) -> Result<(), AppError> {
    let Some(key_id) = key_id else { return Ok(()) };
    if provider_keys::server::provider_of_key(state, owner, key_id).await? == provider {
        Ok(())
    } else {
        Err(AppError::invalid(
            "provider_key_id",
            format!("That key is not a {} key.", provider.label()),
        ))
    }
}

/// Each connection chosen for the agent's tools must be the owner's own and
/// of its kind.
async fn check_connections(
    state: &AppState,
    owner: Uuid,
    tools: &crate::tools::ToolConfig,
) -> Result<(), AppError> {
    for (kind, id) in &tools.connections {
        let id = uuid::Uuid::parse_str(id).map_err(|_| AppError::NotFound)?;
        let found: Option<String> =
            sqlx::query_scalar("SELECT kind FROM connections WHERE id = $1 AND owner_id = $2")
                .bind(id)
                .bind(owner)
                .fetch_optional(&state.db)
                .await?;
        match found {
            None => return Err(AppError::NotFound),
            Some(k) if &k == kind => {}
            Some(_) => {
                return Err(AppError::invalid(
                    "tools",
                    "A connection was chosen for the wrong service.",
                ));
            }
        }
    }
    Ok(())
}

/// Each MCP server the agent's tools come from must be the owner's own;
/// another user's looks exactly like one that was deleted.
async fn check_mcp_servers(
    state: &AppState,
    owner: Uuid,
    tools: &crate::tools::ToolConfig,
) -> Result<(), AppError> {
    let ids = tools.mcp_servers();
    if ids.is_empty() {
        return Ok(());
    }
    let mine: i64 =
        sqlx::query_scalar("SELECT count(*) FROM mcp_servers WHERE id = ANY($1) AND owner_id = $2")
            .bind(&ids)
            .bind(owner)
            .fetch_one(&state.db)
            .await?;
    if mine as usize == ids.len() {
        Ok(())
    } else {
        Err(AppError::invalid(
            "tools",
            "A tool was chosen from an MCP server that no longer exists.",
        ))
    }
}

/// Seals `spec` for row `id` and runs `sql`, an INSERT or UPDATE whose
/// parameters are numbered as in `INSERT_AGENT` ($1 id, $2 owner, ...),
/// then sets the knowledge bases it answers from, in one transaction.
#[allow(clippy::too_many_arguments)]
async fn write_agent(
    state: &AppState,
    sql: &'static str,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
    spec: &AgentSpec,
    provider_key_id: Option<Uuid>,
    knowledge: &[Uuid],
) -> Result<u64, AppError> {
    check_chosen_key(state, owner, spec.provider, provider_key_id).await?;
    check_connections(state, owner, &spec.tools).await?;
    check_mcp_servers(state, owner, &spec.tools).await?;
    let seal = |column, value: &str| key.seal_str(place(column, id, owner), value);
    let starters = serde_json::to_string(&spec.starters).map_err(AppError::internal)?;
    let tools = serde_json::to_string(&spec.tools).map_err(AppError::internal)?;
    let mut tx = state.db.begin().await?;
    let done = sqlx::query(sql)
        .bind(id)
        .bind(owner)
        .bind(seal("name", &spec.name))
        .bind(seal("description", &spec.description))
        .bind(seal("system_prompt", &spec.system_prompt))
        .bind(spec.provider.as_str())
        .bind(seal("model", &spec.model))
        .bind(spec.base_url.as_deref().map(|b| seal("base_url", b)))
        .bind(spec.temperature)
        .bind(spec.top_p)
        .bind(spec.max_output_tokens.map(|n| n as i32))
        .bind(seal("starters", &starters))
        .bind(seal("avatar", &spec.avatar))
        .bind(provider_key_id)
        .bind(seal("tools", &tools))
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(0);
    }
    crate::knowledge::server::replace_agent_bases(&mut tx, owner, id, knowledge).await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

const INSERT_AGENT: &str = "INSERT INTO agents (id, owner_id, name, description, system_prompt,
       provider, model, base_url, temperature, top_p, max_output_tokens, starters, avatar,
       provider_key_id, tools)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

const UPDATE_AGENT: &str = "UPDATE agents SET name = $3, description = $4, system_prompt = $5,
       provider = $6, model = $7, base_url = $8, temperature = $9, top_p = $10,
       max_output_tokens = $11, starters = $12, avatar = $13, provider_key_id = $14,
       tools = $15, updated_at = now()
     WHERE id = $1 AND owner_id = $2";

/// Creates an agent that answers from the `knowledge` bases (the owner's).
pub async fn create_agent(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    spec: &AgentSpec,
    provider_key_id: Option<Uuid>,
    knowledge: &[Uuid],
) -> Result<Uuid, AppError> {
    let id = Uuid::new_v4();
    write_agent(
        state,
        INSERT_AGENT,
        owner,
        key,
        id,
        spec,
        provider_key_id,
        knowledge,
    )
    .await?;
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
    knowledge: &[Uuid],
) -> Result<(), AppError> {
    let written = write_agent(
        state,
        UPDATE_AGENT,
        owner,
        key,
        id,
        spec,
        provider_key_id,
        knowledge,
    )
    .await?;
    if written == 0 {
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
    crate::error::found(done)?;
    tracing::info!(agent_id = %id, owner_id = %owner, "agent deleted");
    Ok(())
}

/// A copy named "Copy of …", with the same key choice and knowledge bases.
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
    let bases: Vec<Uuid> = sqlx::query_scalar(
        "SELECT ak.base_id FROM agent_knowledge_bases ak
         JOIN agents a ON a.id = ak.agent_id WHERE ak.agent_id = $1 AND a.owner_id = $2",
    )
    .bind(id)
    .bind(owner)
    .fetch_all(&state.db)
    .await?;
    create_agent(state, owner, key, &spec, provider_key_id, &bases).await
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
    // An export names no knowledge bases: they are the exporter's own.
    create_agent(state, owner, key, &spec, None, &[]).await
}
