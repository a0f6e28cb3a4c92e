//! Administrator server functions: each checks, afresh, that the caller is
//! an administrator ("Not found." for anyone else).

use leptos::prelude::*;

use super::{AdminUser, Overview};
use crate::error::AppError;

pub type DisableUserAction = ServerAction<AdminDisableUser>;
pub type EnableUserAction = ServerAction<AdminEnableUser>;
pub type DeleteUserAction = ServerAction<AdminDeleteUser>;
pub type SetPriceAction = ServerAction<AdminSetPrice>;

#[cfg(feature = "ssr")]
async fn admin() -> Result<(crate::state::AppState, crate::auth::server::AuthSession), AppError> {
    let session = crate::ctx::require_session()?;
    let state = crate::ctx::state()?;
    super::server::require_admin(&state, &session).await?;
    Ok((state, session))
}

#[server(prefix = "/api", endpoint = "admin_overview")]
pub async fn admin_overview() -> Result<Overview, AppError> {
    let (state, _) = admin().await?;
    super::server::overview(&state).await
}

#[server(prefix = "/api", endpoint = "admin_users")]
pub async fn admin_users(query: Option<String>) -> Result<Vec<AdminUser>, AppError> {
    let (state, session) = admin().await?;
    super::server::users(&state, &session, query.as_deref().unwrap_or("")).await
}

#[server(prefix = "/api", endpoint = "admin_teams")]
pub async fn admin_teams() -> Result<Vec<super::AdminTeam>, AppError> {
    let (state, session) = admin().await?;
    super::server::teams(&state, &session).await
}

/// The model prices in force (and the deployment's currency).
#[server(prefix = "/api", endpoint = "admin_prices")]
pub async fn admin_prices() -> Result<(String, Vec<crate::usage::PriceView>), AppError> {
    let (state, _) = admin().await?;
    let prices = crate::usage::server::prices(&state.db).await?;
    Ok((state.settings.billing.currency.clone(), prices))
}

/// Sets a model's price per million tokens from now on (a new version:
/// what was used before keeps its price).
#[server(prefix = "/api", endpoint = "admin_set_price")]
pub async fn admin_set_price(
    provider: String,
    model: String,
    input: String,
    output: String,
) -> Result<(), AppError> {
    let (state, session) = admin().await?;
    let provider = crate::provider::Provider::parse(&provider)
        .ok_or_else(|| AppError::invalid("provider", "Choose a provider."))?;
    let amount = |field: &'static str, raw: &str| {
        crate::usage::parse_amount(raw).ok_or_else(|| {
            AppError::invalid(field, "Write an amount like 2.50 (per million tokens).")
        })
    };
    let (input, output) = (amount("input", &input)?, amount("output", &output)?);
    crate::usage::server::set_price(&state.db, provider, &model, input, output).await?;
    tracing::info!(user_id = %session.user_id, "an administrator set a model price");
    Ok(())
}

#[server(prefix = "/api", endpoint = "admin_disable_user")]
pub async fn admin_disable_user(id: String) -> Result<(), AppError> {
    let (state, session) = admin().await?;
    let id = crate::ctx::parse_id(&id)?;
    super::server::set_disabled(&state, &session, id, true).await
}

#[server(prefix = "/api", endpoint = "admin_enable_user")]
pub async fn admin_enable_user(id: String) -> Result<(), AppError> {
    let (state, session) = admin().await?;
    let id = crate::ctx::parse_id(&id)?;
    super::server::set_disabled(&state, &session, id, false).await
}

#[server(prefix = "/api", endpoint = "admin_delete_user")]
pub async fn admin_delete_user(id: String, confirm: Option<String>) -> Result<(), AppError> {
    let (state, session) = admin().await?;
    let id = crate::ctx::parse_id(&id)?;
    if confirm.is_none() {
        return Err(AppError::invalid(
            "confirm",
            "Tick the box to confirm the deletion.",
        ));
    }
    super::server::delete_user(&state, &session, id).await
}
