//! The knowledge pages: the list with a form for a new base; a base's page
//! (upload, each file's progress, search, which agents answer from it);
//! a passage (where a citation leads). Every form works without
//! JavaScript: uploads are a plain multipart form, search a GET form.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};

use super::{
    DocState, DocumentView,
    api::{self, BasePage},
};
use crate::{
    error::AppError,
    ui::{Field, FormError, RequireUser, error_view, missing_or, size_label},
};

#[component]
pub fn KnowledgePage() -> impl IntoView {
    view! {
        <Title text="Knowledge"/>
        <RequireUser>
            <KnowledgeList/>
        </RequireUser>
    }
}

#[component]
fn KnowledgeList() -> impl IntoView {
    let create = api::CreateBaseAction::new();
    let error: Signal<Option<AppError>> = crate::action_error!(create);
    let bases = Resource::new(
        move || create.version().get(),
        |_| api::list_knowledge_bases(),
    );
    let teams = Resource::new(|| (), |_| crate::teams::api::team_choices());
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(id)) = create.value().get() {
            navigate(&format!("/knowledge/{id}"), Default::default());
        }
    });
    view! {
        <h1>"Knowledge"</h1>
        <p class="muted">
            "Documents your agents answer from, with the passage they used. Their text and "
            "embeddings are encrypted with your key; searching opens them only in the server's memory."
        </p>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match bases.await {
                    Err(err) => error_view(err).into_any(),
                    Ok(list) if list.is_empty() => {
                        view! { <p data-testid="no-bases">"No knowledge bases yet."</p> }.into_any()
                    }
                    Ok(list) => {
                        view! {
                            <ul class="card-list">
                                {list
                                    .into_iter()
                                    .map(|b| {
                                        view! {
                                            <li class="card" data-testid="base">
                                                <a href=format!("/knowledge/{}", b.id)>
                                                    <strong>{b.name}</strong>
                                                </a>
                                                {b.sharing.team.map(|team| view! { <span class="badge" data-testid="base-team">{team}</span> })}
                                                <p class="muted">{b.description}</p>
                                                <p class="muted">
                                                    {format!(
                                                        "{} documents · {} passages · {}",
                                                        b.documents,
                                                        b.passages,
                                                        b.model,
                                                    )}
                                                </p>
                                            </li>
                                        }
                                    })
                                    .collect_view()}
                            </ul>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
        <section class="card" aria-labelledby="new-base-heading">
            <h2 id="new-base-heading">"New knowledge base"</h2>
            <ActionForm action=create>
                <FormError error=error/>
                <Field label="Name" name="name" error=error/>
                <Field label="Description" name="description" required=false error=error/>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        view! {
                            <crate::teams::pages::BelongsTo
                                teams=teams.await.unwrap_or_default()
                                hint="A team's base is searched by the team's agents and changed by its admins; it embeds on the key of whoever adds documents or searches it."
                            />
                        }
                    })}
                </Transition>
                <div class="field">
                    <label for="field-provider">"Embeddings from"</label>
                    <select id="field-provider" name="provider">
                        <option value="openai">"OpenAI"</option>
                        <option value="google">"Google"</option>
                        <option value="openai_compatible">"An OpenAI-compatible server"</option>
                        <option value="demo">"The offline demo (development servers)"</option>
                    </select>
                </div>
                <Field
                    label="Embedding model"
                    name="model"
                    value="text-embedding-3-small"
                    list="embedding-models"
                    hint="OpenAI: text-embedding-3-small or -large. Google: gemini-embedding-001 or text-embedding-004. Demo: demo-embedding."
                    error=error
                />
                <datalist id="embedding-models">
                    {super::EMBEDDING_MODELS
                        .iter()
                        .filter(|(_, m)| !m.is_empty())
                        .map(|(_, m)| view! { <option value=*m></option> })
                        .collect_view()}
                </datalist>
                <Field
                    label="Server address (OpenAI-compatible only)"
                    name="base_url"
                    kind="url"
                    required=false
                    error=error
                />
                <button type="submit" class="primary" disabled=move || create.pending().get()>
                    "Create knowledge base"
                </button>
            </ActionForm>
        </section>
    }
}

#[component]
pub fn KnowledgeBasePage() -> impl IntoView {
    view! {
        <Title text="Knowledge base"/>
        <RequireUser>
            <KnowledgeBase/>
        </RequireUser>
    }
}

fn state_label(d: &DocumentView) -> String {
    match d.state {
        DocState::Queued => "Waiting to be read".to_owned(),
        DocState::Parsing => "Reading".to_owned(),
        DocState::Embedding => format!(
            "Indexing: {} of {} passages",
            d.chunks_embedded, d.chunks_total
        ),
        DocState::Ready if d.chunks_total == 1 => "Ready: 1 passage".to_owned(),
        DocState::Ready => format!("Ready: {} passages", d.chunks_total),
        DocState::Failed => d.error.clone().unwrap_or_else(|| "Failed".to_owned()),
    }
}

