//! The app shell around every signed-in page: a sidebar with "New chat",
//! a search over conversation titles, every conversation across agents
//! grouped by age, the agents and settings; a drawer on a phone; the
//! keyboard shortcuts and their help; deleting with an undo.
//!
//! Only pages that show it carry its code (lazy routes, `lazy_pages!` in
//! the crate root): the first page a visitor opens stays as small as before.
//! Its state lives in [`Shell`], which the app provides, so it survives
//! moving between pages. Without JavaScript it is plain links and forms:
//! "New chat" goes through `/chat/new`, the search to `/chats`.

use leptos::{either::Either, prelude::*, server_fn::ServerFn};
use leptos_meta::Title;
use leptos_router::{
    components::Redirect,
    hooks::{use_location, use_navigate, use_query_map},
};

use super::{
    Age, ChatList, ChatListAgent, ChatListItem,
    api::{DeleteConversation, list_chats},
};
use crate::{
    data::pages::PolicyBanner,
    error::AppError,
    ui::{RequireUser, VerifyBanner, avatar::Avatar, use_auth},
};

/// A signed-in page inside the shell: the sidebar, then the page with the
/// notices a signed-in user may have (confirm your address, a policy
/// change). Their code, like the sidebar's, loads with the signed-in pages.
pub fn with_sidebar(page: impl IntoView + 'static) -> impl IntoView {
    view! {
        <Sidebar/>
        <main id="main">
            <VerifyBanner/>
            <PolicyBanner/>
            <SidebarToggle/>
            {page}
        </main>
    }
}

/// The sidebar's list, fetched once for the app's lifetime (not per page)
/// and again when a conversation is made, renamed or deleted, when the
/// search changes, or when who is signed in changes.
fn chats(shell: Shell) -> Resource<Result<ChatList, AppError>> {
    if let Some(list) = shell.list.get_value() {
        return list;
    }
    let auth = use_auth();
    let owner = shell.root.get_value().upgrade().or_else(Owner::current);
    let make = move || {
        Resource::new(
            move || (auth.version(), shell.chats_changed.get(), shell.query.get()),
            |(_, _, query)| list_chats((!query.trim().is_empty()).then_some(query), None),
        )
    };
    let list = match owner {
        Some(owner) => owner.with(make),
        None => make(),
    };
    shell.list.set_value(Some(list));
    list
}

/// Seconds east of UTC of the browser's time zone (0 on the server).
fn browser_east() -> i64 {
    #[cfg(feature = "hydrate")]
    {
        // getTimezoneOffset is minutes *behind* UTC.
        -(js_sys::Date::new_0().get_timezone_offset() as i64) * 60
    }
    #[cfg(not(feature = "hydrate"))]
    0
}

/// The time now, Unix seconds, in the browser.
fn browser_now() -> Option<i64> {
    #[cfg(feature = "hydrate")]
    {
        Some((js_sys::Date::now() / 1000.0) as i64)
    }
    #[cfg(not(feature = "hydrate"))]
    None
}

/// A phone's width, where the sidebar is a drawer (as in the stylesheet).
fn is_narrow() -> bool {
    #[cfg(feature = "hydrate")]
    {
        web_sys::window()
            .and_then(|w| w.inner_width().ok())
            .and_then(|w| w.as_f64())
            .is_some_and(|w| w <= 768.0)
    }
    #[cfg(not(feature = "hydrate"))]
    false
}

