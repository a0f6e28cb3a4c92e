//! The "your data" pages: Settings → Account activity.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::activity::{ActivityEntry, KEEP_DAYS};
use crate::ui::{RequireUser, error_view};

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
                {from.map(|f| view! { <span>" · " {f}</span> })}
            </p>
        </li>
    }
}
