//! The activity log: what happened to an account's security, for its owner
//! to read (Settings → Account activity): sign-ins and their failures,
//! sign-outs, password, email and second-factor changes, keys added, tested
//! and removed, exports and deletion requests, each with the time, address
//! and browser. The address, browser and detail are sealed with the user's
//! key; the kind and time are not, so paging and the 90-day purge need no
//! key. Two events also mail the owner: failed sign-ins (at most once an
//! hour) and a sign-in from a browser the account has not used.

use serde::{Deserialize, Serialize};

/// How long activity entries are kept (the policies' "technical data: 90
/// days"); the operator may shorten it (`ENCLAVE_ACTIVITY_RETENTION_DAYS`).
pub const KEEP_DAYS: u32 = 90;
/// Entries per page of the activity log.
pub const PAGE_SIZE: usize = 50;

/// What happened. Stored as text (`as_str`); a name never changes once
/// shipped, since old entries keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    SignedIn,
    SignInFailed,
    SignedOut,
    SessionEnded,
    OtherSessionsEnded,
    SignedOutEverywhere,
    PasswordChanged,
    PasswordReset,
    EmailChanged,
    TwoFactorEnabled,
    TwoFactorDisabled,
    PasskeyAdded,
    PasskeyRemoved,
    SignInMethodLinked,
    SignInMethodRemoved,
    ProviderKeyAdded,
    ProviderKeyReplaced,
    ProviderKeyTested,
    ProviderKeyRemoved,
    ConnectionAdded,
    ConnectionReplaced,
    ConnectionTested,
    ConnectionRemoved,
    McpServerAdded,
    McpServerRemoved,
    TelegramBotConnected,
    TelegramBotDisconnected,
    TelegramAccessReset,
    ApiKeyCreated,
    ApiKeyRevoked,
    ExportRequested,
    ExportDownloaded,
    ConversationsDeleted,
    RetentionChanged,
    MarketingChanged,
    PolicyAcknowledged,
    DeletionRequested,
    AccountRestored,
    AccountDisabled,
    AccountEnabled,
    TeamCreated,
    TeamDeleted,
    TeamInvitationSent,
    JoinedTeam,
    LeftTeam,
    TeamRoleChanged,
    TeamMemberRemoved,
    RemovedFromTeam,
    CreditsAdded,
    UsageSpike,
    BudgetReached,
}

