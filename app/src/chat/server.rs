//! Conversations and messages (server only). Every query names the owner.

use uuid::Uuid;

use super::{
    ChatList, ChatListAgent, ChatListItem, ConversationSummary, ConversationView,
    MESSAGE_MAX_CHARS, MessageStatus, MessageView, PAGE, ReplyPart, Sent, TITLE_MAX_CHARS,
    ToolStatus,
};
use crate::{
    agents::{self, domain::Provider},
    auth::server::{AuthSession, UnreadSession},
    chat::runs::{Job, SendClock, Step},
    error::AppError,
    llm::{ChatRequest, Role, Turn},
    platform::{
        control,
        crypto::{DataKey, Place, Sealed},
        keystore::SealedColumn,
        rate_limit,
    },
    provider_keys,
    state::AppState,
    tools::server::{ToolCtx, Toolbox},
};

/// The sealed columns of this slice (`keys verify` opens them all).
pub const SEALED: &[SealedColumn] = &[
    SealedColumn::owned("conversations", "title"),
    SealedColumn::owned("messages", "body"),
    SealedColumn::owned("messages", "error"),
    SealedColumn::owned("messages", "model"),
    SealedColumn::owned("messages", "parts"),
];

/// How many earlier messages are sent to the model with a new one.
pub const CONTEXT_MESSAGES: i64 = 50;

fn title_place(id: Uuid, owner: Uuid) -> Place {
    Place::new("conversations", "title", id, owner)
}

/// Where a column of a message lives (`body`, `error`, `model`).
pub fn message_place(column: &'static str, id: Uuid, owner: Uuid) -> Place {
    Place::new("messages", column, id, owner)
}

fn body_place(id: Uuid, owner: Uuid) -> Place {
    message_place("body", id, owner)
}

/// A title from the first message: its first line, shortened.
pub fn title_from(message: &str) -> String {
    let line = message
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("New chat");
    let mut title: String = line.chars().take(TITLE_MAX_CHARS).collect();
    if line.chars().count() > TITLE_MAX_CHARS {
        title.pop();
        title.push('…');
    }
    title
}

pub fn validate_message(text: &str) -> Result<String, AppError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AppError::invalid("message", "Write a message first."));
    }
    if text.chars().count() > MESSAGE_MAX_CHARS {
        return Err(AppError::invalid(
            "message",
            format!("A message has at most {MESSAGE_MAX_CHARS} characters."),
        ));
    }
    Ok(text.to_owned())
}

/// What a reply needs from its agent, loaded and checked before anything
/// is stored: the spec, the API key, and the owner's data key.
struct Ready {
    agent_id: Uuid,
    /// The agent's team (`None`: the user's own agent).
    team: Option<Uuid>,
    spec: crate::agents::domain::AgentSpec,
    api_key: String,
    key: DataKey,
    /// How the reply is paid for (decided before anything is stored).
    plan: crate::usage::server::Plan,
    /// The knowledge bases the agent answers from.
    bases: Vec<Uuid>,
    /// A signed-in send's step times (`runs::SendClock`).
    clock: Option<std::sync::Arc<SendClock>>,
}

/// What a send reads before its run can start, in one statement: one round
/// trip and one pooled connection (`SEND_READS`).
#[derive(sqlx::FromRow)]
struct SendReads {
    #[sqlx(flatten)]
    agent: agents::server::AgentRow,
    /// The send counted against the user's limit (`rate_limit::counting`).
    hits: i32,
    retry_after: f64,
    /// The user's stored key the agent would use (`provider_keys::server::Pick`).
    key_id: Option<Uuid>,
    key_label: Option<Sealed>,
    key_masked: Option<Sealed>,
    key_secret: Option<Sealed>,
    key_chosen: Option<bool>,
    /// The knowledge bases the agent answers from, oldest first.
    bases: Vec<Uuid>,
    #[sqlx(flatten)]
    prices: crate::usage::server::PriceColumns,
}

/// `SendReads` for user `$1`, agent `$2`, rate-limit bucket `$3` and its
/// window `$4` (`send_reads`).
static SEND_READS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| send_reads(None, "$1", "$3", "$4"));

/// `SignedInReads`: `SendReads` for the live session whose token hashes to
/// `$1` (`auth::server::session_ctes`), agent `$2`, the user's rate-limit
/// window `$3`; `$4` true where a user may chat only once their address is
/// confirmed. No row: no live session, an address not confirmed, or an
/// agent the user may not use (`why_no_row` tells which).
static SEND_READS_SIGNED_IN: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    send_reads(
        Some(&crate::auth::server::session_ctes("$1")),
        "(SELECT user_id FROM me)",
        "(SELECT 'chat:user:' || user_id FROM me WHERE user_verified OR NOT $4)",
        "$3",
    )
});

/// The statement that reads `SendReads` for the user named by the SQL
/// expression `user`, agent `$2`, counting the send in `bucket` over a
/// window of `window` seconds; with `session`, the session's common table
/// expressions come first and its `me` row leads the result. No row means
/// the user may not use the agent (the send is still counted). The agent as
/// `agents::server::load` reads it (the same access rule); only the user's
/// own provider keys; the knowledge bases of the agent's holder (its team,
/// or the user for their own agent); the current prices of its provider
/// (its model is sealed, so the price is chosen once it is opened). Each
/// of these was a round trip of its own, and under load a pooled
/// connection of its own: at 1,000 streams every send waited for five of
/// them.
fn send_reads(session: Option<&str>, user: &str, bucket: &str, window: &str) -> String {
    use agents::server::{AGENT_COLUMNS, access};
    let counting = rate_limit::counting(bucket, window);
    let access = access(user);
    let prices = crate::usage::server::current_prices("agent.provider");
    let pick = provider_keys::server::pick_sql(user, "agent.provider", "agent.provider_key_id");
    let (session, me, from_me) = match session {
        Some(ctes) => (format!("{ctes},"), "me.*,", "me CROSS JOIN"),
        None => (String::new(), "", ""),
    };
    format!(
        "WITH {session}
              counted AS ({counting}),
              agent AS (SELECT {AGENT_COLUMNS} FROM {access} AND a.id = $2)
         SELECT {me} agent.*, c.hits, c.retry_after,
                k.id AS key_id, k.label AS key_label, k.masked AS key_masked,
                k.secret AS key_secret, k.chosen AS key_chosen,
                ARRAY(SELECT ak.base_id FROM agent_knowledge_bases ak
                      JOIN knowledge_bases b ON b.id = ak.base_id
                      WHERE ak.agent_id = agent.id
                        AND coalesce(b.team_id, b.owner_id) = coalesce(agent.team_id, {user})
                      ORDER BY b.created_at) AS bases,
                pr.*
         FROM {from_me} agent CROSS JOIN counted c
         LEFT JOIN LATERAL ({pick}) k ON true
         CROSS JOIN LATERAL ({prices}) pr"
    )
}

