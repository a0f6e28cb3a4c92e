//! /teams (your teams, make one), /teams/{id} (its people, invitations and
//! agents; what you may change there) and /teams/join?token=… (an
//! invitation link: what it offers, and Join). Every form works without
//! JavaScript.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};

use super::{
    InvitationView, MemberView, Role, TeamChoice, TeamDetail,
    api::{
        AcceptInvitationAction, CreateTeamAction, DeleteTeamAction, InviteAction, LeaveTeamAction,
        RemoveMemberAction, RenameTeamAction, SetRoleAction, WithdrawInvitationAction, get_team,
        list_teams, preview_invitation,
    },
};
use crate::{
    action_error,
    ui::{Field, FormError, RequireUser, error_view, missing_or},
};

/// The "Belongs to" choice of a form that makes something a team can
/// share: only you, or a team where you are an admin or owner (`teams`,
/// from `team_choices`), `chosen` preselected. Nothing when you have no
/// such team. Posts `team` (empty: your own).
#[component]
pub fn BelongsTo(
    teams: Vec<TeamChoice>,
    #[prop(default = None)] chosen: Option<String>,
    hint: &'static str,
    #[prop(default = None)] error: Option<Signal<Option<String>>>,
) -> impl IntoView {
    (!teams.is_empty()).then(|| {
        let invalid = move || error.is_some_and(|e| e.get().is_some());
        view! {
            <div class="field" class:invalid=invalid>
                <label for="field-team">"Belongs to"</label>
                <select id="field-team" name="team">
                    <option value="" selected=chosen.is_none()>"Only you"</option>
                    {teams
                        .into_iter()
                        .map(|t| {
                            let selected = chosen.as_deref() == Some(t.id.as_str());
                            view! {
                                <option value=t.id selected=selected>
                                    {format!("The team {}", t.name)}
                                </option>
                            }
                        })
                        .collect_view()}
                </select>
                <p class="field-hint">{hint}</p>
                <p class="field-error">{move || error.and_then(|e| e.get())}</p>
            </div>
        }
    })
}

#[component]
pub fn TeamsPage() -> impl IntoView {
    view! {
        <Title text="Teams"/>
        <RequireUser>
            <Teams/>
        </RequireUser>
    }
}

#[component]
fn Teams() -> impl IntoView {
    let create = CreateTeamAction::new();
    let teams = Resource::new(move || create.version().get(), |_| list_teams());
    let create_error = action_error!(create);
    // Hydrated, the new team's page opens (a plain post is redirected).
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(id)) = create.value().get() {
            navigate(&format!("/teams/{id}"), Default::default());
        }
    });
    view! {
        <h1>"Teams"</h1>
        <p class="muted">
            "A team shares agents: its members chat with them, its admins make and change them. "
            "Each person's conversations stay their own. What the team shares is encrypted with "
            "the team's own key."
        </p>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match teams.await {
                    Err(err) => error_view(err).into_any(),
                    Ok(list) if list.is_empty() => {
                        view! { <p class="card muted">"You are in no team yet. Make one below, or open an invitation you were sent."</p> }
                            .into_any()
                    }
                    Ok(list) => {
                        view! {
                            <ul class="key-list">
                                {list
                                    .into_iter()
                                    .map(|t| {
                                        view! {
                                            <li class="card key-row" data-testid="team">
                                                <div>
                                                    <a href=format!("/teams/{}", t.id)><strong>{t.name.clone()}</strong></a>
                                                    <span class="muted">
                                                        {format!(
                                                            " · {} · {} {} · {} {}",
                                                            t.role.label(),
                                                            t.members,
                                                            if t.members == 1 { "person" } else { "people" },
                                                            t.agents,
                                                            if t.agents == 1 { "agent" } else { "agents" },
                                                        )}
                                                    </span>
                                                </div>
                                            </li>
                                        }
                                    })
                                    .collect_view()}
                            </ul>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
        <section class="card">
            <h2>"Make a team"</h2>
            <ActionForm action=create>
                <FormError error=create_error/>
                <Field label="Team name" name="name" error=create_error/>
                <button type="submit" class="primary">"Make team"</button>
            </ActionForm>
        </section>
    }
}

#[component]
pub fn TeamPage() -> impl IntoView {
    view! {
        <Title text="Team"/>
        <RequireUser>
            <Team/>
        </RequireUser>
    }
}

#[component]
fn Team() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let invite = InviteAction::new();
    let withdraw = WithdrawInvitationAction::new();
    let set_role = SetRoleAction::new();
    let remove = RemoveMemberAction::new();
    let rename = RenameTeamAction::new();
    let leave = LeaveTeamAction::new();
    let delete = DeleteTeamAction::new();
    let team = Resource::new(
        move || {
            (
                id(),
                invite.version().get(),
                withdraw.version().get(),
                set_role.version().get(),
                remove.version().get(),
                rename.version().get(),
            )
        },
        |(id, ..)| get_team(id),
    );
    let actions = TeamActions {
        invite,
        withdraw,
        set_role,
        remove,
        rename,
        leave,
        delete,
    };
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match team.await {
                    Err(err) => {
                        missing_or(
                                err,
                                "Team not found",
                                "There is no such team among yours. ",
                                ("/teams", "Back to your teams"),
                            )
                            .into_any()
                    }
                    Ok(detail) => view! { <TeamView detail=detail actions=actions/> }.into_any(),
                }
            })}
        </Transition>
    }
}

