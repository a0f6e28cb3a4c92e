//! The platform administrator: the first account (or one the operator
//! names) sees accounts' metadata and counts, never content; disabling an
//! account ends its sessions, API keys and live replies at once, and
//! enabling gives them back; nobody else reaches any of it.

use futures::StreamExt as _;
use reqwest::Client;
use serde_json::json;
use sqlx::PgPool;

use crate::common::{PASSWORD, TestApp, chat_settings, keyring, ok_json, scripted_agent};

async fn app(db: PgPool) -> (TestApp, std::net::SocketAddr) {
    let fake = server::fake_provider::start().await.unwrap();
    (
        TestApp::spawn_full(db, chat_settings(fake), keyring(1, &[])).await,
        fake,
    )
}

async fn user_id(app: &TestApp, email: &str) -> String {
    let users = ok_json(
        app.call(
            &app.signed_in_admin().await,
            "admin_users",
            &[("query", email)],
        )
        .await,
    )
    .await;
    users[0]["id"].as_str().unwrap().to_owned()
}

trait AdminClient {
    async fn signed_in_admin(&self) -> Client;
}

impl AdminClient for TestApp {
    async fn signed_in_admin(&self) -> Client {
        let client = self.client();
        let res = self.sign_in(&client, "first@example.com", PASSWORD).await;
        assert_eq!(res.status(), 200);
        client
    }
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_first_account_administers_and_sees_no_content(db: PgPool) {
    let (app, fake) = app(db).await;
    let admin = app.signed_up("first@example.com").await;
    let other = app.signed_up("second@example.com").await;
    assert_eq!(app.current_user(&admin).await["is_admin"], true);
    assert_eq!(app.current_user(&other).await["is_admin"], false);

    // Someone else's content never reaches the administrator.
    let agent = scripted_agent(&app, &other, fake, "openai", "fake:echo", &[], &[], "").await;
    let name = ok_json(app.call(&other, "list_agents", &[]).await).await[0]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    crate::common::send_new(&app, &other, &agent, "Zebra private question").await;

    let overview = ok_json(app.call(&admin, "admin_overview", &[]).await).await;
    assert_eq!(overview["users"], 2);
    assert_eq!(overview["agents"], 1);
    assert_eq!(overview["conversations"], 1);
    assert!(overview["jobs"].is_array());
    let users = ok_json(app.call(&admin, "admin_users", &[]).await).await;
    assert_eq!(users.as_array().unwrap().len(), 2);
    let second = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "second@example.com")
        .unwrap();
    assert_eq!(second["agents"], 1);
    assert_eq!(second["conversations"], 1);
    assert_eq!(second["is_admin"], false);
    let everything = format!("{overview}{users}");
    assert!(!everything.contains(&name), "an agent's name");
    assert!(!everything.contains("Zebra"), "a message");
    let found = ok_json(
        app.call(&admin, "admin_users", &[("query", "SECOND")])
            .await,
    )
    .await;
    assert_eq!(found.as_array().unwrap().len(), 1);

    // Anyone else: not found, for all of it.
    let first_id = user_id(&app, "first@example.com").await;
    for (name, form) in [
        ("admin_overview", vec![]),
        ("admin_users", vec![]),
        ("admin_disable_user", vec![("id", first_id.as_str())]),
        ("admin_enable_user", vec![("id", first_id.as_str())]),
        (
            "admin_delete_user",
            vec![("id", first_id.as_str()), ("confirm", "yes")],
        ),
    ] {
        assert_eq!(app.call(&other, name, &form).await.status(), 404, "{name}");
    }
    let page = crate::common::page(&other, app.url("/admin")).await;
    assert!(page.contains("Not found."));
    assert_eq!(
        app.current_user(&admin).await["is_admin"],
        true,
        "unchanged"
    );

    // An administrator cannot lock themselves out.
    let res = app
        .call(&admin, "admin_disable_user", &[("id", &first_id)])
        .await;
    assert_eq!(res.status(), 422);

