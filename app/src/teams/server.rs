//! Teams (server only): the rules and queries, and what other slices ask
//! of a team.
//!
//! Every function names the acting user and reads their role afresh in
//! the statement that does the work: someone outside the team, and someone
//! inside it without the role, meet `NotFound`, exactly like a team that
//! does not exist (every action is allowed or 404). Rules that are not
//! about permission (the last owner stays) answer with their reason. What a team shares is sealed
//! with the team's key, which opens only for a member
//! (`keystore::team_key_for_member`), so a removed member's next request
//! opens nothing of the team's.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    INVITATION_EXPIRED, INVITATION_OTHER_ADDRESS, INVITATION_UNKNOWN, InvitationPreview,
    InvitationView, MemberView, Role, TeamChoice, TeamDetail, TeamSummary,
};
use crate::{
    auth::{
        domain::Email,
        server::{AuthSession, users_place},
    },
    data::activity::{
        Event,
        server::{note, note_for},
    },
    error::AppError,
    platform::{
        crypto::{DataKey, Place, Sealed, random_token, token_hash},
        jobs::{self, Kind, NewJob},
        keystore::{self, KeyUse, SealedColumn},
        mail::{Outgoing, escape_html},
        rate_limit,
        settings::Limit,
    },
    state::AppState,
};

/// The sealed columns of this slice: a team's values are sealed with the
/// team's key, their place's owner being the team.
pub const SEALED: &[SealedColumn] = &[
    SealedColumn {
        table: "teams",
        column: "name",
        id: "id",
        owner: "id",
    },
    SealedColumn {
        table: "team_invitations",
        column: "email",
        id: "id",
        owner: "team_id",
    },
];

/// The tables whose rows a team can hold (`team_id`), each made by one of
/// its people (`owner_id`).
const SHARED_TABLES: [&str; 5] = [
    "agents",
    "connections",
    "knowledge_bases",
    "knowledge_documents",
    "knowledge_chunks",
];

/// How long an invitation link works.
const INVITATION_DAYS: i32 = 7;

fn name_place(team: Uuid) -> Place {
    Place::new("teams", "name", team, team)
}

fn invitation_place(id: Uuid, team: Uuid) -> Place {
    Place::new("team_invitations", "email", id, team)
}

// ---- what other slices ask ------------------------------------------------------

/// SQL: the row `alias` (a table with `owner_id` and `team_id`) may be
/// used by the user in parameter `user` (`$2`, say): their own, or their
/// team's.
pub fn usable_by(alias: &str, user: &str) -> String {
    format!(
        "(({alias}.team_id IS NULL AND {alias}.owner_id = {user}) OR {alias}.team_id IN \
         (SELECT tm.team_id FROM team_members tm WHERE tm.user_id = {user}))"
    )
}

/// SQL: the row `alias` may be changed or deleted by the user in `user`:
/// their own, or a team's where they are an admin or owner.
pub fn editable_by(alias: &str, user: &str) -> String {
    format!(
        "(({alias}.team_id IS NULL AND {alias}.owner_id = {user}) OR {alias}.team_id IN \
         (SELECT tm.team_id FROM team_members tm WHERE tm.user_id = {user} \
          AND tm.role IN ('owner', 'admin')))"
    )
}

/// The keys a user's request opens rows with: their own, and each team's
/// they belong to (opened once per request, when a row needs it).
pub struct Keys<'a> {
    state: &'a AppState,
    user: Uuid,
    own: &'a DataKey,
    teams: HashMap<Uuid, DataKey>,
}

impl<'a> Keys<'a> {
    pub fn new(state: &'a AppState, user: Uuid, own: &'a DataKey) -> Self {
        Keys {
            state,
            user,
            own,
            teams: HashMap::new(),
        }
    }

    /// The key that seals a row of `team` (`None`: the user's own row) and
    /// the id its places name as their owner. `NotFound` when the user is
    /// not (or no longer) in the team.
    pub async fn for_row(&mut self, team: Option<Uuid>) -> Result<(DataKey, Uuid), AppError> {
        let Some(team) = team else {
            return Ok((self.own.clone(), self.user));
        };
        if let Some(key) = self.teams.get(&team) {
            return Ok((key.clone(), team));
        }
        let key = keystore::team_key_for_member(
            &self.state.db,
            &self.state.crypto.keyring,
            team,
            self.user,
        )
        .await?;
        self.teams.insert(team, key.clone());
        Ok((key, team))
    }
}

