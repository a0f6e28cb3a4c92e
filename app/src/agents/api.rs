//! Agent and provider-key server functions: authenticate, parse, call
//! `server`, redirect. Each one works as a plain form post too.
//!
//! `create_agent`/`update_agent` take one argument per form field, so that the
//! same server-rendered form posts to them with or without JavaScript; hence
//! the allowance below (the `#[server]` macro does not pass a per-function
//! `allow` on to the function it generates).
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;

#[cfg(feature = "ssr")]
use super::domain::AgentForm;
use super::{AgentDetail, AgentSummary};
use crate::error::AppError;

pub type CreateAgentAction = ServerAction<CreateAgent>;
pub type UpdateAgentAction = ServerAction<UpdateAgent>;
pub type DeleteAgentAction = ServerAction<DeleteAgent>;
pub type DuplicateAgentAction = ServerAction<DuplicateAgent>;
pub type ImportAgentAction = ServerAction<ImportAgent>;

/// The form fields of an agent, flat as a form posts them.
#[cfg(feature = "ssr")]
fn agent_form(
    name: String,
    description: String,
    system_prompt: String,
    provider: String,
    model: String,
    base_url: String,
    temperature: String,
    top_p: String,
    max_output_tokens: String,
    starters: [Option<String>; 4],
    avatar: String,
    tools: ToolFields,
) -> AgentForm {
    AgentForm {
        name,
        description,
        system_prompt,
        provider,
        model,
        base_url,
        temperature,
        top_p,
        max_output_tokens,
        starters: starters.into_iter().flatten().collect(),
        avatar,
        tools: tools.config(),
    }
}

/// The form's Tools section: a checkbox per tool (`tools[]`), one per tool
/// that asks first (`ask_first[]`), and the step limit.
#[cfg(feature = "ssr")]
struct ToolFields {
    tools: Option<Vec<String>>,
    ask_first: Option<Vec<String>>,
    step_limit: Option<String>,
    allowed_hosts: Option<String>,
    connections: Option<std::collections::BTreeMap<String, String>>,
}

#[cfg(feature = "ssr")]
impl ToolFields {
    fn config(self) -> crate::tools::ToolConfig {
        let step_limit = match self.step_limit.as_deref().map(str::trim) {
            None | Some("") => crate::tools::DEFAULT_STEP_LIMIT,
            // Not a number: 0, which the rules refuse with their message.
            Some(n) => n.parse().unwrap_or(0),
        };
        crate::tools::ToolConfig {
            enabled: self.tools.unwrap_or_default(),
            ask_first: self.ask_first.unwrap_or_default(),
            step_limit,
            allowed_hosts: self
                .allowed_hosts
                .unwrap_or_default()
                .split([',', ' ', '\n'])
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            // "" is "automatic": the newest connection of that kind.
            connections: self
                .connections
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, id)| !id.trim().is_empty())
                .collect(),
        }
    }
}

/// The form's Knowledge section: a checkbox per base (`knowledge[]`); none
/// ticked is none.
#[cfg(feature = "ssr")]
fn knowledge_ids(knowledge: Option<Vec<String>>) -> Result<Vec<uuid::Uuid>, AppError> {
    knowledge
        .unwrap_or_default()
        .iter()
        .map(|id| crate::ctx::parse_id(id))
        .collect()
}

#[server(prefix = "/api", endpoint = "list_agents")]
pub async fn list_agents(query: Option<String>) -> Result<Vec<AgentSummary>, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    super::server::list_agents(
        &ctx::state()?,
        session.user_id,
        &session.key,
        query.as_deref().unwrap_or(""),
    )
    .await
}

#[server(prefix = "/api", endpoint = "get_agent")]
pub async fn get_agent(id: String) -> Result<AgentDetail, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&id)?;
    super::server::get_agent(&ctx::state()?, session.user_id, &session.key, id).await
}

