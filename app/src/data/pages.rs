//! The "your data" pages: Settings → Your data (retention, deleting every
//! conversation, deleting the account) and Settings → Account activity.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::activity::{ActivityEntry, KEEP_DAYS};
use crate::{
    error::AppError,
    ui::{Field, FormError, RequireUser, error_view},
};

#[component]
pub fn YourDataPage() -> impl IntoView {
    view! {
        <Title text="Your data"/>
        <RequireUser>
            <YourData/>
        </RequireUser>
    }
}

#[component]
fn YourData() -> impl IntoView {
    view! {
        <h1>"Your data"</h1>
        <p class="muted">
            "What Enclave keeps about you, for how long, and how to take it with you or erase it. "
            "Everything you store is encrypted with a key of your own that the database never holds. "
            <a href="/privacy">"Privacy Policy"</a>
        </p>
        <Holdings/>
        <Export/>
        <RetentionForm/>
        <MailAndConsent/>
        <DeleteConversations/>
        <DeleteAccount/>
        <p class="muted"><a href="/settings">"Back to settings"</a></p>
    }
}

/// What we hold, kind by kind.
#[component]
fn Holdings() -> impl IntoView {
    let holdings = Resource::new(|| (), |_| super::api::data_summary());
    view! {
        <section class="card" aria-labelledby="holdings-heading">
            <h2 id="holdings-heading">"What we hold about you"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match holdings.await {
                        Err(err) => error_view(err).into_any(),
                        Ok(list) => {
                            view! {
                                <div class="table-wrap">
                                    <table class="holdings" data-testid="holdings">
                                        <thead>
                                            <tr>
                                                <th scope="col">"What"</th>
                                                <th scope="col">"How many"</th>
                                                <th scope="col">"Since"</th>
                                                <th scope="col">"Latest"</th>
                                            </tr>
                                        </thead>
                                        <tbody>
                                            {list
                                                .into_iter()
                                                .map(|h| {
                                                    view! {
                                                        <tr>
                                                            <th scope="row">
                                                                {h.kind}
                                                                {(!h.items.is_empty())
                                                                    .then(|| {
                                                                        view! {
                                                                            <ul class="muted">
                                                                                {h
                                                                                    .items
                                                                                    .into_iter()
                                                                                    .map(|i| view! { <li>{i}</li> })
                                                                                    .collect_view()}
                                                                            </ul>
                                                                        }
                                                                    })}
                                                            </th>
                                                            <td>{h.count}</td>
                                                            <td>{h.first.unwrap_or_default()}</td>
                                                            <td>{h.last.unwrap_or_default()}</td>
                                                        </tr>
                                                    }
                                                })
                                                .collect_view()}
                                        </tbody>
                                    </table>
                                </div>
                            }
                                .into_any()
                        }
                    }
                })}
            </Transition>
        </section>
    }
}

/// Marketing mail (off unless turned on) and the consent records.
#[component]
fn MailAndConsent() -> impl IntoView {
    let set = super::api::SetMarketingMailAction::new();
    let records = Resource::new(
        move || set.version().get(),
        |_| super::api::consent_records(),
    );
    view! {
        <section class="card" aria-labelledby="consent-heading">
            <h2 id="consent-heading">"Mail and consent"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match records.await {
                        Err(err) => error_view(err).into_any(),
                        Ok((marketing, consents)) => {
                            view! {
                                <p data-testid="marketing-state">
                                    {if marketing {
                                        "You get occasional mail about new features."
                                    } else {
                                        "You get no marketing mail: only mail about your account."
                                    }}
                                </p>
                                <ActionForm action=set>
                                    {(!marketing).then(|| view! { <input type="hidden" name="on" value="yes"/> })}
                                    <button type="submit" disabled=move || set.pending().get()>
                                        {if marketing { "Stop marketing mail" } else { "Send me mail about new features" }}
                                    </button>
                                </ActionForm>
                                <h3>"Consent records"</h3>
                                {if consents.is_empty() {
                                    view! { <p class="muted">"None yet."</p> }.into_any()
                                } else {
                                    view! {
                                        <ul data-testid="consents">
                                            {consents
                                                .into_iter()
                                                .map(|c| {
                                                    view! {
                                                        <li>
                                                            {c.what} ": "
                                                            {if c.granted { "agreed" } else { "withdrawn" }} " on "
                                                            <time>{c.at}</time>
                                                        </li>
                                                    }
                                                })
                                                .collect_view()}
                                        </ul>
                                    }
                                        .into_any()
                                }}
                            }
                                .into_any()
                        }
                    }
                })}
            </Transition>
        </section>
    }
}