impl Event {
    pub const ALL: &'static [Event] = &[
        Event::SignedIn,
        Event::SignInFailed,
        Event::SignedOut,
        Event::SessionEnded,
        Event::OtherSessionsEnded,
        Event::SignedOutEverywhere,
        Event::PasswordChanged,
        Event::PasswordReset,
        Event::EmailChanged,
        Event::TwoFactorEnabled,
        Event::TwoFactorDisabled,
        Event::PasskeyAdded,
        Event::PasskeyRemoved,
        Event::SignInMethodLinked,
        Event::SignInMethodRemoved,
        Event::ProviderKeyAdded,
        Event::ProviderKeyReplaced,
        Event::ProviderKeyTested,
        Event::ProviderKeyRemoved,
        Event::ConnectionAdded,
        Event::ConnectionReplaced,
        Event::ConnectionTested,
        Event::ConnectionRemoved,
        Event::McpServerAdded,
        Event::McpServerRemoved,
        Event::TelegramBotConnected,
        Event::TelegramBotDisconnected,
        Event::TelegramAccessReset,
        Event::ApiKeyCreated,
        Event::ApiKeyRevoked,
        Event::ExportRequested,
        Event::ExportDownloaded,
        Event::ConversationsDeleted,
        Event::RetentionChanged,
        Event::MarketingChanged,
        Event::PolicyAcknowledged,
        Event::DeletionRequested,
        Event::AccountRestored,
        Event::AccountDisabled,
        Event::AccountEnabled,
        Event::TeamCreated,
        Event::TeamDeleted,
        Event::TeamInvitationSent,
        Event::JoinedTeam,
        Event::LeftTeam,
        Event::TeamRoleChanged,
        Event::TeamMemberRemoved,
        Event::RemovedFromTeam,
        Event::CreditsAdded,
        Event::UsageSpike,
        Event::BudgetReached,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::SignedIn => "signed_in",
            Event::SignInFailed => "sign_in_failed",
            Event::SignedOut => "signed_out",
            Event::SessionEnded => "session_ended",
            Event::OtherSessionsEnded => "other_sessions_ended",
            Event::SignedOutEverywhere => "signed_out_everywhere",
            Event::PasswordChanged => "password_changed",
            Event::PasswordReset => "password_reset",
            Event::EmailChanged => "email_changed",
            Event::TwoFactorEnabled => "two_factor_enabled",
            Event::TwoFactorDisabled => "two_factor_disabled",
            Event::PasskeyAdded => "passkey_added",
            Event::PasskeyRemoved => "passkey_removed",
            Event::SignInMethodLinked => "sign_in_method_linked",
            Event::SignInMethodRemoved => "sign_in_method_removed",
            Event::ProviderKeyAdded => "provider_key_added",
            Event::ProviderKeyReplaced => "provider_key_replaced",
            Event::ProviderKeyTested => "provider_key_tested",
            Event::ProviderKeyRemoved => "provider_key_removed",
            Event::ConnectionAdded => "connection_added",
            Event::ConnectionReplaced => "connection_replaced",
            Event::ConnectionTested => "connection_tested",
            Event::ConnectionRemoved => "connection_removed",
            Event::McpServerAdded => "mcp_server_added",
            Event::McpServerRemoved => "mcp_server_removed",
            Event::TelegramBotConnected => "telegram_bot_connected",
            Event::TelegramBotDisconnected => "telegram_bot_disconnected",
            Event::TelegramAccessReset => "telegram_access_reset",
            Event::ApiKeyCreated => "api_key_created",
            Event::ApiKeyRevoked => "api_key_revoked",
            Event::ExportRequested => "export_requested",
            Event::ExportDownloaded => "export_downloaded",
            Event::ConversationsDeleted => "conversations_deleted",
            Event::RetentionChanged => "retention_changed",
            Event::MarketingChanged => "marketing_changed",
            Event::PolicyAcknowledged => "policy_acknowledged",
            Event::DeletionRequested => "deletion_requested",
            Event::AccountRestored => "account_restored",
            Event::AccountDisabled => "account_disabled",
            Event::AccountEnabled => "account_enabled",
            Event::TeamCreated => "team_created",
            Event::TeamDeleted => "team_deleted",
            Event::TeamInvitationSent => "team_invitation_sent",
            Event::JoinedTeam => "joined_team",
            Event::LeftTeam => "left_team",
            Event::TeamRoleChanged => "team_role_changed",
            Event::TeamMemberRemoved => "team_member_removed",
            Event::RemovedFromTeam => "removed_from_team",
            Event::CreditsAdded => "credits_added",
            Event::UsageSpike => "usage_spike",
            Event::BudgetReached => "budget_reached",
        }
    }

    pub fn parse(value: &str) -> Option<Event> {
        Event::ALL.iter().copied().find(|e| e.as_str() == value)
    }

    /// What the user reads.
    pub fn label(self) -> &'static str {
        match self {
            Event::SignedIn => "Signed in",
            Event::SignInFailed => "Failed sign-in",
            Event::SignedOut => "Signed out",
            Event::SessionEnded => "Ended a session",
            Event::OtherSessionsEnded => "Signed out all other sessions",
            Event::SignedOutEverywhere => "Signed out everywhere",
            Event::PasswordChanged => "Changed the password",
            Event::PasswordReset => "Reset the password by mail",
            Event::EmailChanged => "Changed the email address",
            Event::TwoFactorEnabled => "Turned on two-factor sign-in",
            Event::TwoFactorDisabled => "Turned off two-factor sign-in",
            Event::PasskeyAdded => "Added a passkey",
            Event::PasskeyRemoved => "Removed a passkey",
            Event::SignInMethodLinked => "Linked a sign-in provider",
            Event::SignInMethodRemoved => "Removed a sign-in method",
            Event::ProviderKeyAdded => "Added a provider key",
            Event::ProviderKeyReplaced => "Replaced a provider key",
            Event::ProviderKeyTested => "Tested a provider key",
            Event::ProviderKeyRemoved => "Removed a provider key",
            Event::ConnectionAdded => "Added a connection",
            Event::ConnectionReplaced => "Replaced a connection's secret",
            Event::ConnectionTested => "Tested a connection",
            Event::ConnectionRemoved => "Removed a connection",
            Event::McpServerAdded => "Added an MCP server",
            Event::McpServerRemoved => "Removed an MCP server",
            Event::TelegramBotConnected => "Connected a Telegram bot to an agent",
            Event::TelegramBotDisconnected => "Disconnected a Telegram bot",
            Event::TelegramAccessReset => "Let nobody in to a Telegram bot any more",
            Event::ApiKeyCreated => "Created an API key",
            Event::ApiKeyRevoked => "Revoked an API key",
            Event::ExportRequested => "Asked for an export of your data",
            Event::ExportDownloaded => "Downloaded an export",
            Event::ConversationsDeleted => "Deleted every conversation",
            Event::RetentionChanged => "Changed how long conversations are kept",
            Event::MarketingChanged => "Changed marketing mail consent",
            Event::PolicyAcknowledged => "Acknowledged a policy change",
            Event::DeletionRequested => "Asked for the account to be deleted",
            Event::AccountRestored => "Restored the account",
            Event::AccountDisabled => "An administrator disabled the account",
            Event::AccountEnabled => "An administrator enabled the account again",
            Event::TeamCreated => "Created a team",
            Event::TeamDeleted => "Deleted a team",
            Event::TeamInvitationSent => "Invited someone to a team",
            Event::JoinedTeam => "Joined a team",
            Event::LeftTeam => "Left a team",
            Event::TeamRoleChanged => "Changed someone's role in a team",
            Event::TeamMemberRemoved => "Removed someone from a team",
            Event::RemovedFromTeam => "Was removed from a team",
            Event::CreditsAdded => "Credits were added",
            Event::UsageSpike => "Unusually high model usage",
            Event::BudgetReached => "A usage budget was reached",
        }
    }
}

