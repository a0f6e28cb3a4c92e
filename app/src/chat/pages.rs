//! The chat page: `/agents/{id}/chat`, and `?c={conversation}` for one
//! conversation. Sending posts a form (so it works without JavaScript too);
//! a reply that is still being written is followed over server-sent events
//! and rendered as sanitised Markdown as it grows.

use leptos::{either::Either, html, prelude::*};
use leptos_meta::Title;
use leptos_router::hooks::{use_location, use_navigate, use_params_map};

use super::{
    ChatListItem, FileView, MessageStatus, MessageView, ReplyPart, ToolCallView, ToolStatus,
    api::{
        DecideToolCall, DeleteConversation, EditMessage, RegenerateReply, RenameConversation,
        SendMessage, StopReply, get_conversation, remove_unsent_file, unsent_files,
    },
    sidebar::{focus, start_delete, use_shell},
};
use crate::{
    action_error,
    agents::api::get_agent,
    ui::{
        FormError, RequireUser, avatar::Avatar, field_message, markdown, not_found_or, size_label,
    },
};
use leptos::server_fn::ServerFn;

pub type SendMessageAction = ServerAction<SendMessage>;
pub type StopReplyAction = ServerAction<StopReply>;
pub type RegenerateAction = ServerAction<RegenerateReply>;
pub type EditAction = ServerAction<EditMessage>;
pub type RenameAction = ServerAction<RenameConversation>;
pub type DecideAction = ServerAction<DecideToolCall>;

/// The actions a message offers, passed down together.
#[derive(Clone, Copy)]
struct MessageActions {
    stop: StopReplyAction,
    regenerate: RegenerateAction,
    edit: EditAction,
    decide: DecideAction,
}

#[component]
pub fn ChatPage() -> impl IntoView {
    view! {
        <Title text="Chat"/>
        <RequireUser>
            <Chat/>
        </RequireUser>
    }
}

#[component]
fn Chat() -> impl IntoView {
    let params = use_params_map();
    // The router's own location, not the route's: leptos_router 0.8 updates
    // a route's query only when its path stays the same, so going from one
    // agent's conversation to another's (the sidebar) would keep the old one.
    let query = use_location().query;
    let agent_id = Memo::new(move |_| params.read().get("id").unwrap_or_default());
    let conversation_id = Memo::new(move |_| query.read().get("c").unwrap_or_default());
    let before = Memo::new(move |_| query.read().get("before"));

    // Files attached for the next message: `?files=a,b` (the attach form
    // goes back to the page with them, with or without JavaScript).
    let files = Memo::new(move |_| query.read().get("files").unwrap_or_default());
    let send = SendMessageAction::new();
    let stop = StopReplyAction::new();
    let regenerate = RegenerateAction::new();
    let edit = EditAction::new();
    let rename = RenameAction::new();
    let decide = DecideAction::new();
    let shell = use_shell();
    // The sidebar lists conversations newest first: a message sent (maybe
    // making one) or a new title shows there.
    Effect::new(move |previous: Option<(usize, usize)>| {
        let now = (send.version().get(), rename.version().get());
        if previous.is_some_and(|p| p != now) {
            shell.chats_changed.update(|n| *n += 1);
        }
        now
    });
    // What a screen reader hears of a reply: that it started and how it
    // ended, not every word as it comes.
    let announce = Announcer(RwSignal::new(String::new()));
    provide_context(announce);
    follow_scroll();
    // Sending is wanting to see the answer: follow again.
    let away = expect_context::<Away>();
    Effect::new(move |previous: Option<usize>| {
        let now = send.version().get();
        if previous.is_some_and(|p| p != now) {
            away.0.set(false);
        }
        now
    });
    // A stopped reply loses its Stop button, which had the focus: the
    // composer takes it.
    Effect::new(move |previous: Option<usize>| {
        let now = stop.version().get();
        if previous.is_some_and(|p| p != now) {
            focus("composer-message");
        }
        now
    });
    let actions = MessageActions {
        stop,
        regenerate,
        edit,
        decide,
    };
    let agent = Resource::new(move || agent_id.get(), get_agent);
    // Each action that changes what is shown makes the conversation fetch again.
    let conversation = Resource::new(
        move || {
            let changes = (
                send.version().get(),
                regenerate.version().get(),
                edit.version().get(),
                decide.version().get(),
            );
            (conversation_id.get(), before.get(), changes)
        },
        |(id, before, _)| async move {
            if id.is_empty() {
                Ok(None)
            } else {
                get_conversation(id, before).await.map(Some)
            }
        },
    );
    // A first message makes a conversation: go to it; a message that took
    // attached files leaves none attached. (Without JavaScript the server's
    // redirect does this; in the app the route stays and only the query
    // changes, which the redirect hook does not apply.)
    let navigate = use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(sent)) = send.value().get()
            && (sent.conversation_id != conversation_id.get_untracked()
                || !files.get_untracked().is_empty())
        {
            navigate(
                &format!(
                    "/agents/{}/chat?c={}",
                    agent_id.get_untracked(),
                    sent.conversation_id
                ),
                Default::default(),
            );
        }
    });
    view! {
        <div class="chat">
            <section class="chat-main">
                <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        match agent.await {
                            Err(err) => Either::Left(not_found_or(err)),
                            Ok(agent) => {
                                let starters = agent.spec.starters.clone();
                                let agent_href = format!("/agents/{}", agent.id);
                                Either::Right(view! {
                                    <header class="chat-head">
                                        <Avatar avatar=agent.spec.avatar.clone() name=agent.spec.name.clone()/>
                                        <h1>{agent.spec.name.clone()}</h1>
                                        <a href=agent_href>"Agent settings"</a>
                                    </header>
                                    <Transition fallback=|| ()>
                                        {move || {
                                            let starters = starters.clone();
                                            Suspend::new(async move {
                                                match conversation.await {
                                                    Ok(Some(c)) => Either::Left(view! {
                                                        <ConversationView
                                                            conversation=c
                                                            actions=actions
                                                            rename=rename
                                                            paged=before.get_untracked().is_some()
                                                        />
                                                    }),
                                                    Ok(None) => Either::Right(Either::Left(view! {
                                                        <Starters starters=starters send=send agent_id=agent_id/>
                                                    })),
                                                    Err(err) => Either::Right(Either::Right(view! {
                                                        <p class="form-error" role="alert">{err.to_string()}</p>
                                                    })),
                                                }
                                            })
                                        }}
                                    </Transition>
                                })
                            }
                        }
                    })}
                </Transition>
                <p class="visually-hidden" role="status" data-testid="reply-status">{move || announce.0.get()}</p>
                <div class="composer-bar">
                    <JumpToLatest/>
                    <Composer send=send agent_id=agent_id conversation_id=conversation_id files=files/>
                </div>
            </section>
        </div>
    }
}