/// Runs `SEND_READS_SIGNED_IN` once on a new pooled connection, for a
/// session that cannot exist (no token hashes to zero bytes), so nothing is
/// written or counted. PostgreSQL parses a statement and makes its generic
/// plan on a connection's first run of it: for this one about 5 ms
/// (BENCHMARKS.md, "The fifth stop"), which the first send on each of the
/// pool's connections paid before its provider was asked. Fails on a
/// database not yet migrated (`server::connect_db_with` warms again after).
pub async fn warm(conn: &mut sqlx::PgConnection) -> Result<(), sqlx::Error> {
    let _: Option<SignedInReads> =
        sqlx::query_as(sqlx::AssertSqlSafe(SEND_READS_SIGNED_IN.as_str()))
            .bind(&[] as &[u8])
            .bind(Uuid::nil())
            .bind(60.0_f64)
            .bind(false)
            .fetch_optional(conn)
            .await?;
    Ok(())
}

/// What a send reads when its session is read with it
/// (`SEND_READS_SIGNED_IN`).
#[derive(sqlx::FromRow)]
struct SignedInReads {
    #[sqlx(flatten)]
    me: crate::auth::server::SessionColumns,
    #[sqlx(flatten)]
    reads: SendReads,
}

/// Counts a request for a reply against the user's limit (each one calls
/// the provider, possibly on the operator's key), then loads what the reply
/// needs. Nothing is stored yet.
async fn ready(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    agent_id: Uuid,
) -> Result<Ready, AppError> {
    let limit = state.settings.chat_sends_per_user;
    let reads: Option<SendReads> = sqlx::query_as(sqlx::AssertSqlSafe(SEND_READS.as_str()))
        .bind(owner)
        .bind(agent_id)
        .bind(format!("chat:user:{owner}"))
        .bind(rate_limit::window_secs(limit))
        .fetch_optional(&state.db)
        .await?;
    let reads = reads.ok_or(AppError::NotFound)?;
    ready_from(state, owner, key, agent_id, reads).await
}

/// `ready` for a session the middleware left unread: the session, the count
/// and what the reply needs in one statement, one round trip before the
/// provider is asked.
async fn ready_signed_in(
    state: &AppState,
    unread: &UnreadSession,
    agent_id: Uuid,
    clock: &SendClock,
) -> Result<(AuthSession, Ready), AppError> {
    let limit = state.settings.chat_sends_per_user;
    let row: Option<SignedInReads> =
        sqlx::query_as(sqlx::AssertSqlSafe(SEND_READS_SIGNED_IN.as_str()))
            .bind(unread.hash())
            .bind(agent_id)
            .bind(rate_limit::window_secs(limit))
            .bind(state.settings.require_verified_email)
            .fetch_optional(&state.db)
            .await?;
    clock.mark(Step::Read);
    let Some(row) = row else {
        return Err(why_no_row(state, unread).await);
    };
    let session = row.me.open(&state.crypto)?;
    let ready = ready_from(state, session.user_id, &session.key, agent_id, row.reads).await?;
    Ok((session, ready))
}

/// A send's input as checked before its session is read: an invalid one
/// is answered after who asks (401 or 403 first), as for every other
/// request. A round trip more, on that refusal only.
pub(crate) async fn who_asks_first<T>(
    state: &AppState,
    unread: &UnreadSession,
    input: Result<T, AppError>,
) -> Result<T, AppError> {
    if input.is_err() {
        may_chat(state, unread).await?;
    }
    input
}

/// The session of a send, read on its own, if it may chat (as
/// `ctx::require_verified_session` decides for every other request).
async fn may_chat(state: &AppState, unread: &UnreadSession) -> Result<AuthSession, AppError> {
    let session = unread
        .read(&state.db, &state.crypto)
        .await?
        .ok_or(AppError::Unauthorized)?;
    session.require_verified(&state.settings)?;
    Ok(session)
}

/// Why `SEND_READS_SIGNED_IN` read no row: no live session (401), an
/// address not confirmed where that is required, or else an agent the user
/// may not use (404). A round trip more, on refusals only.
async fn why_no_row(state: &AppState, unread: &UnreadSession) -> AppError {
    match may_chat(state, unread).await {
        Ok(_) => AppError::NotFound,
        Err(refused) => refused,
    }
}

/// A send's reads (`SendReads`), opened and checked: the agent's spec, the
/// key it uses, what the reply may cost.
async fn ready_from(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    agent_id: Uuid,
    reads: SendReads,
) -> Result<Ready, AppError> {
    let limit = state.settings.chat_sends_per_user;
    rate_limit::refuse_over(reads.hits, reads.retry_after, limit)?;
    // The key's columns are all there or all null (no key of the user's).
    let pick = match (
        reads.key_id,
        reads.key_label,
        reads.key_masked,
        reads.key_secret,
        reads.key_chosen,
    ) {
        (Some(id), Some(label), Some(masked), Some(secret), Some(chosen)) => {
            Some(provider_keys::server::Pick {
                id,
                label,
                masked,
                secret,
                chosen,
            })
        }
        _ => None,
    };
    let prices = crate::usage::server::Prices::from(reads.prices);
    let bases = reads.bases;
    let agents::server::Loaded { spec, team, .. } =
        agents::server::open(state, owner, key, reads.agent).await?;
    if spec.provider == Provider::Demo && state.settings.demo_url.is_none() {
        return Err(AppError::invalid(
            "message",
            "The offline demo model runs only on development servers; choose another provider for this agent.",
        ));
    }
    let resolved = provider_keys::server::settle(state, owner, key, spec.provider, pick)?;
    let api_key = resolved.secret(key)?;
    let plan = crate::usage::server::admit(
        state,
        owner,
        team,
        prices.of(&spec.model),
        spec.max_output_tokens,
        resolved.is_operators(),
    )
    .await?;
    Ok(Ready {
        agent_id,
        team,
        spec,
        api_key,
        key: key.clone(),
        plan,
        bases,
        clock: None,
    })
}