/// The user's role in `team`; `NotFound` outside it.
pub async fn role_of(db: &sqlx::PgPool, team: Uuid, user: Uuid) -> Result<Role, AppError> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2")
            .bind(team)
            .bind(user)
            .fetch_optional(db)
            .await?;
    role.as_deref()
        .and_then(Role::parse)
        .ok_or(AppError::NotFound)
}

/// `role_of`, for admins and owners only (who make and edit what a team
/// shares). Like anything else a role does not allow, a member meets
/// `NotFound`: every action is allowed or 404 (the pages offer a member
/// none of these).
pub async fn require_editor(db: &sqlx::PgPool, team: Uuid, user: Uuid) -> Result<Role, AppError> {
    let role = role_of(db, team, user).await?;
    if role.can_edit() {
        Ok(role)
    } else {
        Err(AppError::NotFound)
    }
}

async fn require_owner(db: &sqlx::PgPool, team: Uuid, user: Uuid) -> Result<(), AppError> {
    if role_of(db, team, user).await?.can_manage() {
        Ok(())
    } else {
        Err(AppError::NotFound)
    }
}

/// The teams where the user may make things (admin or owner), by name.
pub async fn choices(state: &AppState, user: Uuid) -> Result<Vec<TeamChoice>, AppError> {
    Ok(list(state, user)
        .await?
        .into_iter()
        .filter(|t| t.role.can_edit())
        .map(|t| TeamChoice {
            id: t.id,
            name: t.name,
        })
        .collect())
}

/// The names of the user's teams by id, read only when `needed` (a list
/// that holds something of a team's).
pub async fn names(
    state: &AppState,
    user: Uuid,
    needed: bool,
) -> Result<HashMap<String, String>, AppError> {
    if !needed {
        return Ok(HashMap::new());
    }
    // Names only: not `list`, which also counts each team's people and agents.
    let rows: Vec<(Uuid, Sealed, String, Vec<u8>)> = sqlx::query_as(
        "SELECT t.id, t.name, k.kek_id, k.wrapped_key
         FROM team_members m JOIN teams t ON t.id = m.team_id
         JOIN team_keys k ON k.team_id = t.id
         WHERE m.user_id = $1",
    )
    .bind(user)
    .fetch_all(&state.db)
    .await?;
    rows.into_iter()
        .map(|(id, name, kek_id, wrapped)| {
            let key = keystore::open_team_key(&state.crypto.keyring, id, kek_id, wrapped)?;
            Ok((id.to_string(), key.open_text(name_place(id), &name)?))
        })
        .collect()
}

/// The name of a team the user belongs to (`NotFound` otherwise).
pub async fn team_name(state: &AppState, team: Uuid, user: Uuid) -> Result<String, AppError> {
    let key = keystore::team_key_for_member(&state.db, &state.crypto.keyring, team, user).await?;
    let sealed: Sealed = sqlx::query_scalar("SELECT name FROM teams WHERE id = $1")
        .bind(team)
        .fetch_one(&state.db)
        .await?;
    key.open_text(name_place(team), &sealed)
}

/// Stops the replies `user` is getting from `team`'s agents, here and now
/// (they lost access to them).
async fn stop_team_replies(
    state: &AppState,
    team: Uuid,
    user: Option<Uuid>,
) -> Result<usize, AppError> {
    let live: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT m.id, m.owner_id FROM messages m
         JOIN conversations c ON c.id = m.conversation_id
         JOIN agents a ON a.id = c.agent_id
         WHERE a.team_id = $1 AND ($2::uuid IS NULL OR m.owner_id = $2)
           AND m.role = 'assistant' AND m.status = 'streaming'",
    )
    .bind(team)
    .bind(user)
    .fetch_all(&state.db)
    .await?;
    let mut stopped = 0;
    for (message, owner) in live {
        if state.runs.stop(message, owner) {
            stopped += 1;
        }
    }
    Ok(stopped)
}

// ---- teams --------------------------------------------------------------------

