//! API key server functions.

use leptos::prelude::*;

use super::{ApiKeyView, CreatedKey};

pub type CreateApiKeyAction = ServerAction<CreateApiKey>;
pub type RevokeApiKeyAction = ServerAction<RevokeApiKey>;
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
    super::server::create_from_form(
        &ctx::state()?,
        &session,
        &name,
        &scopes.unwrap_or_default(),
        expires.as_deref(),
    )
    .await
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