/// Locks the owner's conversation with `agent_id` (when given) and refuses
/// while a reply is still being written in it.
async fn lock_idle(
    tx: &mut sqlx::PgConnection,
    owner: Uuid,
    conversation: Uuid,
    agent_id: Option<Uuid>,
) -> Result<Uuid, AppError> {
    let found: Option<Uuid> = sqlx::query_scalar(
        "SELECT agent_id FROM conversations WHERE id = $1 AND owner_id = $2
           AND ($3::uuid IS NULL OR agent_id = $3) FOR UPDATE",
    )
    .bind(conversation)
    .bind(owner)
    .bind(agent_id)
    .fetch_optional(&mut *tx)
    .await?;
    let agent = found.ok_or(AppError::NotFound)?;
    let busy: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM messages WHERE conversation_id = $1
           AND status IN ('streaming', 'awaiting_approval'))",
    )
    .bind(conversation)
    .fetch_one(&mut *tx)
    .await?;
    if busy {
        return Err(AppError::invalid(
            "message",
            "Wait for the reply (or stop it), and approve or deny any tool call it asks about, \
             before sending another message.",
        ));
    }
    Ok(agent)
}

/// A new conversation with `agent_id`, titled from its first message.
async fn insert_conversation(
    tx: &mut sqlx::PgConnection,
    owner: Uuid,
    agent_id: Uuid,
    key: &DataKey,
    first_message: &str,
    transient: bool,
) -> Result<Uuid, AppError> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO conversations (id, owner_id, agent_id, title, transient)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(owner)
    .bind(agent_id)
    .bind(key.seal_str(title_place(id, owner), &title_from(first_message)))
    .bind(transient)
    .execute(&mut *tx)
    .await?;
    Ok(id)
}

async fn insert_user_message(
    tx: &mut sqlx::PgConnection,
    owner: Uuid,
    conversation: Uuid,
    key: &DataKey,
    text: &str,
) -> Result<Uuid, AppError> {
    insert_message(tx, owner, conversation, key, Role::User, text).await
}

/// Stores a complete message (the user's, or an earlier reply a program
/// hands over with its request).
async fn insert_message(
    tx: &mut sqlx::PgConnection,
    owner: Uuid,
    conversation: Uuid,
    key: &DataKey,
    role: Role,
    text: &str,
) -> Result<Uuid, AppError> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO messages (id, conversation_id, owner_id, role, body, status, created_at)
         VALUES ($1, $2, $3, $4, $5, 'complete', clock_timestamp())",
    )
    .bind(id)
    .bind(conversation)
    .bind(owner)
    .bind(match role {
        Role::User => "user",
        Role::Assistant => "assistant",
    })
    .bind(key.seal_str(body_place(id, owner), text))
    .execute(&mut *tx)
    .await?;
    Ok(id)
}

/// The reply to queue: which earlier reply it replaces (regenerate), if any.
#[derive(Clone, Copy, Default)]
struct Queue {
    replaces: Option<Uuid>,
}

/// Reads the context (the latest messages, oldest first, without the reply
/// being replaced) and stores an empty reply marked streaming, owned by this
/// server's runs. Returns the reply's id and the request.
/// Builds the reply's job from the conversation as stored in `tx`, holds
/// its credits, starts its run and writes its empty row. The run starts
/// before the row is written, so the provider is asked while the rest of
/// the transaction and its commit go on; open the returned gate once `tx`
/// has committed (see `runs::Committed`). Credits are held first: no
/// provider is asked for a reply the owner cannot pay for.
async fn queue_reply(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    owner: Uuid,
    conversation: Uuid,
    ready: Ready,
    queue: Queue,
) -> Result<(Uuid, super::runs::Commit), AppError> {
    let reply_id = Uuid::new_v4();
    let (turns, question) = context(
        tx,
        owner,
        conversation,
        &ready.key,
        reply_id,
        queue.replaces,
    )
    .await?;
    let job = job_for(state, owner, &ready, reply_id, turns, question).await?;
    crate::usage::server::reserve(state, &mut *tx, owner, reply_id, &ready.plan).await?;
    let commit = start_reply(state, owner, reply_id, &ready, job, queue.replaces);
    insert_reply(
        tx,
        state,
        owner,
        conversation,
        reply_id,
        &ready,
        queue.replaces,
    )
    .await?;
    Ok((reply_id, commit))
}

/// Starts the run of reply `reply_id` before its row is stored; the gate
/// returned opens it once the row's transaction has committed.
fn start_reply(
    state: &AppState,
    owner: Uuid,
    reply_id: Uuid,
    ready: &Ready,
    job: Job,
    replaces: Option<Uuid>,
) -> super::runs::Commit {
    let (commit, committed) = super::runs::Committed::pending();
    state.runs.start(
        state.clone(),
        super::runs::Reply {
            owner,
            message: reply_id,
            replaces,
        },
        ready.key.clone(),
        job,
        committed,
    );
    commit
}

/// The reply's row: empty, `streaming`, written by this server.
async fn insert_reply(
    tx: &mut sqlx::PgConnection,
    state: &AppState,
    owner: Uuid,
    conversation: Uuid,
    reply_id: Uuid,
    ready: &Ready,
    replaces: Option<Uuid>,
) -> Result<(), AppError> {
    let key = &ready.key;
    sqlx::query(
        "INSERT INTO messages
           (id, conversation_id, owner_id, role, body, status, model, replaces, runner, created_at)
         VALUES ($1, $2, $3, 'assistant', $4, 'streaming', $5, $6, $7, clock_timestamp())",
    )
    .bind(reply_id)
    .bind(conversation)
    .bind(owner)
    .bind(key.seal_str(body_place(reply_id, owner), ""))
    .bind(key.seal_str(message_place("model", reply_id, owner), &ready.spec.model))
    .bind(replaces)
    .bind(state.runs.instance())
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE conversations SET updated_at = now() WHERE id = $1 AND owner_id = $2")
        .bind(conversation)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The context of reply `reply_id` as stored: the latest messages, oldest
/// first, without `exclude` (the reply being replaced, or the paused reply
/// itself), each user message with its files' text; and the latest user
/// message alone (what the agent's knowledge is searched for).
async fn context(
    tx: &mut sqlx::PgConnection,
    owner: Uuid,
    conversation: Uuid,
    key: &DataKey,
    reply_id: Uuid,
    exclude: Option<Uuid>,
) -> Result<(Vec<Turn>, Option<String>), AppError> {
    let rows: Vec<(Uuid, String, Sealed)> = sqlx::query_as(
        "SELECT id, role, body FROM (
           SELECT id, role, body, created_at FROM messages
           WHERE conversation_id = $1 AND owner_id = $2 AND id IS DISTINCT FROM $4
             AND id IS DISTINCT FROM $5
           ORDER BY created_at DESC, id DESC LIMIT $3
         ) recent ORDER BY created_at, id",
    )
    .bind(conversation)
    .bind(owner)
    .bind(CONTEXT_MESSAGES)
    .bind(exclude)
    .bind(reply_id)
    .fetch_all(&mut *tx)
    .await?;
    let users: Vec<Uuid> = rows
        .iter()
        .filter(|(_, role, _)| role == "user")
        .map(|(id, _, _)| *id)
        .collect();
    let mut files = super::files::texts_of_messages(&mut *tx, owner, key, &users).await?;
    let mut turns = Vec::with_capacity(rows.len());
    let mut question = None;
    for (id, role, body) in rows {
        let mut content = key.open_text(body_place(id, owner), &body)?;
        if !content.is_empty() {
            if role == "user" {
                // The knowledge search looks for the message alone, not the
                // files that came with it.
                question = Some(content.clone());
                if let Some(files) = files.remove(&id) {
                    content = super::files::with_files(&content, &files);
                }
            }
            let role = if role == "user" {
                Role::User
            } else {
                Role::Assistant
            };
            turns.push(Turn::text(role, content));
        }
    }
    Ok((turns, question))
}

