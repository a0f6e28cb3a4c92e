//! Settings → API keys: make a key (name, what it may do, when it expires),
//! see it this once, list and revoke keys.
//!
//! Without JavaScript the form posts to `POST /settings/api-keys`, which
//! renders this page with the new key (or the reason it was refused) in an
//! `ApiKeyEcho`: the key is in that response and nowhere else, never in a
//! URL. Hydrated, the form calls the server function in place.

use leptos::prelude::*;
use leptos_meta::Title;

use super::{
    ApiKeyEcho, ApiKeyView, CreatedKey, Scope,
    api::{CreateApiKeyAction, RevokeApiKeyAction, list_api_keys},
};
use crate::{
    action_error,
    error::AppError,
    ui::{Field, FormError, RequireUser, error_view, field_message},
};

/// When a new key may expire, in days ("" is never).
const EXPIRIES: [(&str, &str); 4] = [
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("365", "In a year"),
    ("", "Never"),
];

#[component]
pub fn ApiKeysPage() -> impl IntoView {
    view! {
        <Title text="API keys"/>
        <RequireUser>
            <ApiKeys/>
        </RequireUser>
    }
}

#[component]
fn ApiKeys() -> impl IntoView {
    let create = CreateApiKeyAction::new();
    let revoke = RevokeApiKeyAction::new();
    let keys = Resource::new(
        move || (create.version().get(), revoke.version().get()),
        |_| list_api_keys(),
    );
    // The plain post's outcome reaches the browser as the resource's
    // serialized value, so the hydrated page matches the server's.
    let echo = Resource::new(
        || (),
        |_| {
            #[cfg(feature = "ssr")]
            let echo = use_context::<ApiKeyEcho>();
            #[cfg(not(feature = "ssr"))]
            let echo: Option<ApiKeyEcho> = None;
            async move { echo }
        },
    );
    let create_error: Signal<Option<AppError>> = action_error!(create);
    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        #[cfg(feature = "hydrate")]
        {
            use leptos::form::FromFormData as _;
            ev.prevent_default();
            if let Ok(input) = super::api::CreateApiKey::from_event(&ev) {
                create.dispatch(input);
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    };
    view! {
        <h1>"API keys"</h1>
        <p class="muted">
            "A program holding a key acts as you through Enclave's OpenAI-compatible API, "
            "within what you let the key do. Each agent is a model there. "
            "Enclave keeps only a hash of the key: revoke one you no longer trust."
        </p>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                let echo = echo.await.unwrap_or_default();
                let echoed_created = echo.created.clone();
                let created = Signal::derive(move || {
                    create
                        .value()
                        .get()
                        .and_then(Result::ok)
                        .or_else(|| echoed_created.clone())
                });
                let echoed_error = echo.error.clone();
                let error = Signal::derive(move || {
                    create_error.get().or_else(|| echoed_error.clone())
                });
                let scopes_error = field_message(error, "scopes");
                let expires_error = field_message(error, "expires");
                // A first visit offers chat; a refused post keeps its choice.
                let chosen = if echo.error.is_some() {
                    echo.scopes.clone()
                } else {
                    vec![Scope::Chat.as_str().to_owned()]
                };
                let expires = if echo.error.is_some() { echo.expires.clone() } else { "90".to_owned() };
                view! {
                    {move || created.get().map(|created| view! { <NewKey created=created/> })}
                    <section class="card">
                        <h2>"New key"</h2>
                        <form method="post" action="/settings/api-keys" on:submit=on_submit>
                            <FormError error=error/>
                            <Field
                                label="Name"
                                name="name"
                                value=echo.name.clone()
                                hint="What will use it, like \"Reports script\"."
                                error=error
                            />
                            <fieldset class="field" class:invalid=move || scopes_error().is_some()>
                                <legend>"It may"</legend>
                                {Scope::ALL
                                    .into_iter()
                                    .map(|scope| {
                                        view! {
                                            <label class="checkbox">
                                                <input
                                                    type="checkbox"
                                                    name="scopes[]"
                                                    value=scope.as_str()
                                                    checked=chosen.iter().any(|s| s == scope.as_str())
                                                />
                                                " " {scope.label()}
                                            </label>
                                        }
                                    })
                                    .collect_view()}
                                <p class="field-error">{scopes_error}</p>
                            </fieldset>
                            <div class="field" class:invalid=move || expires_error().is_some()>
                                <label for="field-expires">"Expires"</label>
                                <select id="field-expires" name="expires">
                                    {EXPIRIES
                                        .into_iter()
                                        .map(|(value, label)| {
                                            view! {
                                                <option value=value selected=expires == value>
                                                    {label}
                                                </option>
                                            }
                                        })
                                        .collect_view()}
                                </select>
                                <p class="field-error">{expires_error}</p>
                            </div>
                            <button type="submit" class="primary" disabled=move || create.pending().get()>
                                "Create key"
                            </button>
                        </form>
                    </section>
                }
            })}
        </Transition>
        <h2>"Your keys"</h2>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match keys.await {
                    Err(err) => error_view(err).into_any(),
                    Ok(list) if list.is_empty() => {
                        view! { <p class="card muted">"No keys yet."</p> }.into_any()
                    }
                    Ok(list) => {
                        view! {
                            <ul class="key-list">
                                {list
                                    .into_iter()
                                    .map(|key| view! { <KeyRow key=key revoke=revoke/> })
                                    .collect_view()}
                            </ul>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
        <AgentsAsModels/>
        <p class="muted"><a href="/settings">"Back to settings"</a></p>
    }
}

/// The user's agents as a program names them (`model`).
#[component]
fn AgentsAsModels() -> impl IntoView {
    let agents = Resource::new(|| (), |_| crate::agents::api::list_agents(None));
    view! {
        <h2>"Your agents as models"</h2>
        <Transition fallback=|| ()>
            {move || Suspend::new(async move {
                match agents.await {
                    Err(err) => error_view(err).into_any(),
                    Ok(list) if list.is_empty() => {
                        view! {
                            <p class="muted">
                                "No agents yet: " <a href="/agents/new">"create one"</a>
                                ", then name it as the model."
                            </p>
                        }
                            .into_any()
                    }
                    Ok(list) => {
                        view! {
                            <table class="models" data-testid="agents-as-models">
                                <thead>
                                    <tr><th>"Agent"</th><th>"model"</th><th>"or its id"</th></tr>
                                </thead>
                                <tbody>
                                    {list
                                        .into_iter()
                                        .map(|a| {
                                            view! {
                                                <tr>
                                                    <td>{a.name.clone()}</td>
                                                    <td><code>{crate::agents::slug(&a.name)}</code></td>
                                                    <td><code>{a.id.clone()}</code></td>
                                                </tr>
                                            }
                                        })
                                        .collect_view()}
                                </tbody>
                            </table>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
    }
}

/// The key just made, with how to use it: shown this once.
#[component]
fn NewKey(created: CreatedKey) -> impl IntoView {
    let example = format!(
        "curl {base}/chat/completions \\\n  -H \"Authorization: Bearer {secret}\" \\\n  \
         -H \"Content-Type: application/json\" \\\n  \
         -d '{{\"model\": \"AGENT-ID\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello\"}}]}}'",
        base = created.api_base,
        secret = created.secret,
    );
    view! {
        <section class="card new-key" data-testid="new-api-key" role="status">
            <h2>"Your new key: " {created.key.name.clone()}</h2>
            <p>
                <strong>"Copy it now."</strong>
                " Enclave keeps only its hash and cannot show it again."
            </p>
            <p><code class="secret" data-testid="api-key-secret">{created.secret.clone()}</code></p>
            <details>
                <summary>"How to use it"</summary>
                <p class="muted">
                    "Any OpenAI client works: set its base URL to "
                    <code>{created.api_base.clone()}</code>
                    " and its API key to this one. The model is one of your agents, as listed "
                    "below."
                </p>
                <pre><code>{example}</code></pre>
            </details>
        </section>
    }
}

#[component]
fn KeyRow(key: ApiKeyView, revoke: RevokeApiKeyAction) -> impl IntoView {
    let status = if key.active {
        "Active"
    } else {
        "Not working: revoked or expired"
    };
    let dates = format!(
        "Made {} · {} · {}",
        key.created,
        key.expires
            .as_deref()
            .map(|d| format!("expires {d}"))
            .unwrap_or_else(|| "never expires".into()),
        key.last_used
            .as_deref()
            .map(|d| format!("last used {d}"))
            .unwrap_or_else(|| "never used".into()),
    );
    let id = key.id.clone();
    view! {
        <li class="card key-row" data-testid="api-key" class:inactive=!key.active>
            <div>
                <strong>{key.name.clone()}</strong>
                " "
                <code class="masked">{key.prefix.clone()}</code>
                <p class="muted">{key.scopes.join(", ")} " · " {dates}</p>
                <p class=if key.active { "key-state ok" } else { "key-state muted" }>{status}</p>
            </div>
            {key
                .active
                .then(|| {
                    view! {
                        <div class="actions">
                            <ActionForm action=revoke attr:class="inline">
                                <input type="hidden" name="id" value=id.clone()/>
                                <button type="submit" class="danger">"Revoke"</button>
                            </ActionForm>
                        </div>
                    }
                })}
        </li>
    }
}
