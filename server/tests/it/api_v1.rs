//! The HTTP API under `/api/v1`: agents and chat for a program holding a
//! key, each route within its scope, another user's ids 404 everywhere,
//! errors as JSON with a stable code, and the OpenAPI document that
//! describes it all (with Swagger UI).

use reqwest::{Client, Method};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{TestApp, chat_settings, keyring, ok_json};

async fn app(db: PgPool) -> TestApp {
    let fake = server::fake_provider::start().await.unwrap();
    TestApp::spawn_full(db, chat_settings(fake), keyring(1, &[])).await
}

async fn key(app: &TestApp, client: &Client, scopes: &[&str]) -> String {
    let mut form = vec![("name", "API"), ("expires", "")];
    form.extend(scopes.iter().map(|s| ("scopes[]", *s)));
    ok_json(app.call(client, "create_api_key", &form).await).await["secret"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn call(
    app: &TestApp,
    secret: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = Client::new()
        .request(method, app.url(path))
        .bearer_auth(secret);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let text = res.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn agent_body(name: &str) -> Value {
    json!({"name": name, "provider": "openai", "model": "fake:echo",
           "system_prompt": "Be kind.", "tools": ["calculator"], "step_limit": 4})
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_program_manages_agents_and_chats_within_its_scopes(db: PgPool) {
    let app = app(db).await;
    let client = app.signed_up("api-v1@example.com").await;
    let all = key(&app, &client, &["agents:read", "agents:write", "chat"]).await;
    let read_only = key(&app, &client, &["agents:read"]).await;

    let (status, created) = call(
        &app,
        &all,
        Method::POST,
        "/api/v1/agents",
        Some(agent_body("Report Writer")),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let (status, list) = call(&app, &read_only, Method::GET, "/api/v1/agents", None).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["slug"], "report-writer");
    let (status, agent) = call(
        &app,
        &read_only,
        Method::GET,
        &format!("/api/v1/agents/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(agent["system_prompt"], "Be kind.");
    assert_eq!(agent["tools"], json!(["calculator"]));
    assert_eq!(agent["step_limit"], 4);

    // Writing needs agents:write; a wrong field says which.
    let (status, refused) = call(
        &app,
        &read_only,
        Method::POST,
        "/api/v1/agents",
        Some(agent_body("No")),
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(refused["error"]["code"], "insufficient_scope");
    let (status, wrong) = call(
        &app,
        &all,
        Method::POST,
        "/api/v1/agents",
        Some(agent_body("")),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(wrong["error"]["code"], "invalid_request");
    assert_eq!(wrong["error"]["param"], "name");
    let (status, wrong) = call(
        &app,
        &all,
        Method::POST,
        "/api/v1/agents",
        Some(json!({"name": 4})),
    )
    .await;
    assert_eq!(status, 400, "{wrong}");
    let mut changed = agent_body("Report Editor");
    changed["tools"] = json!([]);
    let (status, _) = call(
        &app,
        &all,
        Method::PUT,
        &format!("/api/v1/agents/{id}"),
        Some(changed),
    )
    .await;
    assert_eq!(status, 204);
    let (_, agent) = call(
        &app,
        &all,
        Method::GET,
        &format!("/api/v1/agents/{id}"),
        None,
    )
    .await;
    assert_eq!(agent["name"], "Report Editor");
    assert_eq!(agent["tools"], json!([]));

    // Chat: send, follow the reply, read the conversation, go on in it.
    let (status, _) = call(
        &app,
        &read_only,
        Method::POST,
        &format!("/api/v1/agents/{id}/conversations"),
        Some(json!({"message": "Hi"})),
    )
    .await;
    assert_eq!(status, 403);
    let (status, started) = call(
        &app,
        &all,
        Method::POST,
        &format!("/api/v1/agents/{id}/conversations"),
        Some(json!({"message": "Hello API"})),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let reply = started["reply_id"].as_str().unwrap().to_owned();
    let conversation = started["conversation_id"].as_str().unwrap().to_owned();
    let stream = Client::new()
        .get(app.url(&format!("/api/v1/messages/{reply}/stream")))
        .bearer_auth(&all)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let events = stream.text().await.unwrap();
    assert!(events.contains("event: snapshot"), "{events}");
    assert!(events.contains("event: done"), "{events}");
    let (status, message) = call(
        &app,
        &all,
        Method::GET,
        &format!("/api/v1/messages/{reply}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(message["content"], "You said: Hello API");
    assert_eq!(message["status"], "complete");
    let (status, _) = call(
        &app,
        &all,
        Method::POST,
        &format!("/api/v1/agents/{id}/conversations"),
        Some(json!({"message": "And again", "conversation_id": conversation})),
    )
    .await;
    assert_eq!(status, 202);
    let mut messages = 0;
    for _ in 0..200 {
        let (_, c) = call(
            &app,
            &all,
            Method::GET,
            &format!("/api/v1/conversations/{conversation}"),
            None,
        )
        .await;
        let list = c["messages"].as_array().unwrap().clone();
        if list.len() == 4 && list[3]["status"] == "complete" {
            messages = list.len();
            assert_eq!(list[2]["content"], "And again");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(messages, 4);
    let (_, listed) = call(
        &app,
        &all,
        Method::GET,
        &format!("/api/v1/agents/{id}/conversations"),
        None,
    )
    .await;
    assert_eq!(listed[0]["id"], conversation.as_str());
    let (status, _) = call(
        &app,
        &all,
        Method::POST,
        &format!("/api/v1/messages/{reply}/stop"),
        None,
    )
    .await;
    assert_eq!(status, 204, "an ended reply stops as a no-op");

    let (status, _) = call(
        &app,
        &all,
        Method::DELETE,
        &format!("/api/v1/conversations/{conversation}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, gone) = call(
        &app,
        &all,
        Method::GET,
        &format!("/api/v1/conversations/{conversation}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(gone["error"]["code"], "not_found");
    let (status, _) = call(
        &app,
        &all,
        Method::DELETE,
        &format!("/api/v1/agents/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &app,
        &all,
        Method::GET,
        &format!("/api/v1/agents/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn another_users_ids_are_not_found_on_every_route(db: PgPool) {
    let app = app(db).await;
    let owner = app.signed_up("api-owner@example.com").await;
    let mine = key(&app, &owner, &["agents:read", "agents:write", "chat"]).await;
    let (_, created) = call(
        &app,
        &mine,
        Method::POST,
        "/api/v1/agents",
        Some(agent_body("Private")),
    )
    .await;
    let agent = created["id"].as_str().unwrap().to_owned();
    let (_, started) = call(
        &app,
        &mine,
        Method::POST,
        &format!("/api/v1/agents/{agent}/conversations"),
        Some(json!({"message": "Secret"})),
    )
    .await;
    let conversation = started["conversation_id"].as_str().unwrap().to_owned();
    let reply = started["reply_id"].as_str().unwrap().to_owned();

    let other = app.signed_up("api-other@example.com").await;
    let theirs = key(&app, &other, &["agents:read", "agents:write", "chat"]).await;
    let routes = [
        (Method::GET, format!("/api/v1/agents/{agent}"), None),
        (
            Method::PUT,
            format!("/api/v1/agents/{agent}"),
            Some(agent_body("Taken")),
        ),
        (Method::DELETE, format!("/api/v1/agents/{agent}"), None),
        (
            Method::GET,
            format!("/api/v1/agents/{agent}/conversations"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/agents/{agent}/conversations"),
            Some(json!({"message": "Hi"})),
        ),
        (
            Method::POST,
            format!("/api/v1/agents/{agent}/conversations"),
            Some(json!({"message": "Hi", "conversation_id": conversation})),
        ),
        (
            Method::GET,
            format!("/api/v1/conversations/{conversation}"),
            None,
        ),
        (
            Method::DELETE,
            format!("/api/v1/conversations/{conversation}"),
            None,
        ),
        (Method::GET, format!("/api/v1/messages/{reply}"), None),
        (
            Method::GET,
            format!("/api/v1/messages/{reply}/stream"),
            None,
        ),
        (Method::POST, format!("/api/v1/messages/{reply}/stop"), None),
        (Method::GET, "/api/v1/agents/not-a-uuid".to_owned(), None),
    ];
    for (method, path, body) in routes {
        let (status, answer) = call(&app, &theirs, method.clone(), &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "not_found", "{method} {path}");
    }
    let (_, list) = call(&app, &theirs, Method::GET, "/api/v1/agents", None).await;
    assert_eq!(list, json!([]));
    // Nothing of the owner's changed.
    let (status, agent) = call(
        &app,
        &mine,
        Method::GET,
        &format!("/api/v1/agents/{agent}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(agent["name"], "Private");
    assert_eq!(app.count("SELECT count(*) FROM conversations").await, 1);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_openapi_document_describes_every_route(db: PgPool) {
    let app = app(db).await;
    let doc: Value = Client::new()
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/api/v1/agents", &["get", "post"][..]),
        ("/api/v1/agents/{id}", &["get", "put", "delete"]),
        ("/api/v1/agents/{id}/conversations", &["get", "post"]),
        ("/api/v1/conversations/{id}", &["get", "delete"]),
        ("/api/v1/messages/{id}", &["get"]),
        ("/api/v1/messages/{id}/stream", &["get"]),
        ("/api/v1/messages/{id}/stop", &["post"]),
        ("/api/v1/knowledge", &["get"]),
        ("/api/v1/knowledge/{id}/search", &["post"]),
    ] {
        for method in methods {
            assert!(paths[path][method].is_object(), "{method} {path}");
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["ApiError"].is_object());
    let ui = Client::new()
        .get(app.url("/api/docs/"))
        .send()
        .await
        .unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("swagger"));
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_program_lists_and_searches_its_knowledge_bases(db: PgPool) {
    use crate::knowledge::ingestion::{create_base, settled, upload};
    let app = app(db).await;
    let owner = app.signed_up("api-knowledge@example.com").await;
    let base = create_base(&app, &owner, "Handbook").await;
    let res = upload(
        &app,
        &owner,
        &base,
        vec![(
            "holidays.md",
            b"# Holidays\n\nThe office closes between Christmas and New Year.".to_vec(),
        )],
    )
    .await;
    assert!(res.status().is_success());
    settled(&app, &owner, &base).await;
    let secret = key(&app, &owner, &["knowledge"]).await;

    let (status, list) = call(&app, &secret, Method::GET, "/api/v1/knowledge", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list[0]["id"], base.as_str());
    assert_eq!(list[0]["name"], "Handbook");
    assert_eq!(list[0]["documents"], 1);
    let path = format!("/api/v1/knowledge/{base}/search");
    let (status, hits) = call(
        &app,
        &secret,
        Method::POST,
        &path,
        Some(json!({"query": "When does the office close?"})),
    )
    .await;
    assert_eq!(status, 200, "{hits}");
    assert_eq!(hits[0]["document"], "holidays.md");
    assert!(hits[0]["text"].as_str().unwrap().contains("Christmas"));
    let (status, _) = call(
        &app,
        &secret,
        Method::POST,
        &path,
        Some(json!({"query": "  "})),
    )
    .await;
    assert_eq!(status, 400);

    // Without the scope, or someone else's base: refused, not found.
    let chat_only = key(&app, &owner, &["chat"]).await;
    let (status, _) = call(&app, &chat_only, Method::GET, "/api/v1/knowledge", None).await;
    assert_eq!(status, 403);
    let other = app.signed_up("api-knowledge-other@example.com").await;
    let theirs = key(&app, &other, &["knowledge"]).await;
    let (status, answer) = call(
        &app,
        &theirs,
        Method::POST,
        &path,
        Some(json!({"query": "office"})),
    )
    .await;
    assert_eq!(status, 404, "{answer}");
    let (_, list) = call(&app, &theirs, Method::GET, "/api/v1/knowledge", None).await;
    assert_eq!(list, json!([]));
}
