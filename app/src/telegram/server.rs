//! Telegram channels in the database (server only). Every owner-facing
//! query names the owner; the webhook finds its channel by id and proves
//! itself with the secret header, compared in constant time.
//!
//! Updates arrive two ways and end the same: the webhook (when this server
//! has an https address Telegram can reach) or long polling by one server
//! at a time (a lease in the row). Either enqueues a `Kind::Telegram` job
//! whose idempotency key is the channel and update id, so an update Telegram
//! sends twice, or two servers fetch, is answered once.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq as _;
use uuid::Uuid;

use super::{
    ChannelView,
    botapi::{Bot, BotError},
    format,
};
use crate::{
    error::AppError,
    platform::{
        crypto::{DataKey, Place, Sealed, random_token, token_hash},
        jobs::{self, Job, JobError, Kind, NewJob},
        keystore::{self, KeyUse, SealedColumn},
    },
    state::AppState,
};

pub const SEALED: &[SealedColumn] = &[
    SealedColumn::owned("telegram_channels", "token"),
    SealedColumn::owned("telegram_channels", "bot_username"),
    SealedColumn::owned("telegram_channels", "allowed_users"),
    SealedColumn::owned("telegram_channels", "start_code"),
    SealedColumn::owned("telegram_chats", "chat_id"),
];

/// How often a reply being written is shown again in Telegram.
const EDIT_EVERY: Duration = Duration::from_secs(1);
/// A polling server's hold on a channel; renewed on every call.
const LEASE_SECS: i32 = 60;

pub const REFUSAL: &str = "Sorry, this bot is private. If its owner invited you, send the \
     /start message with the code they gave you.";

fn place(column: &'static str, id: Uuid, owner: Uuid) -> Place {
    Place::new("telegram_channels", column, id, owner)
}

/// Where Telegram should post this server's updates, if anywhere: the
/// configured webhook address, else the public URL when it is https.
pub fn webhook_base(state: &AppState) -> Option<String> {
    state
        .settings
        .service_urls
        .telegram_webhook
        .clone()
        .or_else(|| {
            let public = &state.settings.public_url;
            public.starts_with("https://").then(|| public.clone())
        })
        .map(|base| base.trim_end_matches('/').to_owned())
}

/// A token as @BotFather gives it: digits, a colon, and at least 30 of
/// letters, digits, `_` and `-`.
fn token_shape(token: &str) -> bool {
    let Some((id, secret)) = token.split_once(':') else {
        return false;
    };
    !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_digit())
        && secret.len() >= 30
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn bot_error(err: BotError) -> AppError {
    AppError::invalid("token", err.to_string())
}

#[derive(sqlx::FromRow)]
struct ChannelRow {
    id: Uuid,
    owner_id: Uuid,
    agent_id: Uuid,
    token: Sealed,
    bot_username: Sealed,
    mode: String,
    allowed_users: Sealed,
    start_code: Sealed,
}

const CHANNEL_COLUMNS: &str =
    "id, owner_id, agent_id, token, bot_username, mode, allowed_users, start_code";

/// A channel's sealed fields, opened.
struct Opened {
    token: String,
    bot_username: String,
    allowed: Vec<i64>,
    start_code: String,
}

impl ChannelRow {
    fn open(&self, key: &DataKey) -> Result<Opened, AppError> {
        let open = |column, sealed| key.open_text(place(column, self.id, self.owner_id), sealed);
        Ok(Opened {
            token: open("token", &self.token)?,
            bot_username: open("bot_username", &self.bot_username)?,
            allowed: serde_json::from_str(&open("allowed_users", &self.allowed_users)?)
                .unwrap_or_default(),
            start_code: open("start_code", &self.start_code)?,
        })
    }

    fn view(&self, key: &DataKey) -> Result<ChannelView, AppError> {
        let opened = self.open(key)?;
        Ok(ChannelView {
            bot_username: opened.bot_username,
            webhook: self.mode == "webhook",
            allowed_users: opened.allowed,
            start_code: opened.start_code,
        })
    }
}

