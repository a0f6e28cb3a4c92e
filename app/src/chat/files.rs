//! Files attached to a message (server only). A file is parsed to text when
//! it is attached (the knowledge parsers: the kind sniffed from the content,
//! hostile files failing alone), sealed, and kept without a message until
//! the message that carries it is sent. The model gets its text with the
//! message, every time the conversation is answered; it is erased with the
//! message, the conversation or the account, and an unsent one after a day.

use std::collections::HashMap;

use sqlx::PgPool;
use uuid::Uuid;

use super::FileView;
use crate::{
    error::AppError,
    knowledge::{
        DocKind,
        parse::{self, Parsed},
    },
    platform::{
        crypto::{DataKey, Place, Sealed},
        keystore::SealedColumn,
    },
};

pub const SEALED: &[SealedColumn] = &[
    SealedColumn::owned("chat_files", "name"),
    SealedColumn::owned("chat_files", "text"),
];

/// Files one message may carry.
pub const MAX_FILES_PER_MESSAGE: usize = 5;
/// The most text one attached file may hold (about 25,000 tokens): longer
/// documents belong in a knowledge base, where only the passages that
/// matter reach the model.
pub const MAX_FILE_CHARS: usize = 100_000;
/// How long an attached file waits for its message to be sent.
pub const UNSENT_HOURS: i32 = 24;

fn place(column: &'static str, id: Uuid, owner: Uuid) -> Place {
    Place::new("chat_files", column, id, owner)
}

/// A file's text as the model reads it: pages marked where it has them.
fn text_of(parsed: &Parsed) -> String {
    let numbered = parsed.pages.len() > 1 || parsed.page_count().is_some();
    let mut out = String::new();
    for page in &parsed.pages {
        if numbered && let Some(n) = page.number {
            out.push_str(&format!("[page {n}]\n"));
        }
        out.push_str(page.text.trim());
        out.push_str("\n\n");
    }
    out.trim_end().to_owned()
}

/// A file read and checked, not kept yet.
pub struct Read {
    name: String,
    kind: DocKind,
    size: usize,
    text: String,
    chars: usize,
}

/// Parses an uploaded file. A file that cannot be used is refused with the
/// reason, naming it.
pub async fn read(name: &str, bytes: Vec<u8>) -> Result<Read, AppError> {
    let name = crate::knowledge::server::clean_name(name);
    let refuse = |reason: String| AppError::invalid("files", format!("{name}: {reason}"));
    let size = bytes.len();
    let kind = parse::sniff(&name, &bytes).map_err(|e| refuse(e.to_string()))?;
    let parsed = parse::parse(kind, bytes)
        .await
        .map_err(|e| refuse(e.to_string()))?;
    let text = text_of(&parsed);
    let chars = text.chars().count();
    if chars == 0 {
        return Err(refuse(parse::ParseError::NoText.to_string()));
    }
    if chars > MAX_FILE_CHARS {
        return Err(refuse(format!(
            "its text is {chars} characters long, and a file in a conversation may have up to \
             {MAX_FILE_CHARS}. Put long documents in a knowledge base instead: the agent then \
             reads only the passages that matter."
        )));
    }
    Ok(Read {
        name,
        kind,
        size,
        text,
        chars,
    })
}

/// Keeps files that were read, sealed, until a message takes them (all of
/// them or, on an error, none).
pub async fn keep(
    db: &PgPool,
    owner: Uuid,
    key: &DataKey,
    files: Vec<Read>,
) -> Result<Vec<FileView>, AppError> {
    let mut tx = db.begin().await?;
    let mut kept = Vec::with_capacity(files.len());
    for file in files {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO chat_files (id, owner_id, name, kind, size_bytes, text, chars, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, clock_timestamp())",
        )
        .bind(id)
        .bind(owner)
        .bind(key.seal_str(place("name", id, owner), &file.name))
        .bind(file.kind.as_str())
        .bind(file.size as i64)
        .bind(key.seal_str(place("text", id, owner), &file.text))
        .bind(file.chars as i32)
        .execute(&mut *tx)
        .await?;
        kept.push(FileView {
            id: id.to_string(),
            name: file.name,
            kind: file.kind,
            size_bytes: file.size as u64,
            chars: file.chars as u32,
        });
    }
    tx.commit().await?;
    Ok(kept)
}

