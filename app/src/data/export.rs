//! Exporting everything Enclave holds about a user as one zip: JSON files
//! per kind, and a readable Markdown copy of every conversation. Built by a
//! job (`jobs::Kind::Export`) that reports its progress, sealed with the
//! user's key while it waits, offered for 24 hours, then deleted by the
//! retention job. A mail says when it is ready.
//!
//! Secrets never go in: provider keys, connection secrets and MCP headers
//! appear as the same masks the settings pages show; session tokens,
//! password hashes, two-factor secrets, recovery codes, passkey public keys
//! and OAuth tokens not at all.
//!
//! The format is versioned (`FORMAT_VERSION`, in `manifest.json`) and
//! documented in the `README.md` inside every export.

use serde::{Deserialize, Serialize};

/// The export format's version: a new version only when a file changes in
/// a way a reader of the old one would misread.
pub const FORMAT_VERSION: u32 = 1;
/// How long a finished export can be downloaded.
pub const KEEP_HOURS: u32 = 24;

/// An export, as the data page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportView {
    pub id: String,
    /// queued, building, ready or failed.
    pub state: String,
    /// 0 to 100.
    pub progress: u8,
    pub size_bytes: Option<i64>,
    /// When it was asked for (`YYYY-MM-DD HH:MM UTC`).
    pub created: String,
    /// Until when it can be downloaded.
    pub expires: String,
}

/// What goes in the zip's `README.md`: the format, documented.
pub const README: &str = "# Your Enclave export

Everything Enclave held about your account when this export was made.
Format version 1 (see `manifest.json`). Every file is UTF-8; dates are
UTC in RFC 3339.

