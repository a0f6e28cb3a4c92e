//! Agents (server only). Every query names the user and checks access in
//! the statement itself: an agent is its maker's own (`team_id` NULL), or
//! a team's, which its members use and its admins and owners edit
//! (`teams::server::{usable_by, editable_by}`). Anyone else's id is
//! `NotFound`, exactly like an id that does not exist.
//!
//! A team's agent is sealed with the team's key (its places name the team
//! as owner); it uses no one's personal provider key, connection, MCP
//! server or knowledge base: it runs on the key of the person chatting
//! (their own for its provider, else the platform's).
//!
//! Sealed here: everything the user typed or chose (`name`, `description`,
//! `system_prompt`, `model`, `base_url`, `starters`, `avatar`). Only the
//! provider, the numeric settings and the chosen key's id are plain.

use uuid::Uuid;

use crate::teams::{Sharing, server::Keys};

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
    SealedColumn::shareable("agents", "name"),
    SealedColumn::shareable("agents", "description"),
    SealedColumn::shareable("agents", "system_prompt"),
    SealedColumn::shareable("agents", "model"),
    SealedColumn::shareable("agents", "base_url"),
    SealedColumn::shareable("agents", "starters"),
    SealedColumn::shareable("agents", "avatar"),
    SealedColumn::shareable("agents", "tools"),
];

fn place(column: &'static str, id: Uuid, owner: Uuid) -> Place {
    Place::new("agents", column, id, owner)
}

/// An agent as stored (`AGENT_COLUMNS`).
#[derive(sqlx::FromRow)]
pub(crate) struct AgentRow {
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
    team_id: Option<Uuid>,
    can_edit: bool,
}

/// The columns of `AgentRow`, from `agents a` joined with `ACCESS` (the
/// user is `$1`).
pub(crate) const AGENT_COLUMNS: &str = "a.id, a.name, a.description, a.system_prompt, a.provider, a.model, \
     a.base_url, a.temperature, a.top_p, a.max_output_tokens, a.starters, a.avatar, \
     a.provider_key_id, a.tools, a.team_id, \
     (a.team_id IS NULL OR tm.role IN ('owner', 'admin')) AS can_edit";

/// `agents a` with the user's (`$1`) membership of its team, keeping the
/// agents they may use: their own, and their teams'.
pub(crate) const ACCESS: &str =
    "agents a LEFT JOIN team_members tm ON tm.team_id = a.team_id AND tm.user_id = $1
     WHERE ((a.team_id IS NULL AND a.owner_id = $1) OR tm.user_id IS NOT NULL)";

/// `ACCESS` for the user named by the SQL expression `user` (a send that
/// reads its session in the same statement names the user by a subquery).
pub(crate) fn access(user: &str) -> String {
    ACCESS.replace("$1", user)
}

/// An agent the user may use, opened.
pub struct Loaded {
    pub spec: AgentSpec,
    pub provider_key_id: Option<Uuid>,
    pub team: Option<Uuid>,
    pub can_edit: bool,
}

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

/// The agents the user may use (their own and their teams'), newest
/// first, optionally only those whose name or description contains
/// `query` (names are sealed, so the filter runs here).
pub async fn list_agents(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    query: &str,
) -> Result<Vec<AgentSummary>, AppError> {
    list_matching(state, owner, key, query, None).await
}

/// The agents of `team` (the user must be in it), newest first: the
/// team's page, reading only the team's rows.
pub async fn list_in(
    state: &AppState,
    user: Uuid,
    key: &DataKey,
    team: Uuid,
) -> Result<Vec<AgentSummary>, AppError> {
    list_matching(state, user, key, "", Some(team)).await
}

async fn list_matching(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    query: &str,
    team: Option<Uuid>,
) -> Result<Vec<AgentSummary>, AppError> {
    let rows: Vec<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {AGENT_COLUMNS} FROM {ACCESS} AND ($2::uuid IS NULL OR a.team_id = $2)
         ORDER BY a.created_at DESC, a.id"
    )))
    .bind(owner)
    .bind(team)
    .fetch_all(&state.db)
    .await?;
    let needle = query.trim().to_lowercase();
    let team_names =
        crate::teams::server::names(state, owner, rows.iter().any(|r| r.team_id.is_some())).await?;
    let mut keys = Keys::new(state, owner, key);
    let mut agents = Vec::with_capacity(rows.len());
    for row in &rows {
        let (key, sealer) = keys.for_row(row.team_id).await?;
        let spec = row.spec(&key, sealer)?;
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
                sharing: Sharing {
                    team_id: row.team_id.map(|t| t.to_string()),
                    team: row
                        .team_id
                        .and_then(|t| team_names.get(&t.to_string()).cloned()),
                    can_edit: row.can_edit,
                },
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
    let loaded = load(state, owner, key, id).await?;
    Ok((loaded.spec, loaded.provider_key_id))
}

/// An agent the user may use (their own, or their team's), with its team
/// and whether they may edit it.
pub async fn load(
    state: &AppState,
    user: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<Loaded, AppError> {
    let row: Option<AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {AGENT_COLUMNS} FROM {ACCESS} AND a.id = $2"
    )))
    .bind(user)
    .bind(id)
    .fetch_optional(&state.db)
    .await?;
    open(state, user, key, row.ok_or(AppError::NotFound)?).await
}