/// What the page tells screen readers about replies (a polite status).
#[derive(Clone, Copy)]
struct Announcer(RwSignal<String>);

/// Whether the reader has scrolled up from the newest message; set by the
/// page's scroll, read by "Jump to latest".
#[derive(Clone, Copy)]
struct Away(RwSignal<bool>);

/// How close to the end counts as "at the newest message" (pixels).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
const NEAR_END: f64 = 120.0;

/// Whether the page is scrolled to (about) its end.
#[cfg(feature = "hydrate")]
fn at_end() -> bool {
    let Some(window) = web_sys::window() else {
        return true;
    };
    let Some(root) = window.document().and_then(|d| d.document_element()) else {
        return true;
    };
    let seen = window.scroll_y().unwrap_or(0.0)
        + window
            .inner_height()
            .ok()
            .and_then(|h| h.as_f64())
            .unwrap_or(0.0);
    seen >= f64::from(root.scroll_height()) - NEAR_END
}

/// Scrolls to the newest message once what just changed is drawn, unless
/// the reader has scrolled away meanwhile (`away`).
fn to_end(away: Option<Away>) {
    #[cfg(feature = "hydrate")]
    request_animation_frame(move || {
        if away.is_some_and(|a| a.0.try_get_untracked().unwrap_or(false)) {
            return;
        }
        if let Some(window) = web_sys::window()
            && let Some(root) = window.document().and_then(|d| d.document_element())
        {
            window.scroll_to_with_x_and_y(0.0, f64::from(root.scroll_height()));
        }
    });
    #[cfg(not(feature = "hydrate"))]
    let _ = away;
}

/// Follows a growing reply: the page stays at the newest message while the
/// reader is there, and stays put (offering "Jump to latest") once they
/// scroll up.
fn follow_scroll() {
    let away = Away(RwSignal::new(false));
    provide_context(away);
    #[cfg(feature = "hydrate")]
    {
        let listener = window_event_listener(leptos::ev::scroll, move |_| {
            away.0.try_set(!at_end());
        });
        on_cleanup(move || listener.remove());
    }
}

/// Keeps the newest message in view while the reader follows (has not
/// scrolled up, which the page's scroll sets in `away`).
#[cfg(feature = "hydrate")]
fn keeping_end(away: Option<Away>, change: impl FnOnce()) {
    change();
    if !away.is_some_and(|a| a.0.try_get_untracked().unwrap_or(false)) {
        to_end(away);
    }
}

#[component]
fn JumpToLatest() -> impl IntoView {
    let away = expect_context::<Away>();
    view! {
        <button
            type="button"
            class="jump-latest"
            class:shown=move || away.0.get()
            aria-hidden=move || (!away.0.get()).to_string()
            tabindex=move || if away.0.get() { "0" } else { "-1" }
            on:click=move |_| {
                away.0.set(false);
                to_end(Some(away));
                focus("composer-message");
            }
        >
            "Jump to latest ↓"
        </button>
    }
}