    // The operator names another one, and can take it back.
    let crypto = app.state.crypto.clone();
    assert!(
        app::admin::server::set_admin(&app.db, &crypto, " Second@Example.com", true)
            .await
            .unwrap()
    );
    assert_eq!(app.call(&other, "admin_overview", &[]).await.status(), 200);
    assert!(
        !app::admin::server::set_admin(&app.db, &crypto, "nobody@example.com", true)
            .await
            .unwrap()
    );
    app::admin::server::set_admin(&app.db, &crypto, "second@example.com", false)
        .await
        .unwrap();
    assert_eq!(app.call(&other, "admin_overview", &[]).await.status(), 404);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn disabling_ends_sessions_keys_and_replies_at_once_and_enabling_gives_them_back(db: PgPool) {
    let (app, fake) = app(db).await;
    let admin = app.signed_up("first@example.com").await;
    let user = app.signed_up("second@example.com").await;
    let agent = scripted_agent(
        &app,
        &user,
        fake,
        "openai",
        "fake:tokens=2000,delay_ms=20",
        &[],
        &[],
        "",
    )
    .await;
    let created = ok_json(
        app.call(
            &user,
            "create_api_key",
            &[
                ("name", "Script"),
                ("scopes[]", "chat"),
                ("scopes[]", "agents:read"),
            ],
        )
        .await,
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let models = |secret: String| {
        let url = app.url("/v1/models");
        async move {
            Client::new()
                .get(url)
                .bearer_auth(secret)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(models(secret.clone()).await, 200);

    // A reply streaming to a program, and one in the browser.
    let res = Client::new()
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&json!({"model": agent, "stream": true,
                      "messages": [{"role": "user", "content": "Go on"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut stream = res.bytes_stream();
    let mut seen = String::new();
    while seen.matches("\"content\"").count() < 3 {
        seen.push_str(&String::from_utf8_lossy(
            &stream.next().await.unwrap().unwrap(),
        ));
    }

    let id = user_id(&app, "second@example.com").await;
    let res = app.call(&admin, "admin_disable_user", &[("id", &id)]).await;
    assert_eq!(res.status(), 200);

    assert!(app.current_user(&user).await.is_null(), "signed out");
    assert_eq!(app.call(&user, "list_agents", &[]).await.status(), 401);
    assert_eq!(models(secret.clone()).await, 401, "the key stops");
    while let Some(piece) = stream.next().await {
        seen.push_str(&String::from_utf8_lossy(&piece.unwrap()));
    }
    assert!(!seen.contains("[DONE]"), "the stream ended early");
    let status = crate::common::settled_reply_status(&app.db).await;
    assert_eq!(status, "stopped", "the reply stopped, keeping its text");
    let res = app
        .sign_in(&app.client(), "second@example.com", PASSWORD)
        .await;
    assert_eq!(res.status(), 422);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("This account is disabled")
    );
    let users = ok_json(
        app.call(&admin, "admin_users", &[("query", "second")])
            .await,
    )
    .await;
    assert_eq!(users[0]["disabled"], true);

    // Enabled again: signing in and the key work; what it had is there.
    let res = app.call(&admin, "admin_enable_user", &[("id", &id)]).await;
    assert_eq!(res.status(), 200);
    let back = app.client();
    assert_eq!(
        app.sign_in(&back, "second@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(models(secret.clone()).await, 200);
    let activity = ok_json(app.call(&back, "list_activity", &[]).await).await;
    let kinds = activity.to_string();
    assert!(
        kinds.contains("An administrator disabled the account"),
        "{kinds}"
    );
    assert!(
        kinds.contains("An administrator enabled the account again"),
        "{kinds}"
    );

    // Deleting: confirmed, then the account is cut off and waits to be erased.
    let res = app.call(&admin, "admin_delete_user", &[("id", &id)]).await;
    assert_eq!(res.status(), 422);
    let res = app
        .call(
            &admin,
            "admin_delete_user",
            &[("id", &id), ("confirm", "yes")],
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(app.current_user(&back).await.is_null());
    assert_eq!(models(secret).await, 401);
    let deleting: bool =
        sqlx::query_scalar("SELECT deleted_at IS NOT NULL FROM users WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(deleting);
}
