//! Telegram server functions: authenticate, parse, call `server`. Each one
//! works as a plain form post too (back to the agent's page).

use leptos::prelude::*;

use super::ChannelView;
use crate::error::AppError;

pub type ConnectTelegramAction = ServerAction<ConnectTelegram>;
pub type DisconnectTelegramAction = ServerAction<DisconnectTelegram>;
pub type ResetTelegramAccessAction = ServerAction<ResetTelegramAccess>;

#[server(prefix = "/api", endpoint = "telegram_channel")]
pub async fn telegram_channel(agent_id: String) -> Result<Option<ChannelView>, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let agent = ctx::parse_id(&agent_id)?;
    super::server::channel(&ctx::state()?, session.user_id, &session.key, agent).await
}

/// Connects a bot (its token from @BotFather) to the agent.
#[server(prefix = "/api", endpoint = "connect_telegram")]
pub async fn connect_telegram(agent_id: String, token: String) -> Result<ChannelView, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let agent = ctx::parse_id(&agent_id)?;
    let state = ctx::state()?;
    let view = super::server::connect(&state, session.user_id, &session.key, agent, &token).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::TelegramBotConnected,
        Some(&format!("@{}", view.bot_username)),
    )
    .await;
    ctx::redirect_plain_post(&format!("/agents/{agent}#telegram"));
    Ok(view)
}

#[server(prefix = "/api", endpoint = "disconnect_telegram")]
pub async fn disconnect_telegram(agent_id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let agent = ctx::parse_id(&agent_id)?;
    let state = ctx::state()?;
    super::server::disconnect(&state, session.user_id, &session.key, agent).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::TelegramBotDisconnected,
        None,
    )
    .await;
    ctx::redirect_plain_post(&format!("/agents/{agent}#telegram"));
    Ok(())
}

/// Lets nobody in any more, with a new code to share.
#[server(prefix = "/api", endpoint = "reset_telegram_access")]
pub async fn reset_telegram_access(agent_id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let agent = ctx::parse_id(&agent_id)?;
    let state = ctx::state()?;
    super::server::reset_access(&state, session.user_id, &session.key, agent).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::TelegramAccessReset,
        None,
    )
    .await;
    ctx::redirect_plain_post(&format!("/agents/{agent}#telegram"));
    Ok(())
}