/// What a run of reply `reply_id` does: answer `turns` (the context) with
/// the agent's settings and tools, searching its knowledge for `question`.
async fn job_for(
    state: &AppState,
    owner: Uuid,
    ready: &Ready,
    reply_id: Uuid,
    turns: Vec<Turn>,
    question: Option<String>,
) -> Result<Job, AppError> {
    let Ready {
        agent_id,
        team,
        spec,
        api_key,
        key,
        plan,
        bases,
        clock,
    } = ready;
    let urls = &state.settings.provider_urls;
    let base_url = match spec.provider {
        Provider::Openai => urls.openai.clone(),
        Provider::Anthropic => urls.anthropic.clone(),
        Provider::Google => urls.google.clone(),
        Provider::OpenaiCompatible => spec.base_url.clone().unwrap_or_default(),
        Provider::Demo => state.settings.demo_url.clone().unwrap_or_default(),
    };
    let toolbox = Toolbox::for_agent(ToolCtx {
        state: state.clone(),
        owner,
        key: key.clone(),
        message: reply_id,
        config: spec.tools.clone(),
        team: *team,
    })
    .await;
    let request = ChatRequest {
        provider: spec.provider,
        base_url,
        api_key: api_key.clone(),
        model: spec.model.clone(),
        system_prompt: spec.system_prompt.clone(),
        turns,
        tools: toolbox.declarations(),
        temperature: spec.temperature,
        top_p: spec.top_p,
        max_output_tokens: spec.max_output_tokens,
    };
    // The agent's knowledge is searched for the latest message when the
    // run starts (not here, before its reply is stored).
    let retrieval = question.filter(|_| !bases.is_empty()).map(|question| {
        crate::knowledge::server::retrieval(
            state.clone(),
            owner,
            key.clone(),
            bases.clone(),
            question,
        )
    });
    let team_key = match team {
        Some(team) => Some((
            *team,
            crate::platform::keystore::team_key_for_member(
                &state.db,
                &state.crypto.keyring,
                *team,
                owner,
            )
            .await?,
        )),
        None => None,
    };
    let meter = crate::usage::server::Meter::new(
        state,
        crate::usage::server::Subject {
            owner,
            key,
            team: team_key,
            kind: "reply",
            agent: Some((*agent_id, spec.name.clone())),
            provider: spec.provider,
            model: &spec.model,
        },
        plan,
        Some(reply_id),
    );
    Ok(Job {
        request,
        tools: (!toolbox.is_empty()).then_some(toolbox),
        resume: Vec::new(),
        retrieval,
        meter: Some(meter),
        clock: clock.clone(),
    })
}

/// Approves or denies a call of an "ask first" tool in a paused reply. Once
/// no call waits any more, the reply's run goes on (here, on this server):
/// approved calls run, denied ones tell the model the user said no.
pub async fn decide(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    message: Uuid,
    call_id: &str,
    approve: bool,
) -> Result<(), AppError> {
    let paused: Option<(Uuid, Uuid, String, Option<Sealed>)> = sqlx::query_as(
        "SELECT m.conversation_id, c.agent_id, m.status, m.parts FROM messages m
         JOIN conversations c ON c.id = m.conversation_id
         WHERE m.id = $1 AND m.owner_id = $2 AND m.role = 'assistant'",
    )
    .bind(message)
    .bind(owner)
    .fetch_optional(&state.db)
    .await?;
    let (conversation, agent_id, _, _) = paused.ok_or(AppError::NotFound)?;
    // Loaded before the row is locked (a reply counts against the limit).
    let ready = ready(state, owner, key, agent_id).await?;
    let mut tx = state.db.begin().await?;
    let (status, sealed): (String, Option<Sealed>) = sqlx::query_as(
        "SELECT status, parts FROM messages WHERE id = $1 AND owner_id = $2 FOR UPDATE",
    )
    .bind(message)
    .bind(owner)
    .fetch_one(&mut *tx)
    .await?;
    let not_waiting = || AppError::invalid("message", "This reply is not waiting for a decision.");
    if status != MessageStatus::AwaitingApproval.as_str() {
        return Err(not_waiting());
    }
    let sealed = sealed.ok_or_else(not_waiting)?;
    let mut parts: Vec<ReplyPart> =
        serde_json::from_str(&key.open_text(message_place("parts", message, owner), &sealed)?)
            .map_err(AppError::internal)?;
    let call = parts
        .iter_mut()
        .find_map(|p| match p {
            ReplyPart::ToolCall(call)
                if call.id == call_id && call.status == ToolStatus::AwaitingApproval =>
            {
                Some(call)
            }
            _ => None,
        })
        .ok_or(AppError::NotFound)?;
    if approve {
        call.status = ToolStatus::Approved;
    } else {
        call.status = ToolStatus::Denied;
        call.error = Some("You declined this call.".into());
    }
    tracing::info!(message_id = %message, owner_id = %owner, approve, "tool call decided");
    let waiting = parts
        .iter()
        .any(|p| matches!(p, ReplyPart::ToolCall(c) if c.status == ToolStatus::AwaitingApproval));
    let json = serde_json::to_string(&parts).map_err(AppError::internal)?;
    let sealed = key.seal_str(message_place("parts", message, owner), &json);
    if waiting {
        sqlx::query(
            "UPDATE messages SET parts = $3, updated_at = now() WHERE id = $1 AND owner_id = $2",
        )
        .bind(message)
        .bind(owner)
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(());
    }
    let (turns, question) =
        context(&mut tx, owner, conversation, &ready.key, message, None).await?;
    let mut job = job_for(state, owner, &ready, message, turns, question).await?;
    job.resume = parts;
    crate::usage::server::reserve(state, &mut tx, owner, message, &ready.plan).await?;
    sqlx::query(
        "UPDATE messages SET parts = $3, status = 'streaming', runner = $4, updated_at = now()
         WHERE id = $1 AND owner_id = $2",
    )
    .bind(message)
    .bind(owner)
    .bind(sealed)
    .bind(state.runs.instance())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    state.runs.start(
        state.clone(),
        super::runs::Reply {
            owner,
            message,
            replaces: None,
        },
        ready.key,
        job,
        super::runs::Committed::already(),
    );
    Ok(())
}