/// Makes a team with the user as its owner, and its data key.
pub async fn create(state: &AppState, session: &AuthSession, name: &str) -> Result<Uuid, AppError> {
    let name = super::parse_name(name)?;
    let user = session.user_id;
    let mut tx = state.db.begin().await?;
    // One team creation per user at a time, so the cap holds.
    sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE")
        .bind(user)
        .execute(&mut *tx)
        .await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM team_members WHERE user_id = $1")
        .bind(user)
        .fetch_one(&mut *tx)
        .await?;
    if count >= super::TEAMS_MAX {
        return Err(AppError::invalid(
            "name",
            format!(
                "You are in {} teams, the most one person can be in. Leave one first.",
                super::TEAMS_MAX
            ),
        ));
    }
    let id = Uuid::new_v4();
    let key = DataKey::generate();
    sqlx::query("INSERT INTO teams (id, name) VALUES ($1, $2)")
        .bind(id)
        .bind(key.seal_str(name_place(id), &name))
        .execute(&mut *tx)
        .await?;
    keystore::store_team_key(&mut tx, &state.crypto.keyring, id, &key).await?;
    sqlx::query("INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, 'owner')")
        .bind(id)
        .bind(user)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(team_id = %id, user_id = %user, "team created");
    note(state, session, Event::TeamCreated, Some(&name)).await;
    Ok(id)
}

#[derive(sqlx::FromRow)]
struct TeamRow {
    id: Uuid,
    name: Sealed,
    role: String,
    kek_id: String,
    wrapped_key: Vec<u8>,
    members: i64,
    agents: i64,
}

/// The user's teams, by name.
pub async fn list(state: &AppState, user: Uuid) -> Result<Vec<TeamSummary>, AppError> {
    let rows: Vec<TeamRow> = sqlx::query_as(
        "SELECT t.id, t.name, m.role, k.kek_id, k.wrapped_key,
                (SELECT count(*) FROM team_members x WHERE x.team_id = t.id) AS members,
                (SELECT count(*) FROM agents a WHERE a.team_id = t.id) AS agents
         FROM team_members m JOIN teams t ON t.id = m.team_id
         JOIN team_keys k ON k.team_id = t.id
         WHERE m.user_id = $1",
    )
    .bind(user)
    .fetch_all(&state.db)
    .await?;
    let mut teams = Vec::with_capacity(rows.len());
    for row in rows {
        let key =
            keystore::open_team_key(&state.crypto.keyring, row.id, row.kek_id, row.wrapped_key)?;
        teams.push(TeamSummary {
            id: row.id.to_string(),
            name: key.open_text(name_place(row.id), &row.name)?,
            role: Role::parse(&row.role).ok_or_else(|| AppError::internal("unknown team role"))?,
            members: row.members,
            agents: row.agents,
        });
    }
    teams.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then(a.id.cmp(&b.id))
    });
    Ok(teams)
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    user_id: Uuid,
    role: String,
    joined_at: DateTime<Utc>,
    email: Sealed,
    first_name: Sealed,
    last_name: Sealed,
    kek_id: String,
    wrapped_key: Vec<u8>,
}

/// The people of a team: each one's name and address are opened with
/// their own key (`KeyUse::Team`: fellow members see who is in the team).
pub(crate) async fn members(
    state: &AppState,
    team: Uuid,
    viewer: Uuid,
) -> Result<Vec<MemberView>, AppError> {
    let rows: Vec<MemberRow> = sqlx::query_as(
        "SELECT m.user_id, m.role, m.joined_at, u.email, u.first_name, u.last_name,
                k.kek_id, k.wrapped_key
         FROM team_members m JOIN users u ON u.id = m.user_id
         JOIN user_keys k ON k.user_id = u.id
         WHERE m.team_id = $1
         ORDER BY CASE m.role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, m.joined_at, m.user_id",
    )
    .bind(team)
    .fetch_all(&state.db)
    .await?;
    tracing::debug!(team_id = %team, members = rows.len(), key_use = KeyUse::Team.as_str(), "team members listed");
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let key = keystore::open_user_key(
            &state.crypto.keyring,
            row.user_id,
            row.kek_id,
            row.wrapped_key,
        )?;
        out.push(MemberView {
            user_id: row.user_id.to_string(),
            name: format!(
                "{} {}",
                key.open_text(users_place("first_name", row.user_id), &row.first_name)?,
                key.open_text(users_place("last_name", row.user_id), &row.last_name)?
            ),
            email: key.open_text(users_place("email", row.user_id), &row.email)?,
            role: Role::parse(&row.role).ok_or_else(|| AppError::internal("unknown team role"))?,
            joined: row.joined_at.format("%Y-%m-%d").to_string(),
            you: row.user_id == viewer,
        });
    }
    Ok(out)
}