/// Focuses the element with this id, if the page has it, once what a
/// change just drew is on the page.
pub fn focus(id: &'static str) {
    #[cfg(feature = "hydrate")]
    request_animation_frame(move || {
        use wasm_bindgen::JsCast;
        if let Some(el) = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.get_element_by_id(id))
            .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
        {
            let _ = el.focus();
        }
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = id;
}

/// Opens or closes the sidebar: the drawer on a phone, hidden or shown on
/// a wider screen.
fn toggle(shell: Shell) {
    if is_narrow() {
        let open = !shell.drawer.get_untracked();
        shell.drawer.set(open);
        if open {
            focus("chat-search");
        } else {
            focus("sidebar-toggle");
        }
    } else {
        let hidden = !shell.hidden.get_untracked();
        shell.hidden.set(hidden);
        focus(if hidden {
            "sidebar-toggle"
        } else {
            "chat-search"
        });
    }
}

/// "Chats": opens the drawer on a phone, or the hidden sidebar. Without
/// JavaScript it is a link to the sidebar, which the stylesheet shows when
/// it is the page's target.
#[component]
fn SidebarToggle() -> impl IntoView {
    let shell = use_shell();
    view! {
        <a
            href="#sidebar"
            id="sidebar-toggle"
            class="sidebar-toggle"
            class:shown=move || shell.hidden.get()
            role="button"
            aria-controls="sidebar"
            aria-expanded=move || {
                let open = if is_narrow() { shell.drawer.get() } else { !shell.hidden.get() };
                open.to_string()
            }
            on:click=move |ev| {
                ev.prevent_default();
                toggle(shell);
            }
            on:keydown=move |ev: leptos::ev::KeyboardEvent| {
                if ev.key() == " " {
                    ev.prevent_default();
                    toggle(shell);
                }
            }
        >
            "☰ Chats"
        </a>
    }
}

/// The app shell's state, shared by every page that shows the sidebar and
/// kept for the app's lifetime (the request's, on the server): made by the
/// first page that asks, under the root owner, so the first page a visitor
/// opens carries none of its code and moving between pages keeps it.
#[derive(Clone, Copy)]
pub struct Shell {
    /// Moves when a conversation is made, renamed or deleted.
    pub chats_changed: RwSignal<u64>,
    /// The drawer is open (phone).
    pub drawer: RwSignal<bool>,
    /// The sidebar is hidden (wider screens).
    pub hidden: RwSignal<bool>,
    /// What the sidebar's search filters by.
    pub query: RwSignal<String>,
    /// The browser's time zone (seconds east of UTC), once the page is live.
    pub east: RwSignal<Option<i64>>,
    /// A deletion that "Undo" can still take back.
    pub pending_delete: RwSignal<Option<PendingDelete>>,
    /// Deleted since the list was fetched.
    pub deleted: RwSignal<Vec<String>>,
    /// The sidebar's list, made once under the root owner.
    list: StoredValue<Option<Resource<Result<ChatList, AppError>>>>,
    /// The root owner (weak: it holds this).
    root: StoredValue<leptos::reactive::owner::WeakOwner>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelete {
    pub id: String,
    pub agent_id: String,
    pub title: String,
    /// It was the open conversation (Undo goes back to it).
    pub was_open: bool,
}

pub fn use_shell() -> Shell {
    if let Some(shell) = use_context::<Shell>() {
        return shell;
    }
    let mut root = Owner::current().unwrap_or_default();
    while let Some(parent) = root.parent() {
        root = parent;
    }
    root.clone().with(move || {
        let shell = Shell {
            chats_changed: RwSignal::new(0),
            drawer: RwSignal::new(false),
            hidden: RwSignal::new(false),
            query: RwSignal::new(String::new()),
            east: RwSignal::new(None),
            pending_delete: RwSignal::new(None),
            deleted: RwSignal::new(Vec::new()),
            list: StoredValue::new(None),
            root: StoredValue::new(root.downgrade()),
        };
        provide_context(shell);
        shell
    })
}

#[component]
pub fn Sidebar() -> impl IntoView {
    let shell = use_shell();
    let list = chats(shell);
    let location = use_location();
    // The router's location (see the chat page: a route's own query lags).
    let query = location.query;
    let current = Memo::new(move |_| query.read().get("c").unwrap_or_default());
    // A link followed in the drawer closes it.
    Effect::new(move |_| {
        location.pathname.track();
        location.search.track();
        shell.drawer.set(false);
    });
    // Once live, the groups follow the browser's time zone.
    Effect::new(move |_| shell.east.set(Some(browser_east())));
    shortcuts(shell);
    let searching = Signal::derive(move || !shell.query.get().trim().is_empty());
    // Only signed-in pages have the sidebar. Everything below is made now,
    // not after an await: the server and the hydrating page must make their
    // resources and boundaries in the same order.
    view! {
            <div class="drawer-backdrop" class:open=move || shell.drawer.get() on:click=move |_| shell.drawer.set(false)></div>
            <aside
                id="sidebar"
                class="sidebar"
                class:open=move || shell.drawer.get()
                class:hidden=move || shell.hidden.get()
                aria-label="Chats and agents"
                on:click=move |ev| {
                    // A link followed from the drawer closes it, even the
                    // open conversation's (no navigation then).
                    #[cfg(feature = "hydrate")]
                    {
                        use wasm_bindgen::JsCast;
                        let followed = ev
                            .target()
                            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                            .and_then(|e| e.closest("a[href^='/']").ok().flatten())
                            .is_some();
                        if followed {
                            shell.drawer.set(false);
                        }
                    }
                    #[cfg(not(feature = "hydrate"))]
                    let _ = ev;
                }
            >
                <div class="sidebar-top">
                    <a class="brand" href="/dashboard">"Enclave"</a>
                    <a
                        href="#main"
                        class="sidebar-close"
                        role="button"
                        aria-label="Close the sidebar"
                        title="Close the sidebar"
                        on:click=move |ev| {
                            ev.prevent_default();
                            toggle(shell);
                        }
                    >
                        "×"
                    </a>
                </div>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        list.await.ok().map(|l| view! { <NewChat agents=l.agents last=l.last_agent/> })
                    })}
                </Transition>
                <SearchForm/>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        list.await
                            .ok()
                            .map(|l| view! { <ChatGroups list=l current=current searching=searching full=false/> })
                    })}
                </Transition>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        list.await.ok().map(|l| view! { <AgentLinks agents=l.agents/> })
                    })}
                </Transition>
                <div class="sidebar-foot">
                    <a href="/settings">"Settings"</a>
                    <button type="button" class="link" on:click=move |_| open_help()>
                        "Keyboard shortcuts"
                    </button>
                </div>
            </aside>
            <UndoToast/>
            <ShortcutsHelp/>
    }
}

