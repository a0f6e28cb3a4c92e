//! Teams: people who share agents. A team has owners (who manage its
//! people and can delete it), admins (who invite, and edit what the team
//! shares) and members (who use it). Invitations go by mail as single-use
//! links for one address. What a team shares is sealed with the team's own
//! data key; a member's conversations stay theirs alone.
//!
//! `server` (ssr) the rules and queries, and what other slices ask of a
//! team (may this user use or edit a team's item, the team's key);
//! `api` the server functions; `pages` /teams, /teams/{id}, /teams/join.

pub mod api;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod server;

use serde::{Deserialize, Serialize};

/// What someone may do in a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Member,
    Admin,
    Owner,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Owner, Role::Admin, Role::Member];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == value.trim())
    }

    pub fn label(self) -> &'static str {
        match self {
            Role::Owner => "Owner",
            Role::Admin => "Admin",
            Role::Member => "Member",
        }
    }

    /// "an owner", "an admin", "a member".
    pub fn with_article(self) -> &'static str {
        match self {
            Role::Owner => "an owner",
            Role::Admin => "an admin",
            Role::Member => "a member",
        }
    }

    /// What the role lets you do, for the team page and an invitation.
    pub fn explain(self) -> &'static str {
        match self {
            Role::Owner => {
                "You manage the team's people, and can rename or delete the team; you also make \
                 and change what it shares."
            }
            Role::Admin => {
                "You invite people, and make and change the team's agents, connections and \
                 knowledge bases."
            }
            Role::Member => {
                "You chat with the team's agents and search its knowledge bases; your \
                 conversations stay yours alone."
            }
        }
    }

    /// Makes, edits and deletes what the team shares; invites people.
    pub fn can_edit(self) -> bool {
        self >= Role::Admin
    }

    /// Changes roles, removes people, renames and deletes the team.
    pub fn can_manage(self) -> bool {
        self == Role::Owner
    }
}

/// Where an agent, connection or knowledge base is, for the user looking:
/// their own, or a team's. Flattened into each view (`team_id`, `team`,
/// `can_edit` on the wire).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sharing {
    /// The team it belongs to (`None`: the user's own).
    #[serde(default)]
    pub team_id: Option<String>,
    /// That team's name.
    #[serde(default)]
    pub team: Option<String>,
    /// The user may change and delete it: their own, or a team's where
    /// they are an admin or owner.
    #[serde(default)]
    pub can_edit: bool,
}

impl Sharing {
    /// The user's own.
    pub fn own() -> Self {
        Sharing {
            can_edit: true,
            ..Sharing::default()
        }
    }
}

/// A team the user belongs to, in the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamSummary {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub members: i64,
    pub agents: i64,
}

/// One person in a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub user_id: String,
    pub name: String,
    pub email: String,
    pub role: Role,
    /// `YYYY-MM-DD`, UTC.
    pub joined: String,
    pub you: bool,
}

/// An invitation not yet accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationView {
    pub id: String,
    pub email: String,
    pub role: Role,
    /// `YYYY-MM-DD`, UTC.
    pub expires: String,
}

/// A team's page: its people, and (for admins) its open invitations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamDetail {
    pub id: String,
    pub name: String,
    /// The viewer's own role.
    pub role: Role,
    pub members: Vec<MemberView>,
    /// Empty for members (only admins and owners see them).
    pub invitations: Vec<InvitationView>,
    pub agents: Vec<crate::agents::AgentSummary>,
}

/// What an invitation link shows before it is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationPreview {
    pub team: String,
    pub invited_by: String,
    pub role: Role,
    /// The address it was sent to, which the accepting account must have.
    pub email: String,
    /// The signed-in account has that address.
    pub for_you: bool,
}

/// Which teams an item can be made in: the ones where the user is an
/// admin or owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamChoice {
    pub id: String,
    pub name: String,
}

pub const INVITATION_UNKNOWN: &str = "This invitation is not valid any more: it was used, withdrawn or replaced by a newer one. \
     Ask the person who invited you to send another.";
pub const INVITATION_EXPIRED: &str =
    "This invitation has expired. Ask the person who invited you to send another.";
pub const INVITATION_OTHER_ADDRESS: &str = "This invitation is for another address. Sign in with the account that has it (or sign up \
     with it), then open the link again.";

/// At most this many people per team (invitations included).
pub const MEMBERS_MAX: i64 = 200;
/// At most this many teams per person.
pub const TEAMS_MAX: i64 = 50;
/// A team's name: 1 to this many characters.
pub const NAME_MAX: usize = 80;

/// A team name as typed: trimmed, not empty, not too long.
pub fn parse_name(name: &str) -> Result<String, crate::error::AppError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(crate::error::AppError::invalid(
            "name",
            "Give the team a name.",
        ));
    }
    if name.chars().count() > NAME_MAX {
        return Err(crate::error::AppError::invalid(
            "name",
            format!("A team name has at most {NAME_MAX} characters."),
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_by_what_they_allow() {
        assert!(Role::Owner.can_manage() && Role::Owner.can_edit());
        assert!(!Role::Admin.can_manage() && Role::Admin.can_edit());
        assert!(!Role::Member.can_manage() && !Role::Member.can_edit());
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn team_names_are_trimmed_and_bounded() {
        assert_eq!(parse_name("  Research  ").unwrap(), "Research");
        assert!(parse_name("   ").is_err());
        assert!(parse_name(&"x".repeat(NAME_MAX + 1)).is_err());
        assert!(parse_name(&"é".repeat(NAME_MAX)).is_ok());
    }
}
