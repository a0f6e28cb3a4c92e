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
use super::{AgentDetail, AgentSummary, KeyTest, ProviderKeyView};
use crate::error::AppError;

pub type CreateAgentAction = ServerAction<CreateAgent>;
pub type UpdateAgentAction = ServerAction<UpdateAgent>;
pub type DeleteAgentAction = ServerAction<DeleteAgent>;
pub type DuplicateAgentAction = ServerAction<DuplicateAgent>;
pub type ImportAgentAction = ServerAction<ImportAgent>;
pub type AddKeyAction = ServerAction<AddProviderKey>;
pub type ReplaceKeyAction = ServerAction<ReplaceProviderKey>;
pub type DeleteKeyAction = ServerAction<DeleteProviderKey>;
pub type TestKeyAction = ServerAction<TestProviderKey>;

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
    }
}

#[cfg(feature = "ssr")]
fn chosen_key(value: Option<String>) -> Result<Option<uuid::Uuid>, AppError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(id) => super::server::parse_id(id).map(Some),
    }
}

#[server(prefix = "/api", endpoint = "list_agents")]
pub async fn list_agents(query: Option<String>) -> Result<Vec<AgentSummary>, AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    super::server::list_agents(
        &request::state()?,
        session.user_id,
        &session.key,
        query.as_deref().unwrap_or(""),
    )
    .await
}

#[server(prefix = "/api", endpoint = "get_agent")]
pub async fn get_agent(id: String) -> Result<AgentDetail, AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let id = super::server::parse_id(&id)?;
    super::server::get_agent(&request::state()?, session.user_id, &session.key, id).await
}

#[server(prefix = "/api", endpoint = "create_agent")]
pub async fn create_agent(
    name: String,
    description: String,
    system_prompt: String,
    provider: String,
    model: String,
    base_url: String,
    temperature: String,
    top_p: String,
    max_output_tokens: String,
    starter_1: Option<String>,
    starter_2: Option<String>,
    starter_3: Option<String>,
    starter_4: Option<String>,
    avatar: String,
    provider_key_id: Option<String>,
) -> Result<(), AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let form = agent_form(
        name,
        description,
        system_prompt,
        provider,
        model,
        base_url,
        temperature,
        top_p,
        max_output_tokens,
        [starter_1, starter_2, starter_3, starter_4],
        avatar,
    );
    let spec = super::domain::AgentSpec::parse(&form)?;
    let key = chosen_key(provider_key_id)?;
    let id = super::server::create_agent(
        &request::state()?,
        session.user_id,
        &session.key,
        &spec,
        key,
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
    base_url: String,
    temperature: String,
    top_p: String,
    max_output_tokens: String,
    starter_1: Option<String>,
    starter_2: Option<String>,
    starter_3: Option<String>,
    starter_4: Option<String>,
    avatar: String,
    provider_key_id: Option<String>,
) -> Result<(), AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let id = super::server::parse_id(&id)?;
    let form = agent_form(
        name,
        description,
        system_prompt,
        provider,
        model,
        base_url,
        temperature,
        top_p,
        max_output_tokens,
        [starter_1, starter_2, starter_3, starter_4],
        avatar,
    );
    let spec = super::domain::AgentSpec::parse(&form)?;
    let key = chosen_key(provider_key_id)?;
    super::server::update_agent(
        &request::state()?,
        session.user_id,
        &session.key,
        id,
        &spec,
        key,
    )
    .await?;
    leptos_axum::redirect(&format!("/agents/{id}"));
    Ok(())
}

/// Deletes an agent; the form must carry the ticked confirmation box.
#[server(prefix = "/api", endpoint = "delete_agent")]
pub async fn delete_agent(id: String, confirm: Option<String>) -> Result<(), AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let id = super::server::parse_id(&id)?;
    if confirm.is_none() {
        return Err(AppError::invalid(
            "confirm",
            "Tick the box to confirm the deletion.",
        ));
    }
    super::server::delete_agent(&request::state()?, session.user_id, id).await?;
    leptos_axum::redirect("/agents");
    Ok(())
}

#[server(prefix = "/api", endpoint = "duplicate_agent")]
pub async fn duplicate_agent(id: String) -> Result<(), AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let id = super::server::parse_id(&id)?;
    let copy =
        super::server::duplicate_agent(&request::state()?, session.user_id, &session.key, id)
            .await?;
    leptos_axum::redirect(&format!("/agents/{copy}"));
    Ok(())
}

#[server(prefix = "/api", endpoint = "import_agent")]
pub async fn import_agent(json: String) -> Result<(), AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let id = super::server::import_agent(&request::state()?, session.user_id, &session.key, &json)
        .await?;
    leptos_axum::redirect(&format!("/agents/{id}"));
    Ok(())
}

#[server(prefix = "/api", endpoint = "list_provider_keys")]
pub async fn list_provider_keys() -> Result<Vec<ProviderKeyView>, AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    super::server::list_keys(&request::state()?, session.user_id, &session.key).await
}

#[server(prefix = "/api", endpoint = "add_provider_key")]
pub async fn add_provider_key(
    provider: String,
    label: String,
    secret: String,
    base_url: Option<String>,
) -> Result<(), AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let (provider, label, secret, base_url) = super::domain::validate_key_input(
        &provider,
        &label,
        &secret,
        base_url.as_deref().unwrap_or(""),
    )?;
    super::server::add_key(
        &request::state()?,
        session.user_id,
        &session.key,
        provider,
        &label,
        &secret,
        base_url.as_deref(),
    )
    .await?;
    Ok(())
}

#[server(prefix = "/api", endpoint = "replace_provider_key")]
pub async fn replace_provider_key(id: String, secret: String) -> Result<(), AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let id = super::server::parse_id(&id)?;
    let secret = secret.trim();
    if secret.is_empty()
        || secret.len() > super::domain::API_KEY_MAX
        || secret.contains(char::is_whitespace)
    {
        return Err(AppError::invalid("secret", "Paste the new API key."));
    }
    super::server::replace_key(
        &request::state()?,
        session.user_id,
        &session.key,
        id,
        secret,
    )
    .await
}

#[server(prefix = "/api", endpoint = "delete_provider_key")]
pub async fn delete_provider_key(id: String) -> Result<(), AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let id = super::server::parse_id(&id)?;
    super::server::delete_key(&request::state()?, session.user_id, id).await
}

#[server(prefix = "/api", endpoint = "test_provider_key")]
pub async fn test_provider_key(id: String) -> Result<KeyTest, AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let id = super::server::parse_id(&id)?;
    super::server::test_key(&request::state()?, session.user_id, &session.key, id).await
}