#[component]
fn KnowledgeBase() -> impl IntoView {
    let params = use_params_map();
    let query = use_query_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let delete_doc = api::DeleteDocumentAction::new();
    let delete_base = api::DeleteBaseAction::new();
    let set_agent = api::SetAgentBaseAction::new();
    let page = Resource::new(
        move || (id(), delete_doc.version().get(), set_agent.version().get()),
        |(id, _, _)| api::knowledge_base(id),
    );
    // While a file is being worked on, look again every second (without
    // JavaScript, the Refresh link does the same).
    Effect::new(move |_| {
        let busy = page
            .get()
            .and_then(Result::ok)
            .is_some_and(|p| p.documents.iter().any(|d| d.state.is_busy()));
        if busy {
            set_timeout(move || page.refetch(), std::time::Duration::from_secs(1));
        }
    });
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(())) = delete_base.value().get() {
            navigate("/knowledge", Default::default());
        }
    });
    let q = move || query.read().get("q").unwrap_or_default();
    let results = Resource::new(
        move || (id(), q()),
        |(id, q)| async move {
            if q.trim().is_empty() {
                Ok(Vec::new())
            } else {
                api::search_knowledge_base(id, q).await
            }
        },
    );
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Err(err) => not_found_or(err).into_any(),
                    Ok(BasePage { base, documents, agents }) => {
                        let base_id = base.id.clone();
                        let can_edit = base.sharing.can_edit;
                        let (for_docs, for_agents) = (base_id.clone(), base_id.clone());
                        let busy = documents.iter().any(|d| d.state.is_busy());
                        view! {
                            <Title text=base.name.clone()/>
                            <h1>{base.name.clone()}</h1>
                            <p class="muted">{base.description.clone()}</p>
                            <p class="muted">
                                {format!("Embeddings: {} ({})", base.model, base.provider)}
                            </p>
                            {base
                                .sharing.team
                                .clone()
                                .map(|team| {
                                    view! {
                                        <p class="muted" data-testid="base-team">
                                            "Belongs to the team "
                                            <a href=format!("/teams/{}", base.sharing.team_id.clone().unwrap_or_default())>{team}</a>
                                            {if can_edit {
                                                ": its agents answer from it; you and the other admins change it."
                                            } else {
                                                ": its agents answer from it; its admins change it."
                                            }}
                                        </p>
                                    }
                                })}
                            {can_edit.then(|| view! {
                            <section class="card" aria-labelledby="upload-heading">
                                <h2 id="upload-heading">"Add documents"</h2>
                                <p class="muted">
                                    "Text, Markdown, PDF, Word (.docx), HTML, CSV or JSON; up to 20 MiB each, "
                                    "50 at a time. What a file is comes from its content, not its name."
                                </p>
                                <form
                                    method="post"
                                    action=format!("/knowledge/{base_id}/upload")
                                    enctype="multipart/form-data"
                                >
                                    <label for="field-files">"Files"</label>
                                    <input
                                        id="field-files"
                                        type="file"
                                        name="files"
                                        multiple=true
                                        required=true
                                        accept=".txt,.md,.markdown,.pdf,.docx,.html,.htm,.csv,.tsv,.json,text/*,application/pdf,application/json"
                                    />
                                    <button type="submit" class="primary">"Upload"</button>
                                </form>
                            </section>
                            })}
                            <section class="card" aria-labelledby="documents-heading">
                                <h2 id="documents-heading">"Documents"</h2>
                                {documents.is_empty().then(|| view! { <p class="muted">"None yet."</p> })}
                                <ul class="document-list">
                                    {documents
                                        .into_iter()
                                        .map(|d| {
                                            let base_id = for_docs.clone();
                                            let label = state_label(&d);
                                            let meta = format!(
                                                "{} · {}{}",
                                                d.kind.map(|k| k.label()).unwrap_or("Unknown kind"),
                                                size_label(d.size_bytes),
                                                d.pages.map(|p| format!(" · {p} pages")).unwrap_or_default(),
                                            );
                                            let failed = d.state == DocState::Failed;
                                            view! {
                                                <li data-testid="document" data-state=d.state.as_str()>
                                                    <strong>{d.name.clone()}</strong>
                                                    <span class="muted">{meta}</span>
                                                    <progress
                                                        max="100"
                                                        value=d.percent().to_string()
                                                        aria-label=format!("Progress of {}", d.name)
                                                    ></progress>
                                                    <span class:form-error=failed class:muted=!failed>{label}</span>
                                                    {can_edit.then(|| view! {
                                                    <ActionForm action=delete_doc attr:class="inline">
                                                        <input type="hidden" name="base" value=base_id/>
                                                        <input type="hidden" name="id" value=d.id.clone()/>
                                                        <button type="submit" class="link">"Delete"</button>
                                                    </ActionForm>
                                                    })}
                                                </li>
                                            }
                                        })
                                        .collect_view()}
                                </ul>
                                // Always there, hidden once nothing is being worked
                                // on: the page's shape does not depend on how far the
                                // files have come, which changes between the server's
                                // render and the browser taking the page over.
                                <a href=format!("/knowledge/{base_id}") hidden=!busy>"Refresh"</a>
                            </section>
                            <section class="card" aria-labelledby="search-heading">
                                <h2 id="search-heading">"Search this knowledge base"</h2>
                                <form method="get" action=format!("/knowledge/{base_id}") role="search">
                                    <label for="field-q">"Look for"</label>
                                    <input id="field-q" type="search" name="q" value=q() required=true/>
                                    <button type="submit">"Search"</button>
                                </form>
                                <SearchResults results=results/>
                            </section>
                            <section class="card" aria-labelledby="agents-heading">
                                <h2 id="agents-heading">"Agents that answer from it"</h2>
                                {agents.is_empty().then(|| view! { <p class="muted">"You have no agents yet."</p> })}
                                <ul>
                                    {agents
                                        .into_iter()
                                        .map(|a| {
                                            let base_id = for_agents.clone();
                                            let (uses, button) = if a.uses {
                                                ("no", "Stop using it")
                                            } else {
                                                ("yes", "Use it")
                                            };
                                            view! {
                                                <li data-testid="base-agent" data-uses=a.uses.to_string()>
                                                    <span>{a.name}</span>
                                                    {a.uses.then(|| view! { <span class="muted">" answers from this base"</span> })}
                                                    {can_edit.then(|| view! {
                                                    <ActionForm action=set_agent attr:class="inline">
                                                        <input type="hidden" name="base" value=base_id/>
                                                        <input type="hidden" name="agent" value=a.agent_id/>
                                                        <input type="hidden" name="uses" value=uses/>
                                                        <button type="submit">{button}</button>
                                                    </ActionForm>
                                                    })}
                                                </li>
                                            }
                                        })
                                        .collect_view()}
                                </ul>
                            </section>
                            {can_edit.then(|| view! {
                            <section class="card danger" aria-labelledby="delete-base-heading">
                                <h2 id="delete-base-heading">"Delete this knowledge base"</h2>
                                <p class="muted">"Its documents, passages and embeddings are erased."</p>
                                <ActionForm action=delete_base>
                                    <input type="hidden" name="id" value=base_id.clone()/>
                                    <button type="submit" class="danger">"Delete knowledge base"</button>
                                </ActionForm>
                            </section>
                            })}
                            <p class="muted"><a href="/knowledge">"All knowledge bases"</a></p>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
    }
}