/// An agent `user` may use (read with `AGENT_COLUMNS` from `ACCESS`), opened
/// with its holder's key.
pub(crate) async fn open(
    state: &AppState,
    user: Uuid,
    key: &DataKey,
    row: AgentRow,
) -> Result<Loaded, AppError> {
    let (key, sealer) = Keys::new(state, user, key).for_row(row.team_id).await?;
    Ok(Loaded {
        spec: row.spec(&key, sealer)?,
        provider_key_id: row.provider_key_id,
        team: row.team_id,
        can_edit: row.can_edit,
    })
}

pub async fn get_agent(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<AgentDetail, AppError> {
    let loaded = load(state, owner, key, id).await?;
    let key_source = provider_keys::server::resolve(
        state,
        owner,
        key,
        loaded.spec.provider,
        loaded.provider_key_id,
    )
    .await?
    .source;
    let team = match loaded.team {
        Some(team) => Some(crate::teams::server::team_name(state, team, owner).await?),
        None => None,
    };
    Ok(AgentDetail {
        id: id.to_string(),
        spec: loaded.spec,
        provider_key_id: loaded.provider_key_id.map(|k| k.to_string()),
        key_source,
        knowledge: {
            let (key, holder) = Keys::new(state, owner, key).for_row(loaded.team).await?;
            crate::knowledge::server::agent_bases(&state.db, holder, &key, id).await?
        },
        sharing: Sharing {
            team_id: loaded.team.map(|t| t.to_string()),
            team,
            can_edit: loaded.can_edit,
        },
    })
}

/// The user may use agent `id` (their own, or their team's); anyone
/// else's is not found, like one that does not exist. For slices that
/// hang a user's own things on an agent (a schedule, a bot, a token).
pub async fn check_usable(db: &sqlx::PgPool, user: Uuid, id: Uuid) -> Result<(), AppError> {
    let usable: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM {ACCESS} AND a.id = $2)"
    )))
    .bind(user)
    .bind(id)
    .fetch_one(db)
    .await?;
    if usable {
        Ok(())
    } else {
        Err(AppError::NotFound)
    }
}

/// The user may change agent `id`: `NotFound` otherwise (an agent they
/// cannot use, or a team's they only use: allowed or 404).
pub async fn check_editable(db: &sqlx::PgPool, user: Uuid, id: Uuid) -> Result<(), AppError> {
    let can_edit: Option<bool> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT (a.team_id IS NULL OR tm.role IN ('owner', 'admin')) FROM {ACCESS} AND a.id = $2"
    )))
    .bind(user)
    .bind(id)
    .fetch_optional(db)
    .await?;
    match can_edit {
        Some(false) | None => Err(AppError::NotFound),
        Some(true) => Ok(()),
    }
}