/// Export everything: ask, watch the progress bar, download (24 hours).
#[component]
fn Export() -> impl IntoView {
    let request = super::api::RequestExportAction::new();
    let error: Signal<Option<AppError>> = crate::action_error!(request);
    let exports = Resource::new(
        move || request.version().get(),
        |_| super::api::list_exports(),
    );
    // While one is being built, look again every second (with JavaScript;
    // without it, the page's Refresh link does the same).
    Effect::new(move |_| {
        let building = exports.get().and_then(Result::ok).is_some_and(|list| {
            list.iter()
                .any(|e| e.state == "queued" || e.state == "building")
        });
        if building {
            set_timeout(move || exports.refetch(), std::time::Duration::from_secs(1));
        }
    });
    view! {
        <section class="card" aria-labelledby="export-heading">
            <h2 id="export-heading">"Export everything"</h2>
            <p class="muted">
                "One zip file with your account, sign-in methods, sessions, activity, agents, "
                "keys and connections (masked: never a secret), MCP servers, tool activity and every "
                "conversation, as JSON and as Markdown to read. We mail you when it is ready; it can be "
                "downloaded for " {super::export::KEEP_HOURS} " hours."
            </p>
            <ActionForm action=request>
                <FormError error=error/>
                <button type="submit" class="primary" disabled=move || request.pending().get()>
                    "Export my data"
                </button>
            </ActionForm>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    let list = exports.await.unwrap_or_default();
                    view! {
                        <ul class="export-list">
                            {list
                                .into_iter()
                                .map(|e| {
                                    let ready = e.state == "ready";
                                    let href = format!("/settings/data/exports/{}", e.id);
                                    let status = match e.state.as_str() {
                                        "ready" => format!(
                                            "Ready: {} · download until {}",
                                            crate::ui::size_label(e.size_bytes.unwrap_or(0).max(0) as u64),
                                            e.expires,
                                        ),
                                        "failed" => "It could not be built. Try again; if it fails again, tell your administrator.".to_owned(),
                                        _ => format!("Being built: {}%", e.progress),
                                    };
                                    view! {
                                        <li data-testid="export" data-state=e.state.clone()>
                                            <span>"Asked for " <time>{e.created.clone()}</time></span>
                                            <progress max="100" value=e.progress.to_string() aria-label="Export progress"></progress>
                                            <span class="muted">{status}</span>
                                            {ready
                                                .then(|| {
                                                    view! {
                                                        <a class="button" href=href download="">"Download"</a>
                                                    }
                                                })}
                                            {(!ready && e.state != "failed")
                                                .then(|| view! { <a href="/settings/data">"Refresh"</a> })}
                                        </li>
                                    }
                                })
                                .collect_view()}
                        </ul>
                    }
                })}
            </Transition>
        </section>
    }
}

fn days_label(days: u32) -> String {
    match days {
        1 => "1 day".to_owned(),
        n => format!("{n} days"),
    }
}

/// How long conversations are kept: the server's period, or a shorter one.
#[component]
fn RetentionForm() -> impl IntoView {
    let set = super::api::SetRetentionAction::new();
    let error: Signal<Option<AppError>> = crate::action_error!(set);
    let view_ = Resource::new(
        move || set.version().get(),
        |_| super::api::conversation_retention(),
    );
    view! {
        <section class="card" aria-labelledby="retention-heading">
            <h2 id="retention-heading">"How long conversations are kept"</h2>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match view_.await {
                        Err(err) => error_view(err).into_any(),
                        Ok(r) => {
                            let days = r.days();
                            let server = r.server_days;
                            let own = r.own_days;
                            view! {
                                <p data-testid="retention-days">
                                    "A conversation is erased " <strong>{days_label(days)}</strong>
                                    " after its last message. The chat list shows each one's date."
                                </p>
                                <ActionForm action=set>
                                    <FormError error=error/>
                                    <label for="field-days">"Keep conversations for"</label>
                                    <select id="field-days" name="days">
                                        <option value="" selected=own.is_none()>
                                            {format!("{} (this server's period)", days_label(server))}
                                        </option>
                                        {r
                                            .choices
                                            .iter()
                                            .rev()
                                            .map(|d| {
                                                view! {
                                                    <option value=d.to_string() selected=own == Some(*d)>
                                                        {days_label(*d)}
                                                    </option>
                                                }
                                            })
                                            .collect_view()}
                                    </select>
                                    " "
                                    <button type="submit" disabled=move || set.pending().get()>"Save"</button>
                                </ActionForm>
                            }
                                .into_any()
                        }
                    }
                })}
            </Transition>
        </section>
    }
}

