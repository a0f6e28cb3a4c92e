//! /usage: what your agents used and cost, by day (charts drawn as SVG in
//! the server's render), agent and model, with a CSV download; your budget
//! or credits (and "Add credits" when the operator takes card payments);
//! a team's usage for its admins and owners. Everything works without
//! JavaScript: the period and team are links, "Add credits" a plain form.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

use super::{Money, UsageLine, UsageReport, api::get_usage, thousands};
use crate::ui::{RequireUser, error_view};

#[component]
pub fn UsagePage() -> impl IntoView {
    view! {
        <Title text="Usage"/>
        <RequireUser>
            <Usage/>
        </RequireUser>
    }
}

#[component]
fn Usage() -> impl IntoView {
    let query = use_query_map();
    let team = move || query.read().get("team").filter(|t| !t.is_empty());
    let days = move || {
        query
            .read()
            .get("days")
            .and_then(|d| d.parse::<u32>().ok())
            .unwrap_or(30)
    };
    let paid = move || query.read().get("paid").is_some();
    let cancelled = move || query.read().get("cancelled").is_some();
    let report = Resource::new(move || (team(), days()), |(t, d)| get_usage(t, Some(d)));
    view! {
        <h1>"Usage"</h1>
        <Show when=paid>
            <p class="card notice" role="status" data-testid="paid">
                "Thank you. Your credits are added as soon as Stripe confirms the payment, "
                "usually within seconds: reload this page if they are not here yet."
            </p>
        </Show>
        <Show when=cancelled>
            <p class="card notice" role="status">"The payment was cancelled: nothing was charged."</p>
        </Show>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match report.await {
                    Err(err) => error_view(err).into_any(),
                    Ok(report) => view! { <Report report=report/> }.into_any(),
                }
            })}
        </Transition>
    }
}

fn query_string(team: Option<&str>, days: u32) -> String {
    match team {
        Some(team) => format!("?team={team}&days={days}"),
        None => format!("?days={days}"),
    }
}

