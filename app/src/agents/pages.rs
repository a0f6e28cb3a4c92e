//! Agent pages: list (with search), create, detail, edit, import, and the
//! provider keys page. Every form is a server-rendered `ActionForm`.

use leptos::{either::Either, prelude::*};
use leptos_meta::Title;
use leptos_router::hooks::{use_params_map, use_query_map};

use super::{
    AgentDetail,
    api::{
        CreateAgentAction, DeleteAgentAction, DuplicateAgentAction, ImportAgentAction,
        UpdateAgentAction, get_agent, list_agents,
    },
    domain::{AgentForm, Provider},
};
use crate::{
    action_error,
    connections::{ConnectionKind, ConnectionView, api::list_connections},
    error::AppError,
    knowledge::{BaseView, api::list_knowledge_bases},
    mcp::{
        AgentMcpAccess, McpServerView,
        api::{DisableAgentMcpAction, EnableAgentMcpAction, agent_mcp_access, list_mcp_servers},
        pages::AgentMcpCard,
        parse_tool_key, tool_key,
    },
    provider_keys::{KeySource, ProviderKeyView, api::list_provider_keys},
    tools::{BUILTIN, ToolConfig, builtin},
    ui::{
        Field, FormError, RequireUser, TextAreaField, avatar::Avatar, error_view, field_message,
        not_found_or,
    },
};

// ---- list ------------------------------------------------------------------------

#[component]
pub fn AgentsPage() -> impl IntoView {
    view! {
        <Title text="Agents"/>
        <RequireUser>
            <AgentList/>
        </RequireUser>
    }
}

