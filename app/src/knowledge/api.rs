//! Server functions of the knowledge pages: authenticate, validate, call
//! `knowledge::server`, map errors. (Uploads are a multipart route of the
//! server crate: `POST /knowledge/{id}/upload`.)

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use super::{BaseView, DocumentView, Passage};
use crate::error::AppError;

pub type CreateBaseAction = ServerAction<CreateKnowledgeBase>;
pub type DeleteBaseAction = ServerAction<DeleteKnowledgeBase>;
pub type DeleteDocumentAction = ServerAction<DeleteKnowledgeDocument>;
pub type SearchAction = ServerAction<SearchKnowledgeBase>;
pub type SetAgentBaseAction = ServerAction<SetAgentKnowledgeBase>;

/// A base with its documents and the agents that may use it: what its
/// page shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasePage {
    pub base: BaseView,
    pub documents: Vec<DocumentView>,
    pub agents: Vec<super::AgentUse>,
}

#[server(prefix = "/api", endpoint = "list_knowledge_bases")]
pub async fn list_knowledge_bases() -> Result<Vec<BaseView>, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    super::server::list_usable(&ctx::state()?, session.user_id, &session.key).await
}

#[server(prefix = "/api", endpoint = "create_knowledge_base")]
pub async fn create_knowledge_base(
    name: String,
    #[server(default)] description: String,
    provider: String,
    model: String,
    #[server(default)] provider_key_id: Option<String>,
    #[server(default)] base_url: Option<String>,
    // The team it is made in; absent or empty: the user's own.
    #[server(default)] team: Option<String>,
) -> Result<String, AppError> {
    use crate::{ctx, provider::Provider};
    let session = ctx::require_verified_session()?;
    let state = ctx::state()?;
    let provider = Provider::parse(provider.trim())
        .ok_or_else(|| AppError::invalid("provider", "Choose where the embeddings come from."))?;
    let provider_key_id = ctx::optional_id(provider_key_id.as_deref().filter(|s| !s.is_empty()))?;
    let team = ctx::optional_id(team.as_deref().filter(|s| !s.is_empty()))?;
    let id = super::server::create_base(
        &state,
        session.user_id,
        &session.key,
        team,
        super::server::NewBase {
            name,
            description,
            provider,
            model,
            provider_key_id,
            base_url,
        },
    )
    .await?;
    ctx::redirect_plain_post(&format!("/knowledge/{id}"));
    Ok(id.to_string())
}

#[server(prefix = "/api", endpoint = "knowledge_base")]
pub async fn knowledge_base(id: String) -> Result<BasePage, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    super::server::page(
        &ctx::state()?,
        session.user_id,
        &session.key,
        ctx::parse_id(&id)?,
    )
    .await
}

/// Makes an agent answer from a base (`uses` = "yes") or stop.
#[server(prefix = "/api", endpoint = "set_agent_knowledge_base")]
pub async fn set_agent_knowledge_base(
    base: String,
    agent: String,
    uses: String,
) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let base = ctx::parse_id(&base)?;
    super::server::set_agent_base(
        &ctx::state()?.db,
        session.user_id,
        ctx::parse_id(&agent)?,
        base,
        uses == "yes",
    )
    .await?;
    ctx::redirect_plain_post(&format!("/knowledge/{base}"));
    Ok(())
}

#[server(prefix = "/api", endpoint = "delete_knowledge_base")]
pub async fn delete_knowledge_base(id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    super::server::delete_base(&ctx::state()?, session.user_id, ctx::parse_id(&id)?).await?;
    ctx::redirect_plain_post("/knowledge");
    Ok(())
}

#[server(prefix = "/api", endpoint = "delete_knowledge_document")]
pub async fn delete_knowledge_document(base: String, id: String) -> Result<(), AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let base = ctx::parse_id(&base)?;
    super::server::delete_document(&ctx::state()?, session.user_id, ctx::parse_id(&id)?).await?;
    ctx::redirect_plain_post(&format!("/knowledge/{base}"));
    Ok(())
}

/// The passages of a base most like `query`, best first.
#[server(prefix = "/api", endpoint = "search_knowledge_base")]
pub async fn search_knowledge_base(id: String, query: String) -> Result<Vec<Passage>, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    let id = ctx::parse_id(&id)?;
    super::server::search(
        &ctx::state()?,
        session.user_id,
        &session.key,
        &[id],
        &query,
        super::server::TOP_K,
    )
    .await
}

/// One passage (a citation opened).
#[server(prefix = "/api", endpoint = "knowledge_passage")]
pub async fn knowledge_passage(id: String) -> Result<Passage, AppError> {
    use crate::ctx;
    let session = ctx::require_verified_session()?;
    super::server::passage(
        &ctx::state()?,
        session.user_id,
        &session.key,
        ctx::parse_id(&id)?,
    )
    .await
}
