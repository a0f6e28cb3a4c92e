//! Personal API keys: made with a name, scopes and an expiry, shown once
//! and kept as a hash; they act for their owner on `/v1` within their
//! scopes until revoked or expired (or the account is being deleted);
//! errors in OpenAI's shape; another user's key is 404.

use reqwest::Client;
use serde_json::Value;
use sqlx::PgPool;

use crate::common::{TestApp, chat_settings, keyring, ok_json, scripted_agent};

async fn app(db: PgPool) -> (TestApp, std::net::SocketAddr) {
    let fake = server::fake_provider::start().await.unwrap();
    (
        TestApp::spawn_full(db, chat_settings(fake), keyring(1, &[])).await,
        fake,
    )
}

async fn create(app: &TestApp, client: &Client, name: &str, scopes: &[&str]) -> Value {
    let mut form = vec![("name", name), ("expires", "30")];
    form.extend(scopes.iter().map(|s| ("scopes[]", *s)));
    ok_json(app.call(client, "create_api_key", &form).await).await
}

async fn models(app: &TestApp, secret: &str) -> reqwest::Response {
    Client::new()
        .get(app.url("/v1/models"))
        .bearer_auth(secret)
        .send()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_key_acts_for_its_owner_within_its_scopes_until_revoked_or_expired(db: PgPool) {
    let (app, fake) = app(db).await;
    let client = app.signed_up("keys@example.com").await;
    let agent = scripted_agent(&app, &client, fake, "openai", "fake:echo", &[], &[], "").await;
    let created = create(&app, &client, "Reports script", &["agents:read"]).await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("enc_") && secret.len() > 40);
    assert_eq!(created["key"]["scopes"], serde_json::json!(["agents:read"]));
    assert!(created["key"]["expires"].is_string());

    // Shown once: the list has its first characters only, the database
    // its hash only.
    let listed = ok_json(app.call(&client, "list_api_keys", &[]).await).await;
    assert!(!listed.to_string().contains(&secret));
    assert_eq!(
        listed[0]["prefix"],
        format!("{}…", &secret[..8]),
        "{listed}"
    );
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM api_keys")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, app::platform::crypto::token_hash(&secret));

    let res = models(&app, &secret).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["id"], agent.as_str());
    assert_eq!(body["data"][0]["object"], "model");
    let listed = ok_json(app.call(&client, "list_api_keys", &[]).await).await;
    assert!(listed[0]["last_used"].is_string(), "marked used");

    // A key without the scope: 403, in OpenAI's shape.
    let chat_only = create(&app, &client, "Chat only", &["chat"]).await;
    let res = models(&app, chat_only["secret"].as_str().unwrap()).await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["code"], "insufficient_scope");

    // Wrong, expired, revoked, or its account being deleted: 401 alike.
    let wrong = models(&app, "enc_not-a-key-at-all").await;
    assert_eq!(wrong.status(), 401);
    let body: Value = wrong.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(
        Client::new()
            .get(app.url("/v1/models"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    sqlx::query("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE name IS NOT NULL AND scopes = ARRAY['agents:read']")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(models(&app, &secret).await.status(), 401, "expired");
    sqlx::query("UPDATE api_keys SET expires_at = NULL")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(models(&app, &secret).await.status(), 200);
    sqlx::query("UPDATE users SET deleted_at = now()")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(
        models(&app, &secret).await.status(),
        401,
        "account being deleted"
    );
    sqlx::query("UPDATE users SET deleted_at = NULL")
        .execute(&app.db)
        .await
        .unwrap();
    let id = created["key"]["id"].as_str().unwrap();
    let res = app.call(&client, "revoke_api_key", &[("id", id)]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(models(&app, &secret).await.status(), 401, "revoked");
    let listed = ok_json(app.call(&client, "list_api_keys", &[]).await).await;
    let revoked = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id)
        .unwrap();
    assert_eq!(revoked["active"], false);
    // A dead key is listed for the activity retention, then erased.
    let retention = app::platform::settings::Retention::default();
    let report = app::data::retention::server::run(&app.db, &retention)
        .await
        .unwrap();
    assert_eq!(report.api_keys, 0, "revoked just now: kept");
    sqlx::query("UPDATE api_keys SET revoked_at = now() - interval '91 days' WHERE id = $1::uuid")
        .bind(id)
        .execute(&app.db)
        .await
        .unwrap();
    let report = app::data::retention::server::run(&app.db, &retention)
        .await
        .unwrap();
    assert_eq!(report.api_keys, 1);
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM activity")
        .fetch_all(&app.db)
        .await
        .unwrap();
    for kind in ["api_key_created", "api_key_revoked"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn mistakes_are_said_and_another_users_key_is_not_found(db: PgPool) {
    let (app, _) = app(db).await;
    let owner = app.signed_up("key-owner@example.com").await;
    for (form, said) in [
        (
            vec![("name", ""), ("scopes[]", "chat")],
            "Give the key a name",
        ),
        (vec![("name", "No scopes")], "at least one thing"),
        (
            vec![("name", "Odd"), ("scopes[]", "everything")],
            "from the list",
        ),
        (
            vec![
                ("name", "Odd"),
                ("scopes[]", "chat"),
                ("expires", "forever"),
            ],
            "when the key expires",
        ),
    ] {
        let res = app.call(&owner, "create_api_key", &form).await;
        assert_eq!(res.status(), 422);
        assert!(res.text().await.unwrap().contains(said), "{said}");
    }
    assert_eq!(app.count("SELECT count(*) FROM api_keys").await, 0);
    let created = create(&app, &owner, "Mine", &["chat"]).await;
    let id = created["key"]["id"].as_str().unwrap();
    let other = app.signed_up("key-other@example.com").await;
    assert_eq!(
        app.call(&other, "revoke_api_key", &[("id", id)])
            .await
            .status(),
        404
    );
    let theirs = ok_json(app.call(&other, "list_api_keys", &[]).await).await;
    assert_eq!(theirs, serde_json::json!([]));
    let mine = ok_json(app.call(&owner, "list_api_keys", &[]).await).await;
    assert_eq!(mine[0]["active"], true);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_page_shows_a_new_key_once_without_javascript(db: PgPool) {
    let (app, _) = app(db).await;
    let client = app.signed_up("keys-page@example.com").await;
    let page = crate::common::page(&client, app.url("/settings/api-keys")).await;
    assert!(page.contains("No keys yet."), "{page}");
    assert!(page.contains(r#"action="/settings/api-keys""#));

    // A refused post comes back with the reason and what was chosen.
    let res = crate::common::plain_post(
        &app,
        &client,
        "/settings/api-keys",
        &[("name", "Nightly export"), ("expires", "30")],
    )
    .await;
    assert_eq!(res.status(), 422);
    let page = res.text().await.unwrap();
    assert!(page.contains("Choose at least one thing the key may do."));
    assert!(page.contains(r#"value="Nightly export""#));
    assert_eq!(app.count("SELECT count(*) FROM api_keys").await, 0);

    let res = crate::common::plain_post(
        &app,
        &client,
        "/settings/api-keys",
        &[
            ("name", "Nightly export"),
            ("scopes[]", "agents:read"),
            ("scopes[]", "chat"),
            ("expires", ""),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let page = res.text().await.unwrap();
    let start = page.find("enc_").expect("the key on the page");
    let secret: String = page[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    assert!(secret.len() > 40, "{secret}");
    assert!(page.contains("Copy it now."));
    assert!(page.contains(&format!("{}/v1", app.state.settings.public_url)));
    assert_eq!(
        models(&app, &secret).await.status(),
        200,
        "the shown key works"
    );
    let listed = ok_json(app.call(&client, "list_api_keys", &[]).await).await;
    assert_eq!(
        listed[0]["scopes"],
        serde_json::json!(["agents:read", "chat"])
    );
    assert!(listed[0]["expires"].is_null());
    // The activity log has where the plain post came from, as it has for
    // a server function's.
    let log = ok_json(app.call(&client, "list_activity", &[]).await).await;
    let created = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "api_key_created")
        .unwrap_or_else(|| panic!("no api_key_created entry: {log:#}"));
    assert_eq!(created["address"], "127.0.0.1", "{created:#}");

    // Shown once: the page never has it again.
    let page = crate::common::page(&client, app.url("/settings/api-keys")).await;
    assert!(!page.contains(&secret));
    assert!(page.contains("Nightly export"));
    assert!(page.contains(&secret[..8]));

    // Signed out, the post makes nothing.
    let res = crate::common::plain_post(
        &app,
        &app.client(),
        "/settings/api-keys",
        &[("name", "Sneaky"), ("scopes[]", "chat")],
    )
    .await;
    assert!(res.status().is_redirection());
    assert_eq!(app.count("SELECT count(*) FROM api_keys").await, 1);
}