#[component]
fn Starters(
    starters: Vec<String>,
    send: SendMessageAction,
    agent_id: Memo<String>,
) -> impl IntoView {
    view! {
        <div class="starters">
            <p class="muted">"Start a conversation."</p>
            {starters
                .into_iter()
                .map(|s| {
                    view! {
                        <ActionForm action=send attr:class="inline">
                            <input type="hidden" name="agent_id" value=move || agent_id.get()/>
                            <input type="hidden" name="message" value=s.clone()/>
                            <button type="submit" class="starter">{s.clone()}</button>
                        </ActionForm>
                    }
                })
                .collect_view()}
        </div>
    }
}

#[component]
fn ConversationView(
    conversation: super::ConversationView,
    actions: MessageActions,
    rename: RenameAction,
    paged: bool,
) -> impl IntoView {
    let shell = use_shell();
    let navigate = use_navigate();
    // Opened at the newest message, as chat apps do (not a page of older ones).
    if !paged {
        let away = use_context::<Away>();
        Effect::new(move |_| to_end(away));
    }
    let item = ChatListItem {
        id: conversation.id.clone(),
        agent_id: conversation.agent_id.clone(),
        title: conversation.title.clone(),
        updated: 0,
    };
    let on_delete = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        start_delete(shell, item.clone(), true);
        navigate(
            &format!("/agents/{}/chat", item.agent_id),
            Default::default(),
        );
    };
    let rename_error = action_error!(rename);
    let base = format!(
        "/agents/{}/chat?c={}",
        conversation.agent_id, conversation.id
    );
    let earlier = conversation
        .has_more
        .then(|| {
            conversation
                .messages
                .first()
                .map(|m| format!("{base}&before={}", m.id))
        })
        .flatten();
    let last_index = conversation.messages.len().saturating_sub(1);
    let (id_rename, id_delete, id_regen) = (
        conversation.id.clone(),
        conversation.id.clone(),
        conversation.id.clone(),
    );
    view! {
        <div class="conversation-tools">
            // The title is the form: edit it and press Enter (or Save).
            <ActionForm action=rename attr:class="rename">
                <input type="hidden" name="id" value=id_rename/>
                <label for="conversation-title" class="visually-hidden">"Conversation title"</label>
                <input
                    id="conversation-title"
                    name="title"
                    class="title-input"
                    value=conversation.title.clone()
                    maxlength=super::TITLE_MAX_CHARS
                    required
                    aria-describedby="conversation-title-error"
                />
                <button type="submit">"Save"</button>
            </ActionForm>
            <small class="expires muted" data-testid="expires">
                "Kept until " <time>{conversation.expires_on.clone()}</time>
            </small>
            <form method="post" action=DeleteConversation::PATH class="inline" on:submit=on_delete>
                <input type="hidden" name="id" value=id_delete/>
                <button type="submit" class="danger">"Delete conversation"</button>
            </form>
            <p class="field-error" id="conversation-title-error">{field_message(rename_error, "title")}</p>
        </div>
        {earlier.map(|href| view! { <a class="page-link" href=href>"Load earlier messages"</a> })}
        <ol class="messages" id="messages" on:click=copy_code>
            {conversation
                .messages
                .into_iter()
                .enumerate()
                .map(|(i, m)| {
                    let last = i == last_index;
                    view! { <Message message=m actions=actions last=last conversation_id=id_regen.clone()/> }
                })
                .collect_view()}
        </ol>
        {paged.then(|| view! { <a class="page-link" href=base.clone()>"Back to the latest messages"</a> })}
    }
}

/// Copies the code next to a clicked "Copy" button (one handler for all).
fn copy_code(ev: leptos::ev::MouseEvent) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        let Some(button) = ev
            .target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        else {
            return;
        };
        if !button.class_list().contains("copy") {
            return;
        }
        let code = button
            .parent_element()
            .and_then(|block| block.query_selector("code").ok().flatten())
            .and_then(|code| code.text_content())
            .unwrap_or_default();
        if let Some(window) = web_sys::window() {
            let _ = window.navigator().clipboard().write_text(&code);
            button.set_text_content(Some("Copied"));
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = ev;
}