#[derive(sqlx::FromRow)]
struct FileRow {
    id: Uuid,
    message_id: Option<Uuid>,
    name: Sealed,
    kind: String,
    size_bytes: i64,
    chars: i32,
}

const FILE_COLUMNS: &str = "id, message_id, name, kind, size_bytes, chars";

impl FileRow {
    fn view(&self, owner: Uuid, key: &DataKey) -> Result<FileView, AppError> {
        Ok(FileView {
            id: self.id.to_string(),
            name: key.open_text(place("name", self.id, owner), &self.name)?,
            kind: DocKind::parse(&self.kind).unwrap_or(DocKind::Text),
            size_bytes: self.size_bytes.max(0) as u64,
            chars: self.chars.max(0) as u32,
        })
    }
}

/// The owner's files among `ids` that no message has taken yet (the ones a
/// composer shows before sending), in the order they were attached.
pub async fn unsent(
    db: &PgPool,
    owner: Uuid,
    key: &DataKey,
    ids: &[Uuid],
) -> Result<Vec<FileView>, AppError> {
    let rows: Vec<FileRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {FILE_COLUMNS} FROM chat_files
         WHERE id = ANY($1) AND owner_id = $2 AND message_id IS NULL ORDER BY created_at, id"
    )))
    .bind(ids)
    .bind(owner)
    .fetch_all(db)
    .await?;
    rows.iter().map(|r| r.view(owner, key)).collect()
}

/// Takes back a file that was attached but not sent. Another user's, or
/// one already sent, is not found.
pub async fn remove_unsent(db: &PgPool, owner: Uuid, id: Uuid) -> Result<(), AppError> {
    let done = sqlx::query(
        "DELETE FROM chat_files WHERE id = $1 AND owner_id = $2 AND message_id IS NULL",
    )
    .bind(id)
    .bind(owner)
    .execute(db)
    .await?;
    crate::error::found(done)
}

/// Gives message `message` the owner's unsent files `ids`, inside the
/// transaction that stores it. A file that is gone (sent already, erased
/// after a day, or never the owner's) refuses the message.
pub async fn claim(
    conn: &mut sqlx::PgConnection,
    owner: Uuid,
    message: Uuid,
    ids: &[Uuid],
) -> Result<(), AppError> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(());
    }
    if ids.len() > MAX_FILES_PER_MESSAGE {
        return Err(AppError::invalid(
            "files",
            format!("A message can carry at most {MAX_FILES_PER_MESSAGE} files."),
        ));
    }
    let done = sqlx::query(
        "UPDATE chat_files SET message_id = $1
         WHERE id = ANY($2) AND owner_id = $3 AND message_id IS NULL",
    )
    .bind(message)
    .bind(&ids)
    .bind(owner)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() as usize != ids.len() {
        return Err(AppError::invalid(
            "files",
            "An attached file is no longer there (files wait a day for their message): attach it again.",
        ));
    }
    Ok(())
}

/// Moves the files of message `from` to message `to` (an edited message
/// keeps its files), inside the caller's transaction. `from` is about to be
/// deleted, so the files are detached first and claimed by `to` after.
pub async fn detach(
    conn: &mut sqlx::PgConnection,
    owner: Uuid,
    from: Uuid,
) -> Result<Vec<Uuid>, AppError> {
    Ok(sqlx::query_scalar(
        "UPDATE chat_files SET message_id = NULL
         WHERE message_id = $1 AND owner_id = $2 RETURNING id",
    )
    .bind(from)
    .bind(owner)
    .fetch_all(&mut *conn)
    .await?)
}

