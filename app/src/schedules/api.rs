//! Schedule server functions: authenticate, parse, call `server`,
//! redirect. Each one works as a plain form post too.
//!
//! `create_schedule`/`update_schedule` take one argument per form field, so
//! the same server-rendered form posts to them with or without JavaScript;
//! hence the allowance below (the `#[server]` macro does not pass a
//! per-function `allow` on to the function it generates).
#![allow(clippy::too_many_arguments)]

use leptos::prelude::*;

use super::{Preview, SchedulePage, ScheduleView};
use crate::error::AppError;

pub type CreateScheduleAction = ServerAction<CreateSchedule>;
pub type UpdateScheduleAction = ServerAction<UpdateSchedule>;
pub type SetScheduleEnabledAction = ServerAction<SetScheduleEnabled>;
pub type DeleteScheduleAction = ServerAction<DeleteSchedule>;
pub type RunScheduleNowAction = ServerAction<RunScheduleNow>;

#[cfg(feature = "ssr")]
fn form(
    name: String,
    cron: String,
    time_zone: String,
    prompt: String,
    continue_conversation: Option<String>,
    deliver_mail: Option<String>,
    deliver_telegram: Option<String>,
) -> super::server::ScheduleForm {
    super::server::ScheduleForm {
        name,
        cron,
        time_zone,
        prompt,
        continue_conversation: continue_conversation.is_some(),
        deliver_mail: deliver_mail.is_some(),
        deliver_telegram: deliver_telegram.is_some(),
    }
}

#[server(prefix = "/api", endpoint = "list_schedules")]
pub async fn list_schedules(agent_id: String) -> Result<Vec<ScheduleView>, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let agent = ctx::parse_id(&agent_id)?;
    super::server::list(&ctx::state()?, session.user_id, &session.key, agent).await
}

#[server(prefix = "/api", endpoint = "get_schedule")]
pub async fn get_schedule(id: String) -> Result<SchedulePage, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&id)?;
    super::server::page(&ctx::state()?, session.user_id, &session.key, id).await
}

/// What an expression means in a zone, before it is saved.
#[server(prefix = "/api", endpoint = "preview_schedule")]
pub async fn preview_schedule(cron: String, time_zone: String) -> Result<Preview, AppError> {
    crate::ctx::require_verified_session()?;
    super::server::preview(&cron, &time_zone)
}

#[server(prefix = "/api", endpoint = "create_schedule")]
pub async fn create_schedule(
    agent_id: String,
    name: String,
    cron: String,
    time_zone: String,
    prompt: String,
    continue_conversation: Option<String>,
    deliver_mail: Option<String>,
    deliver_telegram: Option<String>,
) -> Result<String, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let agent = ctx::parse_id(&agent_id)?;
    let form = form(
        name,
        cron,
        time_zone,
        prompt,
        continue_conversation,
        deliver_mail,
        deliver_telegram,
    );
    let id =
        super::server::create(&ctx::state()?, session.user_id, &session.key, agent, &form).await?;
    leptos_axum::redirect(&format!("/schedules/{id}"));
    Ok(id.to_string())
}

#[server(prefix = "/api", endpoint = "update_schedule")]
pub async fn update_schedule(
    id: String,
    name: String,
    cron: String,
    time_zone: String,
    prompt: String,
    continue_conversation: Option<String>,
    deliver_mail: Option<String>,
    deliver_telegram: Option<String>,
) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&id)?;
    let form = form(
        name,
        cron,
        time_zone,
        prompt,
        continue_conversation,
        deliver_mail,
        deliver_telegram,
    );
    super::server::update(&ctx::state()?, session.user_id, &session.key, id, &form).await?;
    leptos_axum::redirect(&format!("/schedules/{id}"));
    Ok(())
}

/// `enabled` is `yes` or `no` (the button pressed).
#[server(prefix = "/api", endpoint = "set_schedule_enabled")]
pub async fn set_schedule_enabled(id: String, enabled: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&id)?;
    let on = match enabled.as_str() {
        "yes" => true,
        "no" => false,
        _ => return Err(AppError::BadRequest),
    };
    super::server::set_enabled(&ctx::state()?, session.user_id, &session.key, id, on).await?;
    ctx::redirect_plain_post(&format!("/schedules/{id}"));
    Ok(())
}

#[server(prefix = "/api", endpoint = "run_schedule_now")]
pub async fn run_schedule_now(id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&id)?;
    super::server::run_now(&ctx::state()?, session.user_id, &session.key, id).await?;
    ctx::redirect_plain_post(&format!("/schedules/{id}"));
    Ok(())
}

#[server(prefix = "/api", endpoint = "delete_schedule")]
pub async fn delete_schedule(id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&id)?;
    let agent = super::server::delete(&ctx::state()?.db, session.user_id, id).await?;
    leptos_axum::redirect(&format!("/agents/{agent}"));
    Ok(())
}