#[component]
fn Message(
    message: MessageView,
    actions: MessageActions,
    last: bool,
    conversation_id: String,
) -> impl IntoView {
    let MessageActions {
        stop,
        regenerate,
        edit,
        decide,
    } = actions;
    let body = RwSignal::new(message.body.clone());
    let parts = RwSignal::new(if message.parts.is_empty() {
        vec![ReplyPart::Text {
            text: message.body.clone(),
        }]
    } else {
        message.parts.clone()
    });
    let status = RwSignal::new(message.status);
    let error = RwSignal::new(message.error.clone());
    let usage = RwSignal::new((message.input_tokens, message.output_tokens));
    let is_user = message.role == "user";
    if !is_user && message.status == MessageStatus::Streaming {
        let announce = use_context::<Announcer>();
        if let Some(announce) = announce {
            announce.0.set("The agent is writing a reply.".to_owned());
        }
        follow(
            message.id.clone(),
            Following {
                parts,
                status,
                error,
                usage,
                away: use_context::<Away>(),
                announce,
            },
        );
    }
    // Copy needs the page live (the clipboard is a browser's).
    let live = RwSignal::new(false);
    Effect::new(move |_| live.set(true));
    let copied = RwSignal::new(false);
    #[cfg_attr(not(feature = "hydrate"), allow(unused_variables))]
    let copy_text = move || {
        if is_user {
            body.get_untracked()
        } else {
            parts.with_untracked(|p| ReplyPart::text_of(p))
        }
    };
    let model = message.model.clone().unwrap_or_default();
    let id = message.id.clone();
    view! {
        <li
            class=if is_user { "message user" } else { "message assistant" }
            data-status=move || status.get().as_str()
            data-id=message.id.clone()
            data-testid=if is_user { "user-message" } else { "assistant-message" }
        >
            {if is_user {
                let files = message.files.clone();
                Either::Left(view! {
                    <p class="plain">{move || body.get()}</p>
                    {(!files.is_empty())
                        .then(|| {
                            view! {
                                <ul class="attachments" aria-label="Attached files">
                                    {files
                                        .into_iter()
                                        .map(|f| view! { <li data-testid="message-file"><FileChip file=f/></li> })
                                        .collect_view()}
                                </ul>
                            }
                        })}
                })
            } else {
                Either::Right(view! { <ReplyParts parts=parts message_id=message.id.clone() decide=decide/> })
            }}
            {move || {
                (matches!(status.get(), MessageStatus::Streaming | MessageStatus::AwaitingApproval)
                    && !is_user)
                    .then(|| {
                        let id = id.clone();
                        view! {
                            <ActionForm action=stop attr:class="inline">
                                <input type="hidden" name="message_id" value=id/>
                                <button type="submit" class="stop">"Stop"</button>
                            </ActionForm>
                        }
                    })
            }}
            {move || {
                error.get().map(|e| view! { <p class="message-error" role="alert">{e}</p> })
            }}
            {move || {
                (status.get() == MessageStatus::Stopped).then(|| view! { <p class="muted">"Stopped."</p> })
            }}
            <div class="message-actions">
                {move || {
                    (live.get() && !matches!(status.get(), MessageStatus::Streaming))
                        .then(|| {
                            view! {
                                <button
                                    type="button"
                                    class="action"
                                    on:click=move |_| {
                                        #[cfg(feature = "hydrate")]
                                        if let Some(window) = web_sys::window() {
                                            let _ = window.navigator().clipboard().write_text(&copy_text());
                                        }
                                        copied.set(true);
                                    }
                                >
                                    {move || {
                                        match (copied.get(), is_user) {
                                            (true, _) => "Copied",
                                            (false, true) => "Copy message",
                                            (false, false) => "Copy reply",
                                        }
                                    }}
                                </button>
                            }
                        })
                }}
                {
                    let conversation_id = conversation_id.clone();
                    move || {
                        (!is_user
                            && last
                            && !matches!(status.get(), MessageStatus::Streaming | MessageStatus::AwaitingApproval))
                            .then(|| {
                                let conversation_id = conversation_id.clone();
                                view! {
                                    <ActionForm action=regenerate attr:class="inline">
                                        <input type="hidden" name="conversation_id" value=conversation_id/>
                                        <button type="submit" class="action">"Regenerate"</button>
                                        <FormError error=action_error!(regenerate)/>
                                        <p class="field-error">{field_message(action_error!(regenerate), "message")}</p>
                                    </ActionForm>
                                }
                            })
                    }
                }
                {is_user
                    .then(|| {
                        let text = message.body.clone();
                        let id = message.id.clone();
                        view! {
                            <details class="edit">
                                <summary class="action">"Edit"</summary>
                                <ActionForm action=edit>
                                    <FormError error=action_error!(edit)/>
                                    <p class="field-error">{field_message(action_error!(edit), "message")}</p>
                                    <input type="hidden" name="message_id" value=id/>
                                    <textarea name="message" aria-label="Edited message" rows="3">{text}</textarea>
                                    <button type="submit">"Save and resend"</button>
                                </ActionForm>
                            </details>
                        }
                    })}
            </div>
            {(!is_user)
                .then(|| {
                    let model = model.clone();
                    view! {
                        <p class="usage muted">
                            {move || match usage.get() {
                                (Some(i), Some(o)) => format!("{model} · {i} in, {o} out tokens"),
                                _ => model.clone(),
                            }}
                        </p>
                    }
                })}
        </li>
    }
}