#[component]
fn AgentList() -> impl IntoView {
    let query = use_query_map();
    let q = move || query.read().get("q").unwrap_or_default();
    let agents = Resource::new(q, |q| list_agents(Some(q)));
    view! {
        <div class="page-head">
            <h1>"Agents"</h1>
            <a class="button primary" href="/agents/new">"New agent"</a>
            <a class="button" href="/agents/import">"Import"</a>
        </div>
        <form method="get" action="/agents" role="search" class="search">
            <label for="agent-search">"Search agents"</label>
            <input id="agent-search" type="search" name="q" value=q placeholder="Name or description"/>
            <button type="submit">"Search"</button>
        </form>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match agents.await {
                    Err(err) => error_view(err).into_any(),
                    Ok(list) if list.is_empty() && q().is_empty() => {
                        view! {
                            <section class="card empty">
                                <h2>"No agents yet"</h2>
                                <p class="muted">
                                    "An agent is a model with its own instructions, settings and tools. "
                                    "Create your first one to start chatting."
                                </p>
                                <a class="button primary" href="/agents/new">"Create your first agent"</a>
                            </section>
                        }
                            .into_any()
                    }
                    Ok(list) if list.is_empty() => {
                        view! { <p class="muted">"No agent matches “" {q()} "”."</p> }.into_any()
                    }
                    Ok(list) => {
                        view! {
                            <ul class="agent-list">
                                {list
                                    .into_iter()
                                    .map(|agent| {
                                        view! {
                                            <li class="card agent-row">
                                                <Avatar avatar=agent.avatar name=agent.name.clone()/>
                                                <div>
                                                    <a href=format!("/agents/{}", agent.id)>{agent.name}</a>
                                                    {agent
                                                        .sharing.team
                                                        .map(|team| view! { <span class="badge" data-testid="agent-team-badge">{team}</span> })}
                                                    <p class="muted">{agent.description}</p>
                                                </div>
                                                <span class="model">
                                                    {agent.provider.label()} " · " {agent.model}
                                                </span>
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
    }
}

// ---- the editor (create and edit) ------------------------------------------------

/// Every field of an agent, filled from `initial`.
#[component]
fn AgentFields(
    initial: AgentForm,
    keys: Vec<ProviderKeyView>,
    chosen_key: Option<String>,
    #[prop(optional)] connections: Vec<ConnectionView>,
    #[prop(optional)] mcp_servers: Vec<McpServerView>,
    #[prop(optional)] bases: Vec<BaseView>,
    #[prop(optional)] chosen_bases: Vec<String>,
    #[prop(into)] error: Signal<Option<AppError>>,
) -> impl IntoView {
    let provider_error = field_message(error, "provider");
    let starters_error = field_message(error, "starters");
    let key_error = field_message(error, "provider_key_id");
    let model_error = field_message(error, "model");
    let starter = |i: usize| initial.starters.get(i).cloned().unwrap_or_default();
    let provider = RwSignal::new(initial.provider.clone());
    let model = RwSignal::new(initial.model.clone());
    let live = RwSignal::new(false);
    Effect::new(move |_| live.set(true));
    let base_url_hidden =
        move || live.get() && provider.get() != Provider::OpenaiCompatible.as_str();
    // Choosing another provider brings its usual model with it, unless the
    // user typed a model of their own.
    let on_provider = move |ev| {
        let chosen = event_target_value(&ev);
        if let Some(new) = Provider::parse(&chosen) {
            let current = model.get_untracked();
            let suggested_elsewhere = Provider::ALL
                .iter()
                .any(|p| *p != new && p.suggested_models().contains(&current.as_str()));
            if (current.is_empty() || suggested_elsewhere)
                && let Some(first) = new.suggested_models().first()
            {
                model.set((*first).to_owned());
            }
        }
        provider.set(chosen);
    };
    let chosen = chosen_key.unwrap_or_default();
    view! {
        <FormError error=error/>
        <Field label="Name" name="name" value=initial.name.clone() error=error/>
        <TextAreaField
            label="Description"
            name="description"
            rows=2
            value=initial.description.clone()
            hint="Up to 500 characters; shown in the agent list."
            error=error
        />
        <TextAreaField
            label="System prompt"
            name="system_prompt"
            rows=8
            value=initial.system_prompt.clone()
            hint="The agent's instructions, up to 32,000 characters. Stored encrypted."
            error=error
        />
        <div class="field-row">
            <div class="field" class:invalid=move || provider_error().is_some()>
                <label for="field-provider">"Provider"</label>
                <select id="field-provider" name="provider" on:change=on_provider>
                    {Provider::ALL
                        .into_iter()
                        .map(|p| {
                            view! {
                                <option value=p.as_str() selected=initial.provider == p.as_str()>
                                    {p.label()}
                                </option>
                            }
                        })
                        .collect_view()}
                </select>
                <p class="field-error" id="field-provider-error">{provider_error}</p>
            </div>
            <div class="field" class:invalid=move || model_error().is_some()>
                <label for="field-model">"Model"</label>
                <input
                    id="field-model"
                    name="model"
                    type="text"
                    list="model-suggestions"
                    required
                    value=initial.model.clone()
                    prop:value=move || model.get()
                    on:input=move |ev| model.set(event_target_value(&ev))
                    aria-invalid=move || model_error().is_some().to_string()
                    aria-describedby="field-model-error"
                />
                <p class="field-error" id="field-model-error">{model_error}</p>
            </div>
        </div>
        <datalist id="model-suggestions">
            {move || {
                Provider::parse(&provider.get())
                    .map(|p| p.suggested_models())
                    .unwrap_or_default()
                    .iter()
                    .map(|m| view! { <option value=*m></option> })
                    .collect_view()
            }}
        </datalist>
        // Only OpenAI-compatible servers take a base URL: once the page is
        // live, the field is there (and submitted) only for them. Without
        // JavaScript it stays, and the server refuses it for the others.
        <fieldset
            class="bare"
            disabled=base_url_hidden
            style:display=move || base_url_hidden().then_some("none")
        >
            <Field
                label="Base URL"
                name="base_url"
                kind="url"
                value=initial.base_url.clone()
                required=false
                hint="For OpenAI-compatible servers only, e.g. http://localhost:11434/v1 for Ollama."
                error=error
            />
        </fieldset>
        <div class="field-row">
            <Field
                label="Temperature"
                name="temperature"
                value=initial.temperature.clone()
                required=false
                hint="Empty for the provider's default."
                error=error
            />
            <Field label="Top-p" name="top_p" value=initial.top_p.clone() required=false error=error/>
            <Field
                label="Max output tokens"
                name="max_output_tokens"
                value=initial.max_output_tokens.clone()
                required=false
                error=error
            />
        </div>
        <fieldset class="field" class:invalid=move || starters_error().is_some()>
            <legend>"Conversation starters (up to 4)"</legend>
            {(0..4)
                .map(|i| {
                    let name = ["starter_1", "starter_2", "starter_3", "starter_4"][i];
                    view! {
                        <input
                            name=name
                            aria-label=format!("Conversation starter {}", i + 1)
                            value=starter(i)
                        />
                    }
                })
                .collect_view()}
            <p class="field-error" id="field-starters-error">{starters_error}</p>
        </fieldset>
        <ToolFields
            initial=initial.tools.clone()
            connections=connections
            mcp_servers=mcp_servers
            error=error
        />
        <KnowledgeFields bases=bases chosen=chosen_bases error=error/>
        <div class="field-row">
            <Field
                label="Avatar"
                name="avatar"
                value=initial.avatar.clone()
                required=false
                hint="One emoji, or a colour like #3b5bdb."
                error=error
            />
            <div class="field" class:invalid=move || key_error().is_some()>
                <label for="field-provider_key_id">"API key"</label>
                <select id="field-provider_key_id" name="provider_key_id">
                    <option value="" selected=chosen.is_empty()>
                        "Automatic: your key for the provider, else the platform's"
                    </option>
                    {keys
                        .into_iter()
                        .map(|k| {
                            let selected = k.id == chosen;
                            view! {
                                <option value=k.id selected=selected>
                                    {format!("{} · {} ({})", k.provider.label(), k.label, k.masked)}
                                </option>
                            }
                        })
                        .collect_view()}
                </select>
                <p class="field-error" id="field-provider_key_id-error">{key_error}</p>
            </div>
        </div>
    }
}

/// The agent's tools: which it may call, which ask first, its step limit
/// and the hosts its web requests may reach.
#[component]
fn ToolFields(
    initial: ToolConfig,
    connections: Vec<ConnectionView>,
    mcp_servers: Vec<McpServerView>,
    #[prop(into)] error: Signal<Option<AppError>>,
) -> impl IntoView {
    let tools_error = field_message(error, "tools");
    let mcp_initial = initial.clone();
    // For each service the user has connections for: which one tools use.
    let choices: Vec<(ConnectionKind, Vec<ConnectionView>)> = ConnectionKind::ALL
        .into_iter()
        .map(|kind| {
            (
                kind,
                connections
                    .iter()
                    .filter(|c| c.kind == kind)
                    .cloned()
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, list)| !list.is_empty())
        .collect();
    let chosen = initial.connections.clone();
    let hosts = initial.allowed_hosts.join(", ");
    view! {
        <fieldset class="field tools" class:invalid=move || tools_error().is_some()>
            <legend>"Tools"</legend>
            <p class="hint">
                "What the agent may do besides answering. Each call is shown in the chat and "
                "recorded under Settings → Tool activity."
            </p>
            {BUILTIN
                .iter()
                .map(|tool| {
                    view! {
                        <div class="tool-option">
                            <label class="checkbox">
                                <input
                                    type="checkbox"
                                    name="tools[]"
                                    value=tool.name
                                    checked=initial.is_enabled(tool.name)
                                />
                                " " {tool.label}
                            </label>
                            <p class="hint">{tool.description}</p>
                            {tool
                                .side_effects
                                .then(|| {
                                    view! {
                                        <label class="checkbox ask-first">
                                            <input
                                                type="checkbox"
                                                name="ask_first[]"
                                                value=tool.name
                                                checked=initial.asks_first(tool.name)
                                            />
                                            " Ask me before each use"
                                        </label>
                                    }
                                })}
                        </div>
                    }
                })
                .collect_view()}
            {mcp_servers
                .into_iter()
                .filter(|server| server.tools.iter().any(|t| t.unusable.is_none()))
                .map(|server| {
                    let initial = mcp_initial.clone();
                    view! {
                        <div class="mcp-agent-tools">
                            <p class="tool-source">{format!("MCP server: {}", server.name)}</p>
                            {server
                                .tools
                                .iter()
                                .filter(|t| t.unusable.is_none())
                                .map(|t| {
                                    let key = tool_key(&server.id, &t.name);
                                    view! {
                                        <div class="tool-option">
                                            <label class="checkbox">
                                                <input
                                                    type="checkbox"
                                                    name="tools[]"
                                                    value=key.clone()
                                                    checked=initial.is_enabled(&key)
                                                />
                                                " " {t.label().to_owned()}
                                            </label>
                                            <p class="hint">{t.description.clone()}</p>
                                            <label class="checkbox ask-first">
                                                <input
                                                    type="checkbox"
                                                    name="ask_first[]"
                                                    value=key.clone()
                                                    checked=initial.asks_first(&key)
                                                />
                                                " Ask me before each use"
                                            </label>
                                        </div>
                                    }
                                })
                                .collect_view()}
                        </div>
                    }
                })
                .collect_view()}
            {choices
                .into_iter()
                .map(|(kind, list)| {
                    let field = format!("connections[{}]", kind.as_str());
                    let id = format!("field-connection-{}", kind.as_str());
                    let current = chosen.get(kind.as_str()).cloned().unwrap_or_default();
                    view! {
                        <div class="field">
                            <label for=id.clone()>{format!("{} connection", kind.label())}</label>
                            <select id=id name=field>
                                <option value="" selected=current.is_empty()>"Automatic: the newest"</option>
                                {list
                                    .into_iter()
                                    .map(|c| {
                                        let selected = c.id == current;
                                        view! {
                                            <option value=c.id selected=selected>
                                                {format!("{} ({})", c.label, c.masked)}
                                            </option>
                                        }
                                    })
                                    .collect_view()}
                            </select>
                        </div>
                    }
                })
                .collect_view()}
            <div class="field-row">
                <Field
                    label="Step limit"
                    name="step_limit"
                    value=initial.step_limit.to_string()
                    required=false
                    hint="How many times one reply may call the model (1 to 50)."
                    error=error
                />
                <Field
                    label="Web requests may reach"
                    name="allowed_hosts"
                    value=hosts
                    required=false
                    hint="Host names, comma-separated. Empty: any public host."
                    error=error
                />
            </div>
            <p class="field-error" id="field-tools-error">{tools_error}</p>
        </fieldset>
    }
}

/// The knowledge bases the agent answers from: a checkbox each
/// (`knowledge[]`).
#[component]
fn KnowledgeFields(
    bases: Vec<BaseView>,
    chosen: Vec<String>,
    #[prop(into)] error: Signal<Option<AppError>>,
) -> impl IntoView {
    let knowledge_error = field_message(error, "knowledge");
    let options = if bases.is_empty() {
        Either::Left(view! {
            <p class="hint">
                "You have no knowledge bases yet. "
                <a href="/knowledge">"Create one"</a>
                " and upload documents; the agent can then answer from them with citations."
            </p>
        })
    } else {
        Either::Right(
            bases
                .into_iter()
                .map(|base| {
                    let checked = chosen.contains(&base.id);
                    let counts = format!(
                        "{} document{} · {} passage{}",
                        base.documents,
                        if base.documents == 1 { "" } else { "s" },
                        base.passages,
                        if base.passages == 1 { "" } else { "s" },
                    );
                    view! {
                        <div class="tool-option">
                            <label class="checkbox">
                                <input type="checkbox" name="knowledge[]" value=base.id checked=checked/>
                                " " {base.name}
                            </label>
                            <p class="hint">{counts}</p>
                        </div>
                    }
                })
                .collect_view(),
        )
    };
    view! {
        <fieldset class="field knowledge" class:invalid=move || knowledge_error().is_some()>
            <legend>"Knowledge"</legend>
            <p class="hint">
                "Before each reply, the agent looks up the passages of these bases most like "
                "the question, answers from them and cites them."
            </p>
            {options}
            <p class="field-error" id="field-knowledge-error">{knowledge_error}</p>
        </fieldset>
    }
}

#[component]
pub fn AgentNewPage() -> impl IntoView {
    view! {
        <Title text="New agent"/>
        <RequireUser>
            <AgentNew/>
        </RequireUser>
    }
}

#[component]
fn AgentNew() -> impl IntoView {
    let action = CreateAgentAction::new();
    let error = action_error!(action);
    // `?team=ID`: made in that team, so nothing personal is offered.
    let query = use_query_map();
    let team = move || query.read().get("team").filter(|t| !t.is_empty());
    let keys = Resource::new(|| (), |_| list_provider_keys());
    let connections = Resource::new(|| (), |_| list_connections());
    let mcp_servers = Resource::new(|| (), |_| list_mcp_servers());
    let bases = Resource::new(|| (), |_| list_knowledge_bases());
    let teams = Resource::new(|| (), |_| crate::teams::api::team_choices());
    let team_error = field_message(error, "team");
    view! {
        <h1>"New agent"</h1>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let in_team = team();
                let personal = in_team.is_none();
                let keys = keys.await.unwrap_or_default().into_iter().filter(|_| personal).collect();
                // The connections where the agent will be: the user's own, or the team's.
                let connections = connections
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|c| c.sharing.team_id == in_team)
                    .collect();
                let mcp_servers = mcp_servers.await.unwrap_or_default().into_iter().filter(|_| personal).collect();
                let bases = bases
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|b| b.sharing.team_id == in_team)
                    .collect();
                let teams = teams.await.unwrap_or_default();
                let initial = AgentForm {
                    provider: Provider::Openai.as_str().to_owned(),
                    model: "gpt-4o-mini".to_owned(),
                    tools: ToolConfig::starter(),
                    ..AgentForm::default()
                };
                let owner_choice = view! {
                    <crate::teams::pages::BelongsTo
                        teams=teams
                        chosen=in_team.clone()
                        hint="A team's agent is used by all its members and changed by its admins. It runs on the key of whoever chats with it."
                        error=Some(Signal::derive(team_error))
                    />
                };
                view! {
                    <ActionForm action=action attr:class="card agent-form">
                        {owner_choice}
                        <AgentFields
                            initial=initial
                            keys=keys
                            chosen_key=None
                            connections=connections
                            mcp_servers=mcp_servers
                            bases=bases
                            error=error
                        />
                        <button type="submit" class="primary" disabled=move || action.pending().get()>
                            "Create agent"
                        </button>
                    </ActionForm>
                }
            })}
        </Transition>
    }
}

fn use_agent_id() -> Memo<String> {
    let params = use_params_map();
    Memo::new(move |_| params.read().get("id").unwrap_or_default())
}

#[component]
pub fn AgentEditPage() -> impl IntoView {
    view! {
        <Title text="Edit agent"/>
        <RequireUser>
            <AgentEdit/>
        </RequireUser>
    }
}

#[component]
fn AgentEdit() -> impl IntoView {
    let id = use_agent_id();
    let agent = Resource::new(move || id.get(), get_agent);
    let keys = Resource::new(|| (), |_| list_provider_keys());
    let connections = Resource::new(|| (), |_| list_connections());
    let mcp_servers = Resource::new(|| (), |_| list_mcp_servers());
    let bases = Resource::new(|| (), |_| list_knowledge_bases());
    let action = UpdateAgentAction::new();
    let error = action_error!(action);
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let connections = connections.await.unwrap_or_default();
                let mcp_servers = mcp_servers.await.unwrap_or_default();
                let bases = bases.await.unwrap_or_default();
                match (agent.await, keys.await) {
                    (Ok(agent), Ok(keys)) => {
                        // A team's agent takes nothing personal.
                        let personal = agent.sharing.team_id.is_none();
                        let keys = keys.into_iter().filter(|_| personal).collect();
                        let connections = connections
                            .into_iter()
                            .filter(|c| c.sharing.team_id == agent.sharing.team_id)
                            .collect();
                        let mcp_servers = mcp_servers.into_iter().filter(|_| personal).collect();
                        let bases = bases
                            .into_iter()
                            .filter(|b| b.sharing.team_id == agent.sharing.team_id)
                            .collect();
                        Either::Left(view! {
                            <h1>"Edit " {agent.spec.name.clone()}</h1>
                            <ActionForm action=action attr:class="card agent-form">
                                <input type="hidden" name="id" value=agent.id.clone()/>
                                <AgentFields
                                    initial=agent.spec.to_form()
                                    keys=keys
                                    chosen_key=agent.provider_key_id.clone()
                                    connections=connections
                                    mcp_servers=mcp_servers
                                    bases=bases
                                    chosen_bases=agent.knowledge.iter().map(|b| b.id.clone()).collect()
                                    error=error
                                />
                                <button type="submit" class="primary" disabled=move || action.pending().get()>
                                    "Save changes"
                                </button>
                                <a class="button" href=format!("/agents/{}", agent.id)>"Cancel"</a>
                            </ActionForm>
                        })
                    }
                    (Err(err), _) | (_, Err(err)) => Either::Right(not_found_or(err)),
                }
            })}
        </Transition>
    }
}

