//! The OpenAI-compatible `POST /v1/chat/completions`: an agent answers as a
//! model, streamed or not, with usage; the conversation is stored sealed
//! like a chat (or not, with `"store": false`); errors in OpenAI's shapes;
//! a revoked key ends its live stream; per-key rate limits with
//! `Retry-After`; another user's agent is not found.

use std::time::Duration;

use futures::StreamExt as _;
use reqwest::Client;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{TestApp, chat_settings, keyring, ok_json, scripted_agent};

async fn app_with(db: PgPool, per_key: u32) -> (TestApp, std::net::SocketAddr) {
    let fake = server::fake_provider::start().await.unwrap();
    let settings = app::platform::settings::Settings {
        api_requests_per_key: app::platform::settings::Limit::new(per_key, 60),
        ..chat_settings(fake)
    };
    (
        TestApp::spawn_full(db, settings, keyring(1, &[])).await,
        fake,
    )
}

/// A new key of the signed-in user with `scopes`: its secret and id.
async fn key(app: &TestApp, client: &Client, scopes: &[&str]) -> (String, String) {
    let mut form = vec![("name", "Script"), ("expires", "")];
    form.extend(scopes.iter().map(|s| ("scopes[]", *s)));
    let created = ok_json(app.call(client, "create_api_key", &form).await).await;
    (
        created["secret"].as_str().unwrap().to_owned(),
        created["key"]["id"].as_str().unwrap().to_owned(),
    )
}