/// "New chat" with an agent to pick (the one used last comes first). A
/// plain form to `/chat/new` without JavaScript.
#[component]
fn NewChat(agents: Vec<ChatListAgent>, last: Option<String>) -> impl IntoView {
    let navigate = use_navigate();
    if agents.is_empty() {
        return Either::Left(view! {
            <a class="button primary new-chat-empty" href="/agents/new">"Create an agent"</a>
        });
    }
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if let Some(agent) = selected_agent() {
            navigate(&format!("/agents/{agent}/chat"), Default::default());
        }
    };
    Either::Right(view! {
        <form class="new-chat" method="get" action="/chat/new" on:submit=on_submit>
            <label for="new-chat-agent" class="visually-hidden">"Agent for a new chat"</label>
            <select id="new-chat-agent" name="agent">
                {agents
                    .into_iter()
                    .map(|a| {
                        let selected = last.as_deref() == Some(a.id.as_str());
                        view! { <option value=a.id selected=selected>{a.name}</option> }
                    })
                    .collect_view()}
            </select>
            <button type="submit" class="primary">"New chat"</button>
        </form>
    })
}

/// The agent chosen in "New chat", read from the page (the shortcut uses
/// it too).
fn selected_agent() -> Option<String> {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.get_element_by_id("new-chat-agent"))
            .and_then(|e| e.dyn_into::<web_sys::HtmlSelectElement>().ok())
            .map(|s| s.value())
            .filter(|v| !v.is_empty())
    }
    #[cfg(not(feature = "hydrate"))]
    None
}

/// Filters the conversations by title as one types. Without JavaScript it
/// goes to "All chats" with the query.
#[component]
fn SearchForm() -> impl IntoView {
    let shell = use_shell();
    view! {
        <form class="chat-search" role="search" method="get" action="/chats" on:submit=|ev| ev.prevent_default()>
            <label for="chat-search" class="visually-hidden">"Search chats"</label>
            <input
                id="chat-search"
                type="search"
                name="q"
                placeholder="Search chats"
                autocomplete="off"
                prop:value=move || shell.query.get()
                on:input=move |ev| shell.query.set(event_target_value(&ev))
            />
        </form>
    }
}

