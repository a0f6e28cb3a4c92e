//! Schedule pages: the Schedules card on an agent's page (its schedules
//! and the form to add one) and `/schedules/{id}` (what it does, its next
//! times, run now, on and off, edit, its run history, delete). Every form
//! is a server-rendered `ActionForm`; with JavaScript the form previews an
//! expression as it is typed.

use leptos::{either::Either, prelude::*};
use leptos_meta::Title;
use leptos_router::hooks::use_params_map;

use super::{
    RunStatus, RunView, ScheduleView,
    api::{
        CreateScheduleAction, DeleteScheduleAction, RunScheduleNowAction, SetScheduleEnabledAction,
        UpdateScheduleAction, get_schedule, list_schedules, preview_schedule,
    },
};
use crate::{
    action_error,
    error::AppError,
    ui::{Field, FormError, RequireUser, TextAreaField, field_message, not_found_or},
};

/// Zones offered as suggestions (any IANA name is accepted).
const ZONES: &[&str] = &[
    "UTC",
    "Europe/London",
    "Europe/Dublin",
    "Europe/Lisbon",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Amsterdam",
    "Europe/Madrid",
    "Europe/Rome",
    "Europe/Stockholm",
    "Europe/Warsaw",
    "Europe/Athens",
    "Europe/Istanbul",
    "Europe/Kyiv",
    "Africa/Lagos",
    "Africa/Johannesburg",
    "Asia/Dubai",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Sydney",
    "Pacific/Auckland",
    "America/Sao_Paulo",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Toronto",
    "America/Mexico_City",
];

/// The fields of a schedule, filled from `initial`, with a live preview of
/// the expression once the page runs.
#[component]
fn ScheduleFields(
    initial: Option<ScheduleView>,
    #[prop(into)] error: Signal<Option<AppError>>,
) -> impl IntoView {
    let get = |f: fn(&ScheduleView) -> String| initial.as_ref().map(f).unwrap_or_default();
    let cron = RwSignal::new(get(|s| s.cron.clone()));
    let zone = RwSignal::new(
        initial
            .as_ref()
            .map(|s| s.time_zone.clone())
            .unwrap_or_else(|| "UTC".to_owned()),
    );
    let cron_error = field_message(error, "cron");
    let zone_error = field_message(error, "time_zone");
    // Asked as the fields change, once the page runs (the server renders
    // none: the form is its own preview after saving).
    let preview = RwSignal::new(None::<Result<super::Preview, AppError>>);
    Effect::new(move |_| {
        let (expression, time_zone) = (cron.get(), zone.get());
        if expression.trim().is_empty() {
            preview.set(None);
            return;
        }
        leptos::task::spawn_local(async move {
            let answer = preview_schedule(expression.clone(), time_zone.clone()).await;
            // Only the answer for what the fields say now.
            if cron.get_untracked() == expression && zone.get_untracked() == time_zone {
                preview.set(Some(answer));
            }
        });
    });
    let continues = initial.as_ref().is_some_and(|s| s.continue_conversation);
    let mails = initial.as_ref().is_some_and(|s| s.deliver_mail);
    let telegrams = initial.as_ref().is_some_and(|s| s.deliver_telegram);
    view! {
        <FormError error=error/>
        <Field label="Name" name="name" value=get(|s| s.name.clone()) error=error/>
        <div class="field-row">
            <div class="field" class:invalid=move || cron_error().is_some()>
                <label for="field-cron">"When (cron)"</label>
                <input
                    id="field-cron"
                    name="cron"
                    required
                    value=cron.get_untracked()
                    placeholder="0 9 * * 1-5"
                    on:input=move |ev| cron.set(event_target_value(&ev))
                    aria-describedby="field-cron-hint field-cron-error schedule-preview"
                    aria-invalid=move || cron_error().is_some().to_string()
                />
                <p class="hint" id="field-cron-hint">
                    "Minute, hour, day of the month, month, day of the week: "
                    <code>"0 9 * * 1-5"</code>
                    " is 09:00 on weekdays, "
                    <code>"30 7 1 * *"</code>
                    " 07:30 on the 1st of each month."
                </p>
                <p class="field-error" id="field-cron-error">{cron_error}</p>
            </div>
            <div class="field" class:invalid=move || zone_error().is_some()>
                <label for="field-time_zone">"Time zone"</label>
                <input
                    id="field-time_zone"
                    name="time_zone"
                    required
                    list="time-zones"
                    value=zone.get_untracked()
                    on:input=move |ev| zone.set(event_target_value(&ev))
                    aria-describedby="field-time_zone-error"
                    aria-invalid=move || zone_error().is_some().to_string()
                />
                <datalist id="time-zones">
                    {ZONES.iter().map(|z| view! { <option value=*z></option> }).collect_view()}
                </datalist>
                <p class="field-error" id="field-time_zone-error">{zone_error}</p>
            </div>
        </div>
        <div id="schedule-preview" class="schedule-preview" aria-live="polite">
            {move || match preview.get() {
                Some(Ok(p)) => Either::Left(view! {
                    <p data-testid="schedule-preview"><strong>{p.description}</strong></p>
                    <p class="muted">"Next: " {p.next_runs.join(" · ")}</p>
                }),
                Some(Err(err)) => Either::Right(Some(view! {
                    <p class="muted" data-testid="schedule-preview">
                        {err.field_message("cron").or_else(|| err.field_message("time_zone"))}
                    </p>
                })),
                None => Either::Right(None),
            }}
        </div>
        <TextAreaField
            label="Prompt"
            name="prompt"
            rows=4
            value=get(|s| s.prompt.clone())
            hint="What the agent is asked each time, as if you sent it. Stored encrypted."
            error=error
        />
        <label class="checkbox">
            <input type="checkbox" name="continue_conversation" value="yes" checked=continues/>
            " Continue one conversation (instead of starting a new one each time)"
        </label>
        <label class="checkbox">
            <input type="checkbox" name="deliver_mail" value="yes" checked=mails/>
            " Mail me each reply"
        </label>
        <label class="checkbox">
            <input type="checkbox" name="deliver_telegram" value="yes" checked=telegrams/>
            " Send each reply to the agent's Telegram chats (the people let in to its bot)"
        </label>
    }
}