/// Applies one stream update to the parts a page shows.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn apply(parts: &mut Vec<ReplyPart>, update: super::StreamUpdate) {
    use super::StreamUpdate;
    match update {
        StreamUpdate::Snapshot { text, parts: all } => {
            *parts = if all.is_empty() {
                vec![ReplyPart::Text { text }]
            } else {
                all
            };
        }
        StreamUpdate::Delta { text } => match parts.last_mut() {
            Some(ReplyPart::Text { text: last }) => last.push_str(&text),
            _ => parts.push(ReplyPart::Text { text }),
        },
        StreamUpdate::Part { index, part } => {
            if index < parts.len() {
                parts[index] = part;
            } else {
                parts.push(part);
            }
        }
        StreamUpdate::Done { .. } => {}
    }
}

/// What a followed reply updates on the page.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
struct Following {
    parts: RwSignal<Vec<ReplyPart>>,
    status: RwSignal<MessageStatus>,
    error: RwSignal<Option<String>>,
    usage: RwSignal<(Option<u32>, Option<u32>)>,
    away: Option<Away>,
    announce: Option<Announcer>,
}

/// Follows a reply that is still being written (in the browser only).
#[cfg(feature = "hydrate")]
fn follow(id: String, page: Following) {
    let Following {
        parts,
        status,
        error,
        usage,
        away,
        announce,
    } = page;
    use wasm_bindgen::{JsCast, closure::Closure};

    use super::StreamUpdate;

    let Ok(source) = web_sys::EventSource::new(&format!("/api/chat/stream/{id}")) else {
        return;
    };
    let closer = source.clone();
    // One connection per live reply, closed with the message that opened it:
    // a re-rendered page must not pile up open streams (browsers allow six
    // per host, after which every request waits).
    let on_message =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            let Some(data) = event.data().as_string() else {
                return;
            };
            match serde_json::from_str::<StreamUpdate>(&data) {
                Ok(StreamUpdate::Done {
                    status: done,
                    error: reason,
                    input_tokens,
                    output_tokens,
                }) => {
                    keeping_end(away, || {
                        status.try_set(done);
                        error.try_set(reason);
                        usage.try_set((input_tokens, output_tokens));
                    });
                    if let Some(announce) = announce {
                        announce.0.try_set(
                            match done {
                                MessageStatus::Complete => "The reply is complete.",
                                MessageStatus::Stopped => "The reply was stopped.",
                                MessageStatus::AwaitingApproval => {
                                    "The agent asks for your approval to use a tool."
                                }
                                MessageStatus::Streaming => "The agent is writing a reply.",
                                MessageStatus::Interrupted => "The reply was interrupted.",
                            }
                            .to_owned(),
                        );
                    }
                    // Otherwise EventSource would reconnect once the server closes.
                    closer.close();
                }
                Ok(update) => {
                    keeping_end(away, || {
                        parts.try_update(|parts| apply(parts, update));
                    });
                }
                Err(_) => {}
            }
        });
    for name in ["snapshot", "delta", "part", "done"] {
        let _ = source.add_event_listener_with_callback(name, on_message.as_ref().unchecked_ref());
    }
    let owned = send_wrapper::SendWrapper::new((source, on_message));
    on_cleanup(move || {
        let (source, on_message) = owned.take();
        source.close();
        drop(on_message);
    });
}

#[cfg(not(feature = "hydrate"))]
fn follow(_id: String, _page: Following) {}

/// How much of a tool's result shows before "Show all".
const RESULT_PREVIEW_CHARS: usize = 1_200;

/// A reply's parts in order: each planning step as Markdown, each tool call
/// as a collapsible box (tool, status, duration; arguments and result
/// inside). Parts are keyed by position (a reply only grows), so an open box
/// stays open while the reply streams.
#[component]
fn ReplyParts(
    parts: RwSignal<Vec<ReplyPart>>,
    message_id: String,
    decide: DecideAction,
) -> impl IntoView {
    let message_id = StoredValue::new(message_id);
    view! {
        <For each=move || 0..parts.with(Vec::len) key=|index| *index let:index>
            {move || match parts.with(|p| p.get(index).cloned()) {
                Some(ReplyPart::Text { text }) => {
                    Either::Left(view! { <div class="markdown" inner_html=markdown::render(&text)></div> })
                }
                Some(ReplyPart::ToolCall(call)) => {
                    Either::Right(Either::Left(view! {
                        <ToolCallBox call=call message_id=message_id.get_value() decide=decide/>
                    }))
                }
                // Shown after the reply (below).
                Some(ReplyPart::Sources { .. }) | None => Either::Right(Either::Right(())),
            }}
        </For>
        <SourcesList parts=parts/>
    }
}

