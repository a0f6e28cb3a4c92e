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