#[component]
fn SearchResults(results: Resource<Result<Vec<super::Passage>, AppError>>) -> impl IntoView {
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match results.await {
                    Err(err) => error_view(err).into_any(),
                    Ok(list) => {
                        view! {
                            <ol class="search-results">
                                {list
                                    .into_iter()
                                    .map(|p| {
                                        let place = (!p.location.is_empty())
                                            .then(|| format!(" · {}", p.location));
                                        view! {
                                            <li data-testid="search-result">
                                                <a href=format!("/knowledge/passages/{}", p.chunk_id)>
                                                    {p.document}
                                                </a>
                                                <span class="muted">{place}</span>
                                                <p class="passage">{p.text}</p>
                                            </li>
                                        }
                                    })
                                    .collect_view()}
                            </ol>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
    }
}

/// What the knowledge pages show for an id that is not the user's.
fn not_found_or(err: AppError) -> impl IntoView {
    missing_or(
        err,
        "Not found",
        "There is no such knowledge among yours. ",
        ("/knowledge", "Back to knowledge"),
    )
}

/// A passage: where a citation leads.
#[component]
pub fn PassagePage() -> impl IntoView {
    let params = use_params_map();
    let passage = Resource::new(
        move || params.read().get("id").unwrap_or_default(),
        api::knowledge_passage,
    );
    view! {
        <Title text="Passage"/>
        <RequireUser>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match passage.await {
                        Err(err) => not_found_or(err).into_any(),
                        Ok(p) => {
                            view! {
                                <h1>{p.document.clone()}</h1>
                                {(!p.location.is_empty()).then(|| view! { <p class="muted">{p.location.clone()}</p> })}
                                <blockquote class="passage" data-testid="passage">{p.text}</blockquote>
                                <p class="muted">
                                    <a href="/knowledge">"All knowledge bases"</a>
                                </p>
                            }
                                .into_any()
                        }
                    }
                })}
            </Transition>
        </RequireUser>
    }
}