/// Stores the user's message (with the unsent `files` attached for it) and
/// an empty reply, then starts the run that writes the reply. A new
/// conversation is made when `conversation` is None. Nothing is stored when
/// the agent cannot answer (no key, say).
pub async fn send(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    agent_id: Uuid,
    conversation: Option<Uuid>,
    text: &str,
    files: &[Uuid],
) -> Result<Sent, AppError> {
    let text = validate_message(text)?;
    let ready = ready(state, owner, key, agent_id).await?;
    store_and_start(state, owner, agent_id, conversation, ready, &text, files).await
}

/// `send` for a session the middleware left unread (`send_message`): the
/// session is read in the statement that reads what the send needs.
pub async fn send_signed_in(
    state: &AppState,
    unread: &UnreadSession,
    agent_id: Uuid,
    conversation: Option<Uuid>,
    text: &str,
    files: &[Uuid],
) -> Result<Sent, AppError> {
    let clock = SendClock::start();
    let text = who_asks_first(state, unread, validate_message(text)).await?;
    let (session, mut ready) = ready_signed_in(state, unread, agent_id, &clock).await?;
    clock.mark(Step::Ready);
    ready.clock = Some(clock);
    store_and_start(
        state,
        session.user_id,
        agent_id,
        conversation,
        ready,
        &text,
        files,
    )
    .await
}

/// Stores the user's message and the reply's row, and starts the run
/// (`send`, once the send is ready).
async fn store_and_start(
    state: &AppState,
    owner: Uuid,
    agent_id: Uuid,
    conversation: Option<Uuid>,
    ready: Ready,
    text: &str,
    files: &[Uuid],
) -> Result<Sent, AppError> {
    if conversation.is_none() && files.is_empty() && ready.plan.hold <= 0 {
        return send_first(state, owner, agent_id, ready, text).await;
    }
    let mut tx = state.db.begin().await?;
    let conversation_id = match conversation {
        Some(id) => {
            lock_idle(&mut tx, owner, id, Some(agent_id)).await?;
            id
        }
        None => insert_conversation(&mut tx, owner, agent_id, &ready.key, text, false).await?,
    };
    let user_message_id =
        insert_user_message(&mut tx, owner, conversation_id, &ready.key, text).await?;
    super::files::claim(&mut tx, owner, user_message_id, files).await?;
    reply_and_start(
        state,
        tx,
        owner,
        conversation_id,
        user_message_id,
        ready,
        Queue::default(),
    )
    .await
}

/// The first message of a new conversation, without files or credits to
/// hold: its context is the message itself, known before anything is
/// stored, so its run starts first and the conversation, the message and
/// the reply's row are written while the provider is asked (the run waits
/// for their commit as in `queue_reply`).
async fn send_first(
    state: &AppState,
    owner: Uuid,
    agent_id: Uuid,
    ready: Ready,
    text: &str,
) -> Result<Sent, AppError> {
    let reply_id = Uuid::new_v4();
    let turns = vec![Turn::text(Role::User, text.to_owned())];
    let job = job_for(state, owner, &ready, reply_id, turns, Some(text.to_owned())).await?;
    let commit = start_reply(state, owner, reply_id, &ready, job, None);
    // The conversation, the message and the reply's row in one statement:
    // one round trip, durable when it returns (no BEGIN and COMMIT of their
    // own), all or nothing. The reply is stamped a microsecond after the
    // message (one clock reading for both), so it always sorts after it.
    let conversation_id = Uuid::new_v4();
    let user_message_id = Uuid::new_v4();
    let key = &ready.key;
    sqlx::query(
        "WITH at AS (SELECT clock_timestamp() AS t),
              conversation AS (
                INSERT INTO conversations (id, owner_id, agent_id, title, transient)
                VALUES ($1, $2, $3, $4, false)),
              message AS (
                INSERT INTO messages (id, conversation_id, owner_id, role, body, status, created_at)
                SELECT $5, $1, $2, 'user', $6, 'complete', t FROM at)
         INSERT INTO messages
           (id, conversation_id, owner_id, role, body, status, model, runner, created_at)
         SELECT $7, $1, $2, 'assistant', $8, 'streaming', $9, $10, t + interval '1 microsecond'
         FROM at",
    )
    .bind(conversation_id)
    .bind(owner)
    .bind(agent_id)
    .bind(key.seal_str(title_place(conversation_id, owner), &title_from(text)))
    .bind(user_message_id)
    .bind(key.seal_str(body_place(user_message_id, owner), text))
    .bind(reply_id)
    .bind(key.seal_str(body_place(reply_id, owner), ""))
    .bind(key.seal_str(message_place("model", reply_id, owner), &ready.spec.model))
    .bind(state.runs.instance())
    .execute(&state.db)
    .await?;
    // Marked before the run hears of the commit, which may end it.
    if let Some(clock) = &ready.clock {
        clock.mark(Step::Stored);
    }
    commit.stored();
    tracing::info!(conversation_id = %conversation_id, message_id = %reply_id, owner_id = %owner, "reply started");
    Ok(Sent {
        conversation_id: conversation_id.to_string(),
        user_message_id: user_message_id.to_string(),
        reply_id: reply_id.to_string(),
    })
}

/// A conversation a program hands over in one request (the OpenAI-compatible
/// API): the messages so far, the one to answer, and any instructions of
/// its own.
pub struct Transcript<'a> {
    /// Earlier messages, oldest first (the user's and the agent's).
    pub earlier: &'a [(Role, String)],
    /// The message to answer.
    pub message: &'a str,
    /// The caller's own instructions: added after the agent's prompt for
    /// this reply (not stored).
    pub instructions: Option<&'a str>,
    /// Keep the conversation only while its reply is written
    /// (`discard_transient` deletes it afterwards).
    pub transient: bool,
}

