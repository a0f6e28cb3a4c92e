//! Settings → MCP servers: add a server by URL, see its tools, refresh
//! them, replace its secret, delete it. Every form works without
//! JavaScript. A server's words (tool names and descriptions, its errors)
//! are shown as text, never as HTML.

use leptos::prelude::*;
use leptos_meta::Title;

use super::{
    McpAuth, McpServerView,
    api::{
        AddMcpServerAction, DeleteMcpServerAction, DisableAgentMcpAction, EnableAgentMcpAction,
        RefreshMcpServerAction, ReplaceMcpSecretAction, SignInMcpServerAction, list_mcp_servers,
    },
};
use crate::{
    action_error,
    ui::{Field, FormError, RequireUser, error_view},
};

#[component]
pub fn McpServersPage() -> impl IntoView {
    view! {
        <Title text="MCP servers"/>
        <RequireUser>
            <McpServers/>
        </RequireUser>
    }
}

#[component]
fn McpServers() -> impl IntoView {
    let add = AddMcpServerAction::new();
    let delete = DeleteMcpServerAction::new();
    let refresh = RefreshMcpServerAction::new();
    let replace = ReplaceMcpSecretAction::new();
    let sign_in = SignInMcpServerAction::new();
    let list = Resource::new(
        move || {
            (
                add.version().get(),
                delete.version().get(),
                refresh.version().get(),
                replace.version().get(),
                sign_in.version().get(),
            )
        },
        |_| list_mcp_servers(),
    );
    let add_error = action_error!(add);
    view! {
        <h1>"MCP servers"</h1>
        <p class="muted">
            "Remote MCP servers (streamable HTTP) whose tools your agents may call. Enclave only "
            "connects to them over the network, never runs a command, and refuses private "
            "addresses unless your operator allows them. A server you add sees what your agents "
            "send it: add only servers you trust."
        </p>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Err(err) => error_view(err).into_any(),
                    Ok(list) if list.is_empty() => {
                        view! { <p class="card muted">"No MCP servers yet. Add one below."</p> }.into_any()
                    }
                    Ok(list) => {
                        view! {
                            <ul class="key-list">
                                {list
                                    .into_iter()
                                    .map(|s| {
                                        view! {
                                            <ServerRow
                                                server=s
                                                delete=delete
                                                refresh=refresh
                                                replace=replace
                                                sign_in=sign_in
                                            />
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
        <section class="card">
            <h2>"Add an MCP server"</h2>
            <ActionForm action=add>
                <FormError error=add_error/>
                <div class="field-row">
                    <Field label="Name" name="name" error=add_error/>
                    <Field
                        label="Address"
                        name="url"
                        kind="url"
                        hint="Its streamable HTTP endpoint, like https://mcp.example.com/mcp."
                        error=add_error
                    />
                </div>
                <div class="field">
                    <label for="field-auth">"Authentication"</label>
                    <select id="field-auth" name="auth">
                        <option value="none">"None"</option>
                        <option value="header">"A secret header (token or API key)"</option>
                        <option value="oauth">"OAuth (sign in at the server)"</option>
                    </select>
                </div>
                <fieldset class="field">
                    <legend>"Secret header only"</legend>
                    <div class="field-row">
                        <Field
                            label="Header name"
                            name="header_name"
                            required=false
                            hint="Empty for Authorization: Bearer."
                            error=add_error
                        />
                        <Field
                            label="Secret"
                            name="secret"
                            kind="password"
                            autocomplete="off"
                            required=false
                            error=add_error
                        />
                    </div>
                </fieldset>
                <button type="submit" class="primary" disabled=move || add.pending().get()>
                    "Add server"
                </button>
            </ActionForm>
        </section>
    }
}

#[component]
fn ServerRow(
    server: McpServerView,
    delete: DeleteMcpServerAction,
    refresh: RefreshMcpServerAction,
    replace: ReplaceMcpSecretAction,
    sign_in: SignInMcpServerAction,
) -> impl IntoView {
    let (id_refresh, id_delete, id_replace) =
        (server.id.clone(), server.id.clone(), server.id.clone());
    let auth = match (server.auth, &server.header_name, &server.masked) {
        (McpAuth::Header, Some(name), Some(masked)) => format!("{name}: {masked}"),
        (McpAuth::Header, _, _) => "Secret header".to_owned(),
        (McpAuth::None, _, _) => "No authentication".to_owned(),
        (McpAuth::OAuth, _, _) if server.signed_in => "OAuth, signed in".to_owned(),
        (McpAuth::OAuth, _, _) => "OAuth, not signed in".to_owned(),
    };
    let needs_sign_in = server.auth == McpAuth::OAuth;
    let sign_in_label = if server.signed_in {
        "Sign in again"
    } else {
        "Sign in"
    };
    let id_sign_in = server.id.clone();
    let usable = server.tools.iter().filter(|t| t.unusable.is_none()).count();
    let summary = match (server.refreshed_at.is_some(), server.tools.len()) {
        (false, _) => "Tools not listed yet".to_owned(),
        (true, 1) => "1 tool".to_owned(),
        (true, n) if usable == n => format!("{n} tools"),
        (true, n) => format!("{n} tools ({usable} usable)"),
    };
    let has_header = server.auth == McpAuth::Header;
    view! {
        <li class="card key-row" data-testid="mcp-server">
            <div>
                <strong>{server.name.clone()}</strong>
                <span class="muted">" · " {auth}</span>
                <p class="muted"><code>{server.url.clone()}</code></p>
                {server
                    .last_error
                    .clone()
                    .map(|e| view! { <p class="key-test failed" role="status" data-testid="mcp-error">{e}</p> })}
            </div>
            <div class="actions">
                {needs_sign_in
                    .then(|| {
                        view! {
                            <ActionForm action=sign_in attr:class="inline">
                                <input type="hidden" name="id" value=id_sign_in/>
                                <button type="submit" class="primary">{sign_in_label}</button>
                            </ActionForm>
                        }
                    })}
                <ActionForm action=refresh attr:class="inline">
                    <input type="hidden" name="id" value=id_refresh/>
                    <button type="submit" disabled=move || refresh.pending().get()>"Refresh tools"</button>
                </ActionForm>
                <ActionForm action=delete attr:class="inline">
                    <input type="hidden" name="id" value=id_delete/>
                    <button type="submit" class="danger">"Delete"</button>
                </ActionForm>
            </div>
            <details class="mcp-tools" open=!server.tools.is_empty()>
                <summary data-testid="mcp-tool-count">{summary}</summary>
                <ul>
                    {server
                        .tools
                        .iter()
                        .map(|t| {
                            view! {
                                <li data-testid="mcp-tool">
                                    <code>{t.name.clone()}</code>
                                    {t.title.clone().map(|title| view! { " · " {title} })}
                                    <p class="hint">{t.description.clone()}</p>
                                    {t.unusable.clone().map(|why| view! { <p class="field-error">"Cannot be used: " {why}</p> })}
                                </li>
                            }
                        })
                        .collect_view()}
                </ul>
            </details>
            {has_header
                .then(|| {
                    view! {
                        <details>
                            <summary>"Replace the secret"</summary>
                            <ActionForm action=replace>
                                <input type="hidden" name="id" value=id_replace/>
                                <label>
                                    "New secret "
                                    <input type="password" name="secret" autocomplete="off" required/>
                                </label>
                                <button type="submit">"Replace"</button>
                            </ActionForm>
                        </details>
                    }
                })}
        </li>
    }
}

/// The agent page's "Use from other programs" card: serve the agent as an
/// MCP server (off by default), see its address and token, make a new
/// token, stop serving. Works without JavaScript: the token is on the page,
/// folded away, rather than shown once. The page loads `access` (and owns
/// the actions) next to the agent, so both hydrate from one suspense.
#[component]
pub fn AgentMcpCard(
    access: Result<super::AgentMcpAccess, crate::error::AppError>,
    agent_id: String,
    enable: EnableAgentMcpAction,
    disable: DisableAgentMcpAction,
) -> impl IntoView {
    let enable_error = action_error!(enable);
    let disable_error = action_error!(disable);
    view! {
        <section class="card agent-mcp" data-testid="agent-mcp">
            <h2>"Use from other programs (MCP)"</h2>
            {match access {
                Err(err) => error_view(err).into_any(),
                Ok(access) => {
                    view! {
                        <AgentMcpState
                            access=access
                            agent_id=agent_id
                            enable=enable
                            disable=disable
                        />
                    }
                        .into_any()
                }
            }}
            <FormError error=enable_error/>
            <FormError error=disable_error/>
        </section>
    }
}

#[component]
fn AgentMcpState(
    access: super::AgentMcpAccess,
    agent_id: String,
    enable: EnableAgentMcpAction,
    disable: DisableAgentMcpAction,
) -> impl IntoView {
    let (id_enable, id_disable) = (agent_id.clone(), agent_id);
    match access.token {
        None => view! {
            <p class="muted">
                "Off. Turn it on to let an MCP client (an IDE, another assistant) ask this agent "
                "questions with a token only you can see. Each question becomes a conversation "
                "here, written with this agent's settings and tools."
            </p>
            <ActionForm action=enable attr:class="inline">
                <input type="hidden" name="agent_id" value=id_enable/>
                <button type="submit" class="primary">"Serve over MCP"</button>
            </ActionForm>
        }
        .into_any(),
        Some(token) => {
            let used = access
                .last_used_at
                .map(|t| format!("Last used {}", t.get(..16).unwrap_or(&t).replace('T', " ")))
                .unwrap_or_else(|| "Not used yet".to_owned());
            view! {
                <p>"On. Programs reach this agent at"</p>
                <p><code data-testid="agent-mcp-url">{access.url}</code></p>
                <p class="muted">
                    "Streamable HTTP, both protocol eras, with the header "
                    <code>"Authorization: Bearer <token>"</code>
                    ". It offers one tool, " <code>"ask"</code> ". " {used} "."
                </p>
                <details>
                    <summary>"Show the token"</summary>
                    <p><code class="secret" data-testid="agent-mcp-token">{token}</code></p>
                    <p class="hint">"Anyone with it can talk to this agent as you. Keep it secret."</p>
                </details>
                <div class="actions">
                    <ActionForm action=enable attr:class="inline">
                        <input type="hidden" name="agent_id" value=id_enable/>
                        <button type="submit">"New token"</button>
                    </ActionForm>
                    <ActionForm action=disable attr:class="inline">
                        <input type="hidden" name="agent_id" value=id_disable/>
                        <button type="submit" class="danger">"Stop serving"</button>
                    </ActionForm>
                </div>
            }
            .into_any()
        }
    }
}