#[component]
fn DeleteConversations() -> impl IntoView {
    let delete = super::api::DeleteAllConversationsAction::new();
    let error: Signal<Option<AppError>> = crate::action_error!(delete);
    let query = use_query_map();
    let done = move || {
        delete
            .value()
            .get()
            .and_then(Result::ok)
            .map(|n| {
                format!(
                    "{n} conversation{} deleted.",
                    if n == 1 { " was" } else { "s were" }
                )
            })
            .or_else(|| {
                query
                    .read()
                    .get("conversations_deleted")
                    .map(|_| "Every conversation was deleted.".to_owned())
            })
    };
    view! {
        <section class="card" aria-labelledby="conversations-heading">
            <h2 id="conversations-heading">"Delete every conversation"</h2>
            <p class="muted">
                "Every conversation with every agent goes at once, with its messages and tool calls. "
                "Your agents, keys and settings stay. This cannot be undone."
            </p>
            <ActionForm action=delete>
                <FormError error=error/>
                <label class="checkbox">
                    <input type="checkbox" name="confirm" value="yes" required/>
                    " I understand that deleted conversations cannot be brought back."
                </label>
                <button type="submit" class="danger" disabled=move || delete.pending().get()>
                    "Delete every conversation"
                </button>
            </ActionForm>
            {move || done().map(|text| view! { <p role="status" data-testid="conversations-deleted">{text}</p> })}
        </section>
    }
}

#[component]
fn DeleteAccount() -> impl IntoView {
    let delete = super::api::DeleteAccountAction::new();
    // Signed out once it worked; a refusal keeps the page (and its message)
    // as it is.
    let auth = crate::ui::use_auth();
    Effect::new(move |_| {
        if matches!(delete.value().get(), Some(Ok(_))) {
            auth.changed();
        }
    });
    let error: Signal<Option<AppError>> = crate::action_error!(delete);
    let retention = Resource::new(|| (), |_| super::api::conversation_retention());
    let grace = move || {
        retention.get().and_then(Result::ok).map_or_else(
            || "30 days".to_owned(),
            |r| days_label(r.deletion_grace_days),
        )
    };
    view! {
        <section class="card danger-zone" aria-labelledby="delete-account-heading">
            <h2 id="delete-account-heading">"Delete your account"</h2>
            <p>
                "Every session is signed out at once and nobody can use the account. For "
                <Transition fallback=|| "30 days">
                    <strong data-testid="grace">{grace}</strong>
                </Transition>
                " you can change your mind: sign in again and it comes back as it was. "
                "After that, everything is erased for good, together with the key that encrypts it, "
                "so that no copy anywhere, backups included, can be read again. We mail you the date."
            </p>
            <p class="muted">"Want a copy first? Export your data above before you go."</p>
            <ActionForm action=delete>
                <FormError error=error/>
                <Field
                    label="Your password"
                    name="password"
                    kind="password"
                    autocomplete="current-password"
                    required=false
                    hint="No password (you sign in with a provider or a passkey)? Leave it empty and enter a code from your authenticator app instead."
                    error=error
                />
                <Field
                    label="Or a code from your authenticator app"
                    name="code"
                    autocomplete="one-time-code"
                    required=false
                    error=error
                />
                <button type="submit" class="danger" disabled=move || delete.pending().get()>
                    "Delete my account"
                </button>
            </ActionForm>
        </section>
    }
}

#[component]
pub fn AccountActivityPage() -> impl IntoView {
    view! {
        <Title text="Account activity"/>
        <RequireUser>
            <AccountActivity/>
        </RequireUser>
    }
}

