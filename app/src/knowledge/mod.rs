//! Knowledge bases: documents a user uploads, split into passages,
//! embedded, and searched (sealed like everything else) so agents can
//! answer from them with citations.
//! - `parse`: a file to text per page (kind sniffed from the content);
//! - `chunk`: text to passages that keep their page and heading;
//! - `embeddings`: the providers' embeddings APIs;
//! - `vectors`: the in-memory search over a base's opened vectors;
//! - `server`: bases, documents, the ingestion job and search.

use serde::{Deserialize, Serialize};

pub mod api;
#[cfg(feature = "ssr")]
pub mod chunk;
#[cfg(feature = "ssr")]
pub mod embeddings;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod parse;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
pub mod vectors;

/// What a document turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocKind {
    Text,
    Markdown,
    Pdf,
    Docx,
    Html,
    Csv,
    Json,
}

impl DocKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DocKind::Text => "text",
            DocKind::Markdown => "markdown",
            DocKind::Pdf => "pdf",
            DocKind::Docx => "docx",
            DocKind::Html => "html",
            DocKind::Csv => "csv",
            DocKind::Json => "json",
        }
    }

    pub fn parse(value: &str) -> Option<DocKind> {
        [
            DocKind::Text,
            DocKind::Markdown,
            DocKind::Pdf,
            DocKind::Docx,
            DocKind::Html,
            DocKind::Csv,
            DocKind::Json,
        ]
        .into_iter()
        .find(|k| k.as_str() == value)
    }

    /// What the user sees.
    pub fn label(self) -> &'static str {
        match self {
            DocKind::Text => "Text",
            DocKind::Markdown => "Markdown",
            DocKind::Pdf => "PDF",
            DocKind::Docx => "Word",
            DocKind::Html => "HTML",
            DocKind::Csv => "CSV",
            DocKind::Json => "JSON",
        }
    }
}

/// Where a document's ingestion stands: parse (and split), embed, ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocState {
    Queued,
    Parsing,
    Embedding,
    Ready,
    Failed,
}

impl DocState {
    pub fn as_str(self) -> &'static str {
        match self {
            DocState::Queued => "queued",
            DocState::Parsing => "parsing",
            DocState::Embedding => "embedding",
            DocState::Ready => "ready",
            DocState::Failed => "failed",
        }
    }

    pub fn parse(value: &str) -> DocState {
        match value {
            "parsing" => DocState::Parsing,
            "embedding" => DocState::Embedding,
            "ready" => DocState::Ready,
            "failed" => DocState::Failed,
            _ => DocState::Queued,
        }
    }

    /// Still being worked on.
    pub fn is_busy(self) -> bool {
        matches!(
            self,
            DocState::Queued | DocState::Parsing | DocState::Embedding
        )
    }
}

/// The embedding models offered when creating a base.
pub const EMBEDDING_MODELS: &[(&str, &str)] = &[
    ("openai", "text-embedding-3-small"),
    ("openai", "text-embedding-3-large"),
    ("google", "gemini-embedding-001"),
    ("google", "text-embedding-004"),
    ("openai_compatible", ""),
    ("demo", "demo-embedding"),
];

/// A knowledge base as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseView {
    pub id: String,
    pub name: String,
    pub description: String,
    /// `openai`, `google`, `openai_compatible` or `demo`.
    pub provider: String,
    pub model: String,
    pub documents: u32,
    pub passages: u32,
    /// Whose it is, for the user looking.
    #[serde(flatten)]
    pub sharing: crate::teams::Sharing,
}

/// A document in a base, with its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentView {
    pub id: String,
    pub name: String,
    pub kind: Option<DocKind>,
    pub size_bytes: u64,
    pub state: DocState,
    pub pages: Option<u32>,
    pub chunks_total: u32,
    pub chunks_embedded: u32,
    pub error: Option<String>,
}

impl DocumentView {
    /// 0–100 across the stages: parsing is the first tenth, embedding the
    /// rest (a failed file shows none).
    pub fn percent(&self) -> u32 {
        match self.state {
            DocState::Queued | DocState::Failed => 0,
            DocState::Parsing => 5,
            DocState::Embedding => 10 + 90 * self.chunks_embedded / self.chunks_total.max(1),
            DocState::Ready => 100,
        }
    }
}

/// A base an agent answers from, as its pages name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRef {
    pub id: String,
    pub name: String,
}

/// One of the owner's agents, and whether it answers from a base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentUse {
    pub agent_id: String,
    pub name: String,
    pub uses: bool,
}

/// A passage found by a search, with where it came from: what a citation
/// shows and opens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    pub chunk_id: String,
    pub document_id: String,
    pub document: String,
    /// "page 3 · Installation" (may be empty).
    pub location: String,
    pub text: String,
    pub score: f32,
}
