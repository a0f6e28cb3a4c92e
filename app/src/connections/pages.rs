//! Settings → Connections: add, test, replace and delete the credentials
//! tools use. Every form works without JavaScript.

use leptos::prelude::*;
use leptos_meta::Title;

use super::{
    ConnectionKind, ConnectionView,
    api::{
        AddConnectionAction, DeleteConnectionAction, ReplaceConnectionAction, TestConnectionAction,
        list_connections,
    },
};
use crate::{
    action_error,
    teams::pages::BelongsTo,
    ui::{Field, FormError, RequireUser, error_view, field_message},
};

#[component]
pub fn ConnectionsPage() -> impl IntoView {
    view! {
        <Title text="Connections"/>
        <RequireUser>
            <Connections/>
        </RequireUser>
    }
}

#[component]
fn Connections() -> impl IntoView {
    let add = AddConnectionAction::new();
    let delete = DeleteConnectionAction::new();
    let replace = ReplaceConnectionAction::new();
    let list = Resource::new(
        move || {
            (
                add.version().get(),
                delete.version().get(),
                replace.version().get(),
            )
        },
        |_| list_connections(),
    );
    let add_error = action_error!(add);
    let kind_error = field_message(add_error, "kind");
    let teams = Resource::new(|| (), |_| crate::teams::api::team_choices());
    view! {
        <h1>"Connections"</h1>
        <p class="muted">
            "The accounts your agents' tools use. Each secret is encrypted with your own data key, "
            "shown only by its last four characters, and never given to a model or written to a log."
        </p>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Err(err) => error_view(err).into_any(),
                    Ok(list) if list.is_empty() => {
                        view! { <p class="card muted">"No connections yet. Add one below."</p> }.into_any()
                    }
                    Ok(list) => {
                        view! {
                            <ul class="key-list">
                                {list
                                    .into_iter()
                                    .map(|c| view! { <ConnectionRow connection=c delete=delete replace=replace/> })
                                    .collect_view()}
                            </ul>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
        <section class="card">
            <h2>"Add a connection"</h2>
            <ActionForm action=add>
                <FormError error=add_error/>
                <div class="field-row">
                    <div class="field" class:invalid=move || kind_error().is_some()>
                        <label for="field-kind">"Service"</label>
                        <select id="field-kind" name="kind">
                            {ConnectionKind::ALL
                                .into_iter()
                                .map(|k| view! { <option value=k.as_str()>{k.label()}</option> })
                                .collect_view()}
                        </select>
                        <p class="field-error">{kind_error}</p>
                    </div>
                    <Field label="Label" name="label" error=add_error/>
                </div>
                <Transition fallback=|| ()>
                    {move || Suspend::new(async move {
                        view! {
                            <BelongsTo
                                teams=teams.await.unwrap_or_default()
                                hint="A team's connection is used by the team's agents only, and managed by its admins."
                            />
                        }
                    })}
                </Transition>
                <Field
                    label="Token, password or header value"
                    name="secret"
                    kind="password"
                    autocomplete="off"
                    error=add_error
                />
                <fieldset class="field">
                    <legend>"Email (SMTP) only"</legend>
                    <div class="field-row">
                        <Field label="Mail server" name="smtp_host" required=false hint="Like smtp.example.com." error=add_error/>
                        <Field label="Port" name="smtp_port" required=false hint="587 (STARTTLS) or 465 (TLS)." error=add_error/>
                    </div>
                    <div class="field-row">
                        <Field label="User name" name="smtp_username" required=false error=add_error/>
                        <Field label="Send as" name="smtp_from" required=false hint="The sender address." error=add_error/>
                    </div>
                    <div class="field">
                        <label for="field-smtp_security">"Protection"</label>
                        <select id="field-smtp_security" name="smtp_security">
                            <option value="starttls">"STARTTLS (port 587)"</option>
                            <option value="tls">"TLS (port 465)"</option>
                        </select>
                    </div>
                </fieldset>
                <fieldset class="field">
                    <legend>"Web API (secret header) only"</legend>
                    <div class="field-row">
                        <Field label="Header name" name="header_name" required=false hint="Like X-Api-Key." error=add_error/>
                        <Field label="For host" name="header_host" required=false hint="The one host it is sent to, like api.example.com." error=add_error/>
                    </div>
                </fieldset>
                <button type="submit" class="primary">"Add connection"</button>
            </ActionForm>
        </section>
    }
}

#[component]
fn ConnectionRow(
    connection: ConnectionView,
    delete: DeleteConnectionAction,
    replace: ReplaceConnectionAction,
) -> impl IntoView {
    let test = TestConnectionAction::new();
    let (id_test, id_delete, id_replace) = (
        connection.id.clone(),
        connection.id.clone(),
        connection.id.clone(),
    );
    let detail = connection
        .settings
        .smtp
        .as_ref()
        .map(|s| format!("{} · {}", s.host, s.from))
        .or_else(|| {
            connection
                .settings
                .header
                .as_ref()
                .map(|h| format!("{} for {}", h.name, h.host))
        });
    view! {
        <li class="card key-row" data-testid="connection">
            <div>
                <strong>{connection.label.clone()}</strong>
                <span class="muted">" · " {connection.kind.label()}</span>
                {connection
                    .sharing.team
                    .clone()
                    .map(|team| view! { <span class="badge" data-testid="connection-team">{team}</span> })}
                <code class="masked">{connection.masked.clone()}</code>
                {detail.map(|d| view! { <p class="muted">{d}</p> })}
            </div>
            {connection.sharing.can_edit.then(move || view! {
            <div class="actions">
                <ActionForm action=test attr:class="inline">
                    <input type="hidden" name="id" value=id_test/>
                    <button type="submit" disabled=move || test.pending().get()>"Test"</button>
                </ActionForm>
                <ActionForm action=delete attr:class="inline">
                    <input type="hidden" name="id" value=id_delete/>
                    <button type="submit" class="danger">"Delete"</button>
                </ActionForm>
            </div>
            {move || {
                test.value()
                    .get()
                    .map(|r| match r {
                        Ok(t) => {
                            view! {
                                <p class=if t.ok { "key-test ok" } else { "key-test failed" } role="status">
                                    {t.message}
                                </p>
                            }
                                .into_any()
                        }
                        Err(err) => error_view(err).into_any(),
                    })
            }}
            <details>
                <summary>"Replace the secret"</summary>
                <ActionForm action=replace>
                    <input type="hidden" name="id" value=id_replace/>
                    <label>
                        "New secret " <input type="password" name="secret" autocomplete="off" required/>
                    </label>
                    <button type="submit">"Replace"</button>
                </ActionForm>
            </details>
            })}
        </li>
    }
}