async fn agent_channel(
    state: &AppState,
    owner: Uuid,
    agent: Uuid,
) -> Result<Option<ChannelRow>, AppError> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CHANNEL_COLUMNS} FROM telegram_channels WHERE agent_id = $1 AND owner_id = $2"
    )))
    .bind(agent)
    .bind(owner)
    .fetch_optional(&state.db)
    .await?)
}

/// Another user's agent is not found, like one that does not exist.
async fn check_agent(state: &AppState, owner: Uuid, agent: Uuid) -> Result<(), AppError> {
    crate::agents::server::check_usable(&state.db, owner, agent).await
}

/// The code a person sends the bot to be let in: 10 letters and digits.
fn new_start_code() -> String {
    random_token()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(10)
        .collect()
}

/// The agent's bot, if it has one.
pub async fn channel(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    agent: Uuid,
) -> Result<Option<ChannelView>, AppError> {
    check_agent(state, owner, agent).await?;
    agent_channel(state, owner, agent)
        .await?
        .map(|row| row.view(key))
        .transpose()
}

/// Connects a bot to an agent: checks the token (`getMe`), then registers
/// a webhook with a fresh secret, or clears it for long polling.
pub async fn connect(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    agent: Uuid,
    token: &str,
) -> Result<ChannelView, AppError> {
    let token = token.trim();
    check_agent(state, owner, agent).await?;
    if !token_shape(token) {
        return Err(AppError::invalid(
            "token",
            "A bot token looks like 123456789:AAE… (digits, a colon, then letters); copy it \
             from @BotFather.",
        ));
    }
    if agent_channel(state, owner, agent).await?.is_some() {
        return Err(AppError::invalid(
            "token",
            "This agent has a Telegram bot already: disconnect it first.",
        ));
    }
    let urls = &state.settings.service_urls;
    let bot = Bot::new(&state.egress, &urls.telegram, token);
    let username = bot.username().await.map_err(bot_error)?;
    let id = Uuid::new_v4();
    let secret = random_token();
    let start_code = new_start_code();
    let mode = match webhook_base(state) {
        Some(base) => {
            bot.set_webhook(&format!("{base}/telegram/webhook/{id}"), &secret)
                .await
                .map_err(bot_error)?;
            "webhook"
        }
        None => {
            bot.delete_webhook().await.map_err(bot_error)?;
            "polling"
        }
    };
    let seal = |column, value: &str| key.seal_str(place(column, id, owner), value);
    sqlx::query(
        "INSERT INTO telegram_channels (id, owner_id, agent_id, token, bot_username, mode,
           secret_hash, allowed_users, start_code)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(owner)
    .bind(agent)
    .bind(seal("token", token))
    .bind(seal("bot_username", &username))
    .bind(mode)
    .bind(token_hash(&secret))
    .bind(seal("allowed_users", "[]"))
    .bind(seal("start_code", &start_code))
    .execute(&state.db)
    .await?;
    tracing::info!(channel_id = %id, owner_id = %owner, mode, "telegram bot connected");
    Ok(ChannelView {
        bot_username: username,
        webhook: mode == "webhook",
        allowed_users: Vec::new(),
        start_code,
    })
}

/// Disconnects the agent's bot: its webhook is deleted at Telegram (if the
/// token still works) and the token, the allowlist and the chats' ids with
/// it. The conversations stay the user's.
pub async fn disconnect(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    agent: Uuid,
) -> Result<(), AppError> {
    let row = agent_channel(state, owner, agent)
        .await?
        .ok_or(AppError::NotFound)?;
    let opened = row.open(key)?;
    let urls = &state.settings.service_urls;
    if Bot::new(&state.egress, &urls.telegram, &opened.token)
        .delete_webhook()
        .await
        .is_err()
    {
        tracing::warn!(channel_id = %row.id, "telegram webhook could not be deleted; the token is dropped anyway");
    }
    sqlx::query("DELETE FROM telegram_channels WHERE id = $1 AND owner_id = $2")
        .bind(row.id)
        .bind(owner)
        .execute(&state.db)
        .await?;
    tracing::info!(channel_id = %row.id, owner_id = %owner, "telegram bot disconnected");
    Ok(())
}