/// One entry, as the activity page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityEntry {
    pub id: String,
    /// `YYYY-MM-DD HH:MM:SS UTC`.
    pub at: String,
    pub kind: String,
    pub label: String,
    pub detail: Option<String>,
    pub address: Option<String>,
    /// "Firefox 133 on Linux".
    pub browser: Option<String>,
    /// The `User-Agent` header as it was sent.
    pub user_agent: Option<String>,
    /// A failure (a failed sign-in, say), shown as a warning.
    pub warning: bool,
}

/// A page of entries, newest first; `next` continues after the last one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityPage {
    pub entries: Vec<ActivityEntry>,
    pub next: Option<String>,
}

#[cfg(feature = "ssr")]
pub mod server {
    use chrono::{DateTime, Utc};
    use sqlx::{PgExecutor, PgPool};
    use uuid::Uuid;

    use super::{ActivityEntry, ActivityPage, Event, PAGE_SIZE};
    use crate::{
        auth::server::AuthSession,
        error::AppError,
        platform::{
            crypto::{DataKey, Place, Sealed},
            jobs::{self, NewJob},
            keystore::{Crypto, SealedColumn},
            mail::Outgoing,
            request::ClientInfo,
        },
        state::AppState,
    };

    pub const SEALED: &[SealedColumn] = &[
        SealedColumn::owned("activity", "ip"),
        SealedColumn::owned("activity", "user_agent"),
        SealedColumn::owned("activity", "detail"),
    ];