/// The log, a page at a time: `?after=ID` continues after an entry, so the
/// "Older" link works without JavaScript.
#[component]
fn AccountActivity() -> impl IntoView {
    let query = use_query_map();
    let after = move || query.read().get("after");
    let page = Resource::new(after, super::api::list_activity);
    view! {
        <h1>"Account activity"</h1>
        <p class="muted">
            "Sign-ins, sign-outs and changes to your account's security, with the address and "
            "browser they came from. Something you do not recognise? End the session under "
            <a href="/settings/sessions">"Sessions"</a> " and change your password. Kept for "
            {KEEP_DAYS} " days."
        </p>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Err(err) => error_view(err).into_any(),
                    Ok(page) if page.entries.is_empty() => {
                        view! { <p class="card muted">"Nothing yet."</p> }.into_any()
                    }
                    Ok(page) => {
                        view! {
                            <ol class="activity-log" data-testid="activity-log">
                                {page.entries.into_iter().map(|e| view! { <Entry entry=e/> }).collect_view()}
                            </ol>
                            {page
                                .next
                                .map(|next| {
                                    view! {
                                        <p>
                                            <a
                                                class="button"
                                                href=format!("/settings/account-activity?after={next}")
                                            >
                                                "Older entries"
                                            </a>
                                        </p>
                                    }
                                })}
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
        <p class="muted"><a href="/settings">"Back to settings"</a></p>
    }
}

#[component]
fn Entry(entry: ActivityEntry) -> impl IntoView {
    let from = match (&entry.browser, &entry.address) {
        (Some(b), Some(a)) => Some(format!("{b} · {a}")),
        (Some(b), None) => Some(b.clone()),
        (None, Some(a)) => Some(a.clone()),
        (None, None) => None,
    };
    view! {
        <li class="card activity-entry" class:warning=entry.warning data-kind=entry.kind.clone()>
            <div>
                <strong>{entry.label.clone()}</strong>
                {entry.detail.clone().map(|d| view! { <span class="detail">" · " {d}</span> })}
            </div>
            <p class="muted">
                <time>{entry.at.clone()}</time>
                {from.map(|f| view! { <span title=entry.user_agent.clone()>" · " {f}</span> })}
            </p>
        </li>
    }
}

/// /privacy and /cookies: the version in force (or `?version=N`), its
/// effective date, and every version.
#[component]
pub fn PrivacyPolicyPage() -> impl IntoView {
    view! { <Policy kind=super::policies::PolicyKind::Privacy/> }
}

#[component]
pub fn CookiePolicyPage() -> impl IntoView {
    view! { <Policy kind=super::policies::PolicyKind::Cookies/> }
}

#[component]
fn Policy(kind: super::policies::PolicyKind) -> impl IntoView {
    let query = use_query_map();
    let version = move || query.read().get("version");
    let page = Resource::new(version, move |v| {
        super::api::policy_page(kind.as_str().to_owned(), v)
    });
    view! {
        <Title text=kind.title()/>
        <article class="policy">
            <h1>{kind.title()}</h1>
            <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match page.await {
                        Err(err) => error_view(err).into_any(),
                        Ok(p) => {
                            let shown = p.shown.clone();
                            let state = if shown.current {
                                "in force"
                            } else if shown.upcoming {
                                "takes effect"
                            } else {
                                "was in force from"
                            };
                            view! {
                                <p class="muted" data-testid="policy-version">
                                    {format!("Version {} · {} {}", shown.version, state, shown.effective)}
                                </p>
                                <div class="markdown" inner_html=p.body_html></div>
                                <h2>"Version history"</h2>
                                <ol class="policy-history" reversed>
                                    {p
                                        .history
                                        .into_iter()
                                        .map(|v| {
                                            let href = format!("{}?version={}", kind.path(), v.version);
                                            let note = if v.current {
                                                " (in force)"
                                            } else if v.upcoming {
                                                " (coming)"
                                            } else {
                                                ""
                                            };
                                            view! {
                                                <li>
                                                    <a href=href>{format!("Version {}", v.version)}</a>
                                                    {format!(", effective {}{note}: {}", v.effective, v.summary)}
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
        </article>
    }
}

/// Shown to a signed-in user on every page until they acknowledge each
/// policy change.
#[component]
pub fn PolicyBanner() -> impl IntoView {
    let auth = crate::ui::use_auth();
    let acknowledge = super::api::AcknowledgePolicyAction::new();
    let notices = Resource::new(
        move || (auth.version(), acknowledge.version().get()),
        |_| super::api::policy_notices(),
    );
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let list = notices.await.unwrap_or_default();
                list.into_iter()
                    .map(|n| {
                        let href = format!("{}?version={}", n.kind.path(), n.version);
                        view! {
                            <div class="banner" role="status" data-testid="policy-notice">
                                <p>
                                    "Our " <a href=href>{n.kind.title()}</a> " changes on "
                                    <time>{n.effective.clone()}</time> ": " {n.summary.clone()}
                                </p>
                                <ActionForm action=acknowledge attr:class="inline">
                                    <input type="hidden" name="kind" value=n.kind.as_str()/>
                                    <input type="hidden" name="version" value=n.version.to_string()/>
                                    <button type="submit">"I have read it"</button>
                                </ActionForm>
                            </div>
                        }
                    })
                    .collect_view()
            })}
        </Transition>
    }
}
