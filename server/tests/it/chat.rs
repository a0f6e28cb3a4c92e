//! Chat runs end to end: a real server, a real fake provider, real SSE.
//! Disconnect and re-attach, stop, provider failure, crash recovery, two runs
//! at once, and another user trying to attach to a live stream by its id
//! (the LibreChat CVE-2026-31950 attack).

use std::time::Duration;

use crate::common::{TestApp, keyring, read_stream, relaxed_settings, text_of, with_fake_provider};
use app::{agents::domain::Provider, chat::runs, platform::settings::PlatformKeys};
use eventsource_stream::Eventsource as _;
use futures::StreamExt as _;
use reqwest::Client;
use serde_json::{Value, json};
use sqlx::PgPool;

async fn spawn(db: PgPool) -> TestApp {
    let fake = server::fake_provider::start().await.unwrap();
    TestApp::spawn_full(db, crate::common::chat_settings(fake), keyring(1, &[])).await
}

async fn agent(app: &TestApp, client: &Client, model: &str) -> String {
    agent_on(app, client, "openai", model).await
}

async fn agent_on(app: &TestApp, client: &Client, provider: &str, model: &str) -> String {
    let form = [
        ("name", "Chatty"),
        ("description", ""),
        ("system_prompt", "Be brief."),
        ("provider", provider),
        ("model", model),
        ("base_url", ""),
        ("temperature", ""),
        ("top_p", ""),
        ("max_output_tokens", ""),
        ("avatar", ""),
    ];
    assert_eq!(app.call(client, "create_agent", &form).await.status(), 200);
    let list: Value = app
        .call(client, "list_agents", &[])
        .await
        .json()
        .await
        .unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|a| a["model"] == model)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn send(
    app: &TestApp,
    client: &Client,
    agent: &str,
    conversation: Option<&str>,
    text: &str,
) -> Value {
    let mut form = vec![("agent_id", agent), ("message", text)];
    if let Some(c) = conversation {
        form.push(("conversation_id", c));
    }
    let res = app.call(client, "send_message", &form).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

async fn conversation(app: &TestApp, client: &Client, id: &str) -> Value {
    let res = app.call(client, "get_conversation", &[("id", id)]).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// The message of a 422 answer (which it must be).
async fn refusal(res: reqwest::Response) -> String {
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    body["Invalid"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message in {body}"))
        .to_owned()
}

/// Asks for the last reply of a conversation again.
async fn regenerate(app: &TestApp, client: &Client, conversation_id: &str) {
    let res = app
        .call(
            client,
            "regenerate_reply",
            &[("conversation_id", conversation_id)],
        )
        .await;
    assert_eq!(res.status(), 200);
}

/// Waits until the reply is no longer streaming (bounded).
async fn settled(app: &TestApp, client: &Client, conversation_id: &str) -> Value {
    for _ in 0..200 {
        let c = conversation(app, client, conversation_id).await;
        if c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] != "streaming")
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the reply never settled");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_reply_streams_and_is_stored_sealed_with_usage(db: PgPool) {
    let app = spawn(db).await;
    let client = app.signed_up("chat@example.com").await;
    let agent = agent(&app, &client, "fake:delay_ms=5").await;
    let sent = send(&app, &client, &agent, None, "Hello there").await;
    let events = read_stream(&app, &client, sent["reply_id"].as_str().unwrap(), 1000).await;
    assert!(
        events.iter().filter(|(n, _)| n == "delta").count() >= 3,
        "token by token: {events:?}"
    );
    assert_eq!(text_of(&events), "Hello from the fake model.");
    let (_, done) = events.last().unwrap();
    assert_eq!(done["status"], "complete");
    assert_eq!(done["output_tokens"], 5);

    let c = settled(&app, &client, sent["conversation_id"].as_str().unwrap()).await;
    assert_eq!(c["title"], "Hello there");
    let messages = c["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "user");
    assert_eq!(messages[0]["body"], "Hello there");
    assert_eq!(messages[1]["body"], "Hello from the fake model.");
    assert_eq!(messages[1]["model"], "fake:delay_ms=5");
    assert_eq!(
        (
            messages[1]["input_tokens"].clone(),
            messages[1]["output_tokens"].clone()
        ),
        (json!(11), json!(5))
    );

    // A follow-up goes into the same conversation, with the history as context.
    let again = send(
        &app,
        &client,
        &agent,
        sent["conversation_id"].as_str(),
        "And again",
    )
    .await;
    assert_eq!(again["conversation_id"], sent["conversation_id"]);
    let c = settled(&app, &client, sent["conversation_id"].as_str().unwrap()).await;
    assert_eq!(c["messages"].as_array().unwrap().len(), 4);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn closing_the_stream_does_not_stop_the_run_and_reattaching_resumes(db: PgPool) {
    let app = spawn(db).await;
    let client = app.signed_up("reattach@example.com").await;
    let agent = agent(&app, &client, "fake:tokens=30,delay_ms=40").await;
    let sent = send(&app, &client, &agent, None, "Count").await;
    let reply = sent["reply_id"].as_str().unwrap();

    let first = read_stream(&app, &client, reply, 4).await; // then the tab "closes"
    let seen = text_of(&first);
    assert!(!seen.is_empty());
    tokio::time::sleep(Duration::from_millis(300)).await;

    let second = read_stream(&app, &client, reply, 10_000).await;
    let (name, snapshot) = &second[0];
    assert_eq!(name, "snapshot");
    let resumed = snapshot["text"].as_str().unwrap();
    assert!(
        resumed.starts_with(&seen) && resumed.len() > seen.len(),
        "{seen:?} then {resumed:?}"
    );
    let expected: String = (0..30).map(|i| format!("t{i} ")).collect();
    assert_eq!(text_of(&second), expected);
    let c = settled(&app, &client, sent["conversation_id"].as_str().unwrap()).await;
    assert_eq!(c["messages"][1]["body"], expected);
    assert_eq!(c["messages"][1]["status"], "complete");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn stop_keeps_what_was_generated(db: PgPool) {
    let app = spawn(db).await;
    let client = app.signed_up("stop@example.com").await;
    let agent = agent(&app, &client, "fake:tokens=200,delay_ms=20").await;
    let sent = send(&app, &client, &agent, None, "Go on").await;
    let reply = sent["reply_id"].as_str().unwrap();
    read_stream(&app, &client, reply, 5).await;
    assert_eq!(
        app.call(&client, "stop_reply", &[("message_id", reply)])
            .await
            .status(),
        200
    );
    let c = settled(&app, &client, sent["conversation_id"].as_str().unwrap()).await;
    let message = &c["messages"][1];
    assert_eq!(message["status"], "stopped");
    let body = message["body"].as_str().unwrap();
    assert!(
        body.starts_with("t0 t1 t2 t3 ") && !body.contains("t199"),
        "{body}"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_provider_failure_mid_stream_keeps_the_partial_reply_and_says_why(db: PgPool) {
    let app = spawn(db).await;
    let client = app.signed_up("fail@example.com").await;
    let agent = agent(&app, &client, "fake:tokens=10,error_after=4").await;
    let sent = send(&app, &client, &agent, None, "Try").await;
    let events = read_stream(&app, &client, sent["reply_id"].as_str().unwrap(), 1000).await;
    let (_, done) = events.last().unwrap();
    assert_eq!(done["status"], "interrupted");
    assert!(
        done["error"].as_str().unwrap().contains("overloaded"),
        "{done}"
    );
    let c = settled(&app, &client, sent["conversation_id"].as_str().unwrap()).await;
    assert_eq!(c["messages"][1]["body"], "t0 t1 t2 t3 ");
    assert_eq!(c["messages"][1]["status"], "interrupted");

    // And the conversation takes the next message.
    assert_eq!(
        app.call(
            &client,
            "send_message",
            &[
                ("agent_id", agent.as_str()),
                ("conversation_id", sent["conversation_id"].as_str().unwrap()),
                ("message", "Again")
            ]
        )
        .await
        .status(),
        200
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_provider_cut_stalling_or_sending_garbage_mid_stream_keeps_the_partial_reply(db: PgPool) {
    let fake = server::fake_provider::start().await.unwrap();
    let settings = app::platform::Settings {
        provider_timeout: Duration::from_secs(1),
        ..crate::common::chat_settings(fake)
    };
    let app = TestApp::spawn_full(db, settings, keyring(1, &[])).await;
    let client = app.signed_up("faults@example.com").await;
    for (script, reason) in [
        ("drop_after", "The connection to the provider failed."),
        ("stall_after", "The provider did not answer in time."),
        (
            "garbage_after",
            "The provider sent a reply Enclave could not read.",
        ),
    ] {
        let agent = agent(&app, &client, &format!("fake:tokens=10,{script}=4")).await;
        let sent = send(&app, &client, &agent, None, "Try").await;
        let events = read_stream(&app, &client, sent["reply_id"].as_str().unwrap(), 1000).await;
        let (_, done) = events.last().unwrap();
        assert_eq!(done["status"], "interrupted", "{script}: {done}");
        assert_eq!(done["error"], reason, "{script}");
        let c = settled(&app, &client, sent["conversation_id"].as_str().unwrap()).await;
        let reply = &c["messages"][1];
        assert_eq!(
            reply["body"], "t0 t1 t2 t3 ",
            "{script}: the words so far are kept"
        );
        assert_eq!(reply["status"], "interrupted");
        assert_eq!(reply["error"], reason, "{script}: a plain reason");
    }
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn replies_left_streaming_by_a_crashed_server_are_marked_interrupted(db: PgPool) {
    let app = spawn(db.clone()).await;
    let client = app.signed_up("crash@example.com").await;
    let agent = agent(&app, &client, "fake:tokens=3").await;
    let sent = send(&app, &client, &agent, None, "Hi").await;
    let conversation_id = sent["conversation_id"].as_str().unwrap();
    settled(&app, &client, conversation_id).await;
    // As a crash leaves it: a reply marked streaming that no run is writing.
    sqlx::query("UPDATE messages SET status = 'streaming', updated_at = now() - interval '10 minutes' WHERE role = 'assistant'")
        .execute(&db)
        .await
        .unwrap();
    // The same server, started again (its registry empty).
    let marked = runs::recover_interrupted(
        &db,
        &app::chat::runs::Runs::new(app.settings.instance.clone()),
        Duration::from_secs(300),
    )
    .await
    .unwrap();
    assert_eq!(marked, 1);
    let c = conversation(&app, &client, conversation_id).await;
    assert_eq!(c["messages"][1]["status"], "interrupted");
    assert!(
        c["messages"][1]["error"]
            .as_str()
            .unwrap()
            .contains("server stopped")
    );
    assert_eq!(
        c["messages"][1]["body"], "t0 t1 t2 ",
        "the checkpointed text is kept"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_growing_reply_is_checkpointed_sealed_while_it_streams(db: PgPool) {
    let app = spawn(db.clone()).await;
    let client = app.signed_up("checkpoint@example.com").await;
    // 40 tokens 100 ms apart: about 4 s of streaming.
    let agent = agent(&app, &client, "fake:tokens=40,delay_ms=100").await;
    let sent = send(&app, &client, &agent, None, "Take your time").await;
    let conversation_id = sent["conversation_id"].as_str().unwrap();
    let full: String = (0..40).map(|i| format!("t{i} ")).collect();
    // Nobody is attached: the checkpointer alone writes the growing text.
    let mut partial = String::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let c = conversation(&app, &client, conversation_id).await;
        let reply = &c["messages"][1];
        if reply["status"] == "streaming" && reply["body"] != "" {
            partial = reply["body"].as_str().unwrap().to_owned();
            break;
        }
    }
    assert!(!partial.is_empty(), "no checkpoint while streaming");
    assert!(
        full.starts_with(&partial) && partial.len() < full.len(),
        "a checkpoint holds a prefix of the reply: {partial:?}"
    );
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT body FROM messages WHERE role = 'assistant'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&sealed).contains("t0 "),
        "checkpoints are sealed"
    );
    // The final write wins over every checkpoint.
    let c = settled(&app, &client, conversation_id).await;
    assert_eq!(c["messages"][1]["body"], full);
    assert_eq!(c["messages"][1]["status"], "complete");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn two_runs_in_two_conversations_do_not_mix(db: PgPool) {
    let app = spawn(db).await;
    let client = app.signed_up("two@example.com").await;
    let a = agent(&app, &client, "fake:reply=alpha_beta_gamma,delay_ms=20").await;
    let b = agent(&app, &client, "fake:reply=one_two_three,delay_ms=20").await;
    let first = send(&app, &client, &a, None, "A").await;
    let second = send(&app, &client, &b, None, "B").await;
    let (x, y) = tokio::join!(
        read_stream(&app, &client, first["reply_id"].as_str().unwrap(), 1000),
        read_stream(&app, &client, second["reply_id"].as_str().unwrap(), 1000),
    );
    assert_eq!(text_of(&x), "alpha beta gamma");
    assert_eq!(text_of(&y), "one two three");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn another_user_cannot_attach_to_or_touch_a_live_stream(db: PgPool) {
    let app = spawn(db).await;
    let alice = app.signed_up("alice-chat@example.com").await;
    let mallory = app.signed_up("mallory@example.com").await;
    let agent = agent(&app, &alice, "fake:tokens=100,delay_ms=30").await;
    let sent = send(&app, &alice, &agent, None, "My private question").await;
    let reply = sent["reply_id"].as_str().unwrap();
    let conversation_id = sent["conversation_id"].as_str().unwrap();

    // While Alice's reply is streaming, Mallory tries its id.
    let res = mallory
        .get(app.url(&format!("/api/chat/stream/{reply}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(!res.text().await.unwrap().contains("t0"));
    for (name, form) in [
        ("stop_reply", vec![("message_id", reply)]),
        ("get_conversation", vec![("id", conversation_id)]),
        (
            "rename_conversation",
            vec![("id", conversation_id), ("title", "pwned")],
        ),
        ("delete_conversation", vec![("id", conversation_id)]),
        ("list_conversations", vec![("agent_id", agent.as_str())]),
        (
            "send_message",
            vec![
                ("agent_id", agent.as_str()),
                ("conversation_id", conversation_id),
                ("message", "hi"),
            ],
        ),
        // A first message: the agent's reads go out at once (its key, its
        // bases, its prices), and the agent's own check still answers.
        (
            "send_message",
            vec![("agent_id", agent.as_str()), ("message", "hi")],
        ),
    ] {
        let res = app.call(&mallory, name, &form).await;
        let status = res.status().as_u16();
        let body = res.text().await.unwrap();
        assert_eq!(status, 404, "{name}: {body}");
    }
    // Signed out, the stream asks for a session.
    let res = app
        .client()
        .get(app.url(&format!("/api/chat/stream/{reply}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);

    // Alice's run went on untouched.
    let events = read_stream(&app, &alice, reply, 10_000).await;
    assert_eq!(events.last().unwrap().1["status"], "complete");
    let c = settled(&app, &alice, conversation_id).await;
    assert_eq!(c["title"], "My private question");
}

/// A send reads its session in the statement that reads its agent (the
/// middleware leaves it unread): only a live session of a usable account
/// sends, counts against the limit or stores anything, and "last seen" is
/// still written.
#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_send_is_made_only_on_a_live_session_read_with_its_agent(db: PgPool) {
    let app = spawn(db).await;
    let alice = app.signed_up("alice@example.com").await;
    let agent = agent(&app, &alice, "fake:tokens=1").await;
    let (alice_id, hash): (uuid::Uuid, Vec<u8>) =
        sqlx::query_as("SELECT user_id, token_hash FROM sessions")
            .fetch_one(&app.db)
            .await
            .unwrap();
    let stored = "SELECT count(*) FROM messages";
    let counted = || async {
        sqlx::query_scalar::<_, Option<i32>>(
            "SELECT max(hits) FROM rate_limits WHERE bucket LIKE 'chat:user:%'",
        )
        .fetch_one(&app.db)
        .await
        .unwrap()
    };
    let with_cookie = |cookie: &'static str, text: &'static str| {
        app.client()
            .post(app.url("/api/send_message"))
            .header(reqwest::header::COOKIE, cookie)
            .header(reqwest::header::ACCEPT, "application/json")
            .header("sec-fetch-site", "same-origin")
            .form(&[("agent_id", agent.as_str()), ("message", text)])
            .send()
    };

    // Seen two minutes ago: the send writes "last seen" as any request does.
    sqlx::query("UPDATE sessions SET last_seen_at = now() - interval '2 minutes'")
        .execute(&app.db)
        .await
        .unwrap();
    let sent = send(&app, &alice, &agent, None, "Hello").await;
    assert!(sent["reply_id"].is_string());
    assert_eq!(app.count(stored).await, 2);
    assert_eq!(counted().await, Some(1));
    let bucket: String =
        sqlx::query_scalar("SELECT bucket FROM rate_limits WHERE bucket LIKE 'chat:%'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(bucket, format!("chat:user:{alice_id}"));
    let seen: bool = sqlx::query_scalar(
        "SELECT last_seen_at > now() - interval '1 minute' FROM sessions WHERE token_hash = $1",
    )
    .bind(&hash)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(seen, "the send wrote last seen");

    // A made-up cookie is no session: 401, with a message or without one,
    // and with a malformed id (which a signed-in user is told is not found).
    for text in ["Hello", ""] {
        let res = with_cookie("enclave_session=made-up", text).await.unwrap();
        assert_eq!(res.status(), 401, "{text:?}");
    }
    let malformed = |client: Client, cookie: Option<&'static str>| {
        let mut req = client
            .post(app.url("/api/send_message"))
            .header(reqwest::header::ACCEPT, "application/json")
            .header("sec-fetch-site", "same-origin")
            .form(&[("agent_id", "not-an-id"), ("message", "Hello")]);
        if let Some(cookie) = cookie {
            req = req.header(reqwest::header::COOKIE, cookie);
        }
        async move { req.send().await.unwrap().status() }
    };
    assert_eq!(
        malformed(app.client(), Some("enclave_session=made-up")).await,
        401
    );
    assert_eq!(malformed(app.client(), None).await, 401);
    assert_eq!(malformed(alice.clone(), None).await, 404);
    let status = |client: Client| {
        let (app, agent) = (&app, &agent);
        async move {
            crate::common::send_message(app, &client, agent, "Hi")
                .await
                .status()
        }
    };
    let db = &app.db;
    let exec = |sql: &'static str| async move {
        sqlx::query(sql).execute(db).await.unwrap();
    };
    // No cookie at all.
    assert_eq!(status(app.client()).await, 401);
    // An expired session.
    exec("UPDATE sessions SET expires_at = now() - interval '1 second'").await;
    assert_eq!(status(alice.clone()).await, 401);
    // A disabled account's live session.
    exec("UPDATE sessions SET expires_at = now() + interval '1 day'").await;
    exec("UPDATE users SET disabled_at = now()").await;
    assert_eq!(status(alice.clone()).await, 401);
    // None of them stored or counted anything.
    assert_eq!(app.count(stored).await, 2);
    assert_eq!(counted().await, Some(1));

    // Enabled again, the same session sends.
    exec("UPDATE users SET disabled_at = NULL").await;
    send(&app, &alice, &agent, None, "Hello again").await;
    assert_eq!(counted().await, Some(2));
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_missing_key_is_explained_and_nothing_is_stored(db: PgPool) {
    let fake = server::fake_provider::start().await.unwrap();
    let app = TestApp::spawn_full(
        db,
        with_fake_provider(relaxed_settings(), fake),
        keyring(1, &[]),
    )
    .await;
    let client = app.signed_up("nokey@example.com").await;
    let agent = agent(&app, &client, "fake").await;
    let res = app
        .call(
            &client,
            "send_message",
            &[("agent_id", agent.as_str()), ("message", "Hello?")],
        )
        .await;
    let message = refusal(res).await;
    assert!(message.contains("No OpenAI key"), "{message}");
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM conversations").await, 0);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_offline_demo_model_streams_without_any_key(db: PgPool) {
    let mut settings = relaxed_settings();
    server::enable_demo_model(&mut settings).await.unwrap();
    let app = TestApp::spawn_full(db.clone(), settings, keyring(1, &[])).await;
    let client = app.signed_up("demo@example.com").await;
    let agent = agent_on(&app, &client, "demo", "demo").await;
    let detail: Value = app
        .call(&client, "get_agent", &[("id", &agent)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["key_source"], json!("NotNeeded"));

    let sent = send(&app, &client, &agent, None, "Hi demo").await;
    let events = read_stream(&app, &client, sent["reply_id"].as_str().unwrap(), 10_000).await;
    let text = text_of(&events);
    assert!(
        text.starts_with("This is Enclave's offline demo model"),
        "{text}"
    );
    assert!(text.ends_with("You said: Hi demo"), "{text}");
    assert!(
        events.iter().filter(|(n, _)| n == "delta").count() > 10,
        "it streams"
    );
    drop(app);

    // A server without the demo model says so, and stores nothing.
    let plain = TestApp::spawn(db).await;
    let client = plain.client();
    assert_eq!(
        plain
            .sign_in(&client, "demo@example.com", crate::common::PASSWORD)
            .await
            .status(),
        200
    );
    let res = plain
        .call(
            &client,
            "send_message",
            &[("agent_id", agent.as_str()), ("message", "Again")],
        )
        .await;
    let message = refusal(res).await;
    assert!(message.contains("development servers"), "{message}");
    assert_eq!(plain.count("SELECT count(*) FROM messages").await, 2);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_restarted_server_ends_its_own_unfinished_replies_at_once(db: PgPool) {
    let app = spawn(db.clone()).await;
    let client = app.signed_up("restart@example.com").await;
    let agent = agent(&app, &client, "fake:tokens=3").await;
    let mine = send(&app, &client, &agent, None, "Hi").await;
    let theirs = send(&app, &client, &agent, None, "Hello").await;
    settled(&app, &client, mine["conversation_id"].as_str().unwrap()).await;
    settled(&app, &client, theirs["conversation_id"].as_str().unwrap()).await;
    drop(app);
    // As a server killed mid-reply leaves them, seconds ago: one reply was
    // this process's, the other another replica's (still writing it).
    for (reply, runner) in [(&mine, "restart-test:1"), (&theirs, "other-replica:1")] {
        sqlx::query(
            "UPDATE messages SET status = 'streaming', updated_at = now(), runner = $2 WHERE id = $1",
        )
        .bind(uuid::Uuid::parse_str(reply["reply_id"].as_str().unwrap()).unwrap())
        .bind(runner)
        .execute(&db)
        .await
        .unwrap();
    }

    // The real startup path, from configuration.
    let url = crate::common::database_url(&db).await;
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [1u8; 32]);
    let env = std::collections::HashMap::from([
        ("ENCLAVE_DATABASE_URL", url.as_str()),
        ("ENCLAVE_MASTER_KEY", key.as_str()),
        ("ENCLAVE_INSTANCE", "restart-test:1"),
    ]);
    let config = server::config::Config::from_source(&env).unwrap();
    let _state = server::app_state(&config, server::leptos_options())
        .await
        .unwrap();
    let status = |reply: &Value| {
        let id = uuid::Uuid::parse_str(reply["reply_id"].as_str().unwrap()).unwrap();
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, String>("SELECT status FROM messages WHERE id = $1")
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        status(&mine).await,
        "interrupted",
        "ended at startup, not five minutes later"
    );
    assert_eq!(
        status(&theirs).await,
        "streaming",
        "another process's fresh reply is left to it"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn regenerate_and_edit_replace_what_came_after(db: PgPool) {
    let app = spawn(db).await;
    let client = app.signed_up("edit@example.com").await;
    let agent = agent(&app, &client, "fake:echo").await;
    let sent = send(&app, &client, &agent, None, "first").await;
    let conversation_id = sent["conversation_id"].as_str().unwrap().to_owned();
    settled(&app, &client, &conversation_id).await;
    send(&app, &client, &agent, Some(&conversation_id), "second").await;
    let c = settled(&app, &client, &conversation_id).await;
    let old_reply = c["messages"][3]["id"].clone();

    // Regenerate: the last reply is replaced, nothing else changes.
    regenerate(&app, &client, &conversation_id).await;
    let c = settled(&app, &client, &conversation_id).await;
    let messages = c["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 4);
    assert_ne!(messages[3]["id"], old_reply);
    assert_eq!(messages[3]["body"], "You said: second");

    // Edit the first message: everything after it goes, a new reply comes.
    let first = messages[0]["id"].as_str().unwrap().to_owned();
    let res = app
        .call(
            &client,
            "edit_message",
            &[("message_id", first.as_str()), ("message", "first, edited")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let c = settled(&app, &client, &conversation_id).await;
    let bodies: Vec<&str> = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["first, edited", "You said: first, edited"]);

    // An assistant message cannot be "edited"; a user message is the last: nothing to regenerate.
    let reply = c["messages"][1]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.call(
            &client,
            "edit_message",
            &[("message_id", reply.as_str()), ("message", "x")]
        )
        .await
        .status(),
        404
    );

    // Rename and delete.
    assert_eq!(
        app.call(
            &client,
            "rename_conversation",
            &[("id", conversation_id.as_str()), ("title", "Renamed")]
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        conversation(&app, &client, &conversation_id).await["title"],
        "Renamed"
    );
    assert_eq!(
        app.call(
            &client,
            "delete_conversation",
            &[("id", conversation_id.as_str())]
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        app.call(
            &client,
            "get_conversation",
            &[("id", conversation_id.as_str())]
        )
        .await
        .status(),
        404
    );
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 0);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_thousand_message_conversation_opens_one_page_at_a_time(db: PgPool) {
    let app = spawn(db.clone()).await;
    let client = app.signed_up("long@example.com").await;
    let agent = agent(&app, &client, "fake:tokens=1").await;
    let sent = send(&app, &client, &agent, None, "start").await;
    let conversation_id = sent["conversation_id"].as_str().unwrap().to_owned();
    settled(&app, &client, &conversation_id).await;
    // 998 more messages, sealed like real ones, in one statement per batch.
    let id: uuid::Uuid = conversation_id.parse().unwrap();
    let owner: uuid::Uuid = sqlx::query_scalar("SELECT owner_id FROM conversations")
        .fetch_one(&db)
        .await
        .unwrap();
    let key = app::platform::keystore::user_key(
        &db,
        &app.keyring,
        owner,
        app::platform::keystore::KeyUse::Operator,
    )
    .await
    .unwrap();
    for i in 0..998 {
        let mid = uuid::Uuid::new_v4();
        let body = key.seal_str(
            app::platform::crypto::Place::new("messages", "body", mid, owner),
            &format!("message {i}"),
        );
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, owner_id, role, body, status, created_at)
                     VALUES ($1, $2, $3, $4, $5, 'complete', clock_timestamp())",
        )
        .bind(mid)
        .bind(id)
        .bind(owner)
        .bind(if i % 2 == 0 { "user" } else { "assistant" })
        .bind(body)
        .execute(&db)
        .await
        .unwrap();
    }
    let page = conversation(&app, &client, &conversation_id).await;
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), app::chat::PAGE);
    assert_eq!(page["has_more"], true);
    assert_eq!(messages.last().unwrap()["body"], "message 997");
    // The page before it continues exactly where this one starts.
    let first = messages[0]["id"].as_str().unwrap();
    let res = app
        .call(
            &client,
            "get_conversation",
            &[("id", conversation_id.as_str()), ("before", first)],
        )
        .await;
    let older: Value = res.json().await.unwrap();
    let older_messages = older["messages"].as_array().unwrap();
    assert_eq!(older_messages.len(), app::chat::PAGE);
    assert_eq!(older_messages.last().unwrap()["body"], "message 897");

    // The page itself shows the older messages when asked (server-rendered).
    let html = |path: String| {
        let client = client.clone();
        let url = app.url(&path);
        async move { client.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let latest = html(format!("/agents/{agent}/chat?c={conversation_id}")).await;
    assert!(
        latest.contains("message 997") && !latest.contains("message 897<"),
        "the latest page"
    );
    assert!(latest.contains("Load earlier messages"));
    let earlier = html(
        format!("/agents/{agent}/chat?c={conversation_id}&amp;before={first}")
            .replace("&amp;", "&"),
    )
    .await;
    assert!(
        earlier.contains("message 897<"),
        "the earlier page shows older messages"
    );
    assert!(!earlier.contains("message 997"), "and not the latest ones");
}

/// A reader that asks just after a short reply ended (an API request whose
/// reply was quicker than its reader) gets the whole reply from its row,
/// not a cut; another user's id is still not found.
#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_reply_that_ended_before_its_reader_asked_is_read_whole(db: PgPool) {
    use app::chat::{MessageStatus, StreamUpdate};
    let app = spawn(db).await;
    let client = app.signed_up("quick@example.com").await;
    let agent = agent(&app, &client, "fake:tokens=3").await;
    let sent = send(&app, &client, &agent, None, "Quick").await;
    let reply: uuid::Uuid = sent["reply_id"].as_str().unwrap().parse().unwrap();
    app.state.runs.ended(reply).await;
    let (owner, key) = owner_and_key(&app, "quick@example.com").await;
    assert!(
        app.state.runs.follow(reply, owner).is_none(),
        "no longer live"
    );

    let updates: Vec<StreamUpdate> =
        app::chat::server::reply_updates(&app.state, owner, &key, reply)
            .await
            .unwrap()
            .collect()
            .await;
    let stored = conversation(&app, &client, sent["conversation_id"].as_str().unwrap()).await;
    let text = stored["messages"][1]["body"].as_str().unwrap();
    assert!(text.contains("t2"), "{text}");
    match updates.as_slice() {
        [
            StreamUpdate::Snapshot { text: read, .. },
            StreamUpdate::Done { status, .. },
        ] => {
            assert_eq!(read, text);
            assert_eq!(*status, MessageStatus::Complete);
        }
        other => panic!("{other:?}"),
    }
    let stranger =
        app::chat::server::reply_updates(&app.state, uuid::Uuid::new_v4(), &key, reply).await;
    assert!(matches!(stranger, Err(app::error::AppError::NotFound)));
}

/// The signed-up user's id and data key, for tests that work below the API.
async fn owner_and_key(app: &TestApp, email: &str) -> (uuid::Uuid, app::platform::crypto::DataKey) {
    let users: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM users")
        .fetch_all(&app.db)
        .await
        .unwrap();
    let client = app.client();
    assert_eq!(
        app.sign_in(&client, email, crate::common::PASSWORD)
            .await
            .status(),
        200
    );
    for id in users {
        let key = app::platform::keystore::user_key(
            &app.db,
            &app.keyring,
            id,
            app::platform::keystore::KeyUse::Operator,
        )
        .await
        .unwrap();
        let sealed: app::platform::crypto::Sealed =
            sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
                .bind(id)
                .fetch_one(&app.db)
                .await
                .unwrap();
        let place = app::platform::crypto::Place::new("users", "email", id, id);
        if key.open_string(place, &sealed).ok().as_deref() == Some(email) {
            return (id, key);
        }
    }
    panic!("no user {email}");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn shutting_down_saves_every_live_reply_and_ends_its_stream(db: PgPool) {
    let mut app = spawn(db.clone()).await;
    let client = app.signed_up("shutdown@example.com").await;
    let agent = agent(&app, &client, "fake:tokens=500,delay_ms=20").await;
    let sent = send(&app, &client, &agent, None, "Talk for a while").await;
    let reply = sent["reply_id"].as_str().unwrap().to_owned();
    let res = client
        .get(app.url(&format!("/api/chat/stream/{reply}")))
        .send()
        .await
        .unwrap();
    let mut events = res.bytes_stream().eventsource();
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let event = events.next().await.unwrap().unwrap();
        seen.push((
            event.event,
            serde_json::from_str::<Value>(&event.data).unwrap(),
        ));
    }
    // SIGTERM, as the server gets it: the run is saved and ended, the
    // stream says so and closes, and the server stops.
    let reader = tokio::spawn(async move {
        while let Some(Ok(event)) = events.next().await {
            let done = event.event == "done";
            seen.push((
                event.event,
                serde_json::from_str::<Value>(&event.data).unwrap(),
            ));
            if done {
                break;
            }
        }
        seen
    });
    tokio::time::timeout(Duration::from_secs(20), app.shut_down())
        .await
        .expect("the server stopped without waiting for the reply to end");
    let seen = reader.await.unwrap();
    let (name, done) = seen.last().unwrap();
    assert_eq!(name, "done");
    assert_eq!(done["status"], "interrupted");
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .contains("server writing this reply stopped"),
        "{done}"
    );
    let written = text_of(&seen);
    assert!(written.starts_with("t0 t1 t2") && !written.contains("t499"));

    let (status, code): (String, Option<String>) =
        sqlx::query_as("SELECT status, error_code FROM messages WHERE id = $1")
            .bind(uuid::Uuid::parse_str(&reply).unwrap())
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), code.as_deref()),
        ("interrupted", Some("server_stopped"))
    );
    // The text that streamed is what was saved.
    let again = spawn(db).await;
    let client = again.client();
    assert_eq!(
        again
            .sign_in(&client, "shutdown@example.com", crate::common::PASSWORD)
            .await
            .status(),
        200
    );
    let c = conversation(&again, &client, sent["conversation_id"].as_str().unwrap()).await;
    let body = c["messages"][1]["body"].as_str().unwrap();
    assert!(body.starts_with(&written), "{body:?} / {written:?}");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_final_write_that_fails_is_retried_until_it_lands(db: PgPool) {
    let app = spawn(db.clone()).await;
    let client = app.signed_up("retry@example.com").await;
    let agent = agent(&app, &client, "fake:tokens=3").await;
    // The database refuses to finish any reply until told otherwise.
    sqlx::raw_sql(
        "CREATE TABLE refuse_final (refuse boolean NOT NULL);
         INSERT INTO refuse_final VALUES (true);
         CREATE FUNCTION refuse_final() RETURNS trigger AS $$
         BEGIN
           IF NEW.status <> 'streaming' AND (SELECT refuse FROM refuse_final) THEN
             RAISE EXCEPTION 'the database is having a bad moment';
           END IF;
           RETURN NEW;
         END $$ LANGUAGE plpgsql;
         CREATE TRIGGER refuse_final BEFORE UPDATE ON messages
           FOR EACH ROW EXECUTE FUNCTION refuse_final();",
    )
    .execute(&db)
    .await
    .unwrap();
    let sent = send(&app, &client, &agent, None, "Hi").await;
    let reply = uuid::Uuid::parse_str(sent["reply_id"].as_str().unwrap()).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status: String = sqlx::query_scalar("SELECT status FROM messages WHERE id = $1")
        .bind(reply)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(status, "streaming", "not written yet");
    assert!(
        app.state.runs.is_live(reply),
        "kept while it is not written"
    );
    sqlx::query("UPDATE refuse_final SET refuse = false")
        .execute(&db)
        .await
        .unwrap();
    let c = settled(&app, &client, sent["conversation_id"].as_str().unwrap()).await;
    assert_eq!(c["messages"][1]["status"], "complete");
    assert_eq!(c["messages"][1]["body"], "t0 t1 t2 ");
    // The task leaves the registry just after its final write.
    let _ = tokio::time::timeout(Duration::from_secs(2), app.state.runs.ended(reply)).await;
    assert!(!app.state.runs.is_live(reply));
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_run_that_panics_ends_interrupted_and_frees_its_conversation(db: PgPool) {
    let app = spawn(db.clone()).await;
    let client = app.signed_up("panic@example.com").await;
    let agent = agent(&app, &client, "fake:tokens=2").await;
    let sent = send(&app, &client, &agent, None, "Hi").await;
    let conversation_id = sent["conversation_id"].as_str().unwrap().to_owned();
    settled(&app, &client, &conversation_id).await;
    let (owner, key) = owner_and_key(&app, "panic@example.com").await;

    // A reply whose provider stream panics after its first words.
    let reply = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO messages (id, conversation_id, owner_id, role, body, status, created_at)
         VALUES ($1, $2, $3, 'assistant', $4, 'streaming', clock_timestamp())",
    )
    .bind(reply)
    .bind(uuid::Uuid::parse_str(&conversation_id).unwrap())
    .bind(owner)
    .bind(key.seal_str(app::chat::server::message_place("body", reply, owner), ""))
    .execute(&db)
    .await
    .unwrap();
    let model: runs::Model = std::sync::Arc::new(|_| {
        futures::stream::iter([Ok(app::llm::StreamEvent::Text("partial ".into()))])
            .chain(futures::stream::once(async {
                panic!("a bug in a provider adapter")
            }))
            .boxed()
    });
    start_scripted(&app, owner, key, reply, model, runs::Committed::already());
    let c = settled(&app, &client, &conversation_id).await;
    let last = c["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], "interrupted");
    assert_eq!(last["body"], "partial ");
    assert!(
        last["error"].as_str().unwrap().contains("went wrong"),
        "{last}"
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), app.state.runs.ended(reply)).await;
    assert!(!app.state.runs.is_live(reply), "left the registry");
    // The conversation takes new messages.
    send(
        &app,
        &client,
        &agent,
        Some(&conversation_id),
        "Still there?",
    )
    .await;
    settled(&app, &client, &conversation_id).await;
}

/// A run started before its reply's transaction commits (as a send starts
/// it, so the provider is asked meanwhile) writes nothing until the commit
/// is in, and nothing at all when it never comes.
#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_run_started_before_its_commit_writes_only_once_the_reply_is_stored(db: PgPool) {
    let app = spawn(db.clone()).await;
    let client = app.signed_up("gate@example.com").await;
    let agent = agent(&app, &client, "fake:tokens=2").await;
    let sent = send(&app, &client, &agent, None, "Hi").await;
    let conversation_id = sent["conversation_id"].as_str().unwrap().to_owned();
    let conversation = uuid::Uuid::parse_str(&conversation_id).unwrap();
    settled(&app, &client, &conversation_id).await;
    let (owner, key) = owner_and_key(&app, "gate@example.com").await;
    let model = || -> runs::Model {
        std::sync::Arc::new(|_| {
            futures::stream::iter([
                Ok(app::llm::StreamEvent::Text("quick ".into())),
                Ok(app::llm::StreamEvent::Text("answer".into())),
            ])
            .boxed()
        })
    };
    let start = |reply: uuid::Uuid, committed: runs::Committed| {
        start_scripted(&app, owner, key.clone(), reply, model(), committed)
    };
    let row = |reply: uuid::Uuid| {
        let db = db.clone();
        async move {
            sqlx::query_as::<_, (String, Vec<u8>)>(
                "SELECT status, body FROM messages WHERE id = $1",
            )
            .bind(reply)
            .fetch_one(&db)
            .await
            .unwrap()
        }
    };
    let insert = |reply: uuid::Uuid| {
        let db = db.clone();
        let body = key.seal_str(app::chat::server::message_place("body", reply, owner), "");
        async move {
            sqlx::query(
                "INSERT INTO messages (id, conversation_id, owner_id, role, body, status, created_at)
                 VALUES ($1, $2, $3, 'assistant', $4, 'streaming', clock_timestamp())",
            )
            .bind(reply)
            .bind(conversation)
            .bind(owner)
            .bind(body)
            .execute(&db)
            .await
            .unwrap();
        }
    };

    // The model answers at once; the reply is written only once stored.
    let reply = uuid::Uuid::new_v4();
    insert(reply).await;
    let before = row(reply).await;
    let (commit, committed) = runs::Committed::pending();
    start(reply, committed);
    // Longer than a checkpoint's interval.
    tokio::time::sleep(runs::CHECKPOINT_EVERY + Duration::from_millis(500)).await;
    assert_eq!(
        row(reply).await,
        before,
        "nothing written before the commit"
    );
    assert!(app.state.runs.is_live(reply), "the run waits for it");
    commit.stored();
    let c = settled(&app, &client, &conversation_id).await;
    let last = c["messages"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], "complete", "{last}");
    assert_eq!(last["body"], "quick answer");

    // A commit that never comes: the run ends and writes nothing.
    let reply = uuid::Uuid::new_v4();
    insert(reply).await;
    let before = row(reply).await;
    let (commit, committed) = runs::Committed::pending();
    start(reply, committed);
    drop(commit);
    tokio::time::timeout(Duration::from_secs(10), app.state.runs.ended(reply))
        .await
        .expect("the run ends");
    assert!(!app.state.runs.is_live(reply));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(row(reply).await, before, "nothing written without a commit");
}

/// Starts the run of `reply` (its row made by the test) with `model`'s
/// scripted steps, an empty request and no tools.
fn start_scripted(
    app: &TestApp,
    owner: uuid::Uuid,
    key: app::platform::crypto::DataKey,
    reply: uuid::Uuid,
    model: runs::Model,
    committed: runs::Committed,
) {
    let request = app::llm::ChatRequest {
        provider: Provider::Openai,
        base_url: String::new(),
        api_key: String::new(),
        model: "fake".into(),
        system_prompt: String::new(),
        turns: vec![],
        tools: vec![],
        temperature: None,
        top_p: None,
        max_output_tokens: None,
    };
    let job = runs::Job {
        request,
        tools: None,
        resume: vec![],
        retrieval: None,
        meter: None,
        clock: None,
    };
    let target = runs::Reply {
        owner,
        message: reply,
        replaces: None,
    };
    app.state
        .runs
        .start_with(app.state.clone(), target, key, job, model, committed);
}

/// Sets an agent's model (the rest as `agent_on` made it).
async fn set_model(app: &TestApp, client: &Client, agent: &str, model: &str) {
    let form = [
        ("id", agent),
        ("name", "Chatty"),
        ("description", ""),
        ("system_prompt", "Be brief."),
        ("provider", "openai"),
        ("model", model),
        ("base_url", ""),
        ("temperature", ""),
        ("top_p", ""),
        ("max_output_tokens", ""),
        ("avatar", ""),
    ];
    assert_eq!(app.call(client, "update_agent", &form).await.status(), 200);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_regeneration_that_fails_before_its_first_word_keeps_the_old_reply(db: PgPool) {
    let app = spawn(db).await;
    let client = app.signed_up("regen@example.com").await;
    let agent = agent(&app, &client, "fake:echo").await;
    let sent = send(&app, &client, &agent, None, "first").await;
    let conversation_id = sent["conversation_id"].as_str().unwrap().to_owned();
    settled(&app, &client, &conversation_id).await;

    set_model(&app, &client, &agent, "fake:status=404").await;
    regenerate(&app, &client, &conversation_id).await;
    let c = settled(&app, &client, &conversation_id).await;
    let messages = c["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(
        messages[1]["body"], "You said: first",
        "the good reply is kept"
    );
    assert_eq!(messages[1]["status"], "complete");
    assert_eq!(messages[2]["status"], "interrupted");
    assert!(
        messages[2]["error"]
            .as_str()
            .unwrap()
            .contains("does not know this model")
    );

    // A regeneration that does write replaces what it regenerates.
    set_model(&app, &client, &agent, "fake:reply=second_try").await;
    regenerate(&app, &client, &conversation_id).await;
    let c = settled(&app, &client, &conversation_id).await;
    let bodies: Vec<&str> = c["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, vec!["first", "You said: first", "second try"]);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn sends_and_key_tests_are_limited_per_user(db: PgPool) {
    let fake = server::fake_provider::start().await.unwrap();
    let settings = app::platform::Settings {
        platform_keys: PlatformKeys::new([(Provider::Openai, "platform-key".to_owned())].into()),
        chat_sends_per_user: app::platform::settings::Limit::new(2, 60),
        key_tests_per_user: app::platform::settings::Limit::new(1, 60),
        ..relaxed_settings()
    };
    let app = TestApp::spawn_full(db, with_fake_provider(settings, fake), keyring(1, &[])).await;
    let client = app.signed_up("busy@example.com").await;
    let agent = agent(&app, &client, "fake:tokens=1").await;
    let sent = send(&app, &client, &agent, None, "one").await;
    settled(&app, &client, sent["conversation_id"].as_str().unwrap()).await;
    send(&app, &client, &agent, None, "two").await;
    let third = app
        .call(
            &client,
            "send_message",
            &[("agent_id", agent.as_str()), ("message", "three")],
        )
        .await;
    assert_eq!(third.status(), 429);
    // Another user has a budget of their own.
    let other = app.signed_up("calm@example.com").await;
    let theirs = agent_on(&app, &other, "openai", "fake:tokens=1").await;
    send(&app, &other, &theirs, None, "one").await;

    let form = [
        ("provider", "openai"),
        ("label", "k"),
        ("secret", "good-key-1"),
        ("base_url", ""),
    ];
    assert_eq!(
        app.call(&client, "add_provider_key", &form).await.status(),
        200
    );
    let keys: Value = app
        .call(&client, "list_provider_keys", &[])
        .await
        .json()
        .await
        .unwrap();
    let id = keys[0]["id"].as_str().unwrap();
    assert_eq!(
        app.call(&client, "test_provider_key", &[("id", id)])
            .await
            .status(),
        200
    );
    assert_eq!(
        app.call(&client, "test_provider_key", &[("id", id)])
            .await
            .status(),
        429
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn an_openai_compatible_server_can_be_used_without_a_key(db: PgPool) {
    let fake = server::fake_provider::start().await.unwrap();
    let app = TestApp::spawn_full(
        db,
        with_fake_provider(relaxed_settings(), fake),
        keyring(1, &[]),
    )
    .await;
    let client = app.signed_up("ollama@example.com").await;
    let base_url = format!("http://{fake}/compat/v1");
    let form = [
        ("name", "Local"),
        ("description", ""),
        ("system_prompt", ""),
        ("provider", "openai_compatible"),
        ("model", "fake:echo"),
        ("base_url", base_url.as_str()),
        ("temperature", ""),
        ("top_p", ""),
        ("max_output_tokens", ""),
        ("avatar", ""),
    ];
    assert_eq!(app.call(&client, "create_agent", &form).await.status(), 200);
    let agents: Value = app
        .call(&client, "list_agents", &[])
        .await
        .json()
        .await
        .unwrap();
    let agent = agents[0]["id"].as_str().unwrap().to_owned();
    let detail: Value = app
        .call(&client, "get_agent", &[("id", agent.as_str())])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(detail["key_source"], "Keyless");
    let sent = send(&app, &client, &agent, None, "no key needed").await;
    let c = settled(&app, &client, sent["conversation_id"].as_str().unwrap()).await;
    assert_eq!(c["messages"][1]["body"], "You said: no key needed");
    assert_eq!(
        crate::common::compat_last_authorization(fake).await,
        Value::Null,
        "no Authorization header was sent"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_demo_model_answers_as_the_demo_whatever_the_model_name(db: PgPool) {
    let mut settings = relaxed_settings();
    server::enable_demo_model(&mut settings).await.unwrap();
    let app = TestApp::spawn_full(db, settings, keyring(1, &[])).await;
    let client = app.signed_up("demo-name@example.com").await;
    let agent = agent_on(&app, &client, "demo", "gpt-4o-mini").await;
    let sent = send(&app, &client, &agent, None, "hello").await;
    let c = settled(&app, &client, sent["conversation_id"].as_str().unwrap()).await;
    let body = c["messages"][1]["body"].as_str().unwrap();
    assert!(
        body.starts_with("This is Enclave's offline demo model"),
        "{body}"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn without_javascript_a_first_message_lands_on_its_conversation(db: PgPool) {
    let app = spawn(db).await;
    let client = app.signed_up("nojs@example.com").await;
    let agent = agent(&app, &client, "fake:tokens=1").await;
    let res = client
        .post(app.url("/api/send_message"))
        .header(reqwest::header::ACCEPT, "text/html")
        .header("sec-fetch-site", "same-origin")
        .header(
            reqwest::header::REFERER,
            app.url(&format!("/agents/{agent}/chat")),
        )
        .form(&[("agent_id", agent.as_str()), ("message", "hello")])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_redirection(), "{}", res.status());
    let location = res.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let prefix = format!("/agents/{agent}/chat?c=");
    assert!(location.starts_with(&prefix), "{location}");
    let conversation = &location[prefix.len()..];
    assert!(uuid::Uuid::parse_str(conversation).is_ok(), "{location}");
    settled(&app, &client, conversation).await;
}

/// The sidebar's list: every conversation of the user across agents, newest
/// first, found by its sealed title; never another user's.
#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_chat_list_spans_agents_searches_sealed_titles_and_holds_only_ones_own(db: PgPool) {
    let app = spawn(db).await;
    let alice = app.signed_up("alice-list@example.com").await;
    let bob = app.signed_up("bob-list@example.com").await;
    let owl = agent(&app, &alice, "fake:tokens=1").await;
    let fox = agent(&app, &alice, "fake:tokens=2").await;
    let mut ids = Vec::new();
    for (agent, text) in [
        (&owl, "Plan the garden beds"),
        (&fox, "Tax return checklist"),
        (&owl, "GARDEN tools to buy"),
    ] {
        let sent = send(&app, &alice, agent, None, text).await;
        let id = sent["conversation_id"].as_str().unwrap().to_owned();
        settled(&app, &alice, &id).await;
        ids.push(id);
    }
    let bobs_agent = agent(&app, &bob, "fake:tokens=1").await;
    let sent = send(&app, &bob, &bobs_agent, None, "Bob's garden secret").await;
    settled(&app, &bob, sent["conversation_id"].as_str().unwrap()).await;

    let list = |client: &Client, form: Vec<(&'static str, &'static str)>| {
        let client = client.clone();
        let app = &app;
        async move {
            let res = app.call(&client, "list_chats", &form).await;
            assert_eq!(res.status(), 200);
            res.json::<Value>().await.unwrap()
        }
    };
    let all = list(&alice, vec![]).await;
    let titles: Vec<&str> = all["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "GARDEN tools to buy",
            "Tax return checklist",
            "Plan the garden beds"
        ]
    );
    assert_eq!(all["chats"][1]["agent_id"], fox.as_str());
    assert_eq!(all["chats"][0]["id"], ids[2].as_str());
    assert_eq!(all["last_agent"], owl.as_str());
    assert_eq!(all["more"], false);
    assert_eq!(all["agents"].as_array().unwrap().len(), 2);
    assert!(all["chats"][0]["updated"].as_i64().unwrap() <= all["now"].as_i64().unwrap());

    // Any case, anywhere in the title; Bob's "garden" is not Alice's.
    let found = list(&alice, vec![("query", "garden")]).await;
    let titles: Vec<&str> = found["chats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert_eq!(titles, ["GARDEN tools to buy", "Plan the garden beds"]);
    let bobs = list(&bob, vec![("query", "garden")]).await;
    assert_eq!(bobs["chats"].as_array().unwrap().len(), 1);
    assert_eq!(bobs["chats"][0]["title"], "Bob's garden secret");
    assert_eq!(bobs["agents"].as_array().unwrap().len(), 1);
    let nothing = list(&bob, vec![("query", "Tax return")]).await;
    assert!(nothing["chats"].as_array().unwrap().is_empty());

    // A deleted conversation leaves the list; signed out there is no list.
    let res = app
        .call(&alice, "delete_conversation", &[("id", ids[1].as_str())])
        .await;
    assert_eq!(res.status(), 200);
    let all = list(&alice, vec![]).await;
    assert_eq!(all["chats"].as_array().unwrap().len(), 2);
    let res = app.call(&app.client(), "list_chats", &[]).await;
    assert_eq!(res.status(), 401);

    // More than fit: the list says so (the sidebar links to All chats).
    let (owner, key) = owner_and_key(&app, "alice-list@example.com").await;
    let page = app::chat::server::chat_list(&app.state, owner, &key, "", 1)
        .await
        .unwrap();
    assert_eq!(page.chats.len(), 1);
    assert!(page.more);
    let page = app::chat::server::chat_list(&app.state, owner, &key, "plan", 1)
        .await
        .unwrap();
    assert_eq!(page.chats.len(), 1);
    assert!(!page.more);

    // Without JavaScript: every signed-in page carries the sidebar, rendered
    // on the server; the search is a page; "New chat" a redirect.
    let html = |client: &Client, path: String| {
        let client = client.clone();
        let url = app.url(&path);
        async move {
            let res = client.get(url).send().await.unwrap();
            (res.status(), res.text().await.unwrap())
        }
    };
    let (status, page) = html(&alice, "/dashboard".into()).await;
    assert_eq!(status, 200);
    assert!(page.contains("id=\"sidebar\""), "{page}");
    assert!(page.contains("GARDEN tools to buy") && page.contains("Plan the garden beds"));
    assert!(!page.contains("Bob&#x27;s garden secret") && !page.contains("Bob's garden secret"));
    let (status, page) = html(&alice, "/chats?q=plan".into()).await;
    assert_eq!(status, 200);
    let main = &page[page.find("id=\"main\"").unwrap()..page.find("</main>").unwrap()];
    assert!(main.contains("Plan the garden beds"), "{main}");
    assert!(!main.contains("GARDEN tools to buy"), "{main}");
    for (agent, to) in [
        (owl.clone(), format!("/agents/{owl}/chat")),
        ("..%2F..%2Fevil".into(), "/agents".into()),
        ("//evil.example".into(), "/agents".into()),
    ] {
        let res = alice
            .get(app.url(&format!("/chat/new?agent={agent}")))
            .header(reqwest::header::ACCEPT, "text/html")
            .send()
            .await
            .unwrap();
        assert!(res.status().is_redirection(), "{agent}: {}", res.status());
        assert_eq!(res.headers()[reqwest::header::LOCATION], to.as_str());
    }
    // Signed out, both are sign-in first.
    let res = app.client().get(app.url("/chats")).send().await.unwrap();
    assert!(res.status().is_redirection());
    assert!(
        res.headers()[reqwest::header::LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/sign-in")
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_chat_page_of_a_missing_or_foreign_agent_is_404(db: PgPool) {
    let app = spawn(db).await;
    let alice = app.signed_up("alice-page@example.com").await;
    let bob = app.signed_up("bob-page@example.com").await;
    let agent = agent(&app, &alice, "fake").await;
    let page = |client: &Client, id: String| {
        let url = app.url(&format!("/agents/{id}/chat"));
        let client = client.clone();
        async move { client.get(url).send().await.unwrap().status() }
    };
    assert_eq!(page(&alice, agent.clone()).await, 200);
    assert_eq!(page(&bob, agent).await, 404);
    assert_eq!(page(&alice, uuid::Uuid::new_v4().to_string()).await, 404);
}

/// A pooled connection comes with the send's statement already parsed and
/// planned (`chat::server::warm`, run as each connection opens), and
/// warming it writes nothing: no "last seen", no count.
#[sqlx::test(migrator = "server::MIGRATOR")]
async fn each_pooled_connection_has_the_sends_statement_ready_and_warming_writes_nothing(
    db: PgPool,
) {
    let app = TestApp::spawn(db.clone()).await;
    app.signed_up("warm@example.com").await;
    // Long unseen, so a session the warm-up read would be written.
    sqlx::query("UPDATE sessions SET last_seen_at = now() - interval '1 hour'")
        .execute(&db)
        .await
        .unwrap();
    let state = "SELECT (SELECT string_agg(bucket || ':' || hits, ',' ORDER BY bucket)
                         FROM rate_limits),
                        (SELECT string_agg(last_seen_at::text, ',' ORDER BY id) FROM sessions)";
    let before: (Option<String>, Option<String>) =
        sqlx::query_as(state).fetch_one(&db).await.unwrap();

    let pool = server::connect_db(&crate::common::database_url(&db).await)
        .await
        .unwrap();
    let mut connections = Vec::new();
    for _ in 0..3 {
        connections.push(pool.acquire().await.unwrap());
    }
    for conn in &mut connections {
        // Prepared, and run on the generic plan a send will use.
        let prepared: Vec<i64> = sqlx::query_scalar(
            "SELECT generic_plans FROM pg_prepared_statements
             WHERE statement LIKE '%counted AS (%' AND statement LIKE '%me AS (%'
               AND statement NOT LIKE '%pg_prepared_statements%'",
        )
        .fetch_all(&mut **conn)
        .await
        .unwrap();
        // (The first connection may have run it twice: as it opened, and
        // again once the migrations were checked.)
        assert!(
            matches!(prepared[..], [n] if n >= 1),
            "the send's statement, prepared and planned on each connection: {prepared:?}"
        );
    }
    // Warmed again by hand: still nothing written.
    app::chat::server::warm(&mut connections[0]).await.unwrap();
    drop(connections);
    let after: (Option<String>, Option<String>) =
        sqlx::query_as(state).fetch_one(&db).await.unwrap();
    assert_eq!(before, after);
    assert!(before.1.is_some(), "the session is there to be left alone");
    pool.close().await;
}