    fn place(column: &'static str, id: Uuid, owner: Uuid) -> Place {
        Place::new("activity", column, id, owner)
    }

    /// The keyed hash that recognises a browser (family and system, not
    /// its exact version, so an update is not "new") for one account.
    fn browser_index(crypto: &Crypto, owner: Uuid, client: &ClientInfo) -> Option<Vec<u8>> {
        let ua = client.user_agent.as_deref()?;
        let (browser, system) = crate::auth::server::describe_user_agent(Some(ua));
        let family = browser.split(' ').next().unwrap_or_default();
        Some(crypto.keyed_index("browser", &format!("{owner}\n{family}\n{system}")))
    }

    /// Writes one entry. `client` is where the request came from (none for
    /// work with no request behind it); `detail` a short, non-secret note
    /// such as a key's name.
    pub async fn record<'e>(
        db: impl PgExecutor<'e>,
        crypto: &Crypto,
        owner: Uuid,
        key: &DataKey,
        event: Event,
        client: Option<&ClientInfo>,
        detail: Option<&str>,
    ) -> Result<Uuid, AppError> {
        let id = Uuid::new_v4();
        let ip = client.map(|c| key.seal_str(place("ip", id, owner), &c.ip.to_string()));
        let user_agent = client
            .and_then(|c| c.user_agent.as_deref())
            .map(|ua| key.seal_str(place("user_agent", id, owner), ua));
        let detail = detail
            .filter(|d| !d.trim().is_empty())
            .map(|d| key.seal_str(place("detail", id, owner), d));
        let browser = match event {
            Event::SignedIn => client.and_then(|c| browser_index(crypto, owner, c)),
            _ => None,
        };
        sqlx::query(
            "INSERT INTO activity (id, owner_id, kind, ip, user_agent, detail, browser_index)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(owner)
        .bind(event.as_str())
        .bind(ip)
        .bind(user_agent)
        .bind(detail)
        .bind(browser)
        .execute(db)
        .await?;
        Ok(id)
    }

    /// `record` for a server function's signed-in user, from the request's
    /// address and browser. The action it logs already happened: a failure
    /// to write the entry is logged (without the entry) and not the
    /// user's problem.
    pub async fn note(state: &AppState, session: &AuthSession, event: Event, detail: Option<&str>) {
        let client = crate::platform::request::current_client();
        if let Err(err) = record(
            &state.db,
            &state.crypto,
            session.user_id,
            &session.key,
            event,
            client.as_ref(),
            detail,
        )
        .await
        {
            tracing::warn!(user_id = %session.user_id, kind = event.as_str(), error = %err, "could not write an activity entry");
        }
    }

    /// `record` that logs rather than fails (see `note`).
    pub async fn note_for(
        state: &AppState,
        owner: Uuid,
        key: &DataKey,
        event: Event,
        client: Option<&ClientInfo>,
        detail: Option<&str>,
    ) {
        if let Err(err) = record(&state.db, &state.crypto, owner, key, event, client, detail).await
        {
            tracing::warn!(user_id = %owner, kind = event.as_str(), error = %err, "could not write an activity entry");
        }
    }

    /// A successful sign-in: the entry, and a notice mail when the browser
    /// is one this account has not signed in with before (not for the very
    /// first sign-in, which every account has).
    pub async fn signed_in(
        state: &AppState,
        owner: Uuid,
        key: &DataKey,
        client: &ClientInfo,
    ) -> Result<(), AppError> {
        let index = browser_index(&state.crypto, owner, client);
        let (earlier, known): (bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM activity WHERE owner_id = $1 AND kind = 'signed_in'),
                    EXISTS (SELECT 1 FROM activity WHERE owner_id = $1 AND browser_index = $2)",
        )
        .bind(owner)
        .bind(&index)
        .fetch_one(&state.db)
        .await?;
        let id = record(
            &state.db,
            &state.crypto,
            owner,
            key,
            Event::SignedIn,
            Some(client),
            None,
        )
        .await?;
        if earlier && !known {
            let (browser, system) =
                crate::auth::server::describe_user_agent(client.user_agent.as_deref());
            let (email, first_name) = contact(&state.db, owner, key).await?;
            let mail = new_browser_notice(state, &email, &first_name, &browser, &system, client);
            let mut conn = state.db.acquire().await?;
            jobs::enqueue(
                &mut conn,
                NewJob::new(jobs::Kind::Mail)
                    .for_owner(owner, key, &mail)
                    .idempotency_key(format!("new-browser:{id}")),
            )
            .await?;
            state.jobs.wake();
        }
        Ok(())
    }

    /// A failed sign-in to an existing account: the entry, and a notice
    /// mail at most once an hour.
    pub async fn sign_in_failed(
        state: &AppState,
        owner: Uuid,
        key: &DataKey,
        client: &ClientInfo,
    ) -> Result<(), AppError> {
        record(
            &state.db,
            &state.crypto,
            owner,
            key,
            Event::SignInFailed,
            Some(client),
            None,
        )
        .await?;
        let hour = Utc::now().format("%Y-%m-%dT%H");
        let (email, first_name) = contact(&state.db, owner, key).await?;
        let mail = failed_sign_in_notice(state, &email, &first_name, client);
        let mut conn = state.db.acquire().await?;
        jobs::enqueue(
            &mut conn,
            NewJob::new(jobs::Kind::Mail)
                .for_owner(owner, key, &mail)
                .idempotency_key(format!("failed-sign-in:{owner}:{hour}")),
        )
        .await?;
        state.jobs.wake();
        Ok(())
    }

    /// The owner's address and first name, for a notice mail.
    pub async fn contact(
        db: &PgPool,
        owner: Uuid,
        key: &DataKey,
    ) -> Result<(String, String), AppError> {
        use crate::auth::server::users_place;
        let (email, first): (Sealed, Sealed) =
            sqlx::query_as("SELECT email, first_name FROM users WHERE id = $1")
                .bind(owner)
                .fetch_one(db)
                .await?;
        Ok((
            key.open_text(users_place("email", owner), &email)?,
            key.open_text(users_place("first_name", owner), &first)?,
        ))
    }

    fn new_browser_notice(
        state: &AppState,
        email: &str,
        first_name: &str,
        browser: &str,
        system: &str,
        client: &ClientInfo,
    ) -> Outgoing {
        let base = state.settings.public_url.trim_end_matches('/');
        let sessions = format!("{base}/settings/sessions");
        let when = Utc::now().format("%Y-%m-%d %H:%M UTC");
        let text = format!(
            "Hello {first_name},\n\n\
             Your Enclave account was just signed in to from a browser it had not \
             used before: {browser} on {system}, from {ip}, at {when}.\n\n\
             If that was you, there is nothing to do. If not, end that session and \
             change your password:\n\n{sessions}\n",
            ip = client.ip,
        );
        let html = format!(
            "<p>Hello {name},</p>\
             <p>Your Enclave account was just signed in to from a browser it had not \
             used before: {browser} on {system}, from {ip}, at {when}.</p>\
             <p>If that was you, there is nothing to do. If not, \
             <a href=\"{href}\">end that session</a> and change your password.</p>",
            name = escape(first_name),
            browser = escape(browser),
            system = escape(system),
            ip = client.ip,
            href = escape(&sessions),
        );
        Outgoing {
            to: email.to_owned(),
            subject: "A new sign-in to your account".to_owned(),
            text,
            html,
        }
    }

    fn failed_sign_in_notice(
        state: &AppState,
        email: &str,
        first_name: &str,
        client: &ClientInfo,
    ) -> Outgoing {
        let base = state.settings.public_url.trim_end_matches('/');
        let activity = format!("{base}/settings/account-activity");
        let when = Utc::now().format("%Y-%m-%d %H:%M UTC");
        let text = format!(
            "Hello {first_name},\n\n\
             Someone just failed to sign in to your Enclave account from {ip} at {when}. \
             If it was you, there is nothing to do. If not, your password held; \
             choosing a longer one or turning on two-factor sign-in makes guessing \
             harder still. Every attempt is listed here:\n\n{activity}\n\n\
             (We send this at most once an hour.)\n",
            ip = client.ip,
        );
        let html = format!(
            "<p>Hello {name},</p>\
             <p>Someone just failed to sign in to your Enclave account from {ip} at {when}. \
             If it was you, there is nothing to do. If not, your password held; \
             choosing a longer one or turning on two-factor sign-in makes guessing \
             harder still. <a href=\"{href}\">See every attempt</a>.</p>\
             <p>(We send this at most once an hour.)</p>",
            name = escape(first_name),
            ip = client.ip,
            href = escape(&activity),
        );
        Outgoing {
            to: email.to_owned(),
            subject: "A failed sign-in to your account".to_owned(),
            text,
            html,
        }
    }

    fn escape(text: &str) -> String {
        crate::platform::mail::escape_html(text)
    }

    type Row = (
        Uuid,
        DateTime<Utc>,
        String,
        Option<Sealed>,
        Option<Sealed>,
        Option<Sealed>,
    );

    /// A page of the owner's entries, newest first, after the entry `after`
    /// (an id from the previous page's `next`; another user's id or an
    /// unknown one is not found).
    pub async fn list(
        db: &PgPool,
        owner: Uuid,
        key: &DataKey,
        after: Option<Uuid>,
    ) -> Result<ActivityPage, AppError> {
        let cursor: Option<(DateTime<Utc>, Uuid)> = match after {
            None => None,
            Some(id) => Some(
                sqlx::query_as("SELECT at, id FROM activity WHERE id = $1 AND owner_id = $2")
                    .bind(id)
                    .bind(owner)
                    .fetch_optional(db)
                    .await?
                    .ok_or(AppError::NotFound)?,
            ),
        };
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, at, kind, ip, user_agent, detail FROM activity
             WHERE owner_id = $1 AND ($2::timestamptz IS NULL OR (at, id) < ($2, $3))
             ORDER BY at DESC, id DESC LIMIT $4",
        )
        .bind(owner)
        .bind(cursor.map(|c| c.0))
        .bind(cursor.map(|c| c.1))
        .bind(PAGE_SIZE as i64 + 1)
        .fetch_all(db)
        .await?;
        let more = rows.len() > PAGE_SIZE;
        let mut entries = Vec::with_capacity(rows.len().min(PAGE_SIZE));
        for (id, at, kind, ip, user_agent, detail) in rows.into_iter().take(PAGE_SIZE) {
            let event = Event::parse(&kind);
            let user_agent =
                key.open_optional(place("user_agent", id, owner), user_agent.as_ref())?;
            let browser = user_agent.as_deref().map(|ua| {
                let (browser, system) = crate::auth::server::describe_user_agent(Some(ua));
                format!("{browser} on {system}")
            });
            entries.push(ActivityEntry {
                id: id.to_string(),
                at: at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                label: event.map_or_else(|| kind.clone(), |e| e.label().to_owned()),
                warning: event == Some(Event::SignInFailed),
                kind,
                detail: key.open_optional(place("detail", id, owner), detail.as_ref())?,
                address: key.open_optional(place("ip", id, owner), ip.as_ref())?,
                browser,
                user_agent,
            });
        }
        let next = if more {
            entries.last().map(|e| e.id.clone())
        } else {
            None
        };
        Ok(ActivityPage { entries, next })
    }

    /// Deletes entries older than `days`; at most `batch` per call (the
    /// retention job calls again until none are left).
    pub async fn purge(db: &PgPool, days: u32, batch: i64) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "DELETE FROM activity WHERE id IN (
                 SELECT id FROM activity WHERE at < now() - make_interval(days => $1)
                 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(days as i32)
        .bind(batch)
        .execute(db)
        .await?
        .rows_affected())
    }
}