/// A team's page, for one of its people.
pub async fn detail(
    state: &AppState,
    user: Uuid,
    key: &DataKey,
    team: Uuid,
) -> Result<TeamDetail, AppError> {
    let role = role_of(&state.db, team, user).await?;
    let team_key =
        keystore::team_key_for_member(&state.db, &state.crypto.keyring, team, user).await?;
    let name: Sealed = sqlx::query_scalar("SELECT name FROM teams WHERE id = $1")
        .bind(team)
        .fetch_one(&state.db)
        .await?;
    let invitations = if role.can_edit() {
        let rows: Vec<(Uuid, Sealed, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, email, role, expires_at FROM team_invitations
             WHERE team_id = $1 AND expires_at > now() ORDER BY created_at, id",
        )
        .bind(team)
        .fetch_all(&state.db)
        .await?;
        rows.into_iter()
            .map(|(id, email, role, expires)| {
                Ok(InvitationView {
                    id: id.to_string(),
                    email: team_key.open_text(invitation_place(id, team), &email)?,
                    role: Role::parse(&role).unwrap_or(Role::Member),
                    expires: expires.format("%Y-%m-%d").to_string(),
                })
            })
            .collect::<Result<Vec<_>, AppError>>()?
    } else {
        Vec::new()
    };
    let team_id = team.to_string();
    let agents = crate::agents::server::list_in(state, user, key, team).await?;
    Ok(TeamDetail {
        id: team_id,
        name: team_key.open_text(name_place(team), &name)?,
        role,
        members: members(state, team, user).await?,
        invitations,
        agents,
    })
}

/// Renames the team (owners).
pub async fn rename(state: &AppState, user: Uuid, team: Uuid, name: &str) -> Result<(), AppError> {
    let name = super::parse_name(name)?;
    require_owner(&state.db, team, user).await?;
    let key = keystore::team_key_for_member(&state.db, &state.crypto.keyring, team, user).await?;
    sqlx::query("UPDATE teams SET name = $2 WHERE id = $1")
        .bind(team)
        .bind(key.seal_str(name_place(team), &name))
        .execute(&state.db)
        .await?;
    Ok(())
}

/// Deletes the team (owners): its agents, their conversations and its key
/// go with it; replies being written from its agents stop.
pub async fn delete(state: &AppState, session: &AuthSession, team: Uuid) -> Result<(), AppError> {
    require_owner(&state.db, team, session.user_id).await?;
    let name = team_name(state, team, session.user_id).await?;
    stop_team_replies(state, team, None).await?;
    let mut tx = state.db.begin().await?;
    crate::usage::server::forget_team(&mut tx, team).await?;
    let done = sqlx::query("DELETE FROM teams WHERE id = $1")
        .bind(team)
        .execute(&mut *tx)
        .await?;
    crate::error::found(done)?;
    tx.commit().await?;
    tracing::info!(team_id = %team, user_id = %session.user_id, "team deleted");
    note(state, session, Event::TeamDeleted, Some(&name)).await;
    Ok(())
}

// ---- people -------------------------------------------------------------------

/// Locks the team's people while a change is decided (two owners demoting
/// each other at once cannot leave the team without one).
async fn lock_team(tx: &mut sqlx::PgConnection, team: Uuid) -> Result<(), AppError> {
    let found: Option<Uuid> = sqlx::query_scalar("SELECT id FROM teams WHERE id = $1 FOR UPDATE")
        .bind(team)
        .fetch_optional(&mut *tx)
        .await?;
    found.map(|_| ()).ok_or(AppError::NotFound)
}

async fn owners(tx: &mut sqlx::PgConnection, team: Uuid) -> Result<i64, AppError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM team_members WHERE team_id = $1 AND role = 'owner'",
    )
    .bind(team)
    .fetch_one(&mut *tx)
    .await?)
}

const LAST_OWNER: &str =
    "A team needs an owner: make someone else an owner first, or delete the team.";

