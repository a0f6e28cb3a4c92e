//! Knowledge bases in the database: every user-derived column sealed with
//! the owner's data key, every query scoped to the owner. Ingestion is a
//! job (`Kind::Ingest`) that walks a document through parse → embed →
//! ready, writing each step as it goes, so a restart picks it up where it
//! was: a document still parsing is parsed again from its sealed upload; one
//! embedding goes on with the passages that have no vector yet.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    BaseView, DocKind, DocState, DocumentView, Passage,
    chunk::{self, Location},
    embeddings::{self, Embedder, EmbeddingApi},
    parse::{self, ParseError},
    vectors::{self, Matrix},
};
use crate::teams::server::Keys;
use crate::{
    error::AppError,
    llm::LlmError,
    platform::{
        crypto::{DataKey, Place, Sealed},
        egress::EgressError,
        jobs::{self, Job, JobError, Kind, NewJob},
        keystore::SealedColumn,
    },
    provider::Provider,
    state::AppState,
};

pub const SEALED: &[SealedColumn] = &[
    SealedColumn::shareable("knowledge_bases", "name"),
    SealedColumn::shareable("knowledge_bases", "description"),
    SealedColumn::shareable("knowledge_bases", "model"),
    SealedColumn::shareable("knowledge_bases", "base_url"),
    SealedColumn::shareable("knowledge_documents", "name"),
    SealedColumn::shareable("knowledge_documents", "source"),
    SealedColumn::shareable("knowledge_documents", "error"),
    SealedColumn::shareable("knowledge_chunks", "text"),
    SealedColumn::shareable("knowledge_chunks", "location"),
    SealedColumn::shareable("knowledge_chunks", "vector"),
];

/// A base as a user reaches it: its holder (the user, or the team it
/// belongs to), the key that seals it, and whether the user may change it.
pub struct Reached {
    pub holder: Uuid,
    pub team: Option<Uuid>,
    pub key: DataKey,
    pub can_edit: bool,
}

/// The holder of base `base` for `user` and whether they may change it:
/// their own base, or their team's (`NotFound` for anyone else's).
async fn reach_row(
    db: &PgPool,
    user: Uuid,
    base: Uuid,
) -> Result<(Uuid, Option<Uuid>, bool), AppError> {
    let row: Option<(Uuid, Option<Uuid>, bool)> = sqlx::query_as(
        "SELECT coalesce(b.team_id, b.owner_id), b.team_id,
                (b.team_id IS NULL OR tm.role IN ('owner', 'admin'))
         FROM knowledge_bases b
         LEFT JOIN team_members tm ON tm.team_id = b.team_id AND tm.user_id = $1
         WHERE b.id = $2 AND ((b.team_id IS NULL AND b.owner_id = $1) OR tm.user_id IS NOT NULL)",
    )
    .bind(user)
    .bind(base)
    .fetch_optional(db)
    .await?;
    row.ok_or(AppError::NotFound)
}

/// `reach_row`, with the holder's key opened.
pub async fn reach(
    state: &AppState,
    user: Uuid,
    key: &DataKey,
    base: Uuid,
) -> Result<Reached, AppError> {
    let (holder, team, can_edit) = reach_row(&state.db, user, base).await?;
    let (key, _) = Keys::new(state, user, key).for_row(team).await?;
    Ok(Reached {
        holder,
        team,
        key,
        can_edit,
    })
}

/// A team's base the user only uses: to them it cannot be changed, like
/// one that does not exist (allowed or 404).
fn not_an_editor() -> AppError {
    AppError::NotFound
}

fn place(table: &'static str, column: &'static str, id: Uuid, owner: Uuid) -> Place {
    Place::new(table, column, id, owner)
}

/// Passages a search returns by default.
pub const TOP_K: usize = 5;
/// Bases per agent.
pub const MAX_BASES_PER_AGENT: usize = 10;

/// What the create form sends.
#[derive(Debug, Clone)]
pub struct NewBase {
    pub name: String,
    pub description: String,
    pub provider: Provider,
    pub model: String,
    pub provider_key_id: Option<Uuid>,
    pub base_url: Option<String>,
}

fn check_base(state: &AppState, new: &NewBase) -> Result<(), AppError> {
    let name = new.name.trim();
    if name.is_empty() {
        return Err(AppError::invalid("name", "Give the knowledge base a name."));
    }
    if name.chars().count() > 100 {
        return Err(AppError::invalid(
            "name",
            "The name can be at most 100 characters.",
        ));
    }
    if new.description.chars().count() > 2_000 {
        return Err(AppError::invalid(
            "description",
            "The description can be at most 2,000 characters.",
        ));
    }
    match new.provider {
        Provider::Anthropic => {
            return Err(AppError::invalid(
                "provider",
                "Anthropic offers no embeddings: choose OpenAI, Google or an OpenAI-compatible server.",
            ));
        }
        Provider::Demo if state.settings.demo_url.is_none() => {
            return Err(AppError::invalid(
                "provider",
                "The demo embeddings exist only on a development server.",
            ));
        }
        Provider::OpenaiCompatible => {
            let url = new.base_url.as_deref().unwrap_or("").trim();
            let ok = url::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(AppError::invalid(
                    "base_url",
                    "Enter the server's address, like https://example.com/v1.",
                ));
            }
        }
        _ => {}
    }
    let model = new.model.trim();
    if model.is_empty() || model.len() > 200 || model.chars().any(char::is_whitespace) {
        return Err(AppError::invalid(
            "model",
            "Enter the embedding model's name (no spaces).",
        ));
    }
    Ok(())
}

