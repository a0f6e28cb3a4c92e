//! Team server functions: authenticate, parse, call `server`. Each one
//! works from a plain form post too (the page's forms need no JavaScript).

use leptos::prelude::*;

#[cfg(feature = "ssr")]
use super::Role;
use super::{InvitationPreview, TeamChoice, TeamDetail, TeamSummary};
use crate::error::AppError;

pub type CreateTeamAction = ServerAction<CreateTeam>;
pub type RenameTeamAction = ServerAction<RenameTeam>;
pub type DeleteTeamAction = ServerAction<DeleteTeam>;
pub type InviteAction = ServerAction<InviteToTeam>;
pub type WithdrawInvitationAction = ServerAction<WithdrawInvitation>;
pub type SetRoleAction = ServerAction<SetTeamRole>;
pub type RemoveMemberAction = ServerAction<RemoveTeamMember>;
pub type LeaveTeamAction = ServerAction<LeaveTeam>;
pub type AcceptInvitationAction = ServerAction<AcceptInvitation>;

#[cfg(feature = "ssr")]
fn parse_role(role: &str) -> Result<Role, AppError> {
    Role::parse(role).ok_or_else(|| AppError::invalid("role", "Choose owner, admin or member."))
}

#[server(prefix = "/api", endpoint = "list_teams")]
pub async fn list_teams() -> Result<Vec<TeamSummary>, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    super::server::list(&ctx::state()?, session.user_id).await
}

/// The teams where the user may make agents (admin or owner).
#[server(prefix = "/api", endpoint = "team_choices")]
pub async fn team_choices() -> Result<Vec<TeamChoice>, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    super::server::choices(&ctx::state()?, session.user_id).await
}

#[server(prefix = "/api", endpoint = "get_team")]
pub async fn get_team(id: String) -> Result<TeamDetail, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    super::server::detail(&ctx::state()?, session.user_id, &session.key, id).await
}

#[server(prefix = "/api", endpoint = "create_team")]
pub async fn create_team(name: String) -> Result<String, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = super::server::create(&ctx::state()?, &session, &name).await?;
    ctx::redirect_plain_post(&format!("/teams/{id}"));
    Ok(id.to_string())
}

#[server(prefix = "/api", endpoint = "rename_team")]
pub async fn rename_team(id: String, name: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    super::server::rename(&ctx::state()?, session.user_id, id, &name).await
}

#[server(prefix = "/api", endpoint = "delete_team")]
pub async fn delete_team(id: String, confirm: Option<String>) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    if confirm.is_none() {
        return Err(AppError::invalid(
            "confirm",
            "Tick the box to confirm: the team's agents and every conversation with them go too.",
        ));
    }
    super::server::delete(&ctx::state()?, &session, id).await?;
    leptos_axum::redirect("/teams");
    Ok(())
}

#[server(prefix = "/api", endpoint = "invite_to_team")]
pub async fn invite_to_team(id: String, email: String, role: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&id)?;
    let role = parse_role(&role)?;
    super::server::invite(&ctx::state()?, &session, id, &email, role).await
}

#[server(prefix = "/api", endpoint = "withdraw_invitation")]
pub async fn withdraw_invitation(id: String, invitation: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    let invitation = ctx::parse_id(&invitation)?;
    super::server::withdraw(&ctx::state()?, session.user_id, id, invitation).await
}

#[server(prefix = "/api", endpoint = "set_team_role")]
pub async fn set_team_role(id: String, member: String, role: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    let member = ctx::parse_id(&member)?;
    let role = parse_role(&role)?;
    super::server::set_role(&ctx::state()?, &session, id, member, role).await
}

#[server(prefix = "/api", endpoint = "remove_team_member")]
pub async fn remove_team_member(id: String, member: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    let member = ctx::parse_id(&member)?;
    super::server::remove(&ctx::state()?, &session, id, member).await
}

#[server(prefix = "/api", endpoint = "leave_team")]
pub async fn leave_team(id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let id = ctx::parse_id(&id)?;
    super::server::leave(&ctx::state()?, &session, id).await?;
    leptos_axum::redirect("/teams");
    Ok(())
}

/// What an invitation link offers (for the signed-in user).
#[server(prefix = "/api", endpoint = "preview_invitation")]
pub async fn preview_invitation(token: String) -> Result<InvitationPreview, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    let state = ctx::state()?;
    super::server::limit_opens(&state, crate::platform::request::client_ip()?).await?;
    super::server::preview(&state, &session, &token).await
}

#[server(prefix = "/api", endpoint = "accept_invitation")]
pub async fn accept_invitation(token: String) -> Result<String, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let state = ctx::state()?;
    super::server::limit_opens(&state, crate::platform::request::client_ip()?).await?;
    let team = super::server::accept(&state, &session, &token).await?;
    leptos_axum::redirect(&format!("/teams/{team}"));
    Ok(team.to_string())
}
