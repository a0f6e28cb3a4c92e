//! Chat server functions. The reply itself streams over the SSE route
//! `GET /api/chat/stream/{message_id}` (server crate), which checks the owner.

use leptos::prelude::*;

use super::{ChatList, ConversationSummary, ConversationView, FileView, Sent};
use crate::error::AppError;

/// Sends a message to an agent (in a new conversation when none is given)
/// and starts the reply. `files` are the ids of files attached for it
/// (`POST /chat/files`).
#[server(prefix = "/api", endpoint = "send_message")]
pub async fn send_message(
    agent_id: String,
    conversation_id: Option<String>,
    message: String,
    files: Option<Vec<String>>,
) -> Result<Sent, AppError> {
    use crate::ctx;
    // The session middleware leaves this request's session unread (when a
    // cookie came with it): the send reads it with everything else it
    // needs, in one round trip before the provider is asked.
    let unread = ctx::unread_session().ok_or(AppError::Unauthorized)?;
    let state = ctx::state()?;
    let ids = (|| {
        Ok::<_, AppError>((
            ctx::parse_id(&agent_id)?,
            ctx::optional_id(conversation_id.as_deref())?,
            file_ids(files.unwrap_or_default().iter().map(String::as_str))?,
        ))
    })();
    let (agent, conversation, files) = super::server::who_asks_first(&state, &unread, ids).await?;
    let sent =
        super::server::send_signed_in(&state, &unread, agent, conversation, &message, &files)
            .await?;
    // Without JavaScript, the browser goes to the conversation (a first
    // message made it), not back to the page it posted from.
    ctx::redirect_plain_post(&format!("/agents/{agent}/chat?c={}", sent.conversation_id));
    Ok(sent)
}

/// File ids from a form or a query (`a,b,c`): another user's or a made-up
/// one is simply not found later.
#[cfg(feature = "ssr")]
pub fn file_ids<'a>(ids: impl Iterator<Item = &'a str>) -> Result<Vec<uuid::Uuid>, AppError> {
    ids.map(str::trim)
        .filter(|id| !id.is_empty())
        .map(crate::ctx::parse_id)
        .collect()
}

/// The files attached for the next message and not sent yet, by id
/// (`ids` as in the chat page's query: `a,b,c`).
#[server(prefix = "/api", endpoint = "unsent_files")]
pub async fn unsent_files(ids: String) -> Result<Vec<FileView>, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let ids = file_ids(ids.split(','))?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    super::files::unsent(&ctx::state()?.db, session.user_id, &session.key, &ids).await
}

/// Takes back a file attached for a message that was not sent.
#[server(prefix = "/api", endpoint = "remove_unsent_file")]
pub async fn remove_unsent_file(id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&id)?;
    super::files::remove_unsent(&ctx::state()?.db, session.user_id, id).await
}

#[server(prefix = "/api", endpoint = "stop_reply")]
pub async fn stop_reply(message_id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&message_id)?;
    super::server::stop(&ctx::state()?, session.user_id, &session.key, id).await
}

#[server(prefix = "/api", endpoint = "list_conversations")]
pub async fn list_conversations(agent_id: String) -> Result<Vec<ConversationSummary>, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let agent = ctx::parse_id(&agent_id)?;
    super::server::list_conversations(&ctx::state()?, session.user_id, &session.key, agent).await
}

/// The user's conversations across agents, newest first: the sidebar's
/// (`all` false: the first 50) or the "All chats" page's (the first 1,000).
/// `query` keeps those whose title holds it.
#[server(prefix = "/api", endpoint = "list_chats")]
pub async fn list_chats(query: Option<String>, all: Option<bool>) -> Result<ChatList, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let limit = if all.unwrap_or(false) {
        super::server::ALL_CHATS
    } else {
        super::server::SIDEBAR_CHATS
    };
    super::server::chat_list(
        &ctx::state()?,
        session.user_id,
        &session.key,
        query.as_deref().unwrap_or_default(),
        limit,
    )
    .await
}

#[server(prefix = "/api", endpoint = "get_conversation")]
pub async fn get_conversation(
    id: String,
    before: Option<String>,
) -> Result<ConversationView, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&id)?;
    let before = ctx::optional_id(before.as_deref())?;
    super::server::get_conversation(&ctx::state()?, session.user_id, &session.key, id, before).await
}

#[server(prefix = "/api", endpoint = "rename_conversation")]
pub async fn rename_conversation(id: String, title: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&id)?;
    super::server::rename(&ctx::state()?, session.user_id, &session.key, id, &title).await
}

#[server(prefix = "/api", endpoint = "delete_conversation")]
pub async fn delete_conversation(id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&id)?;
    let agent = super::server::delete(&ctx::state()?, session.user_id, id).await?;
    // The app (the sidebar's undo, the chat page) moves on by itself.
    ctx::redirect_plain_post(&format!("/agents/{agent}/chat"));
    Ok(())
}

/// Writes the last reply of a conversation again.
#[server(prefix = "/api", endpoint = "regenerate_reply")]
pub async fn regenerate_reply(conversation_id: String) -> Result<Sent, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&conversation_id)?;
    super::server::regenerate(&ctx::state()?, session.user_id, &session.key, id).await
}

/// Replaces one of the user's messages and asks again from there.
#[server(prefix = "/api", endpoint = "edit_message")]
pub async fn edit_message(message_id: String, message: String) -> Result<Sent, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&message_id)?;
    super::server::edit_and_resend(&ctx::state()?, session.user_id, &session.key, id, &message)
        .await
}

/// Approves or denies a call of an "ask first" tool in a paused reply.
/// `decision` is `approve` or `deny` (the button pressed).
#[server(prefix = "/api", endpoint = "decide_tool_call")]
pub async fn decide_tool_call(
    message_id: String,
    call_id: String,
    decision: String,
) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&message_id)?;
    let approve = match decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return Err(AppError::BadRequest),
    };
    super::server::decide(
        &ctx::state()?,
        session.user_id,
        &session.key,
        id,
        &call_id,
        approve,
    )
    .await
}