async fn complete(app: &TestApp, secret: &str, body: Value) -> reqwest::Response {
    Client::new()
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(secret)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// The `data:` payloads of a server-sent event stream.
fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| {
            event
                .lines()
                .find_map(|l| l.strip_prefix("data: ").or_else(|| l.strip_prefix("data:")))
                .map(str::to_owned)
        })
        .collect()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn an_agent_answers_as_a_model_and_the_conversation_is_kept(db: PgPool) {
    let (app, fake) = app_with(db, 100).await;
    let client = app.signed_up("api-chat@example.com").await;
    let agent = scripted_agent(&app, &client, fake, "openai", "fake:echo", &[], &[], "").await;
    let (secret, _) = key(&app, &client, &["chat"]).await;

    let res = complete(
        &app,
        &secret,
        json!({"model": agent, "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "First question"},
            {"role": "assistant", "content": "First answer"},
            {"role": "user", "content": [
                {"type": "text", "text": "Second"}, {"type": "text", "text": "question"}]},
        ]}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let conversation = res
        .headers()
        .get("x-enclave-conversation-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], agent.as_str());
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "You said: Second\nquestion"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // The provider's own count, passed on.
    assert_eq!(body["usage"]["prompt_tokens"], 11);
    let completion = body["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(completion > 0);
    assert_eq!(body["usage"]["total_tokens"], 11 + completion);

    // Kept like a chat: the caller's turns, then the reply; the system
    // text applied to this reply only.
    let kept = ok_json(
        app.call(&client, "get_conversation", &[("id", &conversation)])
            .await,
    )
    .await;
    let bodies: Vec<&str> = kept["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(
        bodies,
        [
            "First question",
            "First answer",
            "Second\nquestion",
            "You said: Second\nquestion"
        ]
    );
    let listed = ok_json(
        app.call(&client, "list_conversations", &[("agent_id", &agent)])
            .await,
    )
    .await;
    assert_eq!(listed[0]["id"], conversation.as_str());

    // The agent's name as a slug names it too.
    let agents = ok_json(app.call(&client, "list_agents", &[]).await).await;
    let slug = app::agents::slug(agents[0]["name"].as_str().unwrap());
    let res = complete(
        &app,
        &secret,
        json!({"model": slug, "messages": [{"role": "user", "content": "By name"}]}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "You said: By name"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_streamed_reply_comes_in_chunks_with_usage_at_the_end(db: PgPool) {
    let (app, fake) = app_with(db, 100).await;
    let client = app.signed_up("api-stream@example.com").await;
    let agent = scripted_agent(&app, &client, fake, "openai", "fake:echo", &[], &[], "").await;
    let (secret, _) = key(&app, &client, &["chat"]).await;
    let res = complete(
        &app,
        &secret,
        json!({"model": agent, "stream": true, "stream_options": {"include_usage": true},
               "messages": [{"role": "user", "content": "Hello there"}]}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = sse_data(&res.text().await.unwrap());
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "You said: Hello there");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 11);
    assert!(chunks.iter().all(|c| c["id"] == chunks[0]["id"]));

    // Without include_usage, no usage chunk.
    let res = complete(
        &app,
        &secret,
        json!({"model": agent, "stream": true,
               "messages": [{"role": "user", "content": "Again"}]}),
    )
    .await;
    let plain = sse_data(&res.text().await.unwrap());
    assert!(plain.iter().all(|e| !e.contains("\"usage\"")), "{plain:?}");
    // Both replies are in the usage ledger, with the tokens the API reported.
    let ledger: Vec<(i64, bool)> =
        sqlx::query_as("SELECT input_tokens, charged FROM usage_entries ORDER BY created_at")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(ledger, vec![(11, true), (11, true)]);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn store_false_keeps_nothing_once_the_reply_ends(db: PgPool) {
    let (app, fake) = app_with(db, 100).await;
    let client = app.signed_up("api-nostore@example.com").await;
    let agent = scripted_agent(&app, &client, fake, "openai", "fake:echo", &[], &[], "").await;
    let (secret, _) = key(&app, &client, &["chat"]).await;
    for stream in [false, true] {
        let res = complete(
            &app,
            &secret,
            json!({"model": agent, "store": false, "stream": stream,
                   "messages": [{"role": "user", "content": "Forget this"}]}),
        )
        .await;
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("x-enclave-conversation-id").is_none());
        let body = res.text().await.unwrap();
        if stream {
            assert_eq!(sse_data(&body).last().unwrap(), "[DONE]");
        } else {
            assert!(body.contains("You said: Forget this"), "{body}");
        }
    }
    let mut left = -1;
    for _ in 0..200 {
        left = app.count("SELECT count(*) FROM conversations").await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(left, 0, "transient conversations deleted");
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 0);

    // One left behind (its server stopped first) goes with the retention
    // pass an hour later; kept ones stay, and never show in the list.
    let res = complete(
        &app,
        &secret,
        json!({"model": agent, "messages": [{"role": "user", "content": "Keep this"}]}),
    )
    .await;
    assert_eq!(res.status(), 200);
    sqlx::query(
        "UPDATE conversations SET transient = true, updated_at = now() - interval '2 hours'",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let listed = ok_json(
        app.call(&client, "list_conversations", &[("agent_id", &agent)])
            .await,
    )
    .await;
    assert_eq!(listed, json!([]));
    let report =
        app::data::retention::server::run(&app.db, &app::platform::settings::Retention::default())
            .await
            .unwrap();
    assert_eq!(report.transient_conversations, 1);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn mistakes_get_openai_shaped_errors_and_store_nothing(db: PgPool) {
    let (app, fake) = app_with(db, 13).await;
    let client = app.signed_up("api-errors@example.com").await;
    let agent = scripted_agent(&app, &client, fake, "openai", "fake:echo", &[], &[], "").await;
    let (secret, _) = key(&app, &client, &["chat"]).await;
    let other = app.signed_up("api-errors-other@example.com").await;
    let theirs = scripted_agent(&app, &other, fake, "openai", "fake:echo", &[], &[], "").await;
    let user = |text: &str| json!([{"role": "user", "content": text}]);

    let cases = [
        (
            json!({"model": "no-such-agent", "messages": user("Hi")}),
            404,
            "model_not_found",
        ),
        (
            json!({"model": theirs, "messages": user("Hi")}),
            404,
            "model_not_found",
        ),
        (
            json!({"model": agent, "messages": [{"role": "assistant", "content": "Hi"}]}),
            400,
            "invalid_request",
        ),
        (
            json!({"model": agent, "messages": []}),
            400,
            "invalid_request",
        ),
        (
            json!({"model": agent, "messages": user("   ")}),
            400,
            "invalid_request",
        ),
        (
            json!({"model": agent, "n": 2, "messages": user("Hi")}),
            400,
            "invalid_request",
        ),
        (
            json!({"model": agent, "tools": [{"type": "function"}], "messages": user("Hi")}),
            400,
            "invalid_request",
        ),
        (
            json!({"model": agent, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}]}),
            400,
            "invalid_request",
        ),
        (
            json!({"model": agent, "messages": [{"role": "tool", "content": "42"}, {"role": "user", "content": "Hi"}]}),
            400,
            "invalid_request",
        ),
        (json!({"messages": user("Hi")}), 400, "invalid_request"),
    ];
    for (body, status, code) in cases {
        let res = complete(&app, &secret, body.clone()).await;
        assert_eq!(res.status(), status, "{body}");
        let answer: Value = res.json().await.unwrap();
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().len() > 10);
    }
    let res = Client::new()
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["error"]["type"], "invalid_request_error");

    // A key without the chat scope; no key at all.
    let (read_only, _) = key(&app, &client, &["agents:read"]).await;
    let res = complete(
        &app,
        &read_only,
        json!({"model": agent, "messages": user("Hi")}),
    )
    .await;
    assert_eq!(res.status(), 403);
    let res = complete(
        &app,
        "enc_wrong",
        json!({"model": agent, "messages": user("Hi")}),
    )
    .await;
    assert_eq!(res.status(), 401);
    assert_eq!(app.count("SELECT count(*) FROM conversations").await, 0);

    // 11 requests so far on this key; the limit is 13 a minute.
    for _ in 0..2 {
        let res = complete(
            &app,
            &secret,
            json!({"model": agent, "messages": user("Hi")}),
        )
        .await;
        assert_eq!(res.status(), 200);
    }
    let res = complete(
        &app,
        &secret,
        json!({"model": agent, "messages": user("Hi")}),
    )
    .await;
    assert_eq!(res.status(), 429);
    let wait: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait));
    let answer: Value = res.json().await.unwrap();
    assert_eq!(answer["error"]["code"], "rate_limit_exceeded");
    assert_eq!(answer["error"]["type"], "rate_limit_error");
    // Another key of the same user has its own count.
    let (fresh, _) = key(&app, &client, &["chat"]).await;
    let res = complete(
        &app,
        &fresh,
        json!({"model": agent, "messages": user("Hi")}),
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM conversations").await, 3);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn revoking_a_key_ends_its_live_stream(db: PgPool) {
    let (app, fake) = app_with(db, 100).await;
    let client = app.signed_up("api-revoke@example.com").await;
    let agent = scripted_agent(
        &app,
        &client,
        fake,
        "openai",
        "fake:tokens=2000,delay_ms=20",
        &[],
        &[],
        "",
    )
    .await;
    let (secret, id) = key(&app, &client, &["chat"]).await;
    let res = complete(
        &app,
        &secret,
        json!({"model": agent, "stream": true, "messages": [{"role": "user", "content": "Go on"}]}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let mut body = res.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("\"content\":\"") || seen.matches("data:").count() < 4 {
        seen.push_str(&String::from_utf8_lossy(
            &body.next().await.unwrap().unwrap(),
        ));
    }
    let res = app.call(&client, "revoke_api_key", &[("id", &id)]).await;
    assert_eq!(res.status(), 200);
    while let Some(piece) = body.next().await {
        seen.push_str(&String::from_utf8_lossy(&piece.unwrap()));
    }
    let events = sse_data(&seen);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "invalid_api_key", "{last}");
    assert!(!events.iter().any(|e| e == "[DONE]"));
    let pieces = events.iter().filter(|e| e.contains("\"content\"")).count();
    assert!(
        pieces < 1000,
        "ended long before the reply would have: {pieces}"
    );
    // The reply stops too, and keeps what it had.
    let status = crate::common::settled_reply_status(&app.db).await;
    assert_eq!(status, "stopped");
}
