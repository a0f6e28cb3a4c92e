//! Agents and provider keys through the real HTTP stack: CRUD, validation,
//! masked keys, key tests against a fake provider speaking the real formats,
//! the key fallback order, import/export, and another user's ids.

use std::collections::HashMap;

use crate::common::{TestApp, keyring, relaxed_settings, with_fake_provider};
use app::{
    agents::domain::Provider,
    platform::{Settings, settings::PlatformKeys},
};
use reqwest::{Client, header};
use serde_json::{Value, json};
use sqlx::PgPool;

const SECRET: &str = "good-canary-secret-1234";

fn settings_for(fake: std::net::SocketAddr, platform: &[(Provider, &str)]) -> Settings {
    let settings = Settings {
        platform_keys: PlatformKeys::new(
            platform
                .iter()
                .map(|(p, k)| (*p, (*k).to_owned()))
                .collect::<HashMap<_, _>>(),
        ),
        ..relaxed_settings()
    };
    with_fake_provider(settings, fake)
}

async fn spawn(db: PgPool, platform: &[(Provider, &str)]) -> (TestApp, std::net::SocketAddr) {
    let fake = server::fake_provider::start().await.unwrap();
    let app = TestApp::spawn_full(db, settings_for(fake, platform), keyring(1, &[])).await;
    (app, fake)
}

fn agent_form<'a>(name: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("name", name),
        ("description", "Finds papers"),
        ("system_prompt", "You are careful."),
        ("provider", "openai"),
        ("model", "gpt-4o-mini"),
        ("base_url", ""),
        ("temperature", "0.7"),
        ("top_p", ""),
        ("max_output_tokens", "1024"),
        ("starter_1", "What is new?"),
        ("avatar", "🦀"),
    ];
    for (k, v) in extra {
        form.retain(|(key, _)| key != k);
        form.push((k, v));
    }
    form
}