/// Makes a base: the user's own (`team` None) or a team's, where the user
/// must be an admin or owner. A team's base chooses no one's key: it
/// embeds on the key of whoever adds documents or searches it.
pub async fn create_base(
    state: &AppState,
    user: Uuid,
    key: &DataKey,
    team: Option<Uuid>,
    new: NewBase,
) -> Result<Uuid, AppError> {
    check_base(state, &new)?;
    if let Some(team) = team {
        crate::teams::server::require_editor(&state.db, team, user).await?;
        if new.provider_key_id.is_some() {
            return Err(AppError::invalid(
                "provider_key",
                "A team's knowledge base embeds on the key of whoever uses it: leave the key on automatic.",
            ));
        }
    }
    let (key, owner) = Keys::new(state, user, key).for_row(team).await?;
    let key = &key;
    let id = Uuid::new_v4();
    let t = "knowledge_bases";
    let base_url = (new.provider == Provider::OpenaiCompatible)
        .then(|| new.base_url.as_deref().unwrap_or("").trim().to_owned())
        .map(|u| key.seal_str(place(t, "base_url", id, owner), &u));
    // A chosen key must be the owner's and for this provider.
    let chosen = match new.provider_key_id {
        Some(k) => sqlx::query_scalar::<_, Uuid>(
            "SELECT id FROM provider_keys WHERE id = $1 AND owner_id = $2 AND provider = $3",
        )
        .bind(k)
        .bind(user)
        .bind(new.provider.as_str())
        .fetch_optional(&state.db)
        .await?
        .ok_or_else(|| AppError::invalid("provider_key", "That key is not one of yours."))
        .map(Some)?,
        None => None,
    };
    sqlx::query(
        "INSERT INTO knowledge_bases
           (id, owner_id, name, description, provider, model, provider_key_id, base_url, team_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id)
    .bind(user)
    .bind(key.seal_str(place(t, "name", id, owner), new.name.trim()))
    .bind(key.seal_str(place(t, "description", id, owner), new.description.trim()))
    .bind(new.provider.as_str())
    .bind(key.seal_str(place(t, "model", id, owner), new.model.trim()))
    .bind(chosen)
    .bind(base_url)
    .bind(team)
    .execute(&state.db)
    .await?;
    Ok(id)
}

#[derive(sqlx::FromRow)]
struct BaseRow {
    id: Uuid,
    name: Sealed,
    description: Sealed,
    provider: String,
    model: Sealed,
    provider_key_id: Option<Uuid>,
    base_url: Option<Sealed>,
    version: i64,
    documents: i64,
    passages: i64,
}

const BASE_COLUMNS: &str = "b.id, b.name, b.description, b.provider, b.model, b.provider_key_id,
     b.base_url, b.version,
     (SELECT count(*) FROM knowledge_documents d WHERE d.base_id = b.id) AS documents,
     (SELECT count(*) FROM knowledge_chunks c WHERE c.base_id = b.id) AS passages";

fn base_view(row: &BaseRow, owner: Uuid, key: &DataKey) -> Result<BaseView, AppError> {
    let t = "knowledge_bases";
    Ok(BaseView {
        id: row.id.to_string(),
        name: key.open_text(place(t, "name", row.id, owner), &row.name)?,
        description: key.open_text(place(t, "description", row.id, owner), &row.description)?,
        provider: row.provider.clone(),
        model: key.open_text(place(t, "model", row.id, owner), &row.model)?,
        documents: row.documents as u32,
        passages: row.passages as u32,
        sharing: crate::teams::Sharing::own(),
    })
}

/// The bases of `owner` (a user's own, or a team's with the team's key).
pub async fn list_bases(
    db: &PgPool,
    owner: Uuid,
    key: &DataKey,
) -> Result<Vec<BaseView>, AppError> {
    let rows: Vec<BaseRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {BASE_COLUMNS} FROM knowledge_bases b
         WHERE coalesce(b.team_id, b.owner_id) = $1 ORDER BY b.created_at"
    )))
    .bind(owner)
    .fetch_all(db)
    .await?;
    rows.iter().map(|r| base_view(r, owner, key)).collect()
}

/// The bases the user may use: their own, then each of their teams'.
pub async fn list_usable(
    state: &AppState,
    user: Uuid,
    key: &DataKey,
) -> Result<Vec<BaseView>, AppError> {
    let mut bases = list_bases(&state.db, user, key).await?;
    let mut keys = Keys::new(state, user, key);
    for team in crate::teams::server::list(state, user).await? {
        let id = Uuid::parse_str(&team.id).map_err(AppError::internal)?;
        let (team_key, _) = keys.for_row(Some(id)).await?;
        for mut base in list_bases(&state.db, id, &team_key).await? {
            base.sharing.team_id = Some(team.id.clone());
            base.sharing.team = Some(team.name.clone());
            base.sharing.can_edit = team.role.can_edit();
            bases.push(base);
        }
    }
    Ok(bases)
}

async fn base_row(db: &PgPool, owner: Uuid, id: Uuid) -> Result<BaseRow, AppError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {BASE_COLUMNS} FROM knowledge_bases b
         WHERE b.id = $1 AND coalesce(b.team_id, b.owner_id) = $2"
    )))
    .bind(id)
    .bind(owner)
    .fetch_optional(db)
    .await?
    .ok_or(AppError::NotFound)
}

