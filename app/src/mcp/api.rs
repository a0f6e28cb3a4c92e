//! MCP server functions: authenticate, validate, call `server`.

use leptos::prelude::*;

use super::McpServerView;
use crate::error::AppError;

pub type AddMcpServerAction = ServerAction<AddMcpServer>;
pub type RefreshMcpServerAction = ServerAction<RefreshMcpServer>;
pub type ReplaceMcpSecretAction = ServerAction<ReplaceMcpSecret>;
pub type DeleteMcpServerAction = ServerAction<DeleteMcpServer>;
pub type SignInMcpServerAction = ServerAction<SignInMcpServer>;

#[server(prefix = "/api", endpoint = "list_mcp_servers")]
pub async fn list_mcp_servers() -> Result<Vec<McpServerView>, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    super::server::list(&ctx::state()?, session.user_id, &session.key).await
}

#[server(prefix = "/api", endpoint = "add_mcp_server")]
pub async fn add_mcp_server(
    name: String,
    url: String,
    auth: Option<String>,
    header_name: Option<String>,
    secret: Option<String>,
) -> Result<McpServerView, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let new = super::NewMcpServer::parse(&super::McpServerInput {
        name,
        url,
        auth: auth.unwrap_or_default(),
        header_name: header_name.unwrap_or_default(),
        secret: secret.unwrap_or_default(),
    })?;
    let state = ctx::state()?;
    let view = super::server::add(&state, session.user_id, &session.key, &new).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::McpServerAdded,
        Some(&view.name),
    )
    .await;
    if view.auth == super::McpAuth::OAuth {
        // Off to the server's sign-in page; it sends the user back to
        // /settings/mcp/oauth/callback.
        let id = ctx::parse_id(&view.id)?;
        if let Ok(url) = super::oauth::start(&state, session.user_id, &session.key, id).await? {
            leptos_axum::redirect(&url);
        }
        return super::server::get(&state, session.user_id, &session.key, id).await;
    }
    Ok(view)
}

/// Starts signing in to an OAuth server: redirects to its sign-in page, or
/// keeps why it cannot as the server's error.
#[server(prefix = "/api", endpoint = "sign_in_mcp_server")]
pub async fn sign_in_mcp_server(id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    let state = ctx::state()?;
    if let Ok(url) = super::oauth::start(&state, session.user_id, &session.key, id).await? {
        leptos_axum::redirect(&url);
    }
    Ok(())
}

#[server(prefix = "/api", endpoint = "refresh_mcp_server")]
pub async fn refresh_mcp_server(id: String) -> Result<McpServerView, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    super::server::refresh(&ctx::state()?, session.user_id, &session.key, id).await
}

#[server(prefix = "/api", endpoint = "replace_mcp_secret")]
pub async fn replace_mcp_secret(id: String, secret: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    let secret = secret.trim();
    if secret.is_empty()
        || secret.len() > super::SECRET_MAX
        || secret.chars().any(|c| c.is_control())
    {
        return Err(AppError::invalid("secret", "Paste the new secret."));
    }
    super::server::replace_secret(&ctx::state()?, session.user_id, &session.key, id, secret).await
}

#[server(prefix = "/api", endpoint = "delete_mcp_server")]
pub async fn delete_mcp_server(id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    let state = ctx::state()?;
    super::server::delete(&state, session.user_id, id).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::McpServerRemoved,
        None,
    )
    .await;
    Ok(())
}

pub type EnableAgentMcpAction = ServerAction<EnableAgentMcp>;
pub type DisableAgentMcpAction = ServerAction<DisableAgentMcp>;

/// Whether the agent is served as an MCP server, and its token.
#[server(prefix = "/api", endpoint = "agent_mcp_access")]
pub async fn agent_mcp_access(agent_id: String) -> Result<super::AgentMcpAccess, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let agent = ctx::parse_id(&agent_id)?;
    super::serve::access(&ctx::state()?, session.user_id, &session.key, agent).await
}

/// Serves the agent as an MCP server with a new token (the old one stops).
#[server(prefix = "/api", endpoint = "enable_agent_mcp")]
pub async fn enable_agent_mcp(agent_id: String) -> Result<super::AgentMcpAccess, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let agent = ctx::parse_id(&agent_id)?;
    super::serve::enable(&ctx::state()?, session.user_id, &session.key, agent).await
}

/// Stops serving the agent: its token stops working.
#[server(prefix = "/api", endpoint = "disable_agent_mcp")]
pub async fn disable_agent_mcp(agent_id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let agent = ctx::parse_id(&agent_id)?;
    super::serve::disable(&ctx::state()?, session.user_id, agent).await
}