#[component]
fn Report(report: UsageReport) -> impl IntoView {
    let currency = report.currency.clone();
    let team_id = report.team.as_ref().map(|(id, _)| id.clone());
    let days = report.days;
    let mode_text = match report.mode.as_str() {
        "credits" => "This server runs on prepaid credits: replies on its keys spend them.",
        "quotas" => "This server gives each person an allowance of model use per period.",
        _ => "This server sets no limit on model use; it is recorded here for you.",
    };
    let exempt = report.own_keys_exempt && report.mode != "unlimited";
    let periods = [7u32, 30, 90].map(|d| {
        let href = format!("/usage{}", query_string(team_id.as_deref(), d));
        let current = d == days;
        view! {
            <a href=href class:current=current aria-current=current.then_some("page")>
                {format!("{d} days")}
            </a>
        }
    });
    let views = (!report.teams.is_empty()).then(|| {
        let own = format!("/usage{}", query_string(None, days));
        let own_current = team_id.is_none();
        view! {
            <nav class="usage-views" aria-label="Whose usage">
                <a href=own class:current=own_current>"Yours"</a>
                {report
                    .teams
                    .iter()
                    .map(|(id, name)| {
                        let current = team_id.as_deref() == Some(id.as_str());
                        let href = format!("/usage{}", query_string(Some(id), days));
                        view! {
                            <a href=href class:current=current>{format!("Team {name}")}</a>
                        }
                    })
                    .collect_view()}
            </nav>
        }
    });
    let csv = format!("/usage.csv{}", query_string(team_id.as_deref(), days));
    let heading = match &report.team {
        Some((_, name)) => format!("The team {name}, last {days} days"),
        None => format!("Last {days} days"),
    };
    let total = report.total.clone();
    let spent_chart: Vec<(String, i64)> = report
        .by_day
        .iter()
        .map(|l| (l.label.clone(), l.cost))
        .collect();
    let tokens_chart: Vec<(String, i64)> = report
        .by_day
        .iter()
        .map(|l| (l.label.clone(), l.tokens()))
        .collect();
    let c1 = currency.clone();
    let money_label = move |v: i64| Money(v).display(&c1);
    view! {
        <p class="muted">
            {mode_text}
            {exempt.then_some(" Replies on your own provider keys are not charged.")}
        </p>
        {report.credits.clone().map(|credits| view! { <Credits credits=credits/> })}
        {(!report.budgets.is_empty())
            .then(|| {
                view! {
                    <section class="card" data-testid="budgets">
                        <h2>"Allowance"</h2>
                        {report
                            .budgets
                            .iter()
                            .map(|b| {
                                let width = format!("width: {}%", b.percent.min(100));
                                let over = b.percent >= 100;
                                view! {
                                    <p>
                                        <strong>{b.label.clone()}</strong>
                                        {format!(": {} of {} ({}%)", b.used, b.limit, b.percent)}
                                    </p>
                                    <div
                                        class="meter"
                                        class:over=over
                                        role="progressbar"
                                        aria-valuemin="0"
                                        aria-valuemax="100"
                                        aria-valuenow=b.percent.min(100).to_string()
                                        aria-label=b.label.clone()
                                    >
                                        <span style=width></span>
                                    </div>
                                }
                            })
                            .collect_view()}
                    </section>
                }
            })}
        {views}
        <nav class="usage-periods" aria-label="Period">{periods}</nav>
        <section class="card">
            <h2>{heading}</h2>
            <dl class="usage-totals" data-testid="usage-totals">
                <div>
                    <dt>"Model calls"</dt>
                    <dd>{thousands(total.calls)}</dd>
                </div>
                <div>
                    <dt>"Tokens in"</dt>
                    <dd>{thousands(total.input_tokens)}</dd>
                </div>
                <div>
                    <dt>"Tokens out"</dt>
                    <dd>{thousands(total.output_tokens)}</dd>
                </div>
                <div>
                    <dt>"Cost"</dt>
                    <dd>{Money(total.cost).display(&currency)}</dd>
                </div>
            </dl>
            <div class="usage-charts">
                <BarChart title="Cost per day" bars=spent_chart label=money_label/>
                <BarChart title="Tokens per day" bars=tokens_chart label=|v: i64| thousands(v)/>
            </div>
            <p>
                <a href=csv download="">"Download as CSV"</a>
                <span class="muted">" (one row per day, agent and model)"</span>
            </p>
        </section>
        <LineTable title="By agent" first="Agent" lines=report.by_agent.clone() currency=currency.clone()/>
        <LineTable title="By model" first="Model" lines=report.by_model.clone() currency=currency.clone()/>
        {report
            .team
            .is_some()
            .then(|| {
                view! {
                    <LineTable
                        title="By person"
                        first="Person"
                        lines=report.by_person.clone()
                        currency=currency.clone()
                    />
                }
            })}
    }
}

#[component]
fn Credits(credits: super::CreditsView) -> impl IntoView {
    view! {
        <section class="card" data-testid="credits">
            <h2>"Credits"</h2>
            <p class="usage-balance">
                "Balance: " <strong data-testid="balance">{credits.balance.clone()}</strong>
                <span class="muted">{format!(" ({} held by replies being written)", credits.held)}</span>
            </p>
            {if credits.top_ups.is_empty() {
                view! {
                    <p class="muted">"To add credits, ask the operator of this server."</p>
                }
                    .into_any()
            } else {
                view! {
                    <form method="post" action="/usage/credits" class="top-up">
                        <fieldset>
                            <legend>"Add credits"</legend>
                            {credits
                                .top_ups
                                .iter()
                                .enumerate()
                                .map(|(i, (amount, shown))| {
                                    let id = format!("top-up-{i}");
                                    let label_for = id.clone();
                                    view! {
                                        <label for=label_for class="choice">
                                            <input
                                                type="radio"
                                                id=id
                                                name="amount"
                                                value=amount.to_string()
                                                checked=i == 0
                                            />
                                            {shown.clone()}
                                        </label>
                                    }
                                })
                                .collect_view()}
                        </fieldset>
                        <button type="submit" class="primary">"Pay with card"</button>
                        <p class="field-hint">
                            "You pay on Stripe's page; Enclave never sees your card."
                        </p>
                    </form>
                }
                    .into_any()
            }}
            {(!credits.transactions.is_empty())
                .then(|| {
                    view! {
                        <table class="usage-table" data-testid="transactions">
                            <caption>"Recent changes"</caption>
                            <thead>
                                <tr>
                                    <th scope="col">"When"</th>
                                    <th scope="col">"What"</th>
                                    <th scope="col" class="num">"Amount"</th>
                                </tr>
                            </thead>
                            <tbody>
                                {credits
                                    .transactions
                                    .iter()
                                    .map(|t| {
                                        view! {
                                            <tr>
                                                <td>{t.at.clone()}</td>
                                                <td>{format!("{}: {}", t.kind, t.note)}</td>
                                                <td class="num">{t.amount.clone()}</td>
                                            </tr>
                                        }
                                    })
                                    .collect_view()}
                            </tbody>
                        </table>
                    }
                })}
        </section>
    }
}