/// The conversations, grouped Today / Yesterday / Previous 7 days / Older.
/// Each deletes with an undo (a plain form post without JavaScript).
#[component]
fn ChatGroups(
    list: ChatList,
    current: Memo<String>,
    /// Whether a search is on (an empty list says so).
    searching: Signal<bool>,
    /// The "All chats" page (else the sidebar, which links to it).
    full: bool,
) -> impl IntoView {
    let shell = use_shell();
    let ChatList {
        chats,
        agents,
        more,
        now,
        ..
    } = list;
    let agents = StoredValue::new(agents);
    let chats = StoredValue::new(chats);
    let groups = move || {
        let (now, east) = match shell.east.get() {
            Some(east) => (browser_now().unwrap_or(now), east),
            None => (now, 0),
        };
        let pending = shell.pending_delete.get().map(|p| p.id);
        let deleted = shell.deleted.get();
        let mut groups: Vec<(Age, Vec<ChatListItem>)> = Vec::new();
        for chat in chats.get_value() {
            if pending.as_deref() == Some(chat.id.as_str()) || deleted.contains(&chat.id) {
                continue;
            }
            let age = Age::of(chat.updated, now, east);
            match groups.last_mut() {
                Some((last, items)) if *last == age => items.push(chat),
                _ => groups.push((age, vec![chat])),
            }
        }
        groups
    };
    let empty = move || groups().is_empty();
    view! {
        <nav class="chat-groups" aria-label="Conversations">
            <Show when=empty>
                <p class="muted">
                    {move || if searching.get() { "No chat title matches." } else { "No chats yet." }}
                </p>
            </Show>
            <For each=groups key=|(age, items)| (*age, items.iter().map(|i| i.id.clone()).collect::<Vec<_>>()) let:group>
                <section class="chat-group">
                    <h2>{group.0.label()}</h2>
                    <ul>
                        {group
                            .1
                            .into_iter()
                            .map(|chat| {
                                let agent = agents
                                    .with_value(|a| a.iter().find(|a| a.id == chat.agent_id).cloned());
                                view! { <ChatItem chat=chat agent=agent current=current/> }
                            })
                            .collect_view()}
                    </ul>
                </section>
            </For>
            {(more && !full).then(|| view! { <a class="all-chats" href="/chats">"All chats"</a> })}
            {(more && full).then(|| view! { <p class="muted">"Only the newest 1,000 are listed; search to find older ones."</p> })}
        </nav>
    }
}

#[component]
fn ChatItem(
    chat: ChatListItem,
    agent: Option<ChatListAgent>,
    current: Memo<String>,
) -> impl IntoView {
    let shell = use_shell();
    let navigate = use_navigate();
    let href = format!("/agents/{}/chat?c={}", chat.agent_id, chat.id);
    let id = chat.id.clone();
    let active = Memo::new(move |_| current.get() == id);
    let (avatar, agent_name) = agent.map(|a| (a.avatar, a.name)).unwrap_or_default();
    let hover = agent_name.clone();
    let label = format!("Delete “{}”", chat.title);
    let tip = label.clone();
    let item = StoredValue::new(chat.clone());
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let chat = item.get_value();
        let was_open = current.get_untracked() == chat.id;
        start_delete(shell, chat.clone(), was_open);
        if was_open {
            navigate(
                &format!("/agents/{}/chat", chat.agent_id),
                Default::default(),
            );
        }
    };
    view! {
        <li class:active=active data-testid="sidebar-chat">
            <a href=href aria-current=move || active.get().then_some("page") title=hover>
                <Avatar avatar=avatar name=agent_name/>
                <span class="chat-title">{chat.title.clone()}</span>
            </a>
            <form method="post" action=DeleteConversation::PATH class="chat-delete" on:submit=on_submit>
                <input type="hidden" name="id" value=chat.id.clone()/>
                <button type="submit" class="icon" aria-label=label title=tip>
                    "×"
                </button>
            </form>
        </li>
    }
}