/// Deletes a base with its documents, passages and vectors (the rows
/// cascade), and drops its opened vectors from this process's cache.
pub async fn delete_base(state: &AppState, user: Uuid, id: Uuid) -> Result<(), AppError> {
    let (holder, _, can_edit) = reach_row(&state.db, user, id).await?;
    if !can_edit {
        return Err(not_an_editor());
    }
    let done = sqlx::query(
        "DELETE FROM knowledge_bases WHERE id = $1 AND coalesce(team_id, owner_id) = $2",
    )
    .bind(id)
    .bind(holder)
    .execute(&state.db)
    .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::NotFound);
    }
    state.knowledge.forget(id);
    Ok(())
}

#[derive(sqlx::FromRow)]
struct DocumentRow {
    id: Uuid,
    name: Sealed,
    kind: Option<String>,
    size_bytes: i64,
    state: String,
    pages: Option<i32>,
    chunks_total: i32,
    chunks_embedded: i32,
    error: Option<Sealed>,
}

const DOCUMENT_COLUMNS: &str =
    "id, name, kind, size_bytes, state, pages, chunks_total, chunks_embedded, error";

fn document_view(row: &DocumentRow, owner: Uuid, key: &DataKey) -> Result<DocumentView, AppError> {
    let t = "knowledge_documents";
    Ok(DocumentView {
        id: row.id.to_string(),
        name: key.open_text(place(t, "name", row.id, owner), &row.name)?,
        kind: row.kind.as_deref().and_then(DocKind::parse),
        size_bytes: row.size_bytes.max(0) as u64,
        state: DocState::parse(&row.state),
        pages: row.pages.map(|p| p.max(0) as u32),
        chunks_total: row.chunks_total.max(0) as u32,
        chunks_embedded: row.chunks_embedded.max(0) as u32,
        error: row
            .error
            .as_ref()
            .map(|e| key.open_text(place(t, "error", row.id, owner), e))
            .transpose()?,
    })
}

/// A base with its documents and the agents where it is (the user's own,
/// or the team's): its page. One access check (the base's); the lists
/// below are scoped to its holder too.
pub async fn page(
    state: &AppState,
    user: Uuid,
    key: &DataKey,
    base: Uuid,
) -> Result<super::api::BasePage, AppError> {
    let reached = reach(state, user, key, base).await?;
    let (db, owner, key) = (&state.db, reached.holder, &reached.key);
    let row = base_row(db, owner, base).await?;
    let mut view = base_view(&row, owner, key)?;
    view.sharing.team_id = reached.team.map(|t| t.to_string());
    view.sharing.can_edit = reached.can_edit;
    if let Some(team) = reached.team {
        view.sharing.team = Some(crate::teams::server::team_name(state, team, user).await?);
    }
    Ok(super::api::BasePage {
        base: view,
        documents: documents(db, owner, key, base).await?,
        agents: base_agents(db, owner, key, base).await?,
    })
}

/// A base's documents, oldest first (the owner's only: another user's base
/// has none).
async fn documents(
    db: &PgPool,
    owner: Uuid,
    key: &DataKey,
    base: Uuid,
) -> Result<Vec<DocumentView>, AppError> {
    let rows: Vec<DocumentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {DOCUMENT_COLUMNS} FROM knowledge_documents
         WHERE base_id = $1 AND coalesce(team_id, owner_id) = $2 ORDER BY created_at, id"
    )))
    .bind(base)
    .bind(owner)
    .fetch_all(db)
    .await?;
    rows.iter().map(|r| document_view(r, owner, key)).collect()
}

/// What an ingestion job carries (sealed): the document.
#[derive(Serialize, Deserialize)]
pub struct IngestPayload {
    pub document: Uuid,
}

/// A file's name as shown: trimmed, without a path, at most 200 characters.
pub(crate) fn clean_name(name: &str) -> String {
    let name = name.rsplit(['/', '\\']).next().unwrap_or("").trim();
    let name: String = name.chars().filter(|c| !c.is_control()).take(200).collect();
    if name.is_empty() {
        "Untitled".to_owned()
    } else {
        name
    }
}