/// Earlier messages a request may hand over.
pub const TRANSCRIPT_MAX_MESSAGES: usize = 200;

/// Starts a new conversation with `agent_id` from a program's transcript:
/// its messages are stored (sealed) like the user's own, then the reply is
/// queued and its run started, as for a message typed in the chat.
pub async fn send_transcript(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    agent_id: Uuid,
    transcript: Transcript<'_>,
) -> Result<Sent, AppError> {
    let text = validate_message(transcript.message)?;
    if transcript.earlier.len() > TRANSCRIPT_MAX_MESSAGES {
        return Err(AppError::invalid(
            "messages",
            format!("Send at most {TRANSCRIPT_MAX_MESSAGES} earlier messages."),
        ));
    }
    let mut earlier = Vec::with_capacity(transcript.earlier.len());
    for (role, body) in transcript.earlier {
        let body = body.trim();
        if body.chars().count() > MESSAGE_MAX_CHARS {
            return Err(AppError::invalid(
                "messages",
                format!("A message has at most {MESSAGE_MAX_CHARS} characters."),
            ));
        }
        if !body.is_empty() {
            earlier.push((*role, body));
        }
    }
    let instructions = transcript
        .instructions
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if instructions.is_some_and(|s| s.chars().count() > MESSAGE_MAX_CHARS) {
        return Err(AppError::invalid(
            "messages",
            format!("System instructions have at most {MESSAGE_MAX_CHARS} characters."),
        ));
    }
    let mut ready = ready(state, owner, key, agent_id).await?;
    if let Some(instructions) = instructions {
        let prompt = &mut ready.spec.system_prompt;
        if !prompt.is_empty() {
            prompt.push_str("\n\n");
        }
        prompt.push_str(instructions);
    }
    let mut tx = state.db.begin().await?;
    let conversation_id = insert_conversation(
        &mut tx,
        owner,
        agent_id,
        &ready.key,
        &text,
        transcript.transient,
    )
    .await?;
    for (role, body) in earlier {
        insert_message(&mut tx, owner, conversation_id, &ready.key, role, body).await?;
    }
    let user_message_id =
        insert_user_message(&mut tx, owner, conversation_id, &ready.key, &text).await?;
    reply_and_start(
        state,
        tx,
        owner,
        conversation_id,
        user_message_id,
        ready,
        Queue::default(),
    )
    .await
}

/// Deletes a transient conversation (its reply has ended).
pub async fn discard_transient(
    db: &sqlx::PgPool,
    owner: Uuid,
    conversation: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM conversations WHERE id = $1 AND owner_id = $2 AND transient")
        .bind(conversation)
        .bind(owner)
        .execute(db)
        .await?;
    Ok(())
}

/// Deletes up to `batch` transient conversations left for an hour with no
/// reply being written (their server stopped before it could delete them).
pub async fn purge_transient(db: &sqlx::PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM conversations WHERE id IN (
             SELECT c.id FROM conversations c
             WHERE c.transient AND c.updated_at < now() - interval '1 hour'
               AND NOT EXISTS (SELECT 1 FROM messages m
                               WHERE m.conversation_id = c.id AND m.status = 'streaming')
             LIMIT $1 FOR UPDATE SKIP LOCKED)",
    )
    .bind(batch)
    .execute(db)
    .await?
    .rows_affected())
}

/// Queues the reply and starts the run that writes it, then commits `tx`
/// (the run writes nothing until the commit is in).
async fn reply_and_start(
    state: &AppState,
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    owner: Uuid,
    conversation: Uuid,
    user_message_id: Uuid,
    ready: Ready,
    queue: Queue,
) -> Result<Sent, AppError> {
    let clock = ready.clock.clone();
    let (reply_id, commit) = queue_reply(state, &mut tx, owner, conversation, ready, queue).await?;
    tx.commit().await?;
    if let Some(clock) = clock {
        clock.mark(Step::Stored);
    }
    commit.stored();
    tracing::info!(conversation_id = %conversation, message_id = %reply_id, owner_id = %owner, "reply started");
    Ok(Sent {
        conversation_id: conversation.to_string(),
        user_message_id: user_message_id.to_string(),
        reply_id: reply_id.to_string(),
    })
}