/// The agents, each a link to a new chat with it.
#[component]
fn AgentLinks(agents: Vec<ChatListAgent>) -> impl IntoView {
    const SHOWN: usize = 8;
    let more = agents.len() > SHOWN;
    view! {
        <nav class="agent-links" aria-label="Your agents">
            <h2>"Agents"</h2>
            <ul>
                {agents
                    .into_iter()
                    .take(SHOWN)
                    .map(|a| {
                        view! {
                            <li>
                                <a href=format!("/agents/{}/chat", a.id)>
                                    <Avatar avatar=a.avatar name=a.name.clone()/>
                                    <span>{a.name}</span>
                                </a>
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
            <a href="/agents">{if more { "All agents" } else { "Manage agents" }}</a>
        </nav>
    }
}

/// How long "Undo" is offered before a conversation is really deleted.
const UNDO_SECS: u64 = 6;

/// Hides a conversation now and deletes it in a few seconds unless the
/// user takes it back. A deletion already waiting goes through at once.
pub fn start_delete(shell: Shell, chat: ChatListItem, was_open: bool) {
    commit_delete(shell, None);
    let id = chat.id.clone();
    shell.pending_delete.set(Some(PendingDelete {
        id: chat.id,
        agent_id: chat.agent_id,
        title: chat.title,
        was_open,
    }));
    focus("undo-delete");
    set_timeout(
        move || commit_delete(shell, Some(&id)),
        std::time::Duration::from_secs(UNDO_SECS),
    );
}

/// Deletes the waiting conversation (only if it is `id`, when given).
fn commit_delete(shell: Shell, id: Option<&str>) {
    let Some(pending) = shell.pending_delete.get_untracked() else {
        return;
    };
    if id.is_some_and(|id| id != pending.id) {
        return;
    }
    let toast_had_focus = toast_has_focus();
    shell.pending_delete.set(None);
    // Hidden until the list is fetched again without it.
    shell.deleted.update(|d| d.push(pending.id.clone()));
    if toast_had_focus {
        focus("chat-search");
    }
    leptos::task::spawn_local(async move {
        let _ = super::api::delete_conversation(pending.id).await;
        shell.chats_changed.update(|n| *n += 1);
    });
}

fn toast_has_focus() -> bool {
    #[cfg(feature = "hydrate")]
    {
        web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.active_element())
            .is_some_and(|e| e.id() == "undo-delete")
    }
    #[cfg(not(feature = "hydrate"))]
    false
}

/// Sends a waiting deletion as the page goes away (a reload, another site):
/// `keepalive` lets the request finish after the page is gone.
#[cfg(feature = "hydrate")]
fn flush_on_pagehide(shell: Shell) {
    let listener = window_event_listener(leptos::ev::pagehide, move |_| {
        let Some(pending) = shell.pending_delete.try_get_untracked().flatten() else {
            return;
        };
        let Ok(headers) = web_sys::Headers::new() else {
            return;
        };
        let _ = headers.set("Content-Type", "application/x-www-form-urlencoded");
        let init = web_sys::RequestInit::new();
        init.set_method("POST");
        // Not in web-sys's RequestInit yet; the browser reads it.
        let _ = js_sys::Reflect::set(&init, &"keepalive".into(), &true.into());
        init.set_headers(&headers);
        init.set_body(&wasm_bindgen::JsValue::from_str(&format!(
            "id={}",
            pending.id
        )));
        if let Some(window) = web_sys::window() {
            let _ = window.fetch_with_str_and_init(DeleteConversation::PATH, &init);
        }
    });
    on_cleanup(move || listener.remove());
}

/// "Deleted “…”. Undo": a polite status, present (empty) before it speaks.
#[component]
fn UndoToast() -> impl IntoView {
    let shell = use_shell();
    let navigate = use_navigate();
    #[cfg(feature = "hydrate")]
    flush_on_pagehide(shell);
    let undo = move |_| {
        if let Some(pending) = shell.pending_delete.get_untracked() {
            shell.pending_delete.set(None);
            if pending.was_open {
                navigate(
                    &format!("/agents/{}/chat?c={}", pending.agent_id, pending.id),
                    Default::default(),
                );
            }
            focus("chat-search");
        }
    };
    view! {
        <div class="toast-region" role="status">
            {move || {
                shell
                    .pending_delete
                    .get()
                    .map(|p| {
                        view! {
                            <div class="toast" data-testid="undo-toast">
                                <span>{format!("Deleted “{}”.", p.title)}</span>
                                <button type="button" id="undo-delete" on:click=undo.clone()>
                                    "Undo"
                                </button>
                            </div>
                        }
                    })
            }}
        </div>
    }
}

fn open_help() {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        if let Some(dialog) = web_sys::window()
            .and_then(|w| w.document())
            .and_then(|d| d.get_element_by_id("shortcuts"))
            .and_then(|e| e.dyn_into::<web_sys::HtmlDialogElement>().ok())
            && !dialog.open()
        {
            let _ = dialog.show_modal();
        }
    }
}

/// The keyboard shortcuts, listed (`?` opens it).
#[component]
fn ShortcutsHelp() -> impl IntoView {
    view! {
        <dialog id="shortcuts" class="shortcuts" aria-labelledby="shortcuts-title">
            <h2 id="shortcuts-title">"Keyboard shortcuts"</h2>
            <dl>
                <dt><kbd>"Ctrl"</kbd>" / "<kbd>"⌘"</kbd>" + "<kbd>"K"</kbd></dt>
                <dd>"Search chats"</dd>
                <dt><kbd>"Ctrl"</kbd>" / "<kbd>"⌘"</kbd>" + "<kbd>"Shift"</kbd>" + "<kbd>"O"</kbd></dt>
                <dd>"New chat"</dd>
                <dt><kbd>"Esc"</kbd></dt>
                <dd>"Stop the reply being written"</dd>
                <dt><kbd>"Enter"</kbd></dt>
                <dd>"Send the message (Shift + Enter: a new line)"</dd>
                <dt><kbd>"?"</kbd></dt>
                <dd>"This list"</dd>
            </dl>
            <form method="dialog">
                <button type="submit" autofocus=true>"Close"</button>
            </form>
        </dialog>
    }
}

/// The shortcuts, while a page with the sidebar is open.
fn shortcuts(shell: Shell) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let navigate = use_navigate();
        let listener =
            window_event_listener(leptos::ev::keydown, move |ev: web_sys::KeyboardEvent| {
                let command = ev.ctrl_key() || ev.meta_key();
                let key = ev.key().to_lowercase();
                let typing = ev
                    .target()
                    .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
                    .is_some_and(|e| {
                        matches!(e.tag_name().as_str(), "INPUT" | "TEXTAREA" | "SELECT")
                            || e.has_attribute("contenteditable")
                    });
                if command && !ev.shift_key() && key == "k" {
                    ev.prevent_default();
                    if is_narrow() {
                        shell.drawer.set(true);
                    } else {
                        shell.hidden.set(false);
                    }
                    focus("chat-search");
                } else if command && ev.shift_key() && key == "o" {
                    ev.prevent_default();
                    if let Some(agent) = selected_agent() {
                        navigate(&format!("/agents/{agent}/chat"), Default::default());
                        focus("composer-message");
                    }
                } else if key == "escape" && !ev.default_prevented() {
                    if shell.drawer.get_untracked() {
                        shell.drawer.set(false);
                        focus("sidebar-toggle");
                    } else if let Some(stop) = web_sys::window()
                        .and_then(|w| w.document())
                        .and_then(|d| d.query_selector("button.stop").ok().flatten())
                        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
                    {
                        ev.prevent_default();
                        stop.click();
                    }
                } else if ev.key() == "?" && !typing && !command {
                    ev.prevent_default();
                    open_help();
                }
            });
        on_cleanup(move || listener.remove());
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = shell;
}

/// `/chats`: every conversation, with a search that works without
/// JavaScript (`?q=`).
#[component]
pub fn ChatsPage() -> impl IntoView {
    let query = use_query_map();
    let q = Memo::new(move |_| query.read().get("q").unwrap_or_default());
    let shell = use_shell();
    let list = Resource::new(
        move || (q.get(), shell.chats_changed.get()),
        |(q, _)| list_chats((!q.trim().is_empty()).then_some(q), Some(true)),
    );
    let current = Memo::new(|_| String::new());
    let searching = Signal::derive(move || !q.get().trim().is_empty());
    view! {
        <Title text="All chats"/>
        <RequireUser>
            <h1>"All chats"</h1>
            <form class="search" role="search" method="get" action="/chats">
                <label for="all-chats-search">"Search titles"</label>
                <input id="all-chats-search" type="search" name="q" value=move || q.get()/>
                <button type="submit">"Search"</button>
            </form>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match list.await {
                        Ok(l) => Either::Left(view! { <ChatGroups list=l current=current searching=searching full=true/> }),
                        Err(err) => Either::Right(crate::ui::error_view(err)),
                    }
                })}
            </Transition>
        </RequireUser>
    }
}

/// `/chat/new?agent=…`: "New chat" without JavaScript; goes to the agent's
/// chat (the chat page checks the agent is the user's).
#[component]
pub fn NewChatPage() -> impl IntoView {
    let query = use_query_map();
    let target = move || {
        let agent = query.read().get("agent").unwrap_or_default();
        if !agent.is_empty() && agent.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            format!("/agents/{agent}/chat")
        } else {
            "/agents".to_owned()
        }
    };
    view! {
        <Title text="New chat"/>
        <RequireUser>
            <Redirect path=target()/>
        </RequireUser>
    }
}