| File | What it holds |
|---|---|
| `manifest.json` | `format` (\"enclave-export\"), `version`, when it was made, and the list of files |
| `account.json` | your name, email address, whether it is confirmed, when you signed up, whether you have a password and two-factor sign-in, how long your conversations are kept, your marketing mail choice and your consent records |
| `sign_in_methods.json` | the sign-in providers connected to your account and your passkeys (names and dates; never a credential) |
| `sessions.json` | the browsers signed in to your account: browser, system, address, when it signed in and was last seen |
| `activity.json` | your account activity log (sign-ins, changes to your account's security), with address and browser |
| `agents.json` | every agent, in the same format as an agent export (importable one by one) |
| `provider_keys.json` | your provider keys: name, provider, base URL and the key's mask (never the key) |
| `connections.json` | your tool connections: service, name, settings and the secret's mask (never the secret) |
| `mcp_servers.json` | your MCP servers: name, address (secret parts masked), authentication kind and tools |
| `knowledge.json` | your knowledge bases: each with its documents (name, kind, size, state) and every passage's text and place (the uploaded files are not kept once read) |
| `api_keys.json` | your API keys: name, first characters, scopes, when made, when it expires and was last used, whether it still works (never the key: only its hash is kept) |
| `telegram.json` | your agents' Telegram bots: the bot's name, webhook or polling, the Telegram user ids let in, and each chat's id with its conversation (never the bot token) |
| `schedules.json` | your schedules: name, cron expression, time zone, prompt, settings, and each one's run history (when, how it went, tokens, the conversation, the reason a run failed) |
| `tool_calls.json` | your tool activity: which tool, the host, the outcome, sizes and durations |
| `conversations.json` | every conversation: id, title, agent, and when it will be erased |
| `conversations/<id>.json` | one conversation, every message with its parts (text and tool calls), and the text of the files attached to its messages |
| `conversations/<id>.md` | the same conversation, to read |

Secrets (API keys, tokens, passwords, two-factor secrets) are never in an
export; where you stored one, its mask is.
";

#[cfg(feature = "ssr")]
pub mod server {
    use std::io::Write as _;

    use chrono::{DateTime, Utc};
    use serde::Serialize;
    use serde_json::{Value, json};
    use uuid::Uuid;

    use super::{ExportView, FORMAT_VERSION, KEEP_HOURS, README};
    use crate::{
        auth::{UserView, server::AuthSession},
        chat::{MessageView, ReplyPart},
        data::activity::{self, Event},
        error::AppError,
        platform::{
            crypto::{DataKey, Place, Sealed},
            jobs::{self, JobError, Kind, NewJob},
            keystore::SealedColumn,
            mail::{Outgoing, escape_html},
        },
        state::AppState,
    };

    pub const SEALED: &[SealedColumn] = &[SealedColumn::owned("exports", "file")];

    /// The largest export kept (a sealed value lives in one column).
    const MAX_BYTES: usize = 512 * 1024 * 1024;

    fn place(id: Uuid, owner: Uuid) -> Place {
        Place::new("exports", "file", id, owner)
    }

    #[derive(Serialize, serde::Deserialize)]
    struct Payload {
        export: Uuid,
    }

    /// Asks for a new export of the signed-in user's data. One at a time:
    /// while one is being built, asking again returns it.
    pub async fn request(state: &AppState, session: &AuthSession) -> Result<Uuid, AppError> {
        let owner = session.user_id;
        let mut tx = state.db.begin().await?;
        // One request at a time per user (two clicks, two tabs).
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("export:{owner}"))
            .execute(&mut *tx)
            .await?;
        let running: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM exports WHERE owner_id = $1 AND state IN ('queued', 'building')",
        )
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = running {
            return Ok(id);
        }
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO exports (id, owner_id, state, expires_at)
             VALUES ($1, $2, 'queued', now() + make_interval(hours => $3))",
        )
        .bind(id)
        .bind(owner)
        .bind(KEEP_HOURS as i32)
        .execute(&mut *tx)
        .await?;
        jobs::enqueue(
            &mut tx,
            NewJob::new(Kind::Export)
                .for_owner(owner, &session.key, &Payload { export: id })
                .idempotency_key(format!("export:{id}")),
        )
        .await?;
        let client = crate::platform::request::current_client();
        activity::server::record(
            &mut *tx,
            &state.crypto,
            owner,
            &session.key,
            Event::ExportRequested,
            client.as_ref(),
            None,
        )
        .await?;
        tx.commit().await?;
        state.jobs.wake();
        Ok(id)
    }

    /// The user's exports still on offer (and those being built), newest
    /// first.
    pub async fn list(state: &AppState, owner: Uuid) -> Result<Vec<ExportView>, AppError> {
        type Row = (Uuid, String, i16, Option<i64>, DateTime<Utc>, DateTime<Utc>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, state, progress, size_bytes, created_at, expires_at FROM exports
             WHERE owner_id = $1 AND expires_at > now() ORDER BY created_at DESC LIMIT 5",
        )
        .bind(owner)
        .fetch_all(&state.db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, state, progress, size, created, expires)| ExportView {
                id: id.to_string(),
                state,
                progress: progress.clamp(0, 100) as u8,
                size_bytes: size,
                created: created.format("%Y-%m-%d %H:%M UTC").to_string(),
                expires: expires.format("%Y-%m-%d %H:%M UTC").to_string(),
            })
            .collect())
    }

    /// A ready export's zip, opened, for its owner (another user's, an
    /// unfinished or an expired one is not found).
    pub async fn download(
        state: &AppState,
        session: &AuthSession,
        id: Uuid,
    ) -> Result<(Vec<u8>, String), AppError> {
        let row: Option<(Sealed, DateTime<Utc>)> = sqlx::query_as(
            "SELECT file, created_at FROM exports
             WHERE id = $1 AND owner_id = $2 AND state = 'ready' AND expires_at > now()
               AND file IS NOT NULL",
        )
        .bind(id)
        .bind(session.user_id)
        .fetch_optional(&state.db)
        .await?;
        let (file, created) = row.ok_or(AppError::NotFound)?;
        let bytes = session
            .key
            .open(place(id, session.user_id), &file)
            .map_err(|e| AppError::internal(format!("exports.file of {id}: {e}")))?;
        activity::server::note(state, session, Event::ExportDownloaded, None).await;
        Ok((
            bytes,
            format!("enclave-export-{}.zip", created.format("%Y-%m-%d")),
        ))
    }

    /// Deletes up to `batch` exports past their time.
    pub async fn purge(db: &sqlx::PgPool, batch: i64) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "DELETE FROM exports WHERE id IN (
                 SELECT id FROM exports WHERE expires_at <= now()
                 LIMIT $1 FOR UPDATE SKIP LOCKED)",
        )
        .bind(batch)
        .execute(db)
        .await?
        .rows_affected())
    }

    async fn progress(state: &AppState, id: Uuid, percent: i16) -> Result<(), JobError> {
        sqlx::query("UPDATE exports SET state = 'building', progress = $2 WHERE id = $1")
            .bind(id)
            .bind(percent)
            .execute(&state.db)
            .await
            .map_err(|_| JobError::retry("The database was not reachable."))?;
        Ok(())
    }

    /// The export job: gathers every kind, zips it, seals it, mails.
    pub async fn run(state: &AppState, job: &jobs::Job, key: &DataKey) -> Result<(), JobError> {
        let owner = job
            .owner
            .ok_or_else(|| JobError::fatal("The job has no owner."))?;
        let Payload { export } = job.payload(key)?;
        let exists: Option<String> =
            sqlx::query_scalar("SELECT state FROM exports WHERE id = $1 AND owner_id = $2")
                .bind(export)
                .bind(owner)
                .fetch_optional(&state.db)
                .await
                .map_err(|_| JobError::retry("The database was not reachable."))?;
        match exists.as_deref() {
            None => return Ok(()), // Expired or the account went: nothing to do.
            Some("ready") => return Ok(()),
            _ => {}
        }
        let built = build(state, owner, key, export).await;
        let files = match built {
            Ok(files) => files,
            Err(err) => {
                tracing::warn!(user_id = %owner, export_id = %export, error = %err, "export failed");
                if job.attempt >= 3 {
                    let _ = sqlx::query("UPDATE exports SET state = 'failed' WHERE id = $1")
                        .bind(export)
                        .execute(&state.db)
                        .await;
                    return Err(JobError::fatal("The export could not be built."));
                }
                return Err(JobError::retry(
                    "The export could not be built; trying again.",
                ));
            }
        };
        progress(state, export, 95).await?;
        let zipped = tokio::task::spawn_blocking(move || zip(&files))
            .await
            .map_err(|_| JobError::retry("The export could not be zipped."))?
            .map_err(|_| JobError::retry("The export could not be zipped."))?;
        if zipped.len() > MAX_BYTES {
            let _ = sqlx::query("UPDATE exports SET state = 'failed' WHERE id = $1")
                .bind(export)
                .execute(&state.db)
                .await;
            return Err(JobError::fatal("The export is larger than 512 MiB."));
        }
        let size = zipped.len() as i64;
        let sealed = key.seal(place(export, owner), &zipped);
        let done = sqlx::query(
            "UPDATE exports SET state = 'ready', progress = 100, file = $3, size_bytes = $4,
                    ready_at = now(), expires_at = now() + make_interval(hours => $5)
             WHERE id = $1 AND owner_id = $2",
        )
        .bind(export)
        .bind(owner)
        .bind(sealed)
        .bind(size)
        .bind(KEEP_HOURS as i32)
        .execute(&state.db)
        .await
        .map_err(|_| JobError::retry("The database was not reachable."))?;
        if done.rows_affected() == 0 {
            return Ok(());
        }
        let (email, first_name) = activity::server::contact(&state.db, owner, key)
            .await
            .map_err(|_| JobError::retry("The database was not reachable."))?;
        let mut conn = state
            .db
            .acquire()
            .await
            .map_err(|_| JobError::retry("The database was not reachable."))?;
        jobs::enqueue(
            &mut conn,
            NewJob::new(Kind::Mail)
                .for_owner(owner, key, &ready_mail(state, &email, &first_name))
                .idempotency_key(format!("export-ready:{export}")),
        )
        .await
        .map_err(|_| JobError::retry("The database was not reachable."))?;
        state.jobs.wake();
        tracing::info!(user_id = %owner, export_id = %export, bytes = size, "export ready");
        Ok(())
    }

    fn ready_mail(state: &AppState, email: &str, first_name: &str) -> Outgoing {
        let base = state.settings.public_url.trim_end_matches('/');
        let page = format!("{base}/settings/data");
        let text = format!(
            "Hello {first_name},\n\n\
             The export of your Enclave data you asked for is ready. Download it from \
             this page within {KEEP_HOURS} hours; after that it is deleted:\n\n{page}\n\n\
             It holds no passwords or keys, only their masks.\n"
        );
        let html = format!(
            "<p>Hello {name},</p>\
             <p>The export of your Enclave data you asked for is ready. \
             <a href=\"{href}\">Download it</a> within {KEEP_HOURS} hours; after that it is \
             deleted.</p><p>It holds no passwords or keys, only their masks.</p>",
            name = escape_html(first_name),
            href = escape_html(&page),
        );
        Outgoing {
            to: email.to_owned(),
            subject: "Your Enclave export is ready".to_owned(),
            text,
            html,
        }
    }

    /// The user as the slices' listing functions take them: a session of no
    /// browser (no session id matches it), made for this job.
    async fn acting_as(
        state: &AppState,
        owner: Uuid,
        key: &DataKey,
    ) -> Result<AuthSession, AppError> {
        use crate::auth::server::users_place;
        let (first, last, email, verified): (Sealed, Sealed, Sealed, bool) = sqlx::query_as(
            "SELECT first_name, last_name, email, email_verified_at IS NOT NULL FROM users WHERE id = $1",
        )
        .bind(owner)
        .fetch_one(&state.db)
        .await?;
        Ok(AuthSession {
            session_id: Uuid::nil(),
            user_id: owner,
            user: UserView {
                first_name: key.open_text(users_place("first_name", owner), &first)?,
                last_name: key.open_text(users_place("last_name", owner), &last)?,
                email: key.open_text(users_place("email", owner), &email)?,
                email_verified: verified,
                is_admin: false,
            },
            key: key.clone(),
        })
    }

    fn pretty(value: &impl Serialize) -> Result<Vec<u8>, AppError> {
        serde_json::to_vec_pretty(value).map_err(AppError::internal)
    }

    /// Every file of the export, in order.
    async fn build(
        state: &AppState,
        owner: Uuid,
        key: &DataKey,
        export: Uuid,
    ) -> Result<Vec<(String, Vec<u8>)>, AppError> {
        let as_user = acting_as(state, owner, key).await?;
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let now = Utc::now();

        // The account.
        let (created, has_password, own_retention): (DateTime<Utc>, bool, Option<i32>) =
            sqlx::query_as(
                "SELECT created_at, password_hash IS NOT NULL, conversation_retention_days
                 FROM users WHERE id = $1",
            )
            .bind(owner)
            .fetch_one(&state.db)
            .await?;
        let (two_factor, recovery_codes_left) =
            crate::auth::two_factor::status(&state.db, owner).await?;
        let marketing_mail = crate::data::policies::server::marketing(&state.db, owner).await?;
        let consents = crate::data::policies::server::consents(&state.db, owner).await?;
        let account = json!({
            "id": owner,
            "first_name": as_user.user.first_name,
            "last_name": as_user.user.last_name,
            "email": as_user.user.email,
            "email_confirmed": as_user.user.email_verified,
            "signed_up_at": created,
            "has_password": has_password,
            "two_factor_sign_in": two_factor,
            "recovery_codes_left": recovery_codes_left,
            "conversation_retention_days": own_retention
                .map_or(state.settings.retention.conversation_days as i64, i64::from),
            "marketing_mail": marketing_mail,
            "consents": consents,
        });
        files.push(("account.json".into(), pretty(&account)?));
        files.push((
            "sign_in_methods.json".into(),
            pretty(&json!({
                "providers": crate::auth::oidc::identities(state, &as_user).await?,
                "passkeys": crate::auth::passkeys::list(state, &as_user).await?,
            }))?,
        ));
        files.push((
            "sessions.json".into(),
            pretty(&crate::auth::server::list_sessions(&state.db, &as_user).await?)?,
        ));
        let mut entries = Vec::new();
        let mut after = None;
        loop {
            let page = activity::server::list(&state.db, owner, key, after).await?;
            entries.extend(page.entries);
            match page.next {
                Some(next) => after = Some(Uuid::parse_str(&next).map_err(AppError::internal)?),
                None => break,
            }
        }
        files.push(("activity.json".into(), pretty(&entries)?));
        progress(state, export, 10).await.ok();

        // Agents, keys, connections, MCP servers, tool activity.
        let agents = crate::agents::server::list_agents(state, owner, key, "").await?;
        let mut agent_exports = Vec::with_capacity(agents.len());
        let mut agent_names = std::collections::HashMap::new();
        for agent in &agents {
            let id = Uuid::parse_str(&agent.id).map_err(AppError::internal)?;
            agent_names.insert(agent.id.clone(), agent.name.clone());
            if agent.sharing.team_id.is_some() {
                // A team's agent is the team's, listed under teams.json.
                continue;
            }
            let mut exported = serde_json::to_value(
                crate::agents::server::export_agent(state, owner, key, id).await?,
            )
            .map_err(AppError::internal)?;
            exported["id"] = json!(agent.id);
            agent_exports.push(exported);
        }
        files.push(("agents.json".into(), pretty(&agent_exports)?));
        // The teams the user is in: their role, and the team's agents (by
        // name) their conversations may be with.
        let teams: Vec<serde_json::Value> = crate::teams::server::list(state, owner)
            .await?
            .into_iter()
            .map(|t| {
                let shared: Vec<&str> = agents
                    .iter()
                    .filter(|a| a.sharing.team_id.as_deref() == Some(t.id.as_str()))
                    .map(|a| a.name.as_str())
                    .collect();
                json!({ "id": t.id, "name": t.name, "role": t.role, "agents": shared })
            })
            .collect();
        files.push(("teams.json".into(), pretty(&teams)?));
        files.push((
            "provider_keys.json".into(),
            pretty(&crate::provider_keys::server::list_keys(state, owner, key).await?)?,
        ));
        files.push((
            "connections.json".into(),
            pretty(&crate::connections::server::list_own(state, owner, key).await?)?,
        ));
        files.push((
            "mcp_servers.json".into(),
            pretty(&crate::mcp::server::list(state, owner, key).await?)?,
        ));
        files.push((
            "knowledge.json".into(),
            pretty(&crate::knowledge::server::export(&state.db, owner, key).await?)?,
        ));
        files.push((
            "api_keys.json".into(),
            pretty(&crate::api_keys::server::export(state, owner, key).await?)?,
        ));
        files.push((
            "telegram.json".into(),
            pretty(&crate::telegram::server::export(state, owner, key).await?)?,
        ));
        files.push((
            "schedules.json".into(),
            pretty(&crate::schedules::server::export(state, owner, key).await?)?,
        ));
        files.push((
            "usage.json".into(),
            pretty(&crate::usage::server::export(state, owner, key).await?)?,
        ));
        files.push((
            "tool_calls.json".into(),
            pretty(&crate::tools::activity::server::list(state, owner, key, i64::MAX).await?)?,
        ));
        progress(state, export, 20).await.ok();

        // Conversations, agent by agent.
        let mut index = Vec::new();
        for agent in &agents {
            let id = Uuid::parse_str(&agent.id).map_err(AppError::internal)?;
            for summary in crate::chat::server::list_conversations(state, owner, key, id).await? {
                index.push((agent.id.clone(), summary));
            }
        }
        let total = index.len().max(1);
        let mut listed = Vec::with_capacity(index.len());
        for (n, (agent_id, summary)) in index.iter().enumerate() {
            let id = Uuid::parse_str(&summary.id).map_err(AppError::internal)?;
            let messages = all_messages(state, owner, key, id).await?;
            let agent_name = agent_names.get(agent_id).cloned().unwrap_or_default();
            // The text of every file the messages carry.
            let carrying: Vec<Uuid> = messages
                .iter()
                .filter(|m| !m.files.is_empty())
                .filter_map(|m| Uuid::parse_str(&m.id).ok())
                .collect();
            let mut texts =
                crate::chat::files::texts_of_messages(&state.db, owner, key, &carrying).await?;
            let attached: Vec<_> = carrying
                .iter()
                .flat_map(|message| {
                    let files = texts.remove(message).unwrap_or_default();
                    files.into_iter().map(move |(file, text)| {
                        json!({
                            "message_id": message,
                            "id": file.id,
                            "name": file.name,
                            "kind": file.kind,
                            "size_bytes": file.size_bytes,
                            "text": text,
                        })
                    })
                })
                .collect();
            files.push((
                format!("conversations/{id}.json"),
                pretty(&json!({
                    "id": id,
                    "title": summary.title,
                    "agent_id": agent_id,
                    "agent": agent_name,
                    "erased_on": summary.expires_on,
                    "messages": messages,
                    "files": attached,
                }))?,
            ));
            files.push((
                format!("conversations/{id}.md"),
                markdown(&summary.title, &agent_name, &messages).into_bytes(),
            ));
            listed.push(json!({
                "id": id,
                "title": summary.title,
                "agent_id": agent_id,
                "erased_on": summary.expires_on,
                "messages": messages.len(),
            }));
            let percent = 20 + (70 * (n + 1) / total) as i16;
            if n % 10 == 9 || n + 1 == total {
                progress(state, export, percent).await.ok();
            }
        }
        files.push(("conversations.json".into(), pretty(&listed)?));

        let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
        let manifest = pretty(&json!({
            "format": "enclave-export",
            "version": FORMAT_VERSION,
            "created_at": now,
            "account_id": owner,
            "files": names,
        }))?;
        files.insert(0, ("manifest.json".into(), manifest));
        files.insert(0, ("README.md".into(), README.as_bytes().to_vec()));
        Ok(files)
    }

    /// Every message of a conversation, oldest first (page by page).
    async fn all_messages(
        state: &AppState,
        owner: Uuid,
        key: &DataKey,
        id: Uuid,
    ) -> Result<Vec<MessageView>, AppError> {
        let mut before = None;
        let mut pages = Vec::new();
        loop {
            let page = crate::chat::server::get_conversation(state, owner, key, id, before).await?;
            let first = page.messages.first().map(|m| m.id.clone());
            let more = page.has_more;
            pages.push(page.messages);
            match (more, first) {
                (true, Some(first)) => {
                    before = Some(Uuid::parse_str(&first).map_err(AppError::internal)?)
                }
                _ => break,
            }
        }
        Ok(pages.into_iter().rev().flatten().collect())
    }

    /// A conversation to read: the title, then each message under who said it.
    pub fn markdown(title: &str, agent: &str, messages: &[MessageView]) -> String {
        let mut out = format!("# {title}\n\nA conversation with {agent}.\n");
        for message in messages {
            let who = if message.role == "user" { "You" } else { agent };
            out.push_str(&format!("\n## {who}\n\n"));
            if message.parts.is_empty() {
                out.push_str(message.body.trim_end());
                out.push('\n');
            }
            for file in &message.files {
                out.push_str(&format!(
                    "\n> Attached: {} ({})\n",
                    file.name,
                    file.kind.label()
                ));
            }
            for part in &message.parts {
                match part {
                    ReplyPart::Text { text } => {
                        out.push_str(text.trim_end());
                        out.push_str("\n\n");
                    }
                    ReplyPart::ToolCall(call) => {
                        out.push_str(&format!(
                            "> Tool call: `{}` ({:?})\n\n",
                            call.tool, call.status
                        ));
                    }
                    ReplyPart::Sources { sources } => {
                        for c in sources {
                            let place = if c.location.is_empty() {
                                String::new()
                            } else {
                                format!(", {}", c.location)
                            };
                            out.push_str(&format!("> [{}] {}{place}\n", c.n, c.document));
                        }
                        out.push('\n');
                    }
                }
            }
            if let Some(error) = &message.error {
                out.push_str(&format!("\n_{error}_\n"));
            }
        }
        out
    }

    /// The zip: every file deflated, stamped with the time it was made.
    fn zip(files: &[(String, Vec<u8>)]) -> Result<Vec<u8>, zip::result::ZipError> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(0o600);
        for (name, bytes) in files {
            writer.start_file(name.as_str(), options)?;
            writer.write_all(bytes)?;
        }
        Ok(writer.finish()?.into_inner())
    }

    /// For tests and tools: the files of a zip by name.
    pub fn unzip(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, zip::result::ZipError> {
        use std::io::Read as _;
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))?;
        let mut files = Vec::with_capacity(archive.len());
        for i in 0..archive.len() {
            let mut file = archive.by_index(i)?;
            let mut content = Vec::new();
            file.read_to_end(&mut content)?;
            files.push((file.name().to_owned(), content));
        }
        Ok(files)
    }

    /// A JSON file's contents, for tests: `Value::Null` when absent.
    pub fn json_in(files: &[(String, Vec<u8>)], name: &str) -> Value {
        files
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, bytes)| serde_json::from_slice(bytes).ok())
            .unwrap_or(Value::Null)
    }
}