/// The files of `messages`, by message, in the order they were attached.
pub async fn of_messages<'c, E>(
    conn: E,
    owner: Uuid,
    key: &DataKey,
    messages: &[Uuid],
) -> Result<HashMap<Uuid, Vec<FileView>>, AppError>
where
    E: sqlx::PgExecutor<'c>,
{
    let mut out: HashMap<Uuid, Vec<FileView>> = HashMap::new();
    if messages.is_empty() {
        return Ok(out);
    }
    let rows: Vec<FileRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {FILE_COLUMNS} FROM chat_files
         WHERE message_id = ANY($1) AND owner_id = $2 ORDER BY created_at, id"
    )))
    .bind(messages)
    .bind(owner)
    .fetch_all(conn)
    .await?;
    for row in &rows {
        if let Some(message) = row.message_id {
            out.entry(message).or_default().push(row.view(owner, key)?);
        }
    }
    Ok(out)
}

/// The files of `messages` with their text, by message: what the model is
/// given, and what an export holds.
pub async fn texts_of_messages<'c, E>(
    conn: E,
    owner: Uuid,
    key: &DataKey,
    messages: &[Uuid],
) -> Result<HashMap<Uuid, Vec<(FileView, String)>>, AppError>
where
    E: sqlx::PgExecutor<'c>,
{
    let mut out: HashMap<Uuid, Vec<(FileView, String)>> = HashMap::new();
    if messages.is_empty() {
        return Ok(out);
    }
    #[derive(sqlx::FromRow)]
    struct WithText {
        #[sqlx(flatten)]
        file: FileRow,
        text: Sealed,
    }
    let rows: Vec<WithText> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {FILE_COLUMNS}, text FROM chat_files
         WHERE message_id = ANY($1) AND owner_id = $2 ORDER BY created_at, id"
    )))
    .bind(messages)
    .bind(owner)
    .fetch_all(conn)
    .await?;
    for row in &rows {
        if let Some(message) = row.file.message_id {
            let text = key.open_text(place("text", row.file.id, owner), &row.text)?;
            out.entry(message)
                .or_default()
                .push((row.file.view(owner, key)?, text));
        }
    }
    Ok(out)
}

/// What opens a file's text in a message as the model reads it (the
/// offline demo model looks for it too).
pub const FILE_OPENS: &str = "\n\n<attached-file name=\"";
/// What closes it.
pub const FILE_CLOSES: &str = "\n</attached-file>";

/// A user message as the model reads it: the message, then each file's
/// text between markers that name it.
pub fn with_files(message: &str, files: &[(FileView, String)]) -> String {
    let mut out = message.to_owned();
    for (file, text) in files {
        out.push_str(&format!(
            "{FILE_OPENS}{}\" kind=\"{}\">\n{text}{FILE_CLOSES}",
            file.name.replace('"', "'"),
            file.kind.label(),
        ));
    }
    out
}

/// Erases up to `batch` files attached more than a day ago to a message
/// that was never sent (the retention job).
pub async fn purge_unsent(db: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM chat_files WHERE id IN (
             SELECT id FROM chat_files
             WHERE message_id IS NULL AND created_at < now() - make_interval(hours => $1)
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(UNSENT_HOURS)
    .bind(batch)
    .execute(db)
    .await?
    .rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::parse::Page;

    #[test]
    fn pages_are_marked_and_files_follow_the_message_by_name() {
        let parsed = Parsed {
            kind: DocKind::Pdf,
            pages: vec![
                Page {
                    number: Some(1),
                    text: "First.".into(),
                },
                Page {
                    number: Some(2),
                    text: "Second.".into(),
                },
            ],
        };
        assert_eq!(text_of(&parsed), "[page 1]\nFirst.\n\n[page 2]\nSecond.");
        let plain = Parsed {
            kind: DocKind::Text,
            pages: vec![Page {
                number: None,
                text: " Just text. ".into(),
            }],
        };
        assert_eq!(text_of(&plain), "Just text.");
        let file = FileView {
            id: String::new(),
            name: "a \"quoted\" name.txt".into(),
            kind: DocKind::Text,
            size_bytes: 10,
            chars: 10,
        };
        assert_eq!(
            with_files("Summarise this.", &[(file, "Just text.".into())]),
            "Summarise this.\n\n<attached-file name=\"a 'quoted' name.txt\" kind=\"Text\">\nJust text.\n</attached-file>"
        );
    }
}
