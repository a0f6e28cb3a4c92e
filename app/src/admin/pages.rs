//! `/admin`: the platform at a glance and its accounts, for administrators
//! (anyone else reads "Not found."). Metadata and counts only.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::{
    AdminTeam, AdminUser, Overview,
    api::{
        DeleteUserAction, DisableUserAction, EnableUserAction, SetPriceAction, admin_overview,
        admin_prices, admin_teams, admin_users,
    },
};
use crate::{
    action_error,
    provider::Provider,
    ui::{Field, FormError, RequireUser, error_view},
    usage::{Money, PriceView},
};

#[component]
pub fn AdminPage() -> impl IntoView {
    view! {
        <Title text="Administration"/>
        <RequireUser>
            <Admin/>
        </RequireUser>
    }
}

#[component]
fn Admin() -> impl IntoView {
    let disable = DisableUserAction::new();
    let enable = EnableUserAction::new();
    let delete = DeleteUserAction::new();
    let query = use_query_map();
    let q = move || query.read().get("q").unwrap_or_default();
    let changed = move || {
        (
            disable.version().get(),
            enable.version().get(),
            delete.version().get(),
        )
    };
    let overview = Resource::new(changed, |_| admin_overview());
    let users = Resource::new(move || (q(), changed()), |(q, _)| admin_users(Some(q)));
    let teams = Resource::new(changed, |_| admin_teams());
    let actions = Actions {
        disable,
        enable,
        delete,
    };
    let disable_error = action_error!(disable);
    let delete_error = action_error!(delete);
    // Anyone but an administrator gets one "Not found." and nothing else.
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match overview.await {
                    Err(err) => error_view(err).into_any(),
                    Ok(o) => {
                        view! {
                            <h1>"Administration"</h1>
                            <OverviewCards o=o/>
                            <h2>"Accounts"</h2>
                            <p class="muted">
                                "Addresses, names, dates and counts: never anyone's agents, "
                                "conversations or files. Disabling an account signs it out "
                                "everywhere and stops its API keys, schedules, bots and replies "
                                "at once; enabling it gives it all back."
                            </p>
                            <form method="get" action="/admin" role="search" class="search">
                                <label for="user-search">"Search accounts"</label>
                                <input
                                    id="user-search"
                                    type="search"
                                    name="q"
                                    value=q
                                    placeholder="Address or name"
                                />
                                <button type="submit">"Search"</button>
                            </form>
                            <FormError error=disable_error/>
                            <FormError error=delete_error/>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match users.await {
                    // Said once, above.
                    Err(_) => ().into_any(),
                    Ok(list) if list.is_empty() => {
                        view! { <p class="muted">"No account matches."</p> }.into_any()
                    }
                    Ok(list) => {
                        view! {
                            <ul class="admin-users">
                                {list
                                    .into_iter()
                                    .map(|user| view! { <UserRow user=user actions=actions/> })
                                    .collect_view()}
                            </ul>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match teams.await {
                    Err(_) => ().into_any(),
                    Ok(list) => view! { <TeamsTable teams=list/> }.into_any(),
                }
            })}
        </Transition>
        <Prices/>
    }
}

/// The model prices in force, and a form to set one (a new version).
#[component]
fn Prices() -> impl IntoView {
    let set = SetPriceAction::new();
    let prices = Resource::new(move || set.version().get(), |_| admin_prices());
    let error = action_error!(set);
    view! {
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match prices.await {
                    Err(_) => ().into_any(),
                    Ok((currency, list)) => {
                        view! {
                            <h2>"Model prices"</h2>
                            <p class="muted">
                                "Per million tokens. A change applies from now on: what was used "
                                "before keeps the price it was charged at. * is the price of a "
                                "provider's other models."
                            </p>
                            <PriceTable currency=currency prices=list/>
                            <section class="card">
                                <h3>"Set a price"</h3>
                                <ActionForm action=set>
                                    <FormError error=error/>
                                    <div class="field">
                                        <label for="price-provider">"Provider"</label>
                                        <select id="price-provider" name="provider">
                                            {Provider::ALL
                                                .into_iter()
                                                .map(|p| {
                                                    view! { <option value=p.as_str()>{p.label()}</option> }
                                                })
                                                .collect_view()}
                                        </select>
                                    </div>
                                    <Field label="Model" name="model" hint="Its exact name, or *" error=error/>
                                    <Field
                                        label="Input, per million tokens"
                                        name="input"
                                        hint="Like 2.50"
                                        error=error
                                    />
                                    <Field
                                        label="Output, per million tokens"
                                        name="output"
                                        hint="Like 10.00"
                                        error=error
                                    />
                                    <button type="submit" class="primary">"Set price"</button>
                                </ActionForm>
                            </section>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
    }
}

#[component]
fn PriceTable(currency: String, prices: Vec<PriceView>) -> impl IntoView {
    view! {
        <div class="table-wrap">
            <table class="usage-table" data-testid="prices">
                <thead>
                    <tr>
                        <th scope="col">"Provider"</th>
                        <th scope="col">"Model"</th>
                        <th scope="col" class="num">"Input"</th>
                        <th scope="col" class="num">"Output"</th>
                        <th scope="col">"Since"</th>
                    </tr>
                </thead>
                <tbody>
                    {prices
                        .into_iter()
                        .map(|p| {
                            view! {
                                <tr>
                                    <td>{p.provider}</td>
                                    <td>{p.model}</td>
                                    <td class="num">{Money(p.input_per_mtok).display(&currency)}</td>
                                    <td class="num">{Money(p.output_per_mtok).display(&currency)}</td>
                                    <td>{p.since}</td>
                                </tr>
                            }
                        })
                        .collect_view()}
                </tbody>
            </table>
        </div>
    }
}

#[component]
fn TeamsTable(teams: Vec<AdminTeam>) -> impl IntoView {
    view! {
        <h2>"Teams"</h2>
        {if teams.is_empty() {
            view! { <p class="muted">"No team yet."</p> }.into_any()
        } else {
            view! {
                <div class="table-wrap">
                    <table class="admin-teams">
                        <thead>
                            <tr>
                                <th scope="col">"Team"</th>
                                <th scope="col">"Made"</th>
                                <th scope="col">"Owners"</th>
                                <th scope="col">"People"</th>
                                <th scope="col">"Agents"</th>
                                <th scope="col">"Invitations"</th>
                            </tr>
                        </thead>
                        <tbody>
                            {teams
                                .into_iter()
                                .map(|t| {
                                    view! {
                                        <tr data-testid="admin-team">
                                            <td>{t.name}</td>
                                            <td>{t.created}</td>
                                            <td>{t.owners}</td>
                                            <td>{t.members}</td>
                                            <td>{t.agents}</td>
                                            <td>{t.invitations}</td>
                                        </tr>
                                    }
                                })
                                .collect_view()}
                        </tbody>
                    </table>
                </div>
            }
                .into_any()
        }}
    }
}

#[derive(Clone, Copy)]
struct Actions {
    disable: DisableUserAction,
    enable: EnableUserAction,
    delete: DeleteUserAction,
}

#[component]
fn OverviewCards(o: Overview) -> impl IntoView {
    let jobs = if o.jobs.is_empty() {
        "none yet".to_owned()
    } else {
        o.jobs
            .iter()
            .map(|j| format!("{} {}", j.count, j.state))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let waiting = match o.oldest_due_secs {
        None => "nothing waiting".to_owned(),
        Some(secs) if secs < 120 => format!("oldest waiting {secs} s"),
        Some(secs) => format!("oldest waiting {} min", secs / 60),
    };
    view! {
        <dl class="card admin-overview" data-testid="admin-overview">
            <div><dt>"Accounts"</dt><dd>{o.users} <span class="muted">{format!(" ({} disabled)", o.disabled)}</span></dd></div>
            <div><dt>"Agents"</dt><dd>{o.agents}</dd></div>
            <div><dt>"Conversations"</dt><dd>{o.conversations}</dd></div>
            <div><dt>"Messages, 30 days"</dt><dd>{o.messages_30d}</dd></div>
            <div>
                <dt>"Tokens, 30 days"</dt>
                <dd>{format!("{} in · {} out", o.input_tokens_30d, o.output_tokens_30d)}</dd>
            </div>
            <div><dt>"Working API keys"</dt><dd>{o.live_api_keys}</dd></div>
            <div><dt>"Replies being written here"</dt><dd>{o.live_replies}</dd></div>
            <div><dt>"Job queue"</dt><dd data-testid="admin-jobs">{jobs} <span class="muted">{format!(" · {waiting}")}</span></dd></div>
        </dl>
    }
}

#[component]
fn UserRow(user: AdminUser, actions: Actions) -> impl IntoView {
    let mut badges = Vec::new();
    if user.is_admin {
        badges.push("administrator");
    }
    if user.disabled {
        badges.push("disabled");
    }
    if user.deleting {
        badges.push("being deleted");
    }
    if user.you {
        badges.push("you");
    }
    let facts = format!(
        "Joined {} · {} · {} agent{} · {} conversation{}",
        user.created,
        user.last_seen
            .as_deref()
            .map(|d| format!("last seen {d}"))
            .unwrap_or_else(|| "not signed in".into()),
        user.agents,
        if user.agents == 1 { "" } else { "s" },
        user.conversations,
        if user.conversations == 1 { "" } else { "s" },
    );
    let id = user.id.clone();
    let (id_toggle, id_delete) = (id.clone(), id.clone());
    let toggle = if user.disabled {
        view! {
            <ActionForm action=actions.enable attr:class="inline">
                <input type="hidden" name="id" value=id_toggle/>
                <button type="submit">"Enable"</button>
            </ActionForm>
        }
        .into_any()
    } else {
        view! {
            <ActionForm action=actions.disable attr:class="inline">
                <input type="hidden" name="id" value=id_toggle/>
                <button type="submit" class="danger">"Disable"</button>
            </ActionForm>
        }
        .into_any()
    };
    view! {
        <li class="card key-row" data-testid="admin-user">
            <div>
                <strong>{user.email.clone()}</strong>
                " "
                <span class="muted">{user.name.clone()}</span>
                {badges.into_iter().map(|b| view! { " " <span class="badge">{b}</span> }).collect_view()}
                <p class="muted">{facts}</p>
            </div>
            {(!user.deleting && !user.you)
                .then(|| {
                    view! {
                        <div class="actions">
                            {toggle}
                            <details>
                                <summary>"Delete"</summary>
                                <ActionForm action=actions.delete>
                                    <input type="hidden" name="id" value=id_delete/>
                                    <label class="checkbox">
                                        <input type="checkbox" name="confirm" value="yes"/>
                                        " Delete this account and everything in it (after the grace period)"
                                    </label>
                                    <button type="submit" class="danger">"Delete account"</button>
                                </ActionForm>
                            </details>
                        </div>
                    }
                })}
        </li>
    }
}