/// Lets nobody in any more (the owner shares a new code to let people
/// back): the allowlist is emptied and the code replaced.
pub async fn reset_access(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    agent: Uuid,
) -> Result<(), AppError> {
    let row = agent_channel(state, owner, agent)
        .await?
        .ok_or(AppError::NotFound)?;
    let code = new_start_code();
    sqlx::query(
        "UPDATE telegram_channels SET allowed_users = $3, start_code = $4
         WHERE id = $1 AND owner_id = $2",
    )
    .bind(row.id)
    .bind(owner)
    .bind(key.seal_str(place("allowed_users", row.id, owner), "[]"))
    .bind(key.seal_str(place("start_code", row.id, owner), &code))
    .execute(&state.db)
    .await?;
    Ok(())
}

/// What an update job carries (sealed): the channel and the update.
#[derive(Serialize, Deserialize)]
pub struct UpdatePayload {
    pub channel: Uuid,
    pub update: Value,
}

/// Queues `update` of `channel` for its job, once per update id.
async fn enqueue(
    state: &AppState,
    channel: Uuid,
    owner: Uuid,
    key: &DataKey,
    update: Value,
) -> Result<(), AppError> {
    let Some(update_id) = update["update_id"].as_i64() else {
        return Ok(());
    };
    let mut conn = state.db.acquire().await?;
    jobs::enqueue(
        &mut conn,
        NewJob::new(Kind::Telegram)
            .for_owner(owner, key, &UpdatePayload { channel, update })
            .idempotency_key(format!("telegram:{channel}:{update_id}")),
    )
    .await?;
    state.jobs.wake();
    Ok(())
}

/// What the webhook answers Telegram.
pub enum Accepted {
    /// Queued (or a repeat: dropped).
    Ok,
    /// No such channel, or the secret header is wrong: nothing changes.
    Unauthorized,
    BadRequest,
}

/// `POST /telegram/webhook/{id}`: checks the secret header in constant
/// time and queues the update.
pub async fn accept(
    state: &AppState,
    channel: &str,
    secret: Option<&str>,
    body: &[u8],
) -> Result<Accepted, AppError> {
    let Ok(channel) = Uuid::parse_str(channel) else {
        return Ok(Accepted::Unauthorized);
    };
    let row: Option<(Uuid, Vec<u8>, String)> =
        sqlx::query_as("SELECT owner_id, secret_hash, mode FROM telegram_channels WHERE id = $1")
            .bind(channel)
            .fetch_optional(&state.db)
            .await?;
    // Hash whatever came (or nothing), so a missing channel takes as long.
    let given = token_hash(secret.unwrap_or(""));
    let Some((owner, stored, mode)) = row else {
        return Ok(Accepted::Unauthorized);
    };
    if secret.is_none() || mode != "webhook" || !bool::from(given.ct_eq(&stored)) {
        tracing::warn!(channel_id = %channel, "telegram webhook refused: wrong secret");
        return Ok(Accepted::Unauthorized);
    }
    let Ok(update) = serde_json::from_slice::<Value>(body) else {
        return Ok(Accepted::BadRequest);
    };
    let key = keystore::user_key(&state.db, &state.crypto.keyring, owner, KeyUse::Telegram).await?;
    enqueue(state, channel, owner, &key, update).await?;
    Ok(Accepted::Ok)
}