async fn json(app: &TestApp, client: &Client, name: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let res = app.call(client, name, form).await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn create(app: &TestApp, client: &Client, name: &str) -> String {
    let (status, body) = json(app, client, "create_agent", &agent_form(name, &[])).await;
    assert_eq!(status, 200, "{body}");
    let (_, list) = json(app, client, "list_agents", &[]).await;
    list.as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .expect("the new agent is listed")
}

async fn add_key(
    app: &TestApp,
    client: &Client,
    provider: &str,
    label: &str,
    secret: &str,
    base_url: &str,
) -> String {
    let (status, body) = json(
        app,
        client,
        "add_provider_key",
        &[
            ("provider", provider),
            ("label", label),
            ("secret", secret),
            ("base_url", base_url),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, keys) = json(app, client, "list_provider_keys", &[]).await;
    keys.as_array()
        .unwrap()
        .iter()
        .find(|k| k["label"] == label)
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .unwrap()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn agents_can_be_created_listed_edited_and_deleted(db: PgPool) {
    let (app, _) = spawn(db, &[]).await;
    let client = app.signed_up("crud@example.com").await;
    let (_, empty) = json(&app, &client, "list_agents", &[]).await;
    assert_eq!(empty, json!([]));

    let id = create(&app, &client, "Researcher").await;
    let (status, agent) = json(&app, &client, "get_agent", &[("id", &id)]).await;
    assert_eq!(status, 200);
    assert_eq!(agent["spec"]["name"], "Researcher");
    assert_eq!(agent["spec"]["temperature"], json!(0.7));
    assert_eq!(agent["spec"]["max_output_tokens"], 1024);
    assert_eq!(agent["spec"]["starters"], json!(["What is new?"]));
    assert_eq!(agent["spec"]["avatar"], "🦀");

    let mut form = agent_form(
        "Reviewer",
        &[
            ("provider", "anthropic"),
            ("model", "claude-sonnet-4-5"),
            ("temperature", ""),
        ],
    );
    form.push(("id", &id));
    let (status, body) = json(&app, &client, "update_agent", &form).await;
    assert_eq!(status, 200, "{body}");
    let (_, agent) = json(&app, &client, "get_agent", &[("id", &id)]).await;
    assert_eq!(agent["spec"]["name"], "Reviewer");
    assert_eq!(agent["spec"]["provider"], "anthropic");
    assert_eq!(agent["spec"]["temperature"], Value::Null);

    create(&app, &client, "Translator").await;
    let (_, found) = json(&app, &client, "list_agents", &[("query", "transl")]).await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["name"], "Translator");

    let (status, body) = json(&app, &client, "delete_agent", &[("id", &id)]).await;
    assert_eq!(status, 422, "deleting needs the confirmation box");
    assert!(body["Invalid"][0]["field"] == "confirm");
    let (status, _) = json(
        &app,
        &client,
        "delete_agent",
        &[("id", &id), ("confirm", "yes")],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = json(&app, &client, "get_agent", &[("id", &id)]).await;
    assert_eq!(status, 404);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn invalid_agents_are_refused_field_by_field(db: PgPool) {
    let (app, _) = spawn(db, &[]).await;
    let client = app.signed_up("invalid@example.com").await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("name", "")], "name"),
        (
            &[("provider", "anthropic"), ("temperature", "1.5")],
            "temperature",
        ),
        (&[("provider", "openai_compatible")], "base_url"),
        (&[("base_url", "file:///etc/passwd")], "base_url"),
        (&[("max_output_tokens", "-3")], "max_output_tokens"),
        (&[("avatar", "not an emoji")], "avatar"),
    ];
    for (extra, field) in cases {
        let form = agent_form("Bad", extra);
        let (status, body) = json(&app, &client, "create_agent", &form).await;
        assert_eq!(status, 422, "{field}: {body}");
        assert!(
            body["Invalid"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == *field),
            "{field}: {body}"
        );
    }
    let (_, list) = json(&app, &client, "list_agents", &[]).await;
    assert_eq!(list, json!([]), "nothing was stored");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_stored_key_is_never_returned_only_masked(db: PgPool) {
    let (app, _) = spawn(db, &[]).await;
    let client = app.signed_up("masked@example.com").await;
    let key_id = add_key(&app, &client, "openai", "Work", SECRET, "").await;
    let agent = create(&app, &client, "Uses the key").await;

    let mut bodies = Vec::new();
    for (name, form) in [
        ("list_provider_keys", vec![]),
        ("get_agent", vec![("id", agent.as_str())]),
        ("list_agents", vec![]),
        ("test_provider_key", vec![("id", key_id.as_str())]),
        ("current_user", vec![]),
    ] {
        let res = app.call(&client, name, &form).await;
        bodies.push((name, res.text().await.unwrap()));
    }
    let export = client
        .get(app.url(&format!("/api/agents/{agent}/export")))
        .send()
        .await
        .unwrap();
    bodies.push(("export", export.text().await.unwrap()));
    for (name, body) in &bodies {
        assert!(
            !body.contains(SECRET) && !body.contains("canary-secret"),
            "{name} leaked the key: {body}"
        );
    }
    let (_, keys) = json(&app, &client, "list_provider_keys", &[]).await;
    assert_eq!(keys[0]["masked"], "…1234");

    // Replacing changes what is stored (and shown), deleting removes it.
    let (status, _) = json(
        &app,
        &client,
        "replace_provider_key",
        &[("id", &key_id), ("secret", "good-new-key-9876")],
    )
    .await;
    assert_eq!(status, 200);
    let (_, keys) = json(&app, &client, "list_provider_keys", &[]).await;
    assert_eq!(keys[0]["masked"], "…9876");
    let (status, _) = json(&app, &client, "delete_provider_key", &[("id", &key_id)]).await;
    assert_eq!(status, 200);
    let (_, keys) = json(&app, &client, "list_provider_keys", &[]).await;
    assert_eq!(keys, json!([]));
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn testing_a_key_asks_the_provider_and_answers_in_plain_words(db: PgPool) {
    let (app, fake) = spawn(db, &[]).await;
    let client = app.signed_up("tester@example.com").await;
    let compat = format!("http://{fake}/compat/v1");
    let cases: Vec<(&str, &str, String, bool, &str)> = vec![
        (
            "openai",
            "good-openai-1",
            String::new(),
            true,
            "gpt-4o-mini",
        ),
        (
            "openai",
            "sk-bad-key-5555",
            String::new(),
            false,
            "rejected this key",
        ),
        (
            "openai",
            "quota-key-1",
            String::new(),
            false,
            "quota is used up",
        ),
        (
            "openai",
            "down-key-1",
            String::new(),
            false,
            "having problems",
        ),
        (
            "anthropic",
            "good-ant-1",
            String::new(),
            true,
            "claude-sonnet-4-5",
        ),
        (
            "anthropic",
            "bad-ant-1",
            String::new(),
            false,
            "rejected this key",
        ),
        (
            "google",
            "good-goog-1",
            String::new(),
            true,
            "gemini-2.5-flash",
        ),
        (
            "google",
            "bad-goog-1",
            String::new(),
            false,
            "rejected this key",
        ),
        ("openai_compatible", "good-local-1", compat, true, "gpt-4o"),
        (
            "openai_compatible",
            "good-local-2",
            "http://127.0.0.1:9/v1".into(),
            false,
            "private, local or reserved",
        ),
        (
            "openai_compatible",
            "good-local-3",
            "http://169.254.169.254/v1".into(),
            false,
            "private, local or reserved",
        ),
    ];
    for (i, (provider, secret, base_url, ok, expect)) in cases.into_iter().enumerate() {
        let id = add_key(&app, &client, provider, &format!("k{i}"), secret, &base_url).await;
        let (status, result) = json(&app, &client, "test_provider_key", &[("id", &id)]).await;
        assert_eq!(status, 200);
        assert_eq!(result["ok"], ok, "{provider} {secret}: {result}");
        let message = result["message"].as_str().unwrap();
        assert!(message.contains(expect), "{provider} {secret}: {message}");
        assert!(
            !message.contains(secret),
            "the provider's echo of the key must not reach the user"
        );
    }
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn an_agent_uses_its_chosen_key_then_yours_then_the_platforms(db: PgPool) {
    // No platform key: the agent explains what is missing.
    let (app, _) = spawn(db.clone(), &[]).await;
    let client = app.signed_up("fallback@example.com").await;
    let agent = create(&app, &client, "Fallback").await;
    let source = |app: &TestApp, client: &Client, agent: &str| {
        let (app, client, agent) = (app.url(""), client.clone(), agent.to_owned());
        async move {
            let res = client
                .post(format!("{app}/api/get_agent"))
                .header(header::ACCEPT, "application/json")
                .form(&[("id", agent)])
                .send()
                .await
                .unwrap();
            res.json::<Value>().await.unwrap()["key_source"].clone()
        }
    };
    let missing = source(&app, &client, &agent).await;
    assert!(
        missing["Missing"]["message"]
            .as_str()
            .unwrap()
            .contains("No OpenAI key"),
        "{missing}"
    );
    drop(app);

    // With a platform key for OpenAI, the same agent uses it.
    let (app, _) = spawn(db, &[(Provider::Openai, "sk-platform")]).await;
    let client = app.client();
    assert_eq!(
        app.sign_in(&client, "fallback@example.com", crate::common::PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(source(&app, &client, &agent).await, json!("Platform"));

    // The user's own key wins over the platform's.
    let work = add_key(&app, &client, "openai", "Work", "good-work-1111", "").await;
    assert_eq!(
        source(&app, &client, &agent).await,
        json!({"Yours": {"label": "Work", "masked": "…1111"}})
    );

    // A key chosen for the agent wins over the newest one.
    add_key(&app, &client, "openai", "Personal", "good-home-2222", "").await;
    let mut form = agent_form("Fallback", &[]);
    form.push(("id", &agent));
    form.push(("provider_key_id", &work));
    assert_eq!(app.call(&client, "update_agent", &form).await.status(), 200);
    assert_eq!(
        source(&app, &client, &agent).await,
        json!({"Chosen": {"label": "Work", "masked": "…1111"}})
    );

    // Deleting the chosen key falls back to the user's remaining key.
    assert_eq!(
        app.call(&client, "delete_provider_key", &[("id", &work)])
            .await
            .status(),
        200
    );
    assert_eq!(
        source(&app, &client, &agent).await,
        json!({"Yours": {"label": "Personal", "masked": "…2222"}})
    );

    // A key of another provider cannot be chosen.
    let ant = add_key(&app, &client, "anthropic", "Claude", "good-ant-3333", "").await;
    let mut form = agent_form("Fallback", &[]);
    form.push(("id", &agent));
    form.push(("provider_key_id", &ant));
    let (status, body) = json(&app, &client, "update_agent", &form).await;
    assert_eq!(status, 422);
    assert_eq!(body["Invalid"][0]["field"], "provider_key_id");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn agents_export_without_secrets_and_import_back(db: PgPool) {
    let (app, _) = spawn(db, &[]).await;
    let client = app.signed_up("export@example.com").await;
    let key = add_key(&app, &client, "openai", "Work", SECRET, "").await;
    let id = create(&app, &client, "Exported").await;
    let mut form = agent_form("Exported", &[]);
    form.push(("id", &id));
    form.push(("provider_key_id", &key));
    assert_eq!(app.call(&client, "update_agent", &form).await.status(), 200);

    let res = client
        .get(app.url(&format!("/api/agents/{id}/export")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .contains("agent-exported.json")
    );
    let file = res.text().await.unwrap();
    let parsed: Value = serde_json::from_str(&file).unwrap();
    assert_eq!(parsed["enclave_agent"], 1);
    assert_eq!(parsed["name"], "Exported");
    assert!(!file.contains(&key) && !file.contains("canary"), "{file}");

    let (status, _) = json(&app, &client, "import_agent", &[("json", &file)]).await;
    assert_eq!(status, 200);
    let (_, list) = json(&app, &client, "list_agents", &[]).await;
    assert_eq!(list.as_array().unwrap().len(), 2);

    for (bad, says) in [
        ("{oops", "not valid JSON"),
        ("[]", "not an Enclave agent export"),
        (
            r#"{"enclave_agent":1,"name":"x","provider":"openai"}"#,
            "model",
        ),
    ] {
        let (status, body) = json(&app, &client, "import_agent", &[("json", bad)]).await;
        assert_eq!(status, 422, "{bad}");
        let message = body["Invalid"][0]["message"].as_str().unwrap();
        assert_eq!(body["Invalid"][0]["field"], "file");
        assert!(message.contains(says), "{bad}: {message}");
    }
    let (_, list) = json(&app, &client, "list_agents", &[]).await;
    assert_eq!(list.as_array().unwrap().len(), 2, "nothing half-imported");

    // Duplicate makes a copy with a new name.
    let (status, _) = json(&app, &client, "duplicate_agent", &[("id", &id)]).await;
    assert_eq!(status, 200);
    let (_, list) = json(&app, &client, "list_agents", &[("query", "copy of")]).await;
    assert_eq!(list[0]["name"], "Copy of Exported");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn another_users_agents_and_keys_are_not_found(db: PgPool) {
    let (app, _) = spawn(db, &[]).await;
    let alice = app.signed_up("alice@example.com").await;
    let bob = app.signed_up("bob@example.com").await;
    let agent = create(&app, &alice, "Alice's agent").await;
    let key = add_key(&app, &alice, "openai", "Alice's key", SECRET, "").await;
    let (_, agent_before) = json(&app, &alice, "get_agent", &[("id", &agent)]).await;
    let (_, keys_before) = json(&app, &alice, "list_provider_keys", &[]).await;

    let mut update = agent_form("Hijacked", &[]);
    update.push(("id", &agent));
    let mut create_with_key = agent_form("Borrower", &[]);
    create_with_key.push(("provider_key_id", &key));
    let attempts: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("get_agent", vec![("id", &agent)]),
        ("update_agent", update),
        ("delete_agent", vec![("id", &agent), ("confirm", "yes")]),
        ("duplicate_agent", vec![("id", &agent)]),
        ("create_agent", create_with_key),
        (
            "replace_provider_key",
            vec![("id", &key), ("secret", "good-evil-0000")],
        ),
        ("delete_provider_key", vec![("id", &key)]),
        ("test_provider_key", vec![("id", &key)]),
    ];
    for (name, form) in attempts {
        let res = app.call(&bob, name, &form).await;
        assert_eq!(
            res.status(),
            404,
            "{name} answered Bob with {}",
            res.status()
        );
        assert_eq!(res.text().await.unwrap(), "\"NotFound\"", "{name}");
    }
    let export = bob
        .get(app.url(&format!("/api/agents/{agent}/export")))
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 404);
    // Malformed ids are not found either, never an error with detail.
    assert_eq!(
        app.call(&bob, "get_agent", &[("id", "../../etc")])
            .await
            .status(),
        404
    );

    // Nothing of Alice's changed, and Bob has nothing.
    assert_eq!(
        json(&app, &alice, "get_agent", &[("id", &agent)]).await.1,
        agent_before
    );
    assert_eq!(
        json(&app, &alice, "list_provider_keys", &[]).await.1,
        keys_before
    );
    assert_eq!(json(&app, &bob, "list_agents", &[]).await.1, json!([]));

    // Signed out, every agent function asks for a session.
    let stranger = app.client();
    assert_eq!(app.call(&stranger, "list_agents", &[]).await.status(), 401);
    assert_eq!(
        app.call(&stranger, "get_agent", &[("id", &agent)])
            .await
            .status(),
        401
    );
}