/// Writes the last reply of a conversation again. The old reply stays until
/// the new one has text: the run deletes it when it ends with something to
/// show, and a new reply that fails before its first word leaves the old one
/// in place (with the failure under it).
pub async fn regenerate(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    conversation: Uuid,
) -> Result<Sent, AppError> {
    let agent_id: Uuid =
        sqlx::query_scalar("SELECT agent_id FROM conversations WHERE id = $1 AND owner_id = $2")
            .bind(conversation)
            .bind(owner)
            .fetch_optional(&state.db)
            .await?
            .ok_or(AppError::NotFound)?;
    let ready = ready(state, owner, key, agent_id).await?;
    let mut tx = state.db.begin().await?;
    lock_idle(&mut tx, owner, conversation, None).await?;
    let last: Option<(Uuid, String)> = sqlx::query_as(
        "SELECT id, role FROM messages WHERE conversation_id = $1 AND owner_id = $2
         ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(conversation)
    .bind(owner)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((last_id, _)) = last.filter(|(_, role)| role == "assistant") else {
        return Err(AppError::invalid(
            "message",
            "There is no reply to regenerate.",
        ));
    };
    let user_message_id: Uuid = sqlx::query_scalar(
        "SELECT id FROM messages WHERE conversation_id = $1 AND owner_id = $2 AND role = 'user'
         ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(conversation)
    .bind(owner)
    .fetch_one(&mut *tx)
    .await?;
    let queue = Queue {
        replaces: Some(last_id),
    };
    reply_and_start(
        state,
        tx,
        owner,
        conversation,
        user_message_id,
        ready,
        queue,
    )
    .await
}

/// Replaces one of the user's messages, drops everything after it, and asks again.
pub async fn edit_and_resend(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    message: Uuid,
    text: &str,
) -> Result<Sent, AppError> {
    let text = validate_message(text)?;
    let found: Option<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT m.conversation_id, c.agent_id FROM messages m JOIN conversations c ON c.id = m.conversation_id
         WHERE m.id = $1 AND m.owner_id = $2 AND m.role = 'user'",
    )
    .bind(message)
    .bind(owner)
    .fetch_optional(&state.db)
    .await?;
    let (conversation, agent_id) = found.ok_or(AppError::NotFound)?;
    let ready = ready(state, owner, key, agent_id).await?;
    let mut tx = state.db.begin().await?;
    lock_idle(&mut tx, owner, conversation, None).await?;
    // The edited message keeps its files.
    let files = super::files::detach(&mut tx, owner, message).await?;
    sqlx::query(
        "DELETE FROM messages WHERE conversation_id = $1 AND owner_id = $2
           AND (created_at, id) >= (SELECT created_at, id FROM messages WHERE id = $3 AND owner_id = $2)",
    )
    .bind(conversation)
    .bind(owner)
    .bind(message)
    .execute(&mut *tx)
    .await?;
    let user_message_id =
        insert_user_message(&mut tx, owner, conversation, &ready.key, &text).await?;
    super::files::claim(&mut tx, owner, user_message_id, &files).await?;
    reply_and_start(
        state,
        tx,
        owner,
        conversation,
        user_message_id,
        ready,
        Queue::default(),
    )
    .await
}

pub async fn list_conversations(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    agent_id: Uuid,
) -> Result<Vec<ConversationSummary>, AppError> {
    // Another user's agent is not found, not an empty list.
    agents::server::check_usable(&state.db, owner, agent_id).await?;
    let rows: Vec<(Uuid, Sealed, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT c.id, c.title, c.updated_at + make_interval(
                    days => least(coalesce(u.conversation_retention_days, $3), $3))
         FROM conversations c JOIN users u ON u.id = c.owner_id
         WHERE c.owner_id = $1 AND c.agent_id = $2 AND NOT c.transient
         ORDER BY c.updated_at DESC, c.id",
    )
    .bind(owner)
    .bind(agent_id)
    .bind(state.settings.retention.conversation_days as i32)
    .fetch_all(&state.db)
    .await?;
    rows.iter()
        .map(|(id, title, expires)| {
            Ok(ConversationSummary {
                id: id.to_string(),
                title: key.open_text(title_place(*id, owner), title)?,
                expires_on: expires.format("%Y-%m-%d").to_string(),
            })
        })
        .collect()
}

/// Conversations the sidebar sends at most, and the "All chats" page.
pub const SIDEBAR_CHATS: usize = 50;
pub const ALL_CHATS: usize = 1_000;

/// The user's conversations across agents, newest first, at most `limit`;
/// with a `query`, those whose title holds it (any case). Titles are sealed,
/// so the search opens them here, for this user, and never in SQL.
/// Conversations with an agent the user can no longer use (a team they
/// left) are left out: they could not be opened.
pub async fn chat_list(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    query: &str,
    limit: usize,
) -> Result<ChatList, AppError> {
    let needle = query.trim().to_lowercase();
    let agents = agents::server::list_agents(state, owner, key, "").await?;
    let usable: std::collections::HashSet<&str> = agents.iter().map(|a| a.id.as_str()).collect();
    // Without a query only the first page is read; a search reads them all.
    let rows: Vec<(Uuid, Uuid, Sealed, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT id, agent_id, title, updated_at FROM conversations
         WHERE owner_id = $1 AND NOT transient
         ORDER BY updated_at DESC, id LIMIT $2",
    )
    .bind(owner)
    .bind(needle.is_empty().then_some(limit as i64 + 1))
    .fetch_all(&state.db)
    .await?;
    let last_agent = rows
        .iter()
        .map(|r| r.1.to_string())
        .find(|a| usable.contains(a.as_str()));
    let mut chats = Vec::new();
    let mut more = false;
    for (id, agent, title, updated) in &rows {
        let agent_id = agent.to_string();
        if !usable.contains(agent_id.as_str()) {
            continue;
        }
        let title = key.open_text(title_place(*id, owner), title)?;
        if !needle.is_empty() && !title.to_lowercase().contains(&needle) {
            continue;
        }
        if chats.len() == limit {
            more = true;
            break;
        }
        chats.push(ChatListItem {
            id: id.to_string(),
            agent_id,
            title,
            updated: updated.timestamp(),
        });
    }
    Ok(ChatList {
        chats,
        agents: agents
            .into_iter()
            .map(|a| ChatListAgent {
                id: a.id,
                name: a.name,
                avatar: a.avatar,
            })
            .collect(),
        more,
        last_agent,
        now: chrono::Utc::now().timestamp(),
    })
}

/// A message as stored.
#[derive(sqlx::FromRow)]
struct MessageRow {
    id: Uuid,
    role: String,
    body: Sealed,
    status: String,
    error_code: Option<String>,
    error: Option<Sealed>,
    model: Option<Sealed>,
    input_tokens: Option<i32>,
    output_tokens: Option<i32>,
    parts: Option<Sealed>,
}

const MESSAGE_COLUMNS: &str = "m.id, m.role, m.body, m.status, m.error_code, m.error, m.model, \
     m.input_tokens, m.output_tokens, m.parts";

/// Hides a reply while a regeneration of it is being written (it goes when
/// the new one ends with text, and shows again if the new one fails first).
const VISIBLE: &str =
    "NOT EXISTS (SELECT 1 FROM messages r WHERE r.replaces = m.id AND r.status = 'streaming')";

impl MessageRow {
    fn view(&self, key: &DataKey, owner: Uuid) -> Result<MessageView, AppError> {
        let error = match (&self.error, &self.error_code) {
            (Some(sealed), _) => {
                Some(key.open_text(message_place("error", self.id, owner), sealed)?)
            }
            (None, Some(code)) => Some(super::error_sentence(code).to_owned()),
            (None, None) => None,
        };
        Ok(MessageView {
            id: self.id.to_string(),
            role: self.role.clone(),
            body: key.open_text(body_place(self.id, owner), &self.body)?,
            parts: match &self.parts {
                Some(sealed) => serde_json::from_str(
                    &key.open_text(message_place("parts", self.id, owner), sealed)?,
                )
                .map_err(AppError::internal)?,
                None => Vec::new(),
            },
            status: MessageStatus::parse(&self.status),
            error,
            model: key
                .open_optional(message_place("model", self.id, owner), self.model.as_ref())?,
            input_tokens: self.input_tokens.map(|n| n as u32),
            output_tokens: self.output_tokens.map(|n| n as u32),
            files: Vec::new(),
        })
    }
}

/// A conversation with its newest `PAGE` messages (or those before `before`).
pub async fn get_conversation(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
    before: Option<Uuid>,
) -> Result<ConversationView, AppError> {
    let conversation: Option<(Uuid, Sealed, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT c.agent_id, c.title, c.updated_at + make_interval(
                    days => least(coalesce(u.conversation_retention_days, $3), $3))
         FROM conversations c JOIN users u ON u.id = c.owner_id
         WHERE c.id = $1 AND c.owner_id = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(state.settings.retention.conversation_days as i32)
    .fetch_optional(&state.db)
    .await?;
    let (agent_id, title, expires) = conversation.ok_or(AppError::NotFound)?;
    let mut rows: Vec<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m
         WHERE m.conversation_id = $1 AND m.owner_id = $2 AND {VISIBLE}
           AND ($3::uuid IS NULL OR (m.created_at, m.id) < (SELECT created_at, id FROM messages WHERE id = $3 AND owner_id = $2))
         ORDER BY m.created_at DESC, m.id DESC LIMIT $4"
    )))
    .bind(id)
    .bind(owner)
    .bind(before)
    .bind(PAGE as i64 + 1)
    .fetch_all(&state.db)
    .await?;
    let has_more = rows.len() > PAGE;
    rows.truncate(PAGE);
    rows.reverse();
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut files = super::files::of_messages(&state.db, owner, key, &ids).await?;
    let messages = rows
        .iter()
        .map(|row| {
            let mut view = row.view(key, owner)?;
            view.files = files.remove(&row.id).unwrap_or_default();
            Ok(view)
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    Ok(ConversationView {
        id: id.to_string(),
        agent_id: agent_id.to_string(),
        title: key.open_text(title_place(id, owner), &title)?,
        expires_on: expires.format("%Y-%m-%d").to_string(),
        messages,
        has_more,
    })
}

/// The stored state of one of the owner's messages (for a stream that
/// attaches after the run ended).
pub async fn stored_reply(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<MessageView, AppError> {
    let row: Option<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = $1 AND m.owner_id = $2"
    )))
    .bind(id)
    .bind(owner)
    .fetch_optional(&state.db)
    .await?;
    row.ok_or(AppError::NotFound)?.view(key, owner)
}