/// A bar per day, drawn as SVG (in the server's render: no chart library
/// in the WASM bundle). Each bar's `<title>` tells its figure. The scale and
/// the days are HTML around it: text inside an SVG stretched to the page's
/// width came out squeezed and tiny on a phone.
#[component]
fn BarChart(
    title: &'static str,
    bars: Vec<(String, i64)>,
    label: impl Fn(i64) -> String + 'static,
) -> impl IntoView {
    const W: f64 = 600.0;
    const H: f64 = 160.0;
    const TOP: f64 = 4.0;
    const BOTTOM: f64 = 1.0;
    let highest = bars.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let max = highest.max(1);
    let n = bars.len().max(1) as f64;
    let slot = W / n;
    let gap = (slot * 0.2).min(4.0);
    let total: i64 = bars.iter().map(|(_, v)| *v).sum();
    let summary = format!(
        "{title}: {} in all, highest {} a day",
        label(total),
        label(highest)
    );
    let first = bars.first().map(|(d, _)| d.clone()).unwrap_or_default();
    let last = bars.last().map(|(d, _)| d.clone()).unwrap_or_default();
    let rects = bars
        .iter()
        .enumerate()
        .map(|(i, (day, value))| {
            let h = (*value as f64 / max as f64) * (H - TOP - BOTTOM);
            let x = i as f64 * slot + gap / 2.0;
            let y = H - BOTTOM - h;
            view! {
                <rect
                    x=format!("{x:.1}")
                    y=format!("{y:.1}")
                    width=format!("{:.1}", (slot - gap).max(1.0))
                    height=format!("{:.1}", h.max(if *value > 0 { 1.0 } else { 0.0 }))
                >
                    <title>{format!("{day}: {}", label(*value))}</title>
                </rect>
            }
        })
        .collect_view();
    view! {
        <figure class="chart">
            <figcaption>
                <span>{title}</span>
                <span class="chart-max">"highest " {label(highest)}</span>
            </figcaption>
            <svg
                viewBox=format!("0 0 {W} {H}")
                role="img"
                aria-label=summary
                preserveAspectRatio="none"
            >
                <line x1="0" y1=H - BOTTOM x2=W y2=H - BOTTOM class="axis"></line>
                {rects}
            </svg>
            <div class="chart-days" aria-hidden="true">
                <span>{first}</span>
                <span>{last}</span>
            </div>
        </figure>
    }
}

#[component]
fn LineTable(
    title: &'static str,
    first: &'static str,
    lines: Vec<UsageLine>,
    currency: String,
) -> impl IntoView {
    view! {
        <section class="card">
            <h2>{title}</h2>
            {if lines.is_empty() {
                view! { <p class="muted">"Nothing used in this period."</p> }.into_any()
            } else {
                view! {
                    <div class="table-wrap">
                        <table class="usage-table" data-testid=format!("usage-{}", first.to_lowercase())>
                            <thead>
                                <tr>
                                    <th scope="col">{first}</th>
                                    <th scope="col" class="num">"Calls"</th>
                                    <th scope="col" class="num">"Tokens in"</th>
                                    <th scope="col" class="num">"Tokens out"</th>
                                    <th scope="col" class="num">"Cost"</th>
                                </tr>
                            </thead>
                            <tbody>
                                {lines
                                    .into_iter()
                                    .map(|l| {
                                        view! {
                                            <tr>
                                                <td>{l.label.clone()}</td>
                                                <td class="num">{thousands(l.calls)}</td>
                                                <td class="num">{thousands(l.input_tokens)}</td>
                                                <td class="num">{thousands(l.output_tokens)}</td>
                                                <td class="num">{Money(l.cost).display(&currency)}</td>
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
        </section>
    }
}