/// The passages a reply was given, numbered as it cites them; each opens
/// its passage (with its document and place).
#[component]
fn SourcesList(parts: RwSignal<Vec<ReplyPart>>) -> impl IntoView {
    let sources = move || {
        parts.with(|p| {
            p.iter()
                .find_map(|part| match part {
                    ReplyPart::Sources { sources } => Some(sources.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        })
    };
    view! {
        <Show when=move || !sources().is_empty()>
            <aside class="sources" aria-label="Sources" data-testid="sources">
                <p class="muted">"Sources"</p>
                <ol>
                    {move || {
                        sources()
                            .into_iter()
                            .map(|c| {
                                let href = format!("/knowledge/passages/{}", c.chunk_id);
                                let place = (!c.location.is_empty()).then(|| format!(" · {}", c.location));
                                view! {
                                    <li value=c.n.to_string() data-testid="citation">
                                        <a href=href>{c.document}</a>
                                        <span class="muted">{place}</span>
                                    </li>
                                }
                            })
                            .collect_view()
                    }}
                </ol>
            </aside>
        </Show>
    }
}

#[component]
fn ToolCallBox(call: ToolCallView, message_id: String, decide: DecideAction) -> impl IntoView {
    let show_all = RwSignal::new(false);
    let waiting = call.status == ToolStatus::AwaitingApproval;
    let decide_error = action_error!(decide);
    let status = call.status.as_str();
    let label = match call.status {
        ToolStatus::Running => "running…",
        ToolStatus::Done => "done",
        ToolStatus::Failed => "failed",
        ToolStatus::Cancelled => "cancelled",
        ToolStatus::AwaitingApproval => "waiting for your approval",
        ToolStatus::Approved => "approved",
        ToolStatus::Denied => "denied",
    };
    let duration = call
        .duration_ms
        .map(|ms| format!(" · {ms} ms"))
        .unwrap_or_default();
    let result = call.result.clone().unwrap_or_default();
    let long = result.chars().count() > RESULT_PREVIEW_CHARS;
    let preview: String = result.chars().take(RESULT_PREVIEW_CHARS).collect();
    view! {
        <details class="tool-call" data-status=status data-testid="tool-call" open=waiting>
            <summary>
                <span class="tool-name">{call.tool.clone()}</span>
                <span class="tool-status">{format!(" · {label}{duration}")}</span>
            </summary>
            <p class="tool-label">"Arguments"</p>
            <pre class="tool-arguments">{call.arguments.clone()}</pre>
            {waiting
                .then(|| {
                    let (message_id, call_id) = (message_id.clone(), call.id.clone());
                    view! {
                        <ActionForm action=decide attr:class="approval">
                            <p>"This tool acts on your behalf. Run it with these arguments?"</p>
                            <FormError error=decide_error/>
                            <input type="hidden" name="message_id" value=message_id/>
                            <input type="hidden" name="call_id" value=call_id/>
                            <button type="submit" name="decision" value="approve" class="primary">"Approve"</button>
                            " "
                            <button type="submit" name="decision" value="deny">"Deny"</button>
                        </ActionForm>
                    }
                })}
            {call.error.clone().map(|e| view! { <p class="message-error">{e}</p> })}
            {(!result.is_empty())
                .then(|| {
                    view! {
                        <p class="tool-label">"Result"</p>
                        <pre class="tool-result">
                            {move || if show_all.get() || !long { result.clone() } else { format!("{preview}…") }}
                        </pre>
                        {long
                            .then(|| {
                                view! {
                                    <button
                                        type="button"
                                        class="link"
                                        on:click=move |_| show_all.update(|s| *s = !*s)
                                    >
                                        {move || if show_all.get() { "Show less" } else { "Show all" }}
                                    </button>
                                }
                            })}
                    }
                })}
        </details>
    }
}

/// A file's name, kind and size.
#[component]
fn FileChip(file: FileView) -> impl IntoView {
    view! {
        <span class="file-name">{file.name.clone()}</span>
        <span class="muted">{format!(" {} · {}", file.kind.label(), size_label(file.size_bytes))}</span>
    }
}

/// The chat page's address with these files attached (none: the plain
/// conversation).
fn chat_url(agent: &str, conversation: &str, files: &[&str]) -> String {
    let mut url = format!("/agents/{agent}/chat");
    let mut query = Vec::new();
    if !conversation.is_empty() {
        query.push(format!("c={conversation}"));
    }
    if !files.is_empty() {
        query.push(format!("files={}", files.join(",")));
    }
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }
    url
}

/// The files attached for the next message and not sent yet.
type Unsent = Resource<Result<Vec<FileView>, crate::error::AppError>>;

/// Sends the attach form and asks for JSON: the files now attached, or the
/// reason none were.
#[cfg(feature = "hydrate")]
async fn attach(data: Result<web_sys::FormData, ()>) -> Result<Vec<FileView>, String> {
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    let failed = || "The files could not be sent; check your connection and try again.".to_owned();
    let data = data.map_err(|_| failed())?;
    let headers = web_sys::Headers::new().map_err(|_| failed())?;
    headers
        .set("Accept", "application/json")
        .map_err(|_| failed())?;
    let init = web_sys::RequestInit::new();
    init.set_method("POST");
    init.set_body(&data);
    init.set_headers(&headers);
    let window = web_sys::window().ok_or_else(failed)?;
    let response: web_sys::Response =
        JsFuture::from(window.fetch_with_str_and_init("/chat/files", &init))
            .await
            .map_err(|_| failed())?
            .dyn_into()
            .map_err(|_| failed())?;
    let text = JsFuture::from(response.text().map_err(|_| failed())?)
        .await
        .map_err(|_| failed())?
        .as_string()
        .unwrap_or_default();
    if response.ok() {
        serde_json::from_str(&text).map_err(|_| failed())
    } else if text.is_empty() {
        Err(failed())
    } else {
        Err(text)
    }
}

/// Attaching files for the next message: a plain multipart form that goes
/// back to the chat with them; with JavaScript, choosing files sends them
/// at once and the page stays (so does the draft).
#[component]
fn AttachForm(
    agent_id: Memo<String>,
    conversation_id: Memo<String>,
    unsent: Unsent,
) -> impl IntoView {
    let form = NodeRef::<html::Form>::new();
    let error = RwSignal::new(None::<String>);
    let busy = RwSignal::new(false);
    let live = RwSignal::new(false);
    Effect::new(move |_| live.set(true));
    let navigate = use_navigate();
    let go = StoredValue::new(move |files: Vec<FileView>| {
        let ids: Vec<&str> = files.iter().map(|f| f.id.as_str()).collect();
        navigate(
            &chat_url(
                &agent_id.get_untracked(),
                &conversation_id.get_untracked(),
                &ids,
            ),
            leptos_router::NavigateOptions {
                replace: true,
                scroll: false,
                ..Default::default()
            },
        );
    });
    let send_now = move || {
        #[cfg(feature = "hydrate")]
        if let Some(el) = form.get_untracked()
            && !busy.get_untracked()
        {
            // Read before the input is disabled: a disabled input sends nothing.
            let data = web_sys::FormData::new_with_form(&el).map_err(|_| ());
            busy.set(true);
            error.set(None);
            leptos::task::spawn_local(async move {
                let result = attach(data).await;
                busy.set(false);
                // The chosen files are sent (or refused): choose afresh.
                el.reset();
                match result {
                    Ok(files) => go.with_value(|go| go(files)),
                    Err(why) => error.set(Some(why)),
                }
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (form, go);
    };
    view! {
        <form
            class="attach"
            method="post"
            action="/chat/files"
            enctype="multipart/form-data"
            node_ref=form
            on:submit=move |ev| {
                ev.prevent_default();
                send_now();
            }
        >
            <input type="hidden" name="agent_id" value=move || agent_id.get()/>
            <input type="hidden" name="conversation_id" value=move || conversation_id.get()/>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    unsent
                        .await
                        .unwrap_or_default()
                        .into_iter()
                        .map(|f| view! { <input type="hidden" name="files[]" value=f.id/> })
                        .collect_view()
                })}
            </Transition>
            <label for="attach-input">"Attach files"</label>
            <input
                id="attach-input"
                type="file"
                name="upload"
                multiple=true
                accept=".txt,.md,.markdown,.pdf,.docx,.html,.htm,.csv,.tsv,.json,text/*,application/pdf,application/json"
                aria-describedby="attach-hint attach-error"
                disabled=move || busy.get()
                on:change=move |_| send_now()
            />
            <button type="submit" style:display=move || live.get().then_some("none")>"Attach"</button>
            {move || busy.get().then(|| view! { <span class="muted" role="status">"Attaching…"</span> })}
            <p class="hint" id="attach-hint">
                "Text, Markdown, PDF, Word, HTML, CSV or JSON; up to 5 files. The agent reads them with your next message."
            </p>
            <p class="field-error" id="attach-error" role="alert">{move || error.get()}</p>
        </form>
    }
}

#[component]
fn Composer(
    send: SendMessageAction,
    agent_id: Memo<String>,
    conversation_id: Memo<String>,
    files: Memo<String>,
) -> impl IntoView {
    let unsent = Resource::new(
        move || files.get(),
        |ids| async move {
            if ids.is_empty() {
                Ok(Vec::new())
            } else {
                unsent_files(ids).await
            }
        },
    );
    let navigate = use_navigate();
    let remove = StoredValue::new(move |id: String, href: String| {
        leptos::task::spawn_local(async move {
            let _ = remove_unsent_file(id).await;
        });
        navigate(
            &href,
            leptos_router::NavigateOptions {
                replace: true,
                scroll: false,
                ..Default::default()
            },
        );
    });
    let files_error = field_message(action_error!(send), "files");
    let error = action_error!(send);
    let message_error = field_message(error, "message");
    let textarea = NodeRef::<html::Textarea>::new();
    // The draft goes only once the message is really sent.
    Effect::new(move |_| {
        if let Some(Ok(_)) = send.value().get()
            && let Some(el) = textarea.get_untracked()
        {
            el.set_value("");
        }
    });
    let on_keydown = move |ev: leptos::ev::KeyboardEvent| {
        if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
            ev.prevent_default();
            // Not while a message is on its way (the composer is read-only then).
            #[cfg(feature = "hydrate")]
            if !send.pending().get_untracked()
                && let Some(form) = textarea.get_untracked().and_then(|t| t.form())
            {
                let _ = form.request_submit();
            }
        }
    };
    view! {
        <AttachForm agent_id=agent_id conversation_id=conversation_id unsent=unsent/>
        <ActionForm action=send attr:class="composer">
            <input type="hidden" name="agent_id" value=move || agent_id.get()/>
            <input type="hidden" name="conversation_id" value=move || conversation_id.get()/>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    let files = unsent.await.unwrap_or_default();
                    let ids: Vec<String> = files.iter().map(|f| f.id.clone()).collect();
                    (!files.is_empty())
                        .then(|| {
                            view! {
                                <ul class="attachments" aria-label="Files attached to your next message">
                                    {files
                                        .into_iter()
                                        .map(|f| {
                                            let others: Vec<&str> = ids
                                                .iter()
                                                .map(String::as_str)
                                                .filter(|id| *id != f.id)
                                                .collect();
                                            let href = chat_url(
                                                &agent_id.get_untracked(),
                                                &conversation_id.get_untracked(),
                                                &others,
                                            );
                                            let id = f.id.clone();
                                            let name = f.name.clone();
                                            let on_remove = {
                                                let href = href.clone();
                                                move |ev: leptos::ev::MouseEvent| {
                                                    ev.prevent_default();
                                                    remove.with_value(|r| r(id.clone(), href.clone()));
                                                }
                                            };
                                            view! {
                                                <li data-testid="attached-file">
                                                    <input type="hidden" name="files[]" value=f.id.clone()/>
                                                    <FileChip file=f/>
                                                    " "
                                                    <a
                                                        href=href
                                                        class="remove"
                                                        aria-label=format!("Remove {name}")
                                                        on:click=on_remove
                                                    >
                                                        "Remove"
                                                    </a>
                                                </li>
                                            }
                                        })
                                        .collect_view()}
                                </ul>
                            }
                        })
                })}
            </Transition>
            <p class="field-error" id="composer-files-error">{files_error}</p>
            <FormError error=error/>
            <label for="composer-message" class="visually-hidden">"Message"</label>
            <textarea
                id="composer-message"
                name="message"
                rows="3"
                node_ref=textarea
                placeholder="Message the agent. Enter sends, Shift+Enter adds a line."
                aria-describedby="composer-error"
                readonly=move || send.pending().get()
                on:keydown=on_keydown
            ></textarea>
            <p class="field-error" id="composer-error">{message_error}</p>
            <button type="submit" class="primary" disabled=move || send.pending().get()>"Send"</button>
        </ActionForm>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::StreamUpdate;

    fn call(status: ToolStatus) -> ReplyPart {
        ReplyPart::ToolCall(ToolCallView {
            id: "c1".into(),
            tool: "calculator".into(),
            arguments: "{}".into(),
            status,
            result: None,
            error: None,
            duration_ms: None,
        })
    }

    #[test]
    fn stream_updates_build_the_parts_the_page_shows() {
        let mut parts = Vec::new();
        apply(
            &mut parts,
            StreamUpdate::Snapshot {
                text: "Let me ".into(),
                parts: vec![],
            },
        );
        apply(
            &mut parts,
            StreamUpdate::Delta {
                text: "check.".into(),
            },
        );
        apply(
            &mut parts,
            StreamUpdate::Part {
                index: 1,
                part: call(ToolStatus::Running),
            },
        );
        apply(
            &mut parts,
            StreamUpdate::Part {
                index: 1,
                part: call(ToolStatus::Done),
            },
        );
        apply(&mut parts, StreamUpdate::Delta { text: "42".into() });
        assert_eq!(
            parts,
            vec![
                ReplyPart::Text {
                    text: "Let me check.".into()
                },
                call(ToolStatus::Done),
                ReplyPart::Text { text: "42".into() },
            ]
        );
        // A snapshot replaces everything (a reader that fell behind).
        apply(
            &mut parts,
            StreamUpdate::Snapshot {
                text: "x".into(),
                parts: vec![call(ToolStatus::Failed)],
            },
        );
        assert_eq!(parts, vec![call(ToolStatus::Failed)]);
    }
}
