//! Chat server functions. The reply itself streams over the SSE route
//! `GET /api/chat/stream/{message_id}` (server crate), which checks the owner.

use leptos::prelude::*;

use super::{ConversationSummary, ConversationView, Sent};
use crate::error::AppError;

#[cfg(feature = "ssr")]
fn optional_id(value: Option<String>) -> Result<Option<uuid::Uuid>, AppError> {
    match value.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(id) => crate::agents::server::parse_id(id).map(Some),
    }
}

/// Sends a message to an agent (in a new conversation when none is given)
/// and starts the reply.
#[server(prefix = "/api", endpoint = "send_message")]
pub async fn send_message(
    agent_id: String,
    conversation_id: Option<String>,
    message: String,
) -> Result<Sent, AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let agent = crate::agents::server::parse_id(&agent_id)?;
    let conversation = optional_id(conversation_id)?;
    super::server::send(
        &request::state()?,
        session.user_id,
        &session.key,
        agent,
        conversation,
        &message,
    )
    .await
}

#[server(prefix = "/api", endpoint = "stop_reply")]
pub async fn stop_reply(message_id: String) -> Result<(), AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let id = crate::agents::server::parse_id(&message_id)?;
    super::server::stop(&request::state()?, session.user_id, &session.key, id).await
}

#[server(prefix = "/api", endpoint = "list_conversations")]
pub async fn list_conversations(agent_id: String) -> Result<Vec<ConversationSummary>, AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let agent = crate::agents::server::parse_id(&agent_id)?;
    super::server::list_conversations(&request::state()?, session.user_id, &session.key, agent)
        .await
}

#[server(prefix = "/api", endpoint = "get_conversation")]
pub async fn get_conversation(
    id: String,
    before: Option<String>,
) -> Result<ConversationView, AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let id = crate::agents::server::parse_id(&id)?;
    let before = optional_id(before)?;
    super::server::get_conversation(
        &request::state()?,
        session.user_id,
        &session.key,
        id,
        before,
    )
    .await
}

#[server(prefix = "/api", endpoint = "rename_conversation")]
pub async fn rename_conversation(id: String, title: String) -> Result<(), AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let id = crate::agents::server::parse_id(&id)?;
    super::server::rename(
        &request::state()?,
        session.user_id,
        &session.key,
        id,
        &title,
    )
    .await
}

#[server(prefix = "/api", endpoint = "delete_conversation")]
pub async fn delete_conversation(id: String) -> Result<(), AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let id = crate::agents::server::parse_id(&id)?;
    let agent = super::server::delete(&request::state()?, session.user_id, id).await?;
    leptos_axum::redirect(&format!("/agents/{agent}/chat"));
    Ok(())
}

/// Writes the last reply of a conversation again.
#[server(prefix = "/api", endpoint = "regenerate_reply")]
pub async fn regenerate_reply(conversation_id: String) -> Result<Sent, AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let id = crate::agents::server::parse_id(&conversation_id)?;
    super::server::regenerate(&request::state()?, session.user_id, &session.key, id).await
}

/// Replaces one of the user's messages and asks again from there.
#[server(prefix = "/api", endpoint = "edit_message")]
pub async fn edit_message(message_id: String, message: String) -> Result<Sent, AppError> {
    use crate::platform::request;
    let session = request::require_session()?;
    let id = crate::agents::server::parse_id(&message_id)?;
    super::server::edit_and_resend(
        &request::state()?,
        session.user_id,
        &session.key,
        id,
        &message,
    )
    .await
}