/// Long polling: takes (or keeps) the lease on every polling channel no
/// other server holds, asks each for its updates (waiting up to `timeout`
/// seconds) and queues them. Returns how many updates it queued.
pub async fn poll(state: &AppState, timeout: u64) -> Result<usize, AppError> {
    let me = state.runs.instance();
    let claimed: Vec<(Uuid, Uuid, Sealed, i64)> = sqlx::query_as(
        "UPDATE telegram_channels
         SET poll_lease_owner = $1, poll_lease_until = now() + make_interval(secs => $2)
         WHERE mode = 'polling'
           AND (poll_lease_until IS NULL OR poll_lease_until < now() OR poll_lease_owner = $1)
         RETURNING id, owner_id, token, update_offset",
    )
    .bind(me)
    .bind(LEASE_SECS)
    .fetch_all(&state.db)
    .await?;
    let polls = claimed.into_iter().map(|(id, owner, token, offset)| async move {
        let key =
            keystore::user_key(&state.db, &state.crypto.keyring, owner, KeyUse::Telegram).await?;
        let token = key.open_text(place("token", id, owner), &token)?;
        let bot = Bot::new(&state.egress, &state.settings.service_urls.telegram, &token);
        let updates = match bot.updates(offset + 1, timeout).await {
            Ok(updates) => updates,
            Err(err) => {
                tracing::warn!(channel_id = %id, error = %err, "telegram updates could not be fetched");
                return Ok::<usize, AppError>(0);
            }
        };
        let mut newest = offset;
        for update in &updates {
            newest = newest.max(update["update_id"].as_i64().unwrap_or(newest));
            enqueue(state, id, owner, &key, update.clone()).await?;
        }
        if newest > offset {
            sqlx::query(
                "UPDATE telegram_channels SET update_offset = greatest(update_offset, $2)
                 WHERE id = $1",
            )
            .bind(id)
            .bind(newest)
            .execute(&state.db)
            .await?;
        }
        Ok(updates.len())
    });
    let mut queued = 0;
    for result in futures::future::join_all(polls).await {
        queued += result?;
    }
    Ok(queued)
}

/// The job of one update: answers it. Strangers get the refusal (or, with
/// the right `/start CODE`, are let in); people let in write to the agent,
/// each chat its own conversation, and see the reply grow.
pub async fn handle(state: &AppState, job: &Job, key: &DataKey) -> Result<(), JobError> {
    let UpdatePayload { channel, update } = job.payload(key)?;
    let owner = job
        .owner
        .ok_or_else(|| JobError::fatal("The job has no owner."))?;
    let db_error = |_| JobError::retry("The database was not reachable.");
    let row: Option<ChannelRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CHANNEL_COLUMNS} FROM telegram_channels WHERE id = $1 AND owner_id = $2
           AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = $2 AND u.disabled_at IS NOT NULL)"
    )))
    .bind(channel)
    .bind(owner)
    .fetch_optional(&state.db)
    .await
    .map_err(db_error)?;
    // Disconnected since (or its account disabled): nothing to answer with.
    let Some(row) = row else { return Ok(()) };
    let opened = row
        .open(key)
        .map_err(|_| JobError::fatal("The channel could not be opened."))?;
    let message = &update["message"];
    let (Some(from), Some(chat)) = (
        message["from"]["id"].as_i64(),
        message["chat"]["id"].as_i64(),
    ) else {
        return Ok(());
    };
    let text = message["text"].as_str().map(str::trim);
    let bot = Bot::new(
        &state.egress,
        &state.settings.service_urls.telegram,
        &opened.token,
    );
    let say = |text: String| {
        let bot = &bot;
        async move {
            bot.send(chat, &text, false)
                .await
                .map(|_| ())
                .map_err(|e| JobError::retry(e.to_string()))
        }
    };
    // The agent's name, for the greetings only.
    let agent_name = || async {
        agent_name(state, owner, key, row.agent_id)
            .await
            .map_err(|_| JobError::retry("The agent could not be read."))
    };

    if !opened.allowed.contains(&from) {
        let code = text
            .and_then(|t| t.strip_prefix("/start"))
            .map(str::trim)
            .unwrap_or("");
        let invited = !code.is_empty()
            && !opened.start_code.is_empty()
            && bool::from(code.as_bytes().ct_eq(opened.start_code.as_bytes()));
        if !invited {
            tracing::info!(channel_id = %channel, "telegram message from a stranger refused");
            return say(REFUSAL.to_owned()).await;
        }
        let mut allowed = opened.allowed.clone();
        allowed.push(from);
        let json = serde_json::to_string(&allowed).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "UPDATE telegram_channels SET allowed_users = $3 WHERE id = $1 AND owner_id = $2",
        )
        .bind(channel)
        .bind(owner)
        .bind(key.seal_str(place("allowed_users", channel, owner), &json))
        .execute(&state.db)
        .await
        .map_err(db_error)?;
        let name = agent_name().await?;
        return say(format!(
            "Hello! You can talk to {name} here now: send a message."
        ))
        .await;
    }
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return say("I can read text messages only.".to_owned()).await;
    };
    if text == "/start" || text.starts_with("/start ") {
        let name = agent_name().await?;
        return say(format!("Hello! Send a message and {name} answers.")).await;
    }

    // The chat's conversation (made on its first message).
    let index = state
        .crypto
        .keyed_index("telegram-chat", &format!("{channel}\n{chat}"));
    let found: Option<(Uuid, Option<Uuid>)> = sqlx::query_as(
        "SELECT id, conversation_id FROM telegram_chats
         WHERE channel_id = $1 AND chat_index = $2 AND owner_id = $3",
    )
    .bind(channel)
    .bind(&index)
    .bind(owner)
    .fetch_optional(&state.db)
    .await
    .map_err(db_error)?;
    let (chat_row, conversation) = match found {
        Some(found) => found,
        None => {
            let id = Uuid::new_v4();
            sqlx::query(
                "INSERT INTO telegram_chats (id, channel_id, owner_id, chat_index, chat_id)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (channel_id, chat_index) DO NOTHING",
            )
            .bind(id)
            .bind(channel)
            .bind(owner)
            .bind(&index)
            .bind(key.seal_str(
                Place::new("telegram_chats", "chat_id", id, owner),
                &chat.to_string(),
            ))
            .execute(&state.db)
            .await
            .map_err(db_error)?;
            (id, None)
        }
    };
    let sent =
        match crate::chat::server::send(state, owner, key, row.agent_id, conversation, text, &[])
            .await
        {
            Ok(sent) => sent,
            Err(err) => return say(err.sentence()).await,
        };
    let (Ok(reply), Ok(conversation)) = (
        Uuid::parse_str(&sent.reply_id),
        Uuid::parse_str(&sent.conversation_id),
    ) else {
        return Err(JobError::fatal("The reply's id could not be read."));
    };
    sqlx::query("UPDATE telegram_chats SET conversation_id = $2 WHERE id = $1")
        .bind(chat_row)
        .bind(conversation)
        .execute(&state.db)
        .await
        .map_err(db_error)?;
    deliver(state, owner, key, &bot, chat, reply).await;
    Ok(())
}

