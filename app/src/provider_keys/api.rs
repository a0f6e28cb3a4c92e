//! Provider key server functions: authenticate, validate, call `server`.

use leptos::prelude::*;

use super::{KeyTest, ProviderKeyView};
use crate::error::AppError;

pub type AddKeyAction = ServerAction<AddProviderKey>;
pub type ReplaceKeyAction = ServerAction<ReplaceProviderKey>;
pub type DeleteKeyAction = ServerAction<DeleteProviderKey>;
pub type TestKeyAction = ServerAction<TestProviderKey>;

#[server(prefix = "/api", endpoint = "list_provider_keys")]
pub async fn list_provider_keys() -> Result<Vec<ProviderKeyView>, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    super::server::list_keys(&ctx::state()?, session.user_id, &session.key).await
}

#[server(prefix = "/api", endpoint = "add_provider_key")]
pub async fn add_provider_key(
    provider: String,
    label: String,
    secret: String,
    base_url: Option<String>,
) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let (provider, label, secret, base_url) = super::validate_key_input(
        &provider,
        &label,
        &secret,
        base_url.as_deref().unwrap_or(""),
    )?;
    let state = ctx::state()?;
    super::server::add_key(
        &state,
        session.user_id,
        &session.key,
        provider,
        &label,
        &secret,
        base_url.as_deref(),
    )
    .await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::ProviderKeyAdded,
        Some(&label),
    )
    .await;
    Ok(())
}

#[server(prefix = "/api", endpoint = "replace_provider_key")]
pub async fn replace_provider_key(id: String, secret: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    let secret = secret.trim();
    if secret.is_empty()
        || secret.len() > super::API_KEY_MAX
        || secret.contains(char::is_whitespace)
    {
        return Err(AppError::invalid("secret", "Paste the new API key."));
    }
    let state = ctx::state()?;
    super::server::replace_key(&state, session.user_id, &session.key, id, secret).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::ProviderKeyReplaced,
        None,
    )
    .await;
    Ok(())
}

#[server(prefix = "/api", endpoint = "delete_provider_key")]
pub async fn delete_provider_key(id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    let state = ctx::state()?;
    super::server::delete_key(&state, session.user_id, id).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::ProviderKeyRemoved,
        None,
    )
    .await;
    Ok(())
}

#[server(prefix = "/api", endpoint = "test_provider_key")]
pub async fn test_provider_key(id: String) -> Result<KeyTest, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    let state = ctx::state()?;
    let tested = super::server::test_key(&state, session.user_id, &session.key, id).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::ProviderKeyTested,
        None,
    )
    .await;
    Ok(tested)
}