/// Adds an uploaded file to a base. A file that cannot be used (too large,
/// not a supported kind, named one kind and made of another) is listed as
/// failed with the reason, so a batch upload shows what happened to each;
/// the rest are queued for ingestion.
pub async fn add_document(
    state: &AppState,
    user: Uuid,
    user_key: &DataKey,
    base: Uuid,
    name: &str,
    bytes: &[u8],
) -> Result<Uuid, AppError> {
    let reached = reach(state, user, user_key, base).await?;
    if !reached.can_edit {
        return Err(not_an_editor());
    }
    let (owner, key) = (reached.holder, &reached.key);
    base_row(&state.db, owner, base).await?;
    let id = Uuid::new_v4();
    let t = "knowledge_documents";
    let name = clean_name(name);
    let sniffed = parse::sniff(&name, bytes);
    let mut tx = state.db.begin().await?;
    let (kind, source, doc_state, error) = match &sniffed {
        Ok(kind) => (
            Some(kind.as_str()),
            Some(key.seal(place(t, "source", id, owner), bytes)),
            DocState::Queued,
            None,
        ),
        Err(err) => (
            None,
            None,
            DocState::Failed,
            Some(key.seal_str(place(t, "error", id, owner), &err.to_string())),
        ),
    };
    sqlx::query(
        "INSERT INTO knowledge_documents
           (id, base_id, owner_id, name, kind, size_bytes, source, state, error, team_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(id)
    .bind(base)
    .bind(user)
    .bind(key.seal_str(place(t, "name", id, owner), &name))
    .bind(kind)
    .bind(bytes.len() as i64)
    .bind(source)
    .bind(doc_state.as_str())
    .bind(error)
    .bind(reached.team)
    .execute(&mut *tx)
    .await?;
    if sniffed.is_ok() {
        // The job is the uploader's (sealed with their key); it opens the
        // team's key again when it runs, while they are still in the team.
        jobs::enqueue(
            &mut tx,
            NewJob::new(Kind::Ingest)
                .for_owner(user, user_key, &IngestPayload { document: id })
                .idempotency_key(format!("ingest:{id}")),
        )
        .await?;
    }
    tx.commit().await?;
    state.jobs.wake();
    Ok(id)
}

/// Deletes a document with its passages and vectors.
pub async fn delete_document(state: &AppState, user: Uuid, id: Uuid) -> Result<(), AppError> {
    let base: Option<Uuid> =
        sqlx::query_scalar("SELECT base_id FROM knowledge_documents WHERE id = $1")
            .bind(id)
            .fetch_optional(&state.db)
            .await?;
    let (holder, _, can_edit) = reach_row(&state.db, user, base.ok_or(AppError::NotFound)?).await?;
    if !can_edit {
        return Err(not_an_editor());
    }
    let base: Option<Uuid> = sqlx::query_scalar(
        "DELETE FROM knowledge_documents WHERE id = $1 AND coalesce(team_id, owner_id) = $2
         RETURNING base_id",
    )
    .bind(id)
    .bind(holder)
    .fetch_optional(&state.db)
    .await?;
    let base = base.ok_or(AppError::NotFound)?;
    bump_version(&state.db, base).await?;
    Ok(())
}

async fn bump_version(db: &PgPool, base: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE knowledge_bases SET version = version + 1, updated_at = now() WHERE id = $1",
    )
    .bind(base)
    .execute(db)
    .await?;
    Ok(())
}

/// How a base embeds: its wire format, address, model and key. `owner`
/// and `key` are the base's holder; the provider key is found for `payer`
/// (the user adding documents or searching: a team's base chooses none).
async fn embedder(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    row: &BaseRow,
    payer: (Uuid, &DataKey),
) -> Result<Embedder, AppError> {
    let provider = Provider::parse(&row.provider).ok_or(AppError::NotFound)?;
    let resolved = crate::provider_keys::server::resolve(
        state,
        payer.0,
        payer.1,
        provider,
        row.provider_key_id,
    )
    .await?;
    let secret = resolved.secret(payer.1)?;
    let model = key.open_text(place("knowledge_bases", "model", row.id, owner), &row.model)?;
    let meter = crate::usage::server::Meter::for_embeddings(
        state,
        crate::usage::server::Subject {
            owner: payer.0,
            key: payer.1,
            // A team's base: `owner` is the team, `key` its key.
            team: (owner != payer.0).then(|| (owner, key.clone())),
            kind: "embedding",
            agent: Some((
                row.id,
                key.open_text(place("knowledge_bases", "name", row.id, owner), &row.name)?,
            )),
            provider,
            model: &model,
        },
        resolved.is_operators(),
    )
    .await?;
    let urls = &state.settings.provider_urls;
    let base_url = match provider {
        Provider::Google => urls.google.clone(),
        Provider::OpenaiCompatible => row
            .base_url
            .as_ref()
            .map(|u| key.open_text(place("knowledge_bases", "base_url", row.id, owner), u))
            .transpose()?
            .unwrap_or_default(),
        Provider::Demo => state.settings.demo_url.clone().unwrap_or_default(),
        _ => urls.openai.clone(),
    };
    Ok(Embedder {
        api: if provider == Provider::Google {
            EmbeddingApi::Gemini
        } else {
            EmbeddingApi::OpenAi
        },
        base_url,
        model,
        key: Some(secret).filter(|s| !s.is_empty()),
        dimensions: None,
        meter: Some(meter),
    })
}

/// Embeddings are idempotent: a failure the provider or the network may
/// get over is tried again later (the job backs off).
fn worth_retrying(err: &LlmError) -> bool {
    err.is_retryable()
        || matches!(
            err,
            LlmError::Network | LlmError::Timeout | LlmError::Egress(EgressError::Connect { .. })
        )
}

#[derive(sqlx::FromRow)]
struct IngestRow {
    base_id: Uuid,
    kind: Option<String>,
    source: Option<Sealed>,
    state: String,
    team_id: Option<Uuid>,
}

/// The ingestion job: parse and split (if not done yet), then embed the
/// passages that have no vector, a batch at a time, then ready.
pub async fn ingest(state: &AppState, job: &Job, user_key: &DataKey) -> Result<(), JobError> {
    let user = job
        .owner
        .ok_or_else(|| JobError::fatal("The job has no owner."))?;
    let payload: IngestPayload = job.payload(user_key)?;
    let id = payload.document;
    let db_error = |_| JobError::retry("The database was not reachable.");
    let row: Option<IngestRow> = sqlx::query_as(
        "SELECT base_id, kind, source, state, team_id FROM knowledge_documents
         WHERE id = $1 AND owner_id = $2",
    )
    .bind(id)
    .bind(user)
    .fetch_optional(&state.db)
    .await
    .map_err(db_error)?;
    // Deleted meanwhile, or done: nothing to do.
    let Some(row) = row else { return Ok(()) };
    // A team's document opens with the team's key, while the uploader is
    // still in the team; else it cannot be read and stays as it is.
    let (key, owner) = match Keys::new(state, user, user_key).for_row(row.team_id).await {
        Ok(found) => found,
        Err(AppError::NotFound) => return Ok(()),
        Err(_) => return Err(JobError::retry("The team's key could not be opened.")),
    };
    let key = &key;
    let doc_state = DocState::parse(&row.state);
    if matches!(doc_state, DocState::Ready | DocState::Failed) {
        return Ok(());
    }
    if matches!(doc_state, DocState::Queued | DocState::Parsing) {
        set_state(&state.db, id, DocState::Parsing)
            .await
            .map_err(db_error)?;
        let (Some(kind), Some(source)) = (row.kind.as_deref().and_then(DocKind::parse), row.source)
        else {
            return fail(
                state,
                owner,
                key,
                id,
                "The uploaded file is gone: add it again.",
            )
            .await;
        };
        let bytes = key
            .open(place("knowledge_documents", "source", id, owner), &source)
            .map_err(|_| JobError::fatal("The uploaded file could not be opened."))?;
        let parsed = match parse::parse(kind, bytes).await {
            Ok(parsed) => parsed,
            Err(err) => return fail(state, owner, key, id, &err.to_string()).await,
        };
        let pages = parsed.page_count();
        let passages = tokio::task::spawn_blocking(move || chunk::passages(&parsed))
            .await
            .map_err(|_| JobError::fatal("The document could not be split into passages."))?;
        if passages.is_empty() {
            return fail(state, owner, key, id, &ParseError::NoText.to_string()).await;
        }
        let made_by = (user, row.team_id);
        store_passages(
            state,
            owner,
            key,
            made_by,
            row.base_id,
            id,
            pages,
            &passages,
        )
        .await
        .map_err(db_error)?;
    }
    let base = match base_row(&state.db, owner, row.base_id).await {
        Ok(base) => base,
        Err(_) => return Ok(()),
    };
    let embedder = match embedder(state, owner, key, &base, (user, user_key)).await {
        Ok(e) => e,
        Err(err) => return fail(state, owner, key, id, &err.to_string()).await,
    };
    loop {
        let batch: Vec<(Uuid, Sealed)> = sqlx::query_as(
            "SELECT id, text FROM knowledge_chunks
             WHERE document_id = $1 AND vector IS NULL ORDER BY seq LIMIT $2",
        )
        .bind(id)
        .bind(embeddings::BATCH as i64)
        .fetch_all(&state.db)
        .await
        .map_err(db_error)?;
        if batch.is_empty() {
            break;
        }
        let texts = batch
            .iter()
            .map(|(chunk, text)| {
                key.open_text(place("knowledge_chunks", "text", *chunk, owner), text)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| JobError::fatal("A passage could not be opened."))?;
        let vectors = match embeddings::embed(&state.egress, &embedder, &texts).await {
            Ok(v) => v,
            Err(err) if worth_retrying(&err) => return Err(JobError::retry(err.to_string())),
            Err(err) => return fail(state, owner, key, id, &err.to_string()).await,
        };
        let mut tx = state.db.begin().await.map_err(db_error)?;
        for ((chunk, _), vector) in batch.iter().zip(&vectors) {
            let sealed = key.seal(
                place("knowledge_chunks", "vector", *chunk, owner),
                &vectors::encode(vector),
            );
            sqlx::query("UPDATE knowledge_chunks SET vector = $2 WHERE id = $1")
                .bind(chunk)
                .bind(sealed)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
        }
        sqlx::query(
            "UPDATE knowledge_documents
             SET chunks_embedded = (SELECT count(*) FROM knowledge_chunks
                                    WHERE document_id = $1 AND vector IS NOT NULL),
                 updated_at = now()
             WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
    }
    sqlx::query(
        "UPDATE knowledge_documents SET state = 'ready', source = NULL, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .execute(&state.db)
    .await
    .map_err(db_error)?;
    bump_version(&state.db, row.base_id)
        .await
        .map_err(db_error)?;
    Ok(())
}

async fn set_state(db: &PgPool, id: Uuid, to: DocState) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE knowledge_documents SET state = $2, updated_at = now() WHERE id = $1")
        .bind(id)
        .bind(to.as_str())
        .execute(db)
        .await?;
    Ok(())
}

/// Marks a document failed with `reason` (shown beside it); the upload is
/// dropped. The job itself is done.
async fn fail(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
    reason: &str,
) -> Result<(), JobError> {
    let error = key.seal_str(place("knowledge_documents", "error", id, owner), reason);
    sqlx::query(
        "UPDATE knowledge_documents SET state = 'failed', error = $2, source = NULL,
           updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .execute(&state.db)
    .await
    .map_err(|_| JobError::retry("The database was not reachable."))?;
    Ok(())
}

/// Replaces a document's passages (a parse that ran before a restart may
/// have stored some) and moves it on to embedding, in one transaction.
/// `owner` and `key` are the holder's; `made_by` the uploader and team.
#[allow(clippy::too_many_arguments)]
async fn store_passages(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    made_by: (Uuid, Option<Uuid>),
    base: Uuid,
    id: Uuid,
    pages: Option<u32>,
    passages: &[chunk::Passage],
) -> Result<(), sqlx::Error> {
    let mut tx = state.db.begin().await?;
    sqlx::query("DELETE FROM knowledge_chunks WHERE document_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    for (seq, passage) in passages.iter().enumerate() {
        let chunk = Uuid::new_v4();
        let location = serde_json::to_string(&passage.location).unwrap_or_default();
        sqlx::query(
            "INSERT INTO knowledge_chunks
               (id, document_id, base_id, owner_id, seq, text, location, team_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(chunk)
        .bind(id)
        .bind(base)
        .bind(made_by.0)
        .bind(seq as i32)
        .bind(key.seal_str(
            place("knowledge_chunks", "text", chunk, owner),
            &passage.text,
        ))
        .bind(key.seal_str(
            place("knowledge_chunks", "location", chunk, owner),
            &location,
        ))
        .bind(made_by.1)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "UPDATE knowledge_documents
         SET state = 'embedding', pages = $2, chunks_total = $3, chunks_embedded = 0,
             updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(pages.map(|p| p as i32))
    .bind(passages.len() as i32)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// A base's vectors, opened: from this process's cache while the base is
/// unchanged (its version), else read and opened now.
async fn matrix(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    base: &BaseRow,
) -> Result<Option<Arc<Matrix>>, AppError> {
    let cache_key = (base.id, base.version);
    if let Some(m) = state.knowledge.get(cache_key) {
        return Ok(Some(m));
    }
    let rows: Vec<(Uuid, Sealed)> = sqlx::query_as(
        "SELECT id, vector FROM knowledge_chunks
         WHERE base_id = $1 AND coalesce(team_id, owner_id) = $2 AND vector IS NOT NULL",
    )
    .bind(base.id)
    .bind(owner)
    .fetch_all(&state.db)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let open = |(id, sealed): &(Uuid, Sealed)| {
        key.open(place("knowledge_chunks", "vector", *id, owner), sealed)
            .map_err(AppError::internal)
    };
    let dims = open(first)?.len() / 4;
    let mut m = Matrix::with_capacity(dims, rows.len());
    for row in &rows {
        // A vector of another size (the model was changed) is skipped.
        let _ = m.push_stored(row.0, open(row)?);
    }
    let m = Arc::new(m);
    state.knowledge.put(cache_key, m.clone());
    Ok(Some(m))
}

/// The passages of `bases` most like `query`, best first: each base is
/// searched with its own embedder, and the results merged by similarity.
pub async fn search(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    bases: &[Uuid],
    query: &str,
    k: usize,
) -> Result<Vec<Passage>, AppError> {
    let query = query.trim();
    if query.is_empty() {
        return Err(AppError::invalid("query", "Type what to look for."));
    }
    let user = owner;
    let mut hits: Vec<(Uuid, f32)> = Vec::new();
    // Each base's holder and key (the user's own, or a team's).
    let mut holders: Vec<(Uuid, DataKey, Vec<Uuid>)> = Vec::new();
    // Bases on the same embedder share one embedding of the query.
    let mut asked: Vec<(Embedder, Vec<f32>)> = Vec::new();
    for base_id in bases {
        let reached = reach(state, user, key, *base_id).await?;
        let (owner, hkey) = (reached.holder, &reached.key);
        let base = base_row(&state.db, owner, *base_id).await?;
        let Some(m) = matrix(state, owner, hkey, &base).await? else {
            continue;
        };
        let embedder = embedder(state, owner, hkey, &base, (user, key)).await?;
        let q = match asked.iter().find(|(e, _)| e.same_as(&embedder)) {
            Some((_, q)) => q.clone(),
            None => {
                let mut q = embeddings::embed(&state.egress, &embedder, &[query.to_owned()])
                    .await
                    .map_err(|e| AppError::invalid("query", e.to_string()))?
                    .pop()
                    .unwrap_or_default();
                if vectors::normalise(&mut q).is_err() {
                    continue;
                }
                asked.push((embedder, q.clone()));
                q
            }
        };
        if q.len() == m.dims() {
            let top = m.top_k(&q, k);
            match holders.iter_mut().find(|(h, _, _)| *h == owner) {
                Some((_, _, ids)) => ids.extend(top.iter().map(|t| t.0)),
                None => holders.push((
                    owner,
                    reached.key.clone(),
                    top.iter().map(|t| t.0).collect(),
                )),
            }
            hits.extend(top);
        }
    }
    hits.sort_by(|a, b| b.1.total_cmp(&a.1));
    hits.truncate(k);
    let mut found = std::collections::HashMap::new();
    for (holder, hkey, ids) in &holders {
        let ids: Vec<Uuid> = ids
            .iter()
            .filter(|id| hits.iter().any(|h| h.0 == **id))
            .copied()
            .collect();
        if !ids.is_empty() {
            found.extend(passages(&state.db, *holder, hkey, &ids).await?);
        }
    }
    Ok(hits
        .into_iter()
        .filter_map(|(chunk, score)| {
            found
                .remove(&chunk)
                .map(|passage| Passage { score, ..passage })
        })
        .collect())
}

/// The passages `ids` of the owner's, opened (another user's are left out).
async fn passages(
    db: &PgPool,
    owner: Uuid,
    key: &DataKey,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Passage>, AppError> {
    let rows: Vec<(Uuid, Uuid, Sealed, Sealed, Sealed)> = sqlx::query_as(
        "SELECT c.id, d.id, d.name, c.text, c.location
         FROM knowledge_chunks c JOIN knowledge_documents d ON d.id = c.document_id
         WHERE c.id = ANY($1) AND coalesce(c.team_id, c.owner_id) = $2",
    )
    .bind(ids)
    .bind(owner)
    .fetch_all(db)
    .await?;
    let mut out = std::collections::HashMap::with_capacity(rows.len());
    for (chunk, doc, name, text, location) in rows {
        out.insert(
            chunk,
            Passage {
                chunk_id: chunk.to_string(),
                document_id: doc.to_string(),
                document: key.open_text(place("knowledge_documents", "name", doc, owner), &name)?,
                location: open_location(key, chunk, owner, &location)?.label(),
                text: key.open_text(place("knowledge_chunks", "text", chunk, owner), &text)?,
                score: 0.0,
            },
        );
    }
    Ok(out)
}

/// Where passage `chunk` came from.
fn open_location(
    key: &DataKey,
    chunk: Uuid,
    owner: Uuid,
    sealed: &Sealed,
) -> Result<Location, AppError> {
    let json = key.open_text(place("knowledge_chunks", "location", chunk, owner), sealed)?;
    Ok(serde_json::from_str(&json).unwrap_or_default())
}

/// The owner's agents, each with whether it answers from `base`.
async fn base_agents(
    db: &PgPool,
    owner: Uuid,
    key: &DataKey,
    base: Uuid,
) -> Result<Vec<super::AgentUse>, AppError> {
    let rows: Vec<(Uuid, Sealed, bool)> = sqlx::query_as(
        "SELECT a.id, a.name,
                EXISTS (SELECT 1 FROM agent_knowledge_bases ak
                        WHERE ak.agent_id = a.id AND ak.base_id = $2)
         FROM agents a WHERE coalesce(a.team_id, a.owner_id) = $1 ORDER BY a.created_at",
    )
    .bind(owner)
    .bind(base)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(id, name, uses)| {
            Ok(super::AgentUse {
                agent_id: id.to_string(),
                name: key.open_text(Place::new("agents", "name", id, owner), &name)?,
                uses,
            })
        })
        .collect()
}

/// Makes `agent` answer from `base` (or stop). Both must be the owner's;
/// the agent's whole set is then written as the agent form writes it.
pub async fn set_agent_base(
    db: &PgPool,
    user: Uuid,
    agent: Uuid,
    base: Uuid,
    uses: bool,
) -> Result<(), AppError> {
    let (owner, _, can_edit) = reach_row(db, user, base).await?;
    if !can_edit {
        return Err(not_an_editor());
    }
    // A base goes on the agents where it is: a user's own base on their
    // own agents, a team's on the team's.
    let same_place: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM agents WHERE id = $1 AND coalesce(team_id, owner_id) = $2)",
    )
    .bind(agent)
    .bind(owner)
    .fetch_one(db)
    .await?;
    if !same_place {
        return Err(AppError::NotFound);
    }
    let mut tx = db.begin().await?;
    let mut bases: Vec<Uuid> = sqlx::query_scalar(
        "SELECT ak.base_id FROM agent_knowledge_bases ak
         JOIN agents a ON a.id = ak.agent_id
         WHERE ak.agent_id = $1 AND coalesce(a.team_id, a.owner_id) = $2 FOR UPDATE OF a",
    )
    .bind(agent)
    .bind(owner)
    .fetch_all(&mut *tx)
    .await?;
    bases.retain(|b| *b != base);
    if uses {
        bases.push(base);
    }
    replace_agent_bases(&mut tx, owner, agent, &bases).await?;
    tx.commit().await?;
    Ok(())
}

/// The bases `agent` answers from (id and name), in the order they were
/// created. The agent must be the owner's; the caller checked that.
pub async fn agent_bases(
    db: &PgPool,
    owner: Uuid,
    key: &DataKey,
    agent: Uuid,
) -> Result<Vec<super::BaseRef>, AppError> {
    let rows: Vec<(Uuid, Sealed)> = sqlx::query_as(
        "SELECT b.id, b.name FROM agent_knowledge_bases ak
         JOIN knowledge_bases b ON b.id = ak.base_id
         WHERE ak.agent_id = $1 AND coalesce(b.team_id, b.owner_id) = $2
         ORDER BY b.created_at, b.id",
    )
    .bind(agent)
    .bind(owner)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|(id, name)| {
            Ok(super::BaseRef {
                id: id.to_string(),
                name: key.open_text(place("knowledge_bases", "name", id, owner), &name)?,
            })
        })
        .collect()
}

/// Makes `agent` answer from exactly `bases`, inside the transaction that
/// writes the agent. Every base must be the owner's: another user's looks
/// like one that was deleted, and nothing is written.
pub async fn replace_agent_bases(
    conn: &mut sqlx::PgConnection,
    owner: Uuid,
    agent: Uuid,
    bases: &[Uuid],
) -> Result<(), AppError> {
    let mut bases = bases.to_vec();
    bases.sort_unstable();
    bases.dedup();
    if bases.len() > MAX_BASES_PER_AGENT {
        return Err(AppError::invalid(
            "knowledge",
            format!("An agent can answer from at most {MAX_BASES_PER_AGENT} knowledge bases."),
        ));
    }
    let mine: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM knowledge_bases WHERE id = ANY($1) AND coalesce(team_id, owner_id) = $2",
    )
    .bind(&bases)
    .bind(owner)
    .fetch_one(&mut *conn)
    .await?;
    if mine as usize != bases.len() {
        return Err(AppError::invalid(
            "knowledge",
            "A knowledge base was chosen that no longer exists.",
        ));
    }
    sqlx::query("DELETE FROM agent_knowledge_bases WHERE agent_id = $1 AND NOT base_id = ANY($2)")
        .bind(agent)
        .bind(&bases)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO agent_knowledge_bases (agent_id, base_id)
         SELECT $1, unnest($2::uuid[]) ON CONFLICT DO NOTHING",
    )
    .bind(agent)
    .bind(&bases)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Everything in the owner's knowledge bases, for their export: each base
/// with its documents, and each document's passages (text and place). The
/// uploaded files themselves are not kept once ingested, so their text is
/// what there is.
pub async fn export(
    db: &PgPool,
    owner: Uuid,
    key: &DataKey,
) -> Result<serde_json::Value, AppError> {
    // Every passage of the owner's in one read, by document.
    let rows: Vec<(Uuid, Uuid, Sealed, Sealed)> = sqlx::query_as(
        "SELECT id, document_id, text, location FROM knowledge_chunks
         WHERE coalesce(team_id, owner_id) = $1 ORDER BY document_id, seq",
    )
    .bind(owner)
    .fetch_all(db)
    .await?;
    let mut by_document: std::collections::HashMap<Uuid, Vec<serde_json::Value>> =
        std::collections::HashMap::new();
    for (id, document, text, location) in rows {
        by_document
            .entry(document)
            .or_default()
            .push(serde_json::json!({
                "place": open_location(key, id, owner, &location)?.label(),
                "text": key.open_text(place("knowledge_chunks", "text", id, owner), &text)?,
            }));
    }
    let mut out = Vec::new();
    for base in list_bases(db, owner, key).await? {
        let base_id = Uuid::parse_str(&base.id).map_err(AppError::internal)?;
        let mut docs = Vec::new();
        for doc in documents(db, owner, key, base_id).await? {
            let doc_id = Uuid::parse_str(&doc.id).map_err(AppError::internal)?;
            let passages = by_document.remove(&doc_id).unwrap_or_default();
            let mut doc = serde_json::to_value(&doc).map_err(AppError::internal)?;
            doc["passages"] = serde_json::Value::Array(passages);
            docs.push(doc);
        }
        let agents: Vec<String> = base_agents(db, owner, key, base_id)
            .await?
            .into_iter()
            .filter(|a| a.uses)
            .map(|a| a.name)
            .collect();
        let mut base = serde_json::to_value(&base).map_err(AppError::internal)?;
        base["documents"] = serde_json::Value::Array(docs);
        base["used_by_agents"] = serde_json::json!(agents);
        out.push(base);
    }
    Ok(serde_json::Value::Array(out))
}

/// What the model is told before the passages it is given.
pub const SOURCES_INTRO: &str = "Passages from the user's documents that may answer the latest \
message follow, numbered. Answer from them where they help, and cite each passage you use by its \
number in square brackets, like [1], right after what it supports. If they do not hold the \
answer, say so.";

/// A run's retrieval: the passages of `bases` most like `question`, for
/// the system prompt (numbered, with their source) and as the reply's
/// citations. A failed search (the embeddings provider is down) leaves the
/// reply without them rather than failing it.
pub fn retrieval(
    state: AppState,
    owner: Uuid,
    key: DataKey,
    bases: Vec<Uuid>,
    question: String,
) -> crate::chat::runs::Retrieval {
    Box::pin(async move {
        let found = match search(&state, owner, &key, &bases, &question, TOP_K).await {
            Ok(found) => found,
            Err(_) => {
                tracing::warn!(
                    %owner,
                    "knowledge search failed; the reply goes on without passages"
                );
                return None;
            }
        };
        let found: Vec<Passage> = found.into_iter().filter(|p| p.score > 0.0).collect();
        if found.is_empty() {
            return None;
        }
        let mut context = format!("\n\n{SOURCES_INTRO}");
        let mut citations = Vec::with_capacity(found.len());
        for (i, passage) in found.into_iter().enumerate() {
            let n = i as u32 + 1;
            let place = if passage.location.is_empty() {
                String::new()
            } else {
                format!(" · {}", passage.location)
            };
            context.push_str(&format!(
                "\n\n[{n}] {}{place}\n{}",
                passage.document, passage.text
            ));
            citations.push(crate::chat::Citation {
                n,
                chunk_id: passage.chunk_id,
                document: passage.document,
                location: passage.location,
            });
        }
        Some((context, citations))
    })
}

/// One passage by id (a citation opened).
pub async fn passage(
    state: &AppState,
    user: Uuid,
    key: &DataKey,
    chunk: Uuid,
) -> Result<Passage, AppError> {
    let base: Uuid = sqlx::query_scalar("SELECT base_id FROM knowledge_chunks WHERE id = $1")
        .bind(chunk)
        .fetch_optional(&state.db)
        .await?
        .ok_or(AppError::NotFound)?;
    let reached = reach(state, user, key, base).await?;
    passages(&state.db, reached.holder, &reached.key, &[chunk])
        .await?
        .remove(&chunk)
        .ok_or(AppError::NotFound)
}