/// Gives `member` the role `role` (owners).
pub async fn set_role(
    state: &AppState,
    session: &AuthSession,
    team: Uuid,
    member: Uuid,
    role: Role,
) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    lock_team(&mut tx, team).await?;
    let mine = member_role(&mut tx, team, session.user_id)
        .await?
        .ok_or(AppError::NotFound)?;
    if !mine.can_manage() {
        return Err(AppError::NotFound);
    }
    let theirs = member_role(&mut tx, team, member)
        .await?
        .ok_or(AppError::NotFound)?;
    if theirs == Role::Owner && role != Role::Owner && owners(&mut tx, team).await? <= 1 {
        return Err(AppError::invalid("role", LAST_OWNER));
    }
    sqlx::query("UPDATE team_members SET role = $3 WHERE team_id = $1 AND user_id = $2")
        .bind(team)
        .bind(member)
        .bind(role.as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(team_id = %team, user_id = %member, role = role.as_str(), "team role changed");
    note(state, session, Event::TeamRoleChanged, Some(role.label())).await;
    Ok(())
}

async fn member_role(
    tx: &mut sqlx::PgConnection,
    team: Uuid,
    user: Uuid,
) -> Result<Option<Role>, AppError> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2")
            .bind(team)
            .bind(user)
            .fetch_optional(&mut *tx)
            .await?;
    Ok(role.as_deref().and_then(Role::parse))
}

/// Takes `member` out of the team: owners remove anyone, admins remove
/// members. Their access ends at once, replies being written included.
pub async fn remove(
    state: &AppState,
    session: &AuthSession,
    team: Uuid,
    member: Uuid,
) -> Result<(), AppError> {
    if member == session.user_id {
        return leave(state, session, team).await;
    }
    let mut tx = state.db.begin().await?;
    lock_team(&mut tx, team).await?;
    let mine = member_role(&mut tx, team, session.user_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let theirs = member_role(&mut tx, team, member)
        .await?
        .ok_or(AppError::NotFound)?;
    // Owners remove anyone; admins remove members.
    if !(mine.can_manage() || (mine.can_edit() && theirs == Role::Member)) {
        return Err(AppError::NotFound);
    }
    if theirs == Role::Owner && owners(&mut tx, team).await? <= 1 {
        return Err(AppError::invalid("team", LAST_OWNER));
    }
    take_out(&mut tx, team, member).await?;
    tx.commit().await?;
    after_leaving(state, team, member, Event::RemovedFromTeam).await;
    note(state, session, Event::TeamMemberRemoved, None).await;
    Ok(())
}

/// Leaves the team (the last owner cannot: they delete it instead).
pub async fn leave(state: &AppState, session: &AuthSession, team: Uuid) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    lock_team(&mut tx, team).await?;
    let mine = member_role(&mut tx, team, session.user_id)
        .await?
        .ok_or(AppError::NotFound)?;
    if mine == Role::Owner && owners(&mut tx, team).await? <= 1 {
        return Err(AppError::invalid("team", LAST_OWNER));
    }
    take_out(&mut tx, team, session.user_id).await?;
    tx.commit().await?;
    after_leaving(state, team, session.user_id, Event::LeftTeam).await;
    Ok(())
}

/// Deletes the membership. Agents `member` made for the team stay the
/// team's, now in the name of an owner.
async fn take_out(tx: &mut sqlx::PgConnection, team: Uuid, member: Uuid) -> Result<(), AppError> {
    sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
        .bind(team)
        .bind(member)
        .execute(&mut *tx)
        .await?;
    Ok(hand_over(tx, team, member).await?)
}

/// What `member` made for `team` is put in the name of one of its owners
/// (the team keeps it; its key is the team's, so nothing is re-sealed).
async fn hand_over(
    tx: &mut sqlx::PgConnection,
    team: Uuid,
    member: Uuid,
) -> Result<(), sqlx::Error> {
    for table in SHARED_TABLES {
        // Table names from the constant list, never from input.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET owner_id = (SELECT user_id FROM team_members
                                            WHERE team_id = $1 AND role = 'owner'
                                            ORDER BY joined_at, user_id LIMIT 1)
             WHERE team_id = $1 AND owner_id = $2"
        )))
        .bind(team)
        .bind(member)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// After someone left or was removed: their live replies from the team's
