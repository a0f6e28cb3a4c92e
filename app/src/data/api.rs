//! Server functions of the "your data" pages: authenticate, validate, call
//! the slice's server code, map errors.

use leptos::prelude::*;

use super::activity::ActivityPage;
use crate::error::AppError;

/// A page of the signed-in user's activity log, newest first, continuing
/// after the entry `after` when given.
#[server(prefix = "/api", endpoint = "list_activity")]
pub async fn list_activity(after: Option<String>) -> Result<ActivityPage, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let after = ctx::optional_id(after.as_deref())?;
    super::activity::server::list(&ctx::state()?.db, session.user_id, &session.key, after).await
}

pub type SetRetentionAction = ServerAction<SetConversationRetention>;
pub type DeleteAllConversationsAction = ServerAction<DeleteAllConversations>;
pub type DeleteAccountAction = ServerAction<DeleteAccount>;

/// How long the signed-in user's conversations are kept, and what they may
/// choose.
#[server(prefix = "/api", endpoint = "conversation_retention")]
pub async fn conversation_retention() -> Result<super::retention::RetentionView, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    super::retention::server::view(&ctx::state()?, session.user_id).await
}

/// Chooses a shorter conversation retention (`days` empty: the server's).
#[server(prefix = "/api", endpoint = "set_conversation_retention")]
pub async fn set_conversation_retention(days: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let state = ctx::state()?;
    let days = match days.trim() {
        "" => None,
        text => Some(
            text.parse::<u32>()
                .map_err(|_| AppError::invalid("days", "Choose one of the periods offered."))?,
        ),
    };
    super::retention::server::set(&state, session.user_id, days).await?;
    let detail = days.map_or_else(|| "the server's period".to_owned(), |d| format!("{d} days"));
    super::activity::server::note(
        &state,
        &session,
        super::activity::Event::RetentionChanged,
        Some(&detail),
    )
    .await;
    ctx::redirect_plain_post("/settings/data");
    Ok(())
}

/// Deletes every conversation of the signed-in user; `confirm` must be
/// ticked. Returns how many went.
#[server(prefix = "/api", endpoint = "delete_all_conversations")]
pub async fn delete_all_conversations(confirm: Option<String>) -> Result<u64, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    if confirm.is_none() {
        return Err(AppError::invalid(
            "confirm",
            "Tick the box to confirm: deleted conversations cannot be brought back.",
        ));
    }
    let state = ctx::state()?;
    let deleted = crate::chat::server::delete_all(&state, session.user_id).await?;
    super::activity::server::note(
        &state,
        &session,
        super::activity::Event::ConversationsDeleted,
        Some(&format!("{deleted} conversations")),
    )
    .await;
    ctx::redirect_plain_post("/settings/data?conversations_deleted=1");
    Ok(deleted)
}

/// Deletes the signed-in user's account (restorable by signing in within
/// the grace period): with the password, or a two-factor code for an
/// account without one. Signs out everywhere.
#[server(prefix = "/api", endpoint = "delete_account")]
pub async fn delete_account(
    password: Option<String>,
    code: Option<String>,
) -> Result<String, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let state = ctx::state()?;
    let erase_on = super::deletion::server::request(
        &state,
        &session,
        password.as_deref().unwrap_or_default(),
        code.as_deref().unwrap_or_default(),
    )
    .await?;
    ctx::set_cookie(&crate::auth::server::clear_session_cookie(&state.settings))?;
    let date = erase_on.format("%Y-%m-%d").to_string();
    leptos_axum::redirect(&format!("/sign-in?deleted={date}"));
    Ok(date)
}

pub type RequestExportAction = ServerAction<RequestExport>;

/// Asks for an export of everything (built in the background; the data
/// page shows its progress, and a mail says when it is ready).
#[server(prefix = "/api", endpoint = "request_export")]
pub async fn request_export() -> Result<String, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = super::export::server::request(&ctx::state()?, &session).await?;
    ctx::redirect_plain_post("/settings/data");
    Ok(id.to_string())
}

/// The signed-in user's exports on offer or being built.
#[server(prefix = "/api", endpoint = "list_exports")]
pub async fn list_exports() -> Result<Vec<super::export::ExportView>, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    super::export::server::list(&ctx::state()?, session.user_id).await
}

/// Every kind of data held about the signed-in user, with counts and dates.
#[server(prefix = "/api", endpoint = "data_summary")]
pub async fn data_summary() -> Result<Vec<super::summary::Holding>, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    super::summary::server::holdings(&ctx::state()?, session.user_id, &session.key).await
}

/// A policy page (`kind` "privacy" or "cookies"): `version`, or the one in
/// force. Public.
#[server(prefix = "/api", endpoint = "policy_page")]
pub async fn policy_page(
    kind: String,
    version: Option<String>,
) -> Result<super::policies::PolicyPage, AppError> {
    use crate::ctx;
    let kind = super::policies::PolicyKind::parse(&kind).ok_or(AppError::NotFound)?;
    let version = match version.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(v) => Some(v.parse::<i32>().map_err(|_| AppError::NotFound)?),
    };
    super::policies::server::page(&ctx::state()?.db, kind, version).await
}

pub type AcknowledgePolicyAction = ServerAction<AcknowledgePolicy>;
pub type SetMarketingMailAction = ServerAction<SetMarketingMail>;

/// Policy changes the signed-in user has not acknowledged (none when
/// signed out).
#[server(prefix = "/api", endpoint = "policy_notices")]
pub async fn policy_notices() -> Result<Vec<super::policies::PolicyNotice>, AppError> {
    use crate::ctx;
    let Some(session) = ctx::session() else {
        return Ok(Vec::new());
    };
    super::policies::server::notices(&ctx::state()?.db, session.user_id).await
}

/// "I have read it" on a policy change notice.
#[server(prefix = "/api", endpoint = "acknowledge_policy")]
pub async fn acknowledge_policy(kind: String, version: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let kind = super::policies::PolicyKind::parse(&kind).ok_or(AppError::NotFound)?;
    let version: i32 = version.trim().parse().map_err(|_| AppError::NotFound)?;
    super::policies::server::acknowledge(&ctx::state()?, &session, kind, version).await?;
    ctx::redirect_plain_post("/dashboard");
    Ok(())
}

/// The signed-in user's marketing mail choice and consent records.
#[server(prefix = "/api", endpoint = "consent_records")]
pub async fn consent_records() -> Result<(bool, Vec<super::policies::ConsentView>), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let db = &ctx::state()?.db;
    Ok((
        super::policies::server::marketing(db, session.user_id).await?,
        super::policies::server::consents(db, session.user_id).await?,
    ))
}

/// Turns marketing mail on (`on` present) or off.
#[server(prefix = "/api", endpoint = "set_marketing_mail")]
pub async fn set_marketing_mail(on: Option<String>) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    super::policies::server::set_marketing(&ctx::state()?, &session, on.is_some()).await?;
    ctx::redirect_plain_post("/settings/data");
    Ok(())
}