/// An agent's schedules, made by the page at its top (a resource made
/// inside a suspended view would not hydrate in order).
pub type AgentScheduleList = Resource<Result<Vec<ScheduleView>, AppError>>;

pub fn agent_schedule_list(agent: Memo<String>) -> AgentScheduleList {
    Resource::new(move || agent.get(), list_schedules)
}

/// An agent's schedules and the form to add one (on the agent's page).
#[component]
pub fn AgentSchedules(agent_id: String, schedules: AgentScheduleList) -> impl IntoView {
    let create = CreateScheduleAction::new();
    let error = action_error!(create);
    view! {
        <section class="card" id="schedules" aria-labelledby="schedules-heading">
            <h2 id="schedules-heading">"Schedules"</h2>
            <p class="muted">
                "The agent runs on its own at the times you choose, with its tools and knowledge; "
                "each run is a conversation you can open."
            </p>
            <Transition fallback=|| ()>
                {move || Suspend::new(async move {
                    let list = schedules.await.unwrap_or_default();
                    (!list.is_empty())
                        .then(|| {
                            view! {
                                <ul class="schedule-list">
                                    {list
                                        .into_iter()
                                        .map(|s| {
                                            let next = if s.enabled {
                                                s.next_runs
                                                    .first()
                                                    .map(|n| format!("Next: {n}"))
                                                    .unwrap_or_default()
                                            } else {
                                                "Off".to_owned()
                                            };
                                            view! {
                                                <li data-testid="schedule" data-enabled=s.enabled.to_string()>
                                                    <a href=format!("/schedules/{}", s.id)>{s.name}</a>
                                                    <span class="muted">{s.description}</span>
                                                    <span class="muted">{next}</span>
                                                </li>
                                            }
                                        })
                                        .collect_view()}
                                </ul>
                            }
                        })
                })}
            </Transition>
            <details class="add-schedule" open=move || error.get().is_some()>
                <summary>"Add a schedule"</summary>
                <ActionForm action=create>
                    <input type="hidden" name="agent_id" value=agent_id.clone()/>
                    <ScheduleFields initial=None error=error/>
                    <button type="submit" class="primary" disabled=move || create.pending().get()>
                        "Add schedule"
                    </button>
                </ActionForm>
            </details>
        </section>
    }
}