/// agents stop, and their own activity says so.
async fn after_leaving(state: &AppState, team: Uuid, member: Uuid, event: Event) {
    match stop_team_replies(state, team, Some(member)).await {
        Ok(stopped) => {
            tracing::info!(team_id = %team, user_id = %member, replies_stopped = stopped, "left a team")
        }
        Err(err) => {
            tracing::warn!(team_id = %team, error = %err, "could not stop a former member's replies")
        }
    }
    match keystore::user_key(&state.db, &state.crypto.keyring, member, KeyUse::Team).await {
        Ok(key) => note_for(state, member, &key, event, None, None).await,
        Err(err) => {
            tracing::warn!(user_id = %member, error = %err, "could not write a team change")
        }
    }
}

/// Before an account is erased, in the erasing transaction: each team it
/// owns alone passes to its longest-standing admin (or else member); a
/// team with nobody else is deleted. What the account made for a team
/// stays the team's, in the name of an owner.
pub async fn before_erasing(tx: &mut sqlx::PgConnection, user: Uuid) -> Result<(), sqlx::Error> {
    let teams: Vec<Uuid> =
        sqlx::query_scalar("SELECT team_id FROM team_members WHERE user_id = $1 ORDER BY team_id")
            .bind(user)
            .fetch_all(&mut *tx)
            .await?;
    for team in teams {
        sqlx::query("SELECT id FROM teams WHERE id = $1 FOR UPDATE")
            .bind(team)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
            .bind(team)
            .bind(user)
            .execute(&mut *tx)
            .await?;
        let heir: Option<Uuid> = sqlx::query_scalar(
            "SELECT user_id FROM team_members WHERE team_id = $1
             ORDER BY CASE role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END,
                      joined_at, user_id
             LIMIT 1",
        )
        .bind(team)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(heir) = heir else {
            sqlx::query("DELETE FROM teams WHERE id = $1")
                .bind(team)
                .execute(&mut *tx)
                .await?;
            continue;
        };
        // Nobody else owned it: the heir does now.
        sqlx::query("UPDATE team_members SET role = 'owner' WHERE team_id = $1 AND user_id = $2")
            .bind(team)
            .bind(heir)
            .execute(&mut *tx)
            .await?;
        hand_over(tx, team, user).await?;
    }
    Ok(())
}

// ---- invitations --------------------------------------------------------------

/// Invites `email` as `role` (admins and owners): a mail with a link that
/// works for 7 days, for the account with that address. A new invitation
/// to the same address replaces the older (its link stops working).
pub async fn invite(
    state: &AppState,
    session: &AuthSession,
    team: Uuid,
    email: &str,
    role: Role,
) -> Result<(), AppError> {
    let email = Email::parse(email).map_err(|m| AppError::invalid("email", m))?;
    let email = email.as_ref();
    if role == Role::Owner {
        return Err(AppError::invalid(
            "role",
            "Invite as an admin or member; an owner can make them an owner once they joined.",
        ));
    }
    let user = session.user_id;
    require_editor(&state.db, team, user).await?;
    let team_key =
        keystore::team_key_for_member(&state.db, &state.crypto.keyring, team, user).await?;
    let index = state.crypto.email_index(email);
    let mut tx = state.db.begin().await?;
    lock_team(&mut tx, team).await?;
    let (already, people): (bool, i64) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM team_members m JOIN users u ON u.id = m.user_id
                        WHERE m.team_id = $1 AND u.email_index = $2),
                (SELECT count(*) FROM team_members WHERE team_id = $1)
                + (SELECT count(*) FROM team_invitations WHERE team_id = $1 AND expires_at > now()
                   AND email_index <> $2)",
    )
    .bind(team)
    .bind(&index)
    .fetch_one(&mut *tx)
    .await?;
    if already {
        return Err(AppError::invalid(
            "email",
            "That person is in the team already.",
        ));
    }
    if people >= super::MEMBERS_MAX {
        return Err(AppError::invalid(
            "email",
            format!(
                "A team has at most {} people, invitations included.",
                super::MEMBERS_MAX
            ),
        ));
    }
    let id = Uuid::new_v4();
    let token = random_token();
    sqlx::query("DELETE FROM team_invitations WHERE team_id = $1 AND email_index = $2")
        .bind(team)
        .bind(&index)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO team_invitations (id, team_id, invited_by, email, email_index, role,
                                       token_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now() + make_interval(days => $8))",
    )
    .bind(id)
    .bind(team)
    .bind(user)
    .bind(team_key.seal_str(invitation_place(id, team), email))
    .bind(&index)
    .bind(role.as_str())
    .bind(token_hash(&token))
    .bind(INVITATION_DAYS)
    .execute(&mut *tx)
    .await?;
    let name: Sealed = sqlx::query_scalar("SELECT name FROM teams WHERE id = $1")
        .bind(team)
        .fetch_one(&mut *tx)
        .await?;
    let team_name = team_key.open_text(name_place(team), &name)?;
    let link = format!(
        "{}/teams/join?token={token}",
        state.settings.public_url.trim_end_matches('/')
    );
    let inviter = format!("{} {}", session.user.first_name, session.user.last_name);
    // The mail is a job sealed with the inviter's key (theirs is the act).
    jobs::enqueue(
        &mut tx,
        NewJob::new(Kind::Mail)
            .for_owner(
                user,
                &session.key,
                &invitation_mail(email, &inviter, &team_name, role, &link),
            )
            .idempotency_key(format!("mail:team_invitation:{id}")),
    )
    .await?;
    tx.commit().await?;
    state.jobs.wake();
    tracing::info!(team_id = %team, invitation_id = %id, "team invitation sent");
    note(state, session, Event::TeamInvitationSent, Some(&team_name)).await;
    Ok(())
}