#[server(prefix = "/api", endpoint = "create_agent")]
pub async fn create_agent(
    name: String,
    description: String,
    system_prompt: String,
    provider: String,
    model: String,
    // Absent when the form hides it (only OpenAI-compatible servers take one).
    base_url: Option<String>,
    temperature: String,
    top_p: String,
    max_output_tokens: String,
    starter_1: Option<String>,
    starter_2: Option<String>,
    starter_3: Option<String>,
    starter_4: Option<String>,
    avatar: String,
    provider_key_id: Option<String>,
    tools: Option<Vec<String>>,
    ask_first: Option<Vec<String>>,
    step_limit: Option<String>,
    allowed_hosts: Option<String>,
    connections: Option<std::collections::BTreeMap<String, String>>,
    knowledge: Option<Vec<String>>,
    // The team it is made in; absent or empty: the user's own.
    team: Option<String>,
) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let form = agent_form(
        name,
        description,
        system_prompt,
        provider,
        model,
        base_url.unwrap_or_default(),
        temperature,
        top_p,
        max_output_tokens,
        [starter_1, starter_2, starter_3, starter_4],
        avatar,
        ToolFields {
            tools,
            ask_first,
            step_limit,
            allowed_hosts,
            connections,
        },
    );
    let spec = super::domain::AgentSpec::parse(&form)?;
    let key = ctx::optional_id(provider_key_id.as_deref())?;
    let knowledge = knowledge_ids(knowledge)?;
    let team = ctx::optional_id(team.as_deref())?;
    let id = super::server::create_agent_in(
        &ctx::state()?,
        session.user_id,
        &session.key,
        team,
        &spec,
        key,
        &knowledge,
    )
    .await?;
    leptos_axum::redirect(&format!("/agents/{id}"));
    Ok(())
}

#[server(prefix = "/api", endpoint = "update_agent")]
pub async fn update_agent(
    id: String,
    name: String,
    description: String,
    system_prompt: String,
    provider: String,
    model: String,
    // Absent when the form hides it (only OpenAI-compatible servers take one).
    base_url: Option<String>,
    temperature: String,
    top_p: String,
    max_output_tokens: String,
    starter_1: Option<String>,
    starter_2: Option<String>,
    starter_3: Option<String>,
    starter_4: Option<String>,
    avatar: String,
    provider_key_id: Option<String>,
    tools: Option<Vec<String>>,
    ask_first: Option<Vec<String>>,
    step_limit: Option<String>,
    allowed_hosts: Option<String>,
    connections: Option<std::collections::BTreeMap<String, String>>,
    knowledge: Option<Vec<String>>,
) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&id)?;
    let form = agent_form(
        name,
        description,
        system_prompt,
        provider,
        model,
        base_url.unwrap_or_default(),
        temperature,
        top_p,
        max_output_tokens,
        [starter_1, starter_2, starter_3, starter_4],
        avatar,
        ToolFields {
            tools,
            ask_first,
            step_limit,
            allowed_hosts,
            connections,
        },
    );
    let spec = super::domain::AgentSpec::parse(&form)?;
    let key = ctx::optional_id(provider_key_id.as_deref())?;
    let knowledge = knowledge_ids(knowledge)?;
    super::server::update_agent(
        &ctx::state()?,
        session.user_id,
        &session.key,
        id,
        &spec,
        key,
        &knowledge,
    )
    .await?;
    leptos_axum::redirect(&format!("/agents/{id}"));
    Ok(())
}

/// Deletes an agent; the form must carry the ticked confirmation box.
#[server(prefix = "/api", endpoint = "delete_agent")]
pub async fn delete_agent(id: String, confirm: Option<String>) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&id)?;
    if confirm.is_none() {
        return Err(AppError::invalid(
            "confirm",
            "Tick the box to confirm the deletion.",
        ));
    }
    super::server::delete_agent(&ctx::state()?, session.user_id, id).await?;
    leptos_axum::redirect("/agents");
    Ok(())
}

#[server(prefix = "/api", endpoint = "duplicate_agent")]
pub async fn duplicate_agent(id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&id)?;
    let copy =
        super::server::duplicate_agent(&ctx::state()?, session.user_id, &session.key, id).await?;
    leptos_axum::redirect(&format!("/agents/{copy}"));
    Ok(())
}

#[server(prefix = "/api", endpoint = "import_agent")]
pub async fn import_agent(json: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id =
        super::server::import_agent(&ctx::state()?, session.user_id, &session.key, &json).await?;
    leptos_axum::redirect(&format!("/agents/{id}"));
    Ok(())
}