#[component]
pub fn SchedulePage() -> impl IntoView {
    view! {
        <Title text="Schedule"/>
        <RequireUser>
            <ScheduleShow/>
        </RequireUser>
    }
}

fn duration_label(ms: Option<u64>) -> String {
    match ms {
        None => String::new(),
        Some(ms) if ms < 1_000 => format!("{ms} ms"),
        Some(ms) if ms < 60_000 => format!("{:.1} s", ms as f64 / 1_000.0),
        Some(ms) => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1_000),
    }
}

#[component]
fn RunRow(run: RunView, agent_id: String) -> impl IntoView {
    let tokens = match (run.input_tokens, run.output_tokens) {
        (Some(i), Some(o)) => format!("{i} in, {o} out"),
        _ => String::new(),
    };
    let failed = run.status == RunStatus::Failed;
    view! {
        <tr data-testid="schedule-run" data-status=run.status.as_str()>
            <td>{run.due} {run.manual.then_some(" (run now)")}</td>
            <td class:form-error=failed>
                {run.status.label()}
                {run.error.map(|e| view! { <br/> <span>{e}</span> })}
            </td>
            <td>{duration_label(run.duration_ms)}</td>
            <td>{tokens}</td>
            <td>
                {run
                    .conversation_id
                    .map(|c| {
                        view! { <a href=format!("/agents/{agent_id}/chat?c={c}")>"Open"</a> }
                    })}
            </td>
        </tr>
    }
}