fn invitation_mail(email: &str, inviter: &str, team: &str, role: Role, link: &str) -> Outgoing {
    let role = role.with_article();
    let text = format!(
        "Hello,\n\n{inviter} invited you to the team \"{team}\" on Enclave, as {role}.\n\n\
         Open this link within {INVITATION_DAYS} days to join, signed in (or signing up) with \
         this address:\n\n{link}\n\n\
         If you do not want to join, ignore this mail: nothing happens until the link is used.\n"
    );
    let html = format!(
        "<p>Hello,</p><p>{inviter} invited you to the team <strong>{team}</strong> on Enclave, \
         as {role}.</p><p>Open this link within {INVITATION_DAYS} days to join, signed in (or \
         signing up) with this address:</p><p><a href=\"{href}\">See the invitation</a></p>\
         <p>If you do not want to join, ignore this mail: nothing happens until the link is used.</p>",
        inviter = escape_html(inviter),
        team = escape_html(team),
        href = escape_html(link),
    );
    Outgoing {
        to: email.to_owned(),
        subject: format!("{inviter} invited you to a team on Enclave"),
        text,
        html,
    }
}

/// Retention: an invitation whose link has expired (its sealed address
/// with it) is deleted; nobody can use it any more.
pub async fn purge_invitations(db: &sqlx::PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM team_invitations WHERE id IN (
             SELECT id FROM team_invitations WHERE expires_at < now()
             LIMIT $1 FOR UPDATE SKIP LOCKED)",
    )
    .bind(batch)
    .execute(db)
    .await?
    .rows_affected())
}

/// Withdraws an invitation (admins and owners): its link stops working.
pub async fn withdraw(
    state: &AppState,
    user: Uuid,
    team: Uuid,
    invitation: Uuid,
) -> Result<(), AppError> {
    require_editor(&state.db, team, user).await?;
    let done = sqlx::query("DELETE FROM team_invitations WHERE id = $1 AND team_id = $2")
        .bind(invitation)
        .bind(team)
        .execute(&state.db)
        .await?;
    crate::error::found(done)
}

/// Invitation links opened per client address per hour. The tokens cannot
/// be guessed; this keeps anyone from trying at scale all the same.
const OPENS_PER_IP: Limit = Limit::new(30, 3600);

/// Counts one opening of an invitation link from `client_ip`.
pub async fn limit_opens(state: &AppState, client_ip: std::net::IpAddr) -> Result<(), AppError> {
    let bucket = state
        .crypto
        .rate_bucket("team-invitation:ip", &rate_limit::ip_subject(client_ip));
    rate_limit::hit(&state.db, &bucket, OPENS_PER_IP).await
}

#[derive(sqlx::FromRow)]
struct InvitationRow {
    id: Uuid,
    team_id: Uuid,
    invited_by: Uuid,
    email: Sealed,
    email_index: Vec<u8>,
    role: String,
    live: bool,
}