// ---- detail ------------------------------------------------------------------------

#[component]
pub fn AgentDetailPage() -> impl IntoView {
    view! {
        <Title text="Agent"/>
        <RequireUser>
            <AgentShow/>
        </RequireUser>
    }
}

#[component]
fn AgentShow() -> impl IntoView {
    let id = use_agent_id();
    let agent = Resource::new(move || id.get(), get_agent);
    let enable = EnableAgentMcpAction::new();
    let disable = DisableAgentMcpAction::new();
    let mcp = Resource::new(
        move || (id.get(), enable.version().get(), disable.version().get()),
        |(id, _, _)| agent_mcp_access(id),
    );
    // The cards' resources, made here: not inside the suspended view.
    let schedules = crate::schedules::pages::agent_schedule_list(id);
    let telegram = crate::telegram::pages::TelegramCard::new(id);
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let mcp = mcp.await;
                match agent.await {
                    Ok(agent) => {
                        Either::Left(
                            view! {
                                <AgentCard
                                    agent=agent
                                    mcp=mcp
                                    enable=enable
                                    disable=disable
                                    schedules=schedules
                                    telegram=telegram
                                />
                            },
                        )
                    }
                    Err(err) => Either::Right(not_found_or(err)),
                }
            })}
        </Transition>
    }
}

