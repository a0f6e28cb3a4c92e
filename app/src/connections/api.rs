//! Connection server functions: authenticate, validate, call `server`.
//!
//! `add_connection` takes one argument per form field so the same form posts
//! to it with or without JavaScript; the `#[server]` macro does not pass a
//! per-function `allow` on, hence the module's.
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;

use super::{ConnectionTest, ConnectionView};
use crate::error::AppError;

pub type AddConnectionAction = ServerAction<AddConnection>;
pub type ReplaceConnectionAction = ServerAction<ReplaceConnection>;
pub type DeleteConnectionAction = ServerAction<DeleteConnection>;
pub type TestConnectionAction = ServerAction<TestConnection>;

#[server(prefix = "/api", endpoint = "list_connections")]
pub async fn list_connections() -> Result<Vec<ConnectionView>, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    super::server::list(&ctx::state()?, session.user_id, &session.key).await
}

#[server(prefix = "/api", endpoint = "add_connection")]
pub async fn add_connection(
    kind: String,
    label: String,
    secret: String,
    smtp_host: Option<String>,
    smtp_port: Option<String>,
    smtp_username: Option<String>,
    smtp_from: Option<String>,
    smtp_security: Option<String>,
    header_name: Option<String>,
    header_host: Option<String>,
    // The team it is added for; absent or empty: the user's own.
    team: Option<String>,
) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let team = ctx::optional_id(team.as_deref())?;
    let input = super::ConnectionInput {
        kind,
        label,
        secret,
        smtp_host: smtp_host.unwrap_or_default(),
        smtp_port: smtp_port.unwrap_or_default(),
        smtp_username: smtp_username.unwrap_or_default(),
        smtp_from: smtp_from.unwrap_or_default(),
        smtp_security: smtp_security.unwrap_or_default(),
        header_name: header_name.unwrap_or_default(),
        header_host: header_host.unwrap_or_default(),
    };
    let new = super::NewConnection::parse(&input)?;
    let state = ctx::state()?;
    super::server::add(&state, session.user_id, &session.key, team, &new).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::ConnectionAdded,
        Some(&new.label),
    )
    .await;
    Ok(())
}

#[server(prefix = "/api", endpoint = "replace_connection")]
pub async fn replace_connection(id: String, secret: String) -> Result<(), AppError> {
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
    let state = ctx::state()?;
    super::server::replace_secret(&state, session.user_id, &session.key, id, secret).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::ConnectionReplaced,
        None,
    )
    .await;
    Ok(())
}

#[server(prefix = "/api", endpoint = "delete_connection")]
pub async fn delete_connection(id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    let state = ctx::state()?;
    super::server::delete(&state, session.user_id, id).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::ConnectionRemoved,
        None,
    )
    .await;
    Ok(())
}

#[server(prefix = "/api", endpoint = "test_connection")]
pub async fn test_connection(id: String) -> Result<ConnectionTest, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    let state = ctx::state()?;
    let tested = super::server::test(&state, session.user_id, &session.key, id).await?;
    crate::data::activity::server::note(
        &state,
        &session,
        crate::data::activity::Event::ConnectionTested,
        None,
    )
    .await;
    Ok(tested)
}
