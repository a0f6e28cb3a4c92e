//! API key server functions.

use leptos::prelude::*;

use super::{ApiKeyView, CreatedKey};
use crate::error::AppError;

#[server(prefix = "/api", endpoint = "list_api_keys")]
pub async fn list_api_keys() -> Result<Vec<ApiKeyView>, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    super::server::list(&ctx::state()?, session.user_id, &session.key).await
}

/// Makes a key; the answer holds its secret, shown this once. `expires`:
/// days (`30`, `90`, `365`) or empty for never.
#[server(prefix = "/api", endpoint = "create_api_key")]
pub async fn create_api_key(
    name: String,
    scopes: Option<Vec<String>>,
    expires: Option<String>,
) -> Result<CreatedKey, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let days = match expires.as_deref().map(str::trim) {
        None | Some("") | Some("never") => None,
        Some(days) => Some(
            days.parse::<u32>()
                .ok()
                .filter(|d| (1..=3650).contains(d))
                .ok_or_else(|| AppError::invalid("expires", "Choose when the key expires."))?,
        ),
    };
    let state = ctx::state()?;
    let created = super::server::create(
        &state,
        session.user_id,
        &session.key,
        &name,
        &scopes.unwrap_or_default(),
        days,
    )
    .await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::ApiKeyCreated,
        Some(&created.key.name),
    )
    .await;
    Ok(created)
}

#[server(prefix = "/api", endpoint = "revoke_api_key")]
pub async fn revoke_api_key(id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&id)?;
    let state = ctx::state()?;
    let name = super::server::revoke(&state, session.user_id, &session.key, id).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::ApiKeyRevoked,
        Some(&name),
    )
    .await;
    Ok(())
}
