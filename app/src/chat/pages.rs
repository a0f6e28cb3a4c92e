//! The chat page: `/agents/{id}/chat`, and `?c={conversation}` for one
//! conversation. Sending posts a form (so it works without JavaScript too);
//! a reply that is still being written is followed over server-sent events
//! and rendered as sanitised Markdown as it grows.

use leptos::{either::Either, html, prelude::*};
use leptos_meta::Title;
use leptos_router::hooks::{use_navigate, use_params_map, use_query_map};

use super::{
    FileView, MessageStatus, MessageView, ReplyPart, ToolCallView, ToolStatus,
    api::{
        DecideToolCall, DeleteConversation, EditMessage, RegenerateReply, RenameConversation,
        SendMessage, StopReply, get_conversation, list_conversations, remove_unsent_file,
        unsent_files,
    },
};
use crate::{
    action_error,
    agents::api::get_agent,
    ui::{
        FormError, RequireUser, avatar::Avatar, field_message, markdown, not_found_or, size_label,
    },
};

pub type SendMessageAction = ServerAction<SendMessage>;
pub type StopReplyAction = ServerAction<StopReply>;
pub type RegenerateAction = ServerAction<RegenerateReply>;
pub type EditAction = ServerAction<EditMessage>;
pub type RenameAction = ServerAction<RenameConversation>;
pub type DeleteConversationAction = ServerAction<DeleteConversation>;
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
    let query = use_query_map();
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
    let remove = DeleteConversationAction::new();
    let decide = DecideAction::new();
    let actions = MessageActions {
        stop,
        regenerate,
        edit,
        decide,
    };
    let agent = Resource::new(move || agent_id.get(), get_agent);
    // Each action that changes what is shown makes the resources fetch again.
    let conversations = Resource::new(
        move || {
            let changes = (
                send.version().get(),
                rename.version().get(),
                remove.version().get(),
            );
            (agent_id.get(), changes)
        },
        |(agent, _)| list_conversations(agent),
    );
    let conversation = Resource::new(
        move || {
            let changes = (
                send.version().get(),
                regenerate.version().get(),
                edit.version().get(),
                rename.version().get(),
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
    let chat_href = move || format!("/agents/{}/chat", agent_id.get());
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
        <div class="chat-layout">
            <aside class="conversations" aria-label="Conversations">
                <a class="button primary" href=chat_href>"New chat"</a>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        let list = conversations.await.unwrap_or_default();
                        view! {
                            <ul>
                                {list
                                    .into_iter()
                                    .map(|c| {
                                        let active = c.id == conversation_id.get_untracked();
                                        view! {
                                            <li class:active=active>
                                                <a href=format!("{}?c={}", chat_href(), c.id)>{c.title}</a>
                                                <small class="expires" data-testid="expires">
                                                    "Kept until " <time>{c.expires_on}</time>
                                                </small>
                                            </li>
                                        }
                                    })
                                    .collect_view()}
                            </ul>
                        }
                    })}
                </Transition>
            </aside>
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
                                                            remove=remove
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
                <Composer send=send agent_id=agent_id conversation_id=conversation_id files=files/>
            </section>
        </div>
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
    remove: DeleteConversationAction,
    paged: bool,
) -> impl IntoView {
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
            <details>
                <summary>"Rename"</summary>
                <ActionForm action=rename attr:class="inline">
                    <input type="hidden" name="id" value=id_rename/>
                    <input name="title" aria-label="Title" value=conversation.title.clone() required/>
                    <button type="submit">"Save"</button>
                </ActionForm>
            </details>
            <ActionForm action=remove attr:class="inline">
                <input type="hidden" name="id" value=id_delete/>
                <button type="submit" class="danger">"Delete conversation"</button>
            </ActionForm>
        </div>
        {earlier.map(|href| view! { <a class="page-link" href=href>"Load earlier messages"</a> })}
        <ol class="messages" aria-live="polite" on:click=copy_code>
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
        follow(message.id.clone(), parts, status, error, usage);
    }
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
                                    <button type="submit" class="link">"Regenerate"</button>
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
                            <summary>"Edit"</summary>
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

/// Follows a reply that is still being written (in the browser only).
#[cfg(feature = "hydrate")]
fn follow(
    id: String,
    parts: RwSignal<Vec<ReplyPart>>,
    status: RwSignal<MessageStatus>,
    error: RwSignal<Option<String>>,
    usage: RwSignal<(Option<u32>, Option<u32>)>,
) {
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
                    status.try_set(done);
                    error.try_set(reason);
                    usage.try_set((input_tokens, output_tokens));
                    // Otherwise EventSource would reconnect once the server closes.
                    closer.close();
                }
                Ok(update) => {
                    parts.try_update(|parts| apply(parts, update));
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
fn follow(
    _id: String,
    _parts: RwSignal<Vec<ReplyPart>>,
    _status: RwSignal<MessageStatus>,
    _error: RwSignal<Option<String>>,
    _usage: RwSignal<(Option<u32>, Option<u32>)>,
) {
}

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