#[component]
fn ScheduleShow() -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let update = UpdateScheduleAction::new();
    let toggle = SetScheduleEnabledAction::new();
    let run_now = RunScheduleNowAction::new();
    let delete = DeleteScheduleAction::new();
    let page = Resource::new(
        move || {
            (
                id(),
                update.version().get(),
                toggle.version().get(),
                run_now.version().get(),
            )
        },
        |(id, _, _, _)| get_schedule(id),
    );
    // While a run is under way, look again every second (without
    // JavaScript, the Refresh link does the same).
    Effect::new(move |_| {
        let busy = page.get().and_then(Result::ok).is_some_and(|p| {
            p.runs
                .iter()
                .any(|r| matches!(r.status, RunStatus::Queued | RunStatus::Running))
        });
        if busy {
            set_timeout(move || page.refetch(), std::time::Duration::from_secs(1));
        }
    });
    let update_error = action_error!(update);
    let run_error = action_error!(run_now);
    view! {
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match page.await {
                    Err(err) => Either::Left(not_found_or(err)),
                    Ok(p) => {
                        let s = p.schedule.clone();
                        let agent_href = format!("/agents/{}", s.agent_id);
                        let busy = p
                            .runs
                            .iter()
                            .any(|r| matches!(r.status, RunStatus::Queued | RunStatus::Running));
                        let (toggle_to, toggle_label) = if s.enabled {
                            ("no", "Turn off")
                        } else {
                            ("yes", "Turn on")
                        };
                        let agent_id = s.agent_id.clone();
                        let (id_run, id_toggle, id_edit, id_delete) =
                            (s.id.clone(), s.id.clone(), s.id.clone(), s.id.clone());
                        let refresh_href = format!("/schedules/{}", s.id);
                        let edit_initial = s.clone();
                        Either::Right(view! {
                            <Title text=s.name.clone()/>
                            <div class="page-head">
                                <h1>{s.name.clone()}</h1>
                                <ActionForm action=run_now attr:class="inline">
                                    <input type="hidden" name="id" value=id_run/>
                                    <button type="submit" class="primary">"Run now"</button>
                                </ActionForm>
                                <ActionForm action=toggle attr:class="inline">
                                    <input type="hidden" name="id" value=id_toggle/>
                                    <input type="hidden" name="enabled" value=toggle_to/>
                                    <button type="submit">{toggle_label}</button>
                                </ActionForm>
                            </div>
                            <FormError error=run_error/>
                            <p class="lead">
                                "Runs " <a href=agent_href>{p.agent_name.clone()}</a> ": "
                                <span data-testid="schedule-description">{s.description.clone()}</span>
                            </p>
                            <section class="card">
                                <dl>
                                    <dt>"State"</dt>
                                    <dd data-testid="schedule-state">{if s.enabled { "On" } else { "Off" }}</dd>
                                    <dt>"Next runs"</dt>
                                    <dd>
                                        {if s.next_runs.is_empty() {
                                            Either::Left("None while it is off")
                                        } else {
                                            Either::Right(view! {
                                                <ol class="next-runs">
                                                    {s.next_runs.iter().map(|t| view! { <li>{t.clone()}</li> }).collect_view()}
                                                </ol>
                                            })
                                        }}
                                    </dd>
                                    <dt>"Prompt"</dt>
                                    <dd class="plain">{s.prompt.clone()}</dd>
                                    <dt>"Conversation"</dt>
                                    <dd>
                                        {if s.continue_conversation { "Continues one conversation" } else { "A new one each run" }}
                                    </dd>
                                    <dt>"Mail"</dt>
                                    <dd>{if s.deliver_mail { "Each reply is mailed to you" } else { "No mail" }}</dd>
                                    <dt>"Telegram"</dt>
                                    <dd>
                                        {if s.deliver_telegram {
                                            "Each reply goes to the agent's Telegram chats"
                                        } else {
                                            "Not sent"
                                        }}
                                    </dd>
                                </dl>
                                <details class="edit-schedule" open=move || update_error.get().is_some()>
                                    <summary>"Edit"</summary>
                                    <ActionForm action=update>
                                        <input type="hidden" name="id" value=id_edit/>
                                        <ScheduleFields initial=Some(edit_initial) error=update_error/>
                                        <button type="submit" class="primary">"Save changes"</button>
                                    </ActionForm>
                                </details>
                            </section>
                            <section class="card" aria-labelledby="runs-heading">
                                <h2 id="runs-heading">"Run history"</h2>
                                {if p.runs.is_empty() {
                                    Either::Left(view! { <p class="muted">"No runs yet."</p> })
                                } else {
                                    Either::Right(view! {
                                        <div class="table-wrap">
                                            <table class="activity">
                                                <thead>
                                                    <tr>
                                                        <th scope="col">"Due"</th>
                                                        <th scope="col">"Status"</th>
                                                        <th scope="col">"Took"</th>
                                                        <th scope="col">"Tokens"</th>
                                                        <th scope="col">"Conversation"</th>
                                                    </tr>
                                                </thead>
                                                <tbody>
                                                    {p
                                                        .runs
                                                        .into_iter()
                                                        .map(|run| view! { <RunRow run=run agent_id=agent_id.clone()/> })
                                                        .collect_view()}
                                                </tbody>
                                            </table>
                                        </div>
                                    })
                                }}
                                {busy.then(move || view! { <a href=refresh_href>"Refresh"</a> })}
                            </section>
                            <section class="card danger-zone" aria-labelledby="delete-schedule-heading">
                                <h2 id="delete-schedule-heading">"Delete this schedule"</h2>
                                <p class="muted">"Its run history goes with it; the conversations it wrote stay."</p>
                                <ActionForm action=delete>
                                    <input type="hidden" name="id" value=id_delete/>
                                    <button type="submit" class="danger">"Delete schedule"</button>
                                </ActionForm>
                            </section>
                        })
                    }
                }
            })}
        </Transition>
    }
}