async fn agent_name(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    agent: Uuid,
) -> Result<String, AppError> {
    crate::agents::server::agent_name(state, owner, key, agent).await
}

/// Shows reply `reply` in `chat` as it is written: a first message at once,
/// edited about once a second while text comes, then the whole reply (in
/// MarkdownV2 where Telegram takes it, cut into messages under 4,096
/// characters). The model was called already, so a failure to show the
/// reply is logged, not retried.
async fn deliver(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    bot: &Bot<'_>,
    chat: i64,
    reply: Uuid,
) {
    use futures::StreamExt as _;
    let first = match bot.send(chat, "…", false).await {
        Ok(id) => id,
        Err(err) => {
            tracing::warn!(error = %err, "telegram reply could not be started");
            return;
        }
    };
    if let Some(updates) = state.runs.follow(reply, owner) {
        let mut updates = std::pin::pin!(updates);
        let mut text = String::new();
        let mut shown = String::new();
        let mut last = tokio::time::Instant::now();
        while let Some(update) = updates.next().await {
            match update {
                crate::chat::StreamUpdate::Snapshot { text: all, .. } => text = all,
                crate::chat::StreamUpdate::Delta { text: more } => text.push_str(&more),
                crate::chat::StreamUpdate::Done { .. } => break,
                crate::chat::StreamUpdate::Part { .. } => {}
            }
            if last.elapsed() >= EDIT_EVERY && !text.trim().is_empty() && text != shown {
                if bot
                    .edit(chat, first, &format::preview(&text), false)
                    .await
                    .is_ok()
                {
                    shown = text.clone();
                }
                last = tokio::time::Instant::now();
            }
        }
    }
    // The reply as stored (here, or written by another server).
    let mut stored = None;
    for _ in 0..600 {
        match crate::chat::server::stored_reply(state, owner, key, reply).await {
            Ok(m) if m.status != crate::chat::MessageStatus::Streaming => {
                stored = Some(m);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(_) => break,
        }
    }
    let Some(message) = stored else { return };
    let mut pieces = format::messages(&message.body);
    if let Some(error) = &message.error {
        pieces.push((error.clone(), false));
    }
    if pieces.is_empty() {
        pieces.push(("(No reply.)".to_owned(), false));
    }
    for (i, (text, markdown)) in pieces.iter().enumerate() {
        let result = if i == 0 {
            match bot.edit(chat, first, text, *markdown).await {
                // Telegram could not read the formatting: the plain text.
                Err(BotError::Refused(_)) if *markdown => {
                    bot.edit(chat, first, &plain(&message.body, i), false).await
                }
                other => other,
            }
        } else {
            match bot.send(chat, text, *markdown).await {
                Err(BotError::Refused(_)) if *markdown => bot
                    .send(chat, &plain(&message.body, i), false)
                    .await
                    .map(|_| ()),
                other => other.map(|_| ()),
            }
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "telegram reply could not be shown");
            return;
        }
    }
}