async fn find_invitation(
    conn: &mut sqlx::PgConnection,
    token: &str,
    lock: bool,
) -> Result<InvitationRow, AppError> {
    let sql = if lock {
        "SELECT id, team_id, invited_by, email, email_index, role, expires_at > now() AS live
         FROM team_invitations WHERE token_hash = $1 FOR UPDATE"
    } else {
        "SELECT id, team_id, invited_by, email, email_index, role, expires_at > now() AS live
         FROM team_invitations WHERE token_hash = $1"
    };
    let row: Option<InvitationRow> = sqlx::query_as(sql)
        .bind(token_hash(token.trim()))
        .fetch_optional(&mut *conn)
        .await?;
    let row = row.ok_or_else(|| AppError::invalid("token", INVITATION_UNKNOWN))?;
    if !row.live {
        return Err(AppError::invalid("token", INVITATION_EXPIRED));
    }
    Ok(row)
}

/// Opens a team's key for the holder of one of its invitation links (not
/// yet a member): to show what they are invited to.
async fn team_key_for_invitation(state: &AppState, team: Uuid) -> Result<DataKey, AppError> {
    let (kek_id, bytes): (String, Vec<u8>) =
        sqlx::query_as("SELECT kek_id, wrapped_key FROM team_keys WHERE team_id = $1")
            .bind(team)
            .fetch_one(&state.db)
            .await?;
    keystore::open_team_key(&state.crypto.keyring, team, kek_id, bytes)
}

/// What the invitation link `token` offers, for the signed-in `session`.
pub async fn preview(
    state: &AppState,
    session: &AuthSession,
    token: &str,
) -> Result<InvitationPreview, AppError> {
    let mut conn = state.db.acquire().await?;
    let row = find_invitation(&mut conn, token, false).await?;
    drop(conn);
    let team_key = team_key_for_invitation(state, row.team_id).await?;
    let name: Sealed = sqlx::query_scalar("SELECT name FROM teams WHERE id = $1")
        .bind(row.team_id)
        .fetch_one(&state.db)
        .await?;
    let inviter = match keystore::user_key(
        &state.db,
        &state.crypto.keyring,
        row.invited_by,
        KeyUse::Team,
    )
    .await
    {
        Ok(key) => {
            let (first, last): (Sealed, Sealed) =
                sqlx::query_as("SELECT first_name, last_name FROM users WHERE id = $1")
                    .bind(row.invited_by)
                    .fetch_one(&state.db)
                    .await?;
            format!(
                "{} {}",
                key.open_text(users_place("first_name", row.invited_by), &first)?,
                key.open_text(users_place("last_name", row.invited_by), &last)?
            )
        }
        Err(_) => "Someone".to_owned(),
    };
    Ok(InvitationPreview {
        team: team_key.open_text(name_place(row.team_id), &name)?,
        invited_by: inviter,
        role: Role::parse(&row.role).unwrap_or(Role::Member),
        email: team_key.open_text(invitation_place(row.id, row.team_id), &row.email)?,
        for_you: row.email_index == state.crypto.email_index(&session.user.email),
    })
}

/// Joins the team with the invitation link `token`, used once. The
/// signed-in account must have the address it was sent to.
pub async fn accept(
    state: &AppState,
    session: &AuthSession,
    token: &str,
) -> Result<Uuid, AppError> {
    let mut tx = state.db.begin().await?;
    let row = find_invitation(&mut tx, token, true).await?;
    if row.email_index != state.crypto.email_index(&session.user.email) {
        return Err(AppError::invalid("token", INVITATION_OTHER_ADDRESS));
    }
    lock_team(&mut tx, row.team_id).await?;
    let teams: i64 = sqlx::query_scalar("SELECT count(*) FROM team_members WHERE user_id = $1")
        .bind(session.user_id)
        .fetch_one(&mut *tx)
        .await?;
    if teams >= super::TEAMS_MAX {
        return Err(AppError::invalid(
            "token",
            format!(
                "You are in {} teams, the most one person can be in. Leave one first.",
                super::TEAMS_MAX
            ),
        ));
    }
    sqlx::query(
        "INSERT INTO team_members (team_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (team_id, user_id) DO NOTHING",
    )
    .bind(row.team_id)
    .bind(session.user_id)
    .bind(&row.role)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM team_invitations WHERE id = $1")
        .bind(row.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(team_id = %row.team_id, user_id = %session.user_id, "joined a team");
    let name = team_name(state, row.team_id, session.user_id).await.ok();
    note(state, session, Event::JoinedTeam, name.as_deref()).await;
    Ok(row.team_id)
}