/// What a reader of the owner's reply `id` is sent, from wherever it is:
/// the live run's snapshot and updates when it runs here (the registry
/// checks the owner, no query); else the stored row's: followed from the
/// server that writes it while it is `streaming` (through the database's
/// notifications), or its text and end once it has ended. Another user's
/// id is not found. A reader that asks just after a short reply ended gets
/// the whole reply all the same.
pub async fn reply_updates(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<futures::stream::BoxStream<'static, super::StreamUpdate>, AppError> {
    use futures::StreamExt as _;
    if let Some(updates) = state.runs.follow(id, owner) {
        return Ok(updates.boxed());
    }
    let stored = stored_reply(state, owner, key, id).await?;
    Ok(if stored.status == MessageStatus::Streaming {
        state
            .runs
            .follow_remote(state.clone(), id, owner, key.clone())
            .boxed()
    } else {
        futures::stream::iter(stored.into_updates()).boxed()
    })
}

/// Stops the owner's live reply. Not found for another user's message.
pub async fn stop(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    message: Uuid,
) -> Result<(), AppError> {
    if state.runs.stop(message, owner) {
        return Ok(());
    }
    // A paused reply stops here: its calls waiting for approval never run.
    sqlx::query(
        "UPDATE messages SET status = 'stopped', updated_at = now()
         WHERE id = $1 AND owner_id = $2 AND status = 'awaiting_approval'",
    )
    .bind(message)
    .bind(owner)
    .execute(&state.db)
    .await?;
    // Not live here: finished already, someone else's (then not found), or
    // being written by another server, which is told to stop it.
    let stored = stored_reply(state, owner, key, message).await?;
    if stored.status == MessageStatus::Streaming {
        control::send(&state.db, control::Signal::Stop { message, owner }).await?;
    }
    Ok(())
}

pub async fn rename(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
    title: &str,
) -> Result<(), AppError> {
    let title = title.trim();
    if title.is_empty() || title.chars().count() > TITLE_MAX_CHARS {
        return Err(AppError::invalid(
            "title",
            format!("A title has 1 to {TITLE_MAX_CHARS} characters."),
        ));
    }
    let done = sqlx::query("UPDATE conversations SET title = $3 WHERE id = $1 AND owner_id = $2")
        .bind(id)
        .bind(owner)
        .bind(key.seal_str(title_place(id, owner), title))
        .execute(&state.db)
        .await?;
    crate::error::found(done)?;
    Ok(())
}

/// Deletes a conversation (stopping a reply still being written); returns
/// the agent it belonged to.
pub async fn delete(state: &AppState, owner: Uuid, id: Uuid) -> Result<Uuid, AppError> {
    let live: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM messages WHERE conversation_id = $1 AND owner_id = $2 AND status = 'streaming'",
    )
    .bind(id)
    .bind(owner)
    .fetch_all(&state.db)
    .await?;
    for message in live {
        state.runs.stop(message, owner);
    }
    let agent: Option<Uuid> = sqlx::query_scalar(
        "DELETE FROM conversations WHERE id = $1 AND owner_id = $2 RETURNING agent_id",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(&state.db)
    .await?;
    agent.ok_or(AppError::NotFound)
}

/// Deletes every conversation of `owner` (stopping replies still being
/// written); returns how many there were.
pub async fn delete_all(state: &AppState, owner: Uuid) -> Result<u64, AppError> {
    let live: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM messages WHERE owner_id = $1 AND status = 'streaming'")
            .bind(owner)
            .fetch_all(&state.db)
            .await?;
    for message in live {
        state.runs.stop(message, owner);
    }
    Ok(sqlx::query("DELETE FROM conversations WHERE owner_id = $1")
        .bind(owner)
        .execute(&state.db)
        .await?
        .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_come_from_the_first_line_and_are_shortened() {
        assert_eq!(
            title_from("\n  Plan a trip to Lisbon\nwith kids"),
            "Plan a trip to Lisbon"
        );
        let long = "x".repeat(200);
        let title = title_from(&long);
        assert_eq!(title.chars().count(), TITLE_MAX_CHARS);
        assert!(title.ends_with('…'));
    }

    #[test]
    fn messages_must_have_text_and_a_bounded_length() {
        assert!(validate_message("   ").is_err());
        assert!(validate_message(&"y".repeat(MESSAGE_MAX_CHARS + 1)).is_err());
        assert_eq!(validate_message("  hi ").unwrap(), "hi");
    }
}