/// An agent's name, for the user who may use it (a schedule or a bot
/// names the agent it runs).
pub async fn agent_name(
    state: &AppState,
    user: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<String, AppError> {
    Ok(load(state, user, key, id).await?.spec.name)
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

/// Each connection chosen for the agent's tools must be of its kind and
/// where the agent is: the user's own for their own agent, the team's for
/// a team's agent.
async fn check_connections(
    state: &AppState,
    owner: Uuid,
    team: Option<Uuid>,
    tools: &crate::tools::ToolConfig,
) -> Result<(), AppError> {
    for (kind, id) in &tools.connections {
        let id = uuid::Uuid::parse_str(id).map_err(|_| AppError::NotFound)?;
        let found = crate::connections::server::kind_and_team(&state.db, owner, id).await?;
        match found {
            (_, found_team) if found_team != team => {
                return Err(AppError::invalid(
                    "tools",
                    if team.is_some() {
                        "A team's agent uses only the team's own connections."
                    } else {
                        "Your own agent uses only your own connections."
                    },
                ));
            }
            (k, _) if &k == kind => {}
            _ => {
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

/// A team's agent takes nothing personal: no chosen provider key (it runs
/// on the key of whoever chats), no MCP server of anyone's own (its
/// connections and knowledge bases are checked to be the team's).
fn check_team_choices(
    provider_key_id: Option<Uuid>,
    tools: &crate::tools::ToolConfig,
) -> Result<(), AppError> {
    if provider_key_id.is_some() {
        return Err(AppError::invalid(
            "provider_key_id",
            "A team's agent runs on the key of whoever chats with it: leave the key on automatic.",
        ));
    }
    if !tools.mcp_servers().is_empty() {
        return Err(AppError::invalid(
            "tools",
            "A team's agent cannot use anyone's own MCP servers.",
        ));
    }
    Ok(())
}

/// Seals `spec` for row `id` and runs `sql`, an INSERT or UPDATE whose
/// parameters are numbered as in `INSERT_AGENT` ($1 id, $2 user, ...,
/// $16 team), then sets the knowledge bases it answers from, in one
/// transaction. `team` is the agent's team (checked by the caller).
#[allow(clippy::too_many_arguments)]
async fn write_agent(
    state: &AppState,
    sql: &'static str,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
    team: Option<Uuid>,
    spec: &AgentSpec,
    provider_key_id: Option<Uuid>,
    knowledge: &[Uuid],
) -> Result<u64, AppError> {
    if team.is_some() {
        check_team_choices(provider_key_id, &spec.tools)?;
    } else {
        check_chosen_key(state, owner, spec.provider, provider_key_id).await?;
        check_mcp_servers(state, owner, &spec.tools).await?;
    }
    check_connections(state, owner, team, &spec.tools).await?;
    let (key, sealer) = Keys::new(state, owner, key).for_row(team).await?;
    let seal = |column, value: &str| key.seal_str(place(column, id, sealer), value);
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
        .bind(team)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(0);
    }
    crate::knowledge::server::replace_agent_bases(&mut tx, sealer, id, knowledge).await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

const INSERT_AGENT: &str = "INSERT INTO agents (id, owner_id, name, description, system_prompt,
       provider, model, base_url, temperature, top_p, max_output_tokens, starters, avatar,
       provider_key_id, tools, team_id)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

/// The row is written only while the user may still edit it, and only in
/// the team it was sealed for.
static UPDATE_AGENT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "UPDATE agents a SET name = $3, description = $4, system_prompt = $5,
           provider = $6, model = $7, base_url = $8, temperature = $9, top_p = $10,
           max_output_tokens = $11, starters = $12, avatar = $13, provider_key_id = $14,
           tools = $15, updated_at = now()
         WHERE a.id = $1 AND a.team_id IS NOT DISTINCT FROM $16 AND {}",
        crate::teams::server::editable_by("a", "$2")
    )
});

/// Creates the user's own agent that answers from the `knowledge` bases
/// (theirs).
pub async fn create_agent(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    spec: &AgentSpec,
    provider_key_id: Option<Uuid>,
    knowledge: &[Uuid],
) -> Result<Uuid, AppError> {
    create_agent_in(state, owner, key, None, spec, provider_key_id, knowledge).await
}

/// Creates an agent, the user's own (`team` None) or a team's, where the
/// user must be an admin or owner.
#[allow(clippy::too_many_arguments)]
pub async fn create_agent_in(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    team: Option<Uuid>,
    spec: &AgentSpec,
    provider_key_id: Option<Uuid>,
    knowledge: &[Uuid],
) -> Result<Uuid, AppError> {
    if let Some(team) = team {
        crate::teams::server::require_editor(&state.db, team, owner).await?;
    }
    let id = Uuid::new_v4();
    write_agent(
        state,
        INSERT_AGENT,
        owner,
        key,
        id,
        team,
        spec,
        provider_key_id,
        knowledge,
    )
    .await?;
    tracing::info!(agent_id = %id, owner_id = %owner, team_id = ?team, "agent created");
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
    check_editable(&state.db, owner, id).await?;
    let team: Option<Uuid> = sqlx::query_scalar("SELECT team_id FROM agents WHERE id = $1")
        .bind(id)
        .fetch_optional(&state.db)
        .await?
        .ok_or(AppError::NotFound)?;
    let written = write_agent(
        state,
        UPDATE_AGENT.as_str(),
        owner,
        key,
        id,
        team,
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

/// Deletes the agent (the user's own, or a team's they edit), with every
/// conversation with it.
pub async fn delete_agent(state: &AppState, owner: Uuid, id: Uuid) -> Result<(), AppError> {
    check_editable(&state.db, owner, id).await?;
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM agents a WHERE a.id = $1 AND {}",
        crate::teams::server::editable_by("a", "$2")
    )))
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
    let loaded = load(state, owner, key, id).await?;
    let mut spec = loaded.spec;
    spec.name = format!("Copy of {}", spec.name)
        .chars()
        .take(NAME_MAX)
        .collect();
    // A team's agent is copied into the team when the user edits there;
    // else it becomes their own, without what was the team's.
    let team = loaded.team.filter(|_| loaded.can_edit);
    if loaded.team.is_some() && team.is_none() {
        spec.tools.connections.clear();
    }
    let bases: Vec<Uuid> = if loaded.team.is_none() {
        sqlx::query_scalar(
            "SELECT ak.base_id FROM agent_knowledge_bases ak
             JOIN agents a ON a.id = ak.agent_id WHERE ak.agent_id = $1 AND a.owner_id = $2
               AND a.team_id IS NULL",
        )
        .bind(id)
        .bind(owner)
        .fetch_all(&state.db)
        .await?
    } else {
        Vec::new()
    };
    create_agent_in(
        state,
        owner,
        key,
        team,
        &spec,
        loaded.provider_key_id,
        &bases,
    )
    .await
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

#[cfg(test)]
mod tests {
    #[test]
    fn access_names_its_user_in_one_place() {
        // `access` replaces `$1`: the rule must have no other parameter.
        let rule = super::access("(SELECT user_id FROM me)");
        assert!(!rule.contains('$'), "{rule}");
        assert_eq!(rule.matches("(SELECT user_id FROM me)").count(), 2);
    }
}