#[derive(Clone, Copy)]
struct TeamActions {
    invite: InviteAction,
    withdraw: WithdrawInvitationAction,
    set_role: SetRoleAction,
    remove: RemoveMemberAction,
    rename: RenameTeamAction,
    leave: LeaveTeamAction,
    delete: DeleteTeamAction,
}

#[component]
fn TeamView(detail: TeamDetail, actions: TeamActions) -> impl IntoView {
    let TeamDetail {
        id,
        name,
        role,
        members,
        invitations,
        agents,
    } = detail;
    let invite_error = action_error!(actions.invite);
    let member_error = Signal::derive(move || {
        actions
            .set_role
            .value()
            .get()
            .and_then(Result::err)
            .or_else(|| actions.remove.value().get().and_then(Result::err))
    });
    let leave_error = action_error!(actions.leave);
    let delete_error = action_error!(actions.delete);
    let rename_error = action_error!(actions.rename);
    let team_id = id.clone();
    view! {
        <Title text=name.clone()/>
        <h1>{name.clone()}</h1>
        <p class="muted" data-testid="your-role">
            {format!("You are {} here. {}", role.with_article(), role.explain())}
        </p>
        <section class="card" aria-labelledby="team-agents">
            <h2 id="team-agents">"The team's agents"</h2>
            {agents.is_empty().then(|| view! { <p class="muted">"None yet."</p> })}
            <ul>
                {agents
                    .into_iter()
                    .map(|a| {
                        view! {
                            <li data-testid="team-agent">
                                <a href=format!("/agents/{}", a.id)>{a.name}</a>
                                <span class="muted">{format!(" · {}", a.model)}</span>
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
            {role
                .can_edit()
                .then(|| {
                    view! {
                        <a class="button" href=format!("/agents/new?team={team_id}")>
                            "New team agent"
                        </a>
                    }
                })}
        </section>
        <section class="card" aria-labelledby="team-people">
            <h2 id="team-people">"People"</h2>
            <FormError error=member_error/>
            <ul class="key-list">
                {members
                    .into_iter()
                    .map(|m| view! { <MemberRow team=id.clone() member=m viewer=role actions=actions/> })
                    .collect_view()}
            </ul>
        </section>
        {role
            .can_edit()
            .then(|| {
                let (team, team_for_list) = (id.clone(), id.clone());
                view! {
                    <section class="card" aria-labelledby="team-invite">
                        <h2 id="team-invite">"Invite someone"</h2>
                        <p class="muted">
                            "They get a mail with a link that works for 7 days, for the account with that address."
                        </p>
                        <ActionForm action=actions.invite>
                            <FormError error=invite_error/>
                            <input type="hidden" name="id" value=team.clone()/>
                            <div class="field-row">
                                <Field label="Email address" name="email" kind="email" error=invite_error/>
                                <div class="field">
                                    <label for="field-role">"Role"</label>
                                    <select id="field-role" name="role">
                                        <option value="member">"Member: chats with the team's agents"</option>
                                        <option value="admin">"Admin: also makes and edits them, and invites"</option>
                                    </select>
                                </div>
                            </div>
                            <button type="submit" class="primary">"Send invitation"</button>
                        </ActionForm>
                        <Invitations team=team_for_list invitations=invitations.clone() withdraw=actions.withdraw/>
                    </section>
                }
            })}
        {role
            .can_manage()
            .then(|| {
                let (for_rename, for_delete) = (id.clone(), id.clone());
                view! {
                    <section class="card" aria-labelledby="team-settings">
                        <h2 id="team-settings">"Team settings"</h2>
                        <ActionForm action=actions.rename>
                            <FormError error=rename_error/>
                            <input type="hidden" name="id" value=for_rename/>
                            <Field label="Team name" name="name" value=name.clone() error=rename_error/>
                            <button type="submit">"Rename"</button>
                        </ActionForm>
                    </section>
                    <section class="card danger-zone" aria-labelledby="team-delete">
                        <h2 id="team-delete">"Delete this team"</h2>
                        <p>
                            "Its agents, connections and knowledge bases are erased with its key, "
                            "and so is every conversation anyone had with its agents."
                        </p>
                        <ActionForm action=actions.delete>
                            <FormError error=delete_error/>
                            <input type="hidden" name="id" value=for_delete/>
                            <label class="checkbox">
                                <input type="checkbox" name="confirm" value="yes"/>
                                " Yes, delete the team and everything it shares"
                            </label>
                            <button type="submit" class="danger">"Delete team"</button>
                        </ActionForm>
                    </section>
                }
            })}
        <ActionForm action=actions.leave>
            <FormError error=leave_error/>
            <input type="hidden" name="id" value=id.clone()/>
            <button type="submit" class="link">"Leave this team"</button>
        </ActionForm>
    }
}

#[component]
fn MemberRow(
    team: String,
    member: MemberView,
    viewer: Role,
    actions: TeamActions,
) -> impl IntoView {
    let can_change = viewer.can_manage() && !member.you;
    let can_remove =
        !member.you && (viewer.can_manage() || (viewer.can_edit() && member.role == Role::Member));
    let (for_role, for_remove) = (team.clone(), team);
    let (id_role, id_remove) = (member.user_id.clone(), member.user_id.clone());
    let current = member.role;
    view! {
        <li class="key-row" data-testid="member" data-role=member.role.as_str()>
            <div>
                <strong>{member.name.clone()}</strong>
                {member.you.then(|| view! { <span class="muted">" (you)"</span> })}
                <span class="muted">{format!(" · {} · {}", member.email, member.role.label())}</span>
                <p class="muted">{format!("Joined {}", member.joined)}</p>
            </div>
            <div class="actions">
                {can_change
                    .then(|| {
                        view! {
                            <ActionForm action=actions.set_role attr:class="inline">
                                <input type="hidden" name="id" value=for_role/>
                                <input type="hidden" name="member" value=id_role/>
                                <label class="visually-hidden" for=format!("role-{}", member.user_id)>
                                    {format!("Role of {}", member.name)}
                                </label>
                                <select id=format!("role-{}", member.user_id) name="role">
                                    {Role::ALL
                                        .into_iter()
                                        .map(|r| {
                                            view! {
                                                <option value=r.as_str() selected=r == current>
                                                    {r.label()}
                                                </option>
                                            }
                                        })
                                        .collect_view()}
                                </select>
                                <button type="submit">"Change role"</button>
                            </ActionForm>
                        }
                    })}
                {can_remove
                    .then(|| {
                        view! {
                            <ActionForm action=actions.remove attr:class="inline">
                                <input type="hidden" name="id" value=for_remove/>
                                <input type="hidden" name="member" value=id_remove/>
                                <button type="submit" class="danger">"Remove"</button>
                            </ActionForm>
                        }
                    })}
            </div>
        </li>
    }
}

#[component]
fn Invitations(
    team: String,
    invitations: Vec<InvitationView>,
    withdraw: WithdrawInvitationAction,
) -> impl IntoView {
    let rows = invitations
        .into_iter()
        .map(|i| {
            let team = team.clone();
            view! {
                            <li class="key-row" data-testid="invitation">
                                <span>
                                    {i.email.clone()}
                                    <span class="muted">
                                        {format!(" · {} · until {}", i.role.label(), i.expires)}
                                    </span>
                                </span>
                                <ActionForm action=withdraw attr:class="inline">
                                    <input type="hidden" name="id" value=team.clone()/>
                                    <input type="hidden" name="invitation" value=i.id.clone()/>
                                    <button type="submit" class="link">"Withdraw"</button>
                                </ActionForm>
                            </li>
            }
        })
        .collect::<Vec<_>>();
    (!rows.is_empty()).then(|| {
        view! {
            <h3>"Waiting to be accepted"</h3>
            <ul class="key-list">{rows}</ul>
        }
    })
}

#[component]
pub fn JoinTeamPage() -> impl IntoView {
    view! {
        <Title text="Team invitation"/>
        <RequireUser>
            <JoinTeam/>
        </RequireUser>
    }
}

#[component]
fn JoinTeam() -> impl IntoView {
    let query = use_query_map();
    let token = move || query.read().get("token").unwrap_or_default();
    let accept = AcceptInvitationAction::new();
    let preview = Resource::new(token, preview_invitation);
    let accept_error = action_error!(accept);
    view! {
        <h1>"Team invitation"</h1>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match preview.await {
                    Err(err) => error_view(err).into_any(),
                    Ok(p) => {
                        view! {
                            <section class="card">
                                <p data-testid="invitation-offer">
                                    {format!(
                                        "{} invited {} to the team \u{201c}{}\u{201d} as {}.",
                                        p.invited_by,
                                        p.email,
                                        p.team,
                                        p.role.with_article(),
                                    )}
                                </p>
                                <p class="muted">{p.role.explain()}</p>
                                {if p.for_you {
                                    view! {
                                        <ActionForm action=accept>
                                            <FormError error=accept_error/>
                                            <input type="hidden" name="token" value=token()/>
                                            <button type="submit" class="primary">"Join the team"</button>
                                        </ActionForm>
                                    }
                                        .into_any()
                                } else {
                                    view! {
                                        <p class="form-error" role="alert">
                                            {super::INVITATION_OTHER_ADDRESS}
                                        </p>
                                    }
                                        .into_any()
                                }}
                            </section>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
    }
}