#[component]
fn AgentCard(
    agent: AgentDetail,
    mcp: Result<AgentMcpAccess, AppError>,
    enable: EnableAgentMcpAction,
    disable: DisableAgentMcpAction,
    schedules: crate::schedules::pages::AgentScheduleList,
    telegram: crate::telegram::pages::TelegramCard,
) -> impl IntoView {
    let duplicate = DuplicateAgentAction::new();
    let delete = DeleteAgentAction::new();
    let delete_error = action_error!(delete);
    let confirm_error = field_message(delete_error, "confirm");
    let spec = agent.spec.clone();
    let key_missing = matches!(agent.key_source, KeySource::Missing { .. });
    let setting = |value: Option<String>| value.unwrap_or_else(|| "provider default".to_owned());
    let (id_duplicate, id_delete) = (agent.id.clone(), agent.id.clone());
    let can_edit = agent.sharing.can_edit;
    let edit_href = format!("/agents/{}/edit", agent.id);
    let chat_href = format!("/agents/{}/chat", agent.id);
    let export_href = format!("/api/agents/{}/export", agent.id);
    view! {
        <Title text=spec.name.clone()/>
        <div class="page-head">
            <Avatar avatar=spec.avatar.clone() name=spec.name.clone() big=true/>
            <h1>{spec.name.clone()}</h1>
            <a class="button primary" href=chat_href>"Chat"</a>
            {agent.sharing.can_edit.then(|| view! { <a class="button" href=edit_href>"Edit"</a> })}
            <ActionForm action=duplicate attr:class="inline">
                <input type="hidden" name="id" value=id_duplicate/>
                <button type="submit">"Duplicate"</button>
            </ActionForm>
            <a class="button" href=export_href download="">
                "Export"
            </a>
        </div>
        <p class="lead">{spec.description.clone()}</p>
        {agent
            .sharing.team_id
            .clone()
            .map(|team| {
                let note = if agent.sharing.can_edit {
                    "its members use it; you and the other admins can change it."
                } else {
                    "you can chat with it; its admins change it."
                };
                view! {
                    <p class="muted" data-testid="agent-team">
                        "Belongs to the team "
                        <a href=format!("/teams/{team}")>{agent.sharing.team.clone().unwrap_or_default()}</a>
                        ": " {note} " Your conversations with it are yours alone."
                    </p>
                }
            })}
        <section class="card">
            <dl>
                <dt>"Provider"</dt>
                <dd>{spec.provider.label()}</dd>
                <dt>"Model"</dt>
                <dd>{spec.model.clone()}</dd>
                {spec
                    .base_url
                    .clone()
                    .map(|url| view! { <dt>"Base URL"</dt> <dd>{url}</dd> })}
                <dt>"API key"</dt>
                <dd class:warning=key_missing data-testid="key-source">
                    {agent.key_source.describe()}
                </dd>
                <dt>"Tools"</dt>
                <dd data-testid="agent-tools">
                    {if spec.tools.enabled.is_empty() {
                        "None".to_owned()
                    } else {
                        spec.tools
                            .enabled
                            .iter()
                            .map(|t| match (builtin(t), parse_tool_key(t)) {
                                (Some(info), _) => info.label.to_owned(),
                                (None, Some((_, tool))) => format!("{tool} (MCP)"),
                                (None, None) => t.clone(),
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    }}
                </dd>
                <dt>"Knowledge"</dt>
                <dd data-testid="agent-knowledge">
                    {if agent.knowledge.is_empty() {
                        Either::Left("None")
                    } else {
                        Either::Right(
                            agent
                                .knowledge
                                .iter()
                                .enumerate()
                                .map(|(i, base)| {
                                    view! {
                                        {(i > 0).then_some(", ")}
                                        <a href=format!("/knowledge/{}", base.id)>{base.name.clone()}</a>
                                    }
                                })
                                .collect_view(),
                        )
                    }}
                </dd>
                <dt>"Temperature"</dt>
                <dd>{setting(spec.temperature.map(|t| t.to_string()))}</dd>
                <dt>"Top-p"</dt>
                <dd>{setting(spec.top_p.map(|t| t.to_string()))}</dd>
                <dt>"Max output tokens"</dt>
                <dd>{setting(spec.max_output_tokens.map(|t| t.to_string()))}</dd>
            </dl>
        </section>
        <section class="card">
            <h2>"System prompt"</h2>
            <pre class="prompt">{spec.system_prompt.clone()}</pre>
        </section>
        {(!spec.starters.is_empty())
            .then(|| {
                view! {
                    <section class="card">
                        <h2>"Conversation starters"</h2>
                        <ul>{spec.starters.iter().map(|s| view! { <li>{s.clone()}</li> }).collect_view()}</ul>
                    </section>
                }
            })}
        <AgentMcpCard access=mcp agent_id=agent.id.clone() enable=enable disable=disable/>
        <crate::schedules::pages::AgentSchedules agent_id=agent.id.clone() schedules=schedules/>
        <crate::telegram::pages::AgentTelegram agent_id=agent.id.clone() card=telegram/>
        {can_edit.then(move || view! {
        <section class="card danger-zone">
            <h2>"Delete this agent"</h2>
            <p>
                "Deleting " <strong>{spec.name.clone()}</strong>
                " removes its configuration for good, together with its conversations, "
                "schedules and channels once those exist. Your API keys are kept."
            </p>
            <ActionForm action=delete>
                <input type="hidden" name="id" value=id_delete/>
                <FormError error=delete_error/>
                <label class="checkbox">
                    <input type="checkbox" name="confirm" value="yes"/>
                    " Yes, delete this agent and everything that goes with it"
                </label>
                <p class="field-error" id="field-confirm-error">{confirm_error}</p>
                <button type="submit" class="danger">"Delete agent"</button>
            </ActionForm>
        </section>
        })}
    }
}

// ---- import --------------------------------------------------------------------------

#[component]
pub fn AgentImportPage() -> impl IntoView {
    let action = ImportAgentAction::new();
    let error = action_error!(action);
    view! {
        <Title text="Import an agent"/>
        <RequireUser>
            <h1>"Import an agent"</h1>
            <ActionForm action=action attr:class="card">
                <FormError error=error/>
                <TextAreaField
                    label="Exported agent (JSON)"
                    name="json"
                    rows=14
                    hint="Paste a file made by Export. It holds no API keys: the agent uses yours."
                    error=error
                />
                <p class="field-error" id="field-file-error">{field_message(error, "file")}</p>
                <button type="submit" class="primary">"Import"</button>
            </ActionForm>
        </RequireUser>
    }
}