/// Piece `i` of a reply as plain text (when Telegram refuses its formatting).
fn plain(body: &str, i: usize) -> String {
    format::plain_pieces(body)
        .into_iter()
        .nth(i)
        .unwrap_or_default()
}

/// Sends `text` (a scheduled run's reply) to every person let in to the
/// agent's bot, in their private chat with it. Why it could not, in plain
/// words.
pub async fn send_to_people(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    agent: Uuid,
    text: &str,
) -> Result<usize, String> {
    let row = agent_channel(state, owner, agent)
        .await
        .map_err(|_| "the bot could not be read.".to_owned())?
        .ok_or_else(|| "this agent has no Telegram bot.".to_owned())?;
    let opened = row
        .open(key)
        .map_err(|_| "the bot could not be read.".to_owned())?;
    if opened.allowed.is_empty() {
        return Err("nobody is let in to the bot yet.".into());
    }
    let bot = Bot::new(
        &state.egress,
        &state.settings.service_urls.telegram,
        &opened.token,
    );
    let pieces = format::messages(text);
    let plain = format::plain_pieces(text);
    for person in &opened.allowed {
        for (i, (piece, markdown)) in pieces.iter().enumerate() {
            let sent = match bot.send(*person, piece, *markdown).await {
                Err(BotError::Refused(_)) if *markdown => {
                    bot.send(
                        *person,
                        plain.get(i).map(String::as_str).unwrap_or(""),
                        false,
                    )
                    .await
                }
                other => other,
            };
            sent.map_err(|e| e.to_string())?;
        }
    }
    Ok(opened.allowed.len())
}

/// The channels of the owner's agents with their chats, for the export
/// (never the token).
pub async fn export(state: &AppState, owner: Uuid, key: &DataKey) -> Result<Value, AppError> {
    let rows: Vec<ChannelRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {CHANNEL_COLUMNS} FROM telegram_channels WHERE owner_id = $1 ORDER BY created_at"
    )))
    .bind(owner)
    .fetch_all(&state.db)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let view = row.view(key)?;
        let chats: Vec<(Uuid, Sealed, Option<Uuid>)> = sqlx::query_as(
            "SELECT id, chat_id, conversation_id FROM telegram_chats
             WHERE channel_id = $1 AND owner_id = $2 ORDER BY created_at",
        )
        .bind(row.id)
        .bind(owner)
        .fetch_all(&state.db)
        .await?;
        let chats = chats
            .iter()
            .map(|(id, chat, conversation)| {
                Ok(serde_json::json!({
                    "chat_id": key.open_text(Place::new("telegram_chats", "chat_id", *id, owner), chat)?,
                    "conversation_id": conversation,
                }))
            })
            .collect::<Result<Vec<_>, AppError>>()?;
        out.push(serde_json::json!({
            "agent_id": row.agent_id,
            "bot": view.bot_username,
            "mode": row.mode,
            "allowed_users": view.allowed_users,
            "chats": chats,
        }));
    }
    Ok(Value::Array(out))
}
