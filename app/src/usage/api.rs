//! Usage server functions.

use leptos::prelude::*;

use super::UsageReport;
use crate::error::AppError;

/// The signed-in user's usage over the last `days` days (30 by default),
/// or with `team` a team's (its admins and owners).
#[server(prefix = "/api", endpoint = "get_usage")]
pub async fn get_usage(team: Option<String>, days: Option<u32>) -> Result<UsageReport, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let team = team
        .filter(|t| !t.is_empty())
        .map(|t| ctx::parse_id(&t))
        .transpose()?;
    let (report, _) = super::server::report(
        &ctx::state()?,
        session.user_id,
        &session.key,
        team,
        days.unwrap_or(30),
    )
    .await?;
    Ok(report)
}
