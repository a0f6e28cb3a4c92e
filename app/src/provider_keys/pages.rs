//! Settings → Provider keys: add, test, replace and delete keys.

use leptos::prelude::*;
use leptos_meta::Title;

use super::{
    ProviderKeyView,
    api::{AddKeyAction, DeleteKeyAction, ReplaceKeyAction, TestKeyAction, list_provider_keys},
};
use crate::{
    action_error,
    provider::Provider,
    ui::{Field, FormError, RequireUser, error_view, field_message},
};

#[component]
pub fn KeysPage() -> impl IntoView {
    view! {
        <Title text="Provider keys"/>
        <RequireUser>
            <Keys/>
        </RequireUser>
    }
}

#[component]
fn Keys() -> impl IntoView {
    let add = AddKeyAction::new();
    let delete = DeleteKeyAction::new();
    let replace = ReplaceKeyAction::new();
    let keys = Resource::new(
        move || {
            (
                add.version().get(),
                delete.version().get(),
                replace.version().get(),
            )
        },
        |_| list_provider_keys(),
    );
    let add_error = action_error!(add);
    let provider_error = field_message(add_error, "provider");
    view! {
        <h1>"Provider keys"</h1>
        <p class="muted">
            "Keys are encrypted with your own data key. Enclave never shows a key again: "
            "only its last four characters."
        </p>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match keys.await {
                    Err(err) => error_view(err).into_any(),
                    Ok(list) if list.is_empty() => {
                        view! { <p class="card muted">"No keys yet. Add one below."</p> }.into_any()
                    }
                    Ok(list) => {
                        view! {
                            <ul class="key-list">
                                {list
                                    .into_iter()
                                    .map(|key| view! { <KeyRow key=key delete=delete replace=replace/> })
                                    .collect_view()}
                            </ul>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
        <section class="card">
            <h2>"Add a key"</h2>
            <ActionForm action=add>
                <FormError error=add_error/>
                <div class="field-row">
                    <div class="field" class:invalid=move || provider_error().is_some()>
                        <label for="field-provider">"Provider"</label>
                        <select id="field-provider" name="provider">
                            {Provider::WITH_KEYS
                                .into_iter()
                                .map(|p| view! { <option value=p.as_str()>{p.label()}</option> })
                                .collect_view()}
                        </select>
                        <p class="field-error">{provider_error}</p>
                    </div>
                    <Field label="Label" name="label" error=add_error/>
                </div>
                <Field label="API key" name="secret" kind="password" autocomplete="off" error=add_error/>
                <Field
                    label="Server address"
                    name="base_url"
                    kind="url"
                    required=false
                    hint="Only for OpenAI-compatible servers, e.g. http://localhost:11434/v1."
                    error=add_error
                />
                <button type="submit" class="primary">"Add key"</button>
            </ActionForm>
        </section>
    }
}

#[component]
fn KeyRow(
    key: ProviderKeyView,
    delete: DeleteKeyAction,
    replace: ReplaceKeyAction,
) -> impl IntoView {
    let test = TestKeyAction::new();
    let result = move || test.value().get();
    let (id_test, id_delete, id_replace) = (key.id.clone(), key.id.clone(), key.id.clone());
    view! {
        <li class="card key-row" data-testid="provider-key">
            <div>
                <strong>{key.label.clone()}</strong>
                <span class="muted">" · " {key.provider.label()}</span>
                <code class="masked">{key.masked.clone()}</code>
            </div>
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
                result()
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
                <summary>"Replace this key"</summary>
                <ActionForm action=replace>
                    <input type="hidden" name="id" value=id_replace/>
                    <label>
                        "New API key " <input type="password" name="secret" autocomplete="off" required/>
                    </label>
                    <button type="submit">"Replace"</button>
                </ActionForm>
            </details>
        </li>
    }
}
