//! A Telegram bot per agent, against a fake Bot API that keeps state like
//! Telegram (webhook or update queue, chats with their edits, its refusals):
//! the webhook with its secret header (a wrong one is 401 and changes
//! nothing, a repeated update is answered once), long polling by one server
//! at a time, strangers refused, `/start CODE` letting someone in, each chat
//! one conversation, long replies cut under 4,096 characters, disconnecting,
//! and another user's agent is 404 everywhere.

use std::time::Duration;

use reqwest::Client;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{TestApp, chat_settings, keyring, scripted_agent};

const TOKEN: &str = "123456789:AAE_fake-token-for-the-enclave-tests";

async fn app(db: PgPool, webhook: bool, instance: &str) -> (TestApp, std::net::SocketAddr) {
    let fake = server::fake_provider::start().await.unwrap();
    let mut settings = chat_settings(fake);
    settings.instance = instance.to_owned();
    if webhook {
        settings.service_urls.telegram_webhook = Some("self".into());
    }
    (
        TestApp::spawn_full(db, settings, keyring(1, &[])).await,
        fake,
    )
}

use crate::common::ok_json as json;

/// A Telegram user writes to the bot (through the fake).
async fn writes(fake: std::net::SocketAddr, from: i64, text: &str, repeat: u64) -> Value {
    json(
        Client::new()
            .post(format!("http://{fake}/fakes/telegram/{TOKEN}/updates"))
            .json(&json!({"from": from, "text": text, "repeat": repeat}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// What chat `chat` shows once it has `count` messages and none is the
/// "…" of a reply still being written.
async fn chat(fake: std::net::SocketAddr, chat: i64, count: usize) -> Vec<Value> {
    let mut last = Vec::new();
    for _ in 0..400 {
        let shown = json(
            Client::new()
                .get(format!("http://{fake}/fakes/telegram/{TOKEN}/chats/{chat}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        last = shown["messages"].as_array().unwrap().clone();
        if last.len() >= count && last.iter().all(|m| m["text"] != "…") {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("chat {chat} did not show {count} messages: {last:#?}");
}

async fn connect(app: &TestApp, client: &Client, agent: &str) -> Value {
    json(
        app.call(
            client,
            "connect_telegram",
            &[("agent_id", agent), ("token", TOKEN)],
        )
        .await,
    )
    .await
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn over_a_webhook_the_bot_answers_people_let_in_and_refuses_strangers(db: PgPool) {
    let (app, fake) = app(db, true, "one").await;
    let client = app.signed_up("bot-owner@example.com").await;
    let agent = scripted_agent(&app, &client, fake, "openai", "fake:echo", &[], &[], "").await;
    let channel = connect(&app, &client, &agent).await;
    assert_eq!(channel["webhook"], true);
    assert_eq!(channel["bot_username"], "fake_enclave_bot");
    let code = channel["start_code"].as_str().unwrap().to_owned();
    assert_eq!(code.len(), 10);

    // A stranger: the refusal, and nothing else.
    let delivered = writes(fake, 42, "hello", 1).await;
    assert_eq!(delivered["delivered"], json!([200]));
    let shown = chat(fake, 42, 1).await;
    assert!(
        shown[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Sorry, this bot is private.")
    );
    writes(fake, 42, "/start WRONGCODE1", 1).await;
    assert_eq!(chat(fake, 42, 2).await.len(), 2);
    assert_eq!(app.count("SELECT count(*) FROM conversations").await, 0);

    // A wrong or missing secret header: 401, and nothing is queued.
    let id: String = sqlx::query_scalar("SELECT id::text FROM telegram_channels")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let jobs = app
        .count("SELECT count(*) FROM jobs WHERE kind = 'telegram'")
        .await;
    let update = json!({"update_id": 9, "message": {"message_id": 1, "from": {"id": 42},
        "chat": {"id": 42, "type": "private"}, "text": "let me in"}});
    for secret in [Some("not-the-secret"), None] {
        let mut req = Client::new()
            .post(app.url(&format!("/telegram/webhook/{id}")))
            .json(&update);
        if let Some(secret) = secret {
            req = req.header("x-telegram-bot-api-secret-token", secret);
        }
        assert_eq!(req.send().await.unwrap().status(), 401);
    }
    assert_eq!(
        app.count("SELECT count(*) FROM jobs WHERE kind = 'telegram'")
            .await,
        jobs
    );

    // The code lets them in; Telegram sending an update twice gets one answer.
    writes(fake, 42, &format!("/start {code}"), 1).await;
    let shown = chat(fake, 42, 3).await;
    assert!(
        shown[2]["text"]
            .as_str()
            .unwrap()
            .contains("You can talk to")
    );
    let delivered = writes(fake, 42, "What's up?", 2).await;
    assert_eq!(delivered["delivered"], json!([200, 200]));
    let shown = chat(fake, 42, 4).await;
    let reply = &shown[3];
    assert_eq!(reply["text"], "You said: What's up?");
    assert!(
        reply["edits"].as_i64().unwrap() >= 1,
        "the reply grew in place: {reply}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        chat(fake, 42, 4).await.len(),
        4,
        "one answer for the repeated update"
    );
    assert_eq!(app.count("SELECT count(*) FROM conversations").await, 1);

    // The chat is one conversation; a long reply comes in pieces.
    let long = format!("Start. {}End.", "All good here. ".repeat(260));
    writes(fake, 42, &long, 1).await;
    let shown = chat(fake, 42, 6).await;
    assert!(
        shown
            .iter()
            .all(|m| m["text"].as_str().unwrap().chars().count() <= 4096)
    );
    assert!(
        shown[4]["text"]
            .as_str()
            .unwrap()
            .starts_with("You said: Start\\.")
    );
    assert!(shown[5]["text"].as_str().unwrap().ends_with("End\\."));
    assert_eq!(app.count("SELECT count(*) FROM conversations").await, 1);
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 4);

    // Disconnecting deletes the webhook and the token.
    let res = app
        .call(
            &client,
            "disconnect_telegram",
            &[("agent_id", agent.as_str())],
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM telegram_channels").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM telegram_chats").await, 0);
    let info = json(
        Client::new()
            .post(format!("http://{fake}/telegram/bot{TOKEN}/getWebhookInfo"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(info["result"]["url"], "");
    assert_eq!(
        app.count("SELECT count(*) FROM conversations").await,
        1,
        "kept"
    );
    // Both are in the owner's account activity.
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM activity ORDER BY at")
        .fetch_all(&app.db)
        .await
        .unwrap();
    for kind in ["telegram_bot_connected", "telegram_bot_disconnected"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn without_https_the_bot_is_long_polled_by_one_server_at_a_time(db: PgPool) {
    use app::telegram::server::poll;
    let (one, fake) = app(db.clone(), false, "one").await;
    let mut settings = (*one.state.settings).clone();
    settings.instance = "two".into();
    let two = TestApp::spawn_full(db, settings, keyring(1, &[])).await;
    let client = one.signed_up("poller@example.com").await;
    let agent = scripted_agent(&one, &client, fake, "openai", "fake:echo", &[], &[], "").await;
    let channel = connect(&one, &client, &agent).await;
    assert_eq!(channel["webhook"], false);
    let code = channel["start_code"].as_str().unwrap().to_owned();

    writes(fake, 7, &format!("/start {code}"), 1).await;
    assert_eq!(poll(&one.state, 0).await.unwrap(), 1);
    assert_eq!(poll(&two.state, 0).await.unwrap(), 0, "one holds the lease");
    chat(fake, 7, 1).await;
    writes(fake, 7, "Ping", 1).await;
    // Asked again (the same offset twice): still one answer.
    assert_eq!(poll(&one.state, 0).await.unwrap(), 1);
    let shown = chat(fake, 7, 2).await;
    assert_eq!(shown[1]["text"], "You said: Ping");

    // The first server stops renewing: the second takes over.
    sqlx::query("UPDATE telegram_channels SET poll_lease_until = now() - interval '1 second'")
        .execute(&one.db)
        .await
        .unwrap();
    writes(fake, 7, "Pong", 1).await;
    assert_eq!(poll(&two.state, 0).await.unwrap(), 1);
    assert_eq!(poll(&one.state, 0).await.unwrap(), 0, "two holds it now");
    let shown = chat(fake, 7, 3).await;
    assert_eq!(shown[2]["text"], "You said: Pong");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(chat(fake, 7, 3).await.len(), 3, "no update answered twice");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn tokens_are_checked_and_another_users_agent_is_not_found(db: PgPool) {
    let (app, fake) = app(db, true, "one").await;
    let owner = app.signed_up("bots@example.com").await;
    let agent = scripted_agent(&app, &owner, fake, "openai", "fake:echo", &[], &[], "").await;
    for (token, said) in [
        ("not a token", "copy it from @BotFather"),
        (
            "123456789:AAE_bad-token-that-telegram-refuses-x",
            "Telegram rejected this bot token",
        ),
    ] {
        let res = app
            .call(
                &owner,
                "connect_telegram",
                &[("agent_id", agent.as_str()), ("token", token)],
            )
            .await;
        assert_eq!(res.status(), 422);
        assert!(res.text().await.unwrap().contains(said), "{said}");
    }
    connect(&app, &owner, &agent).await;
    let again = app
        .call(
            &owner,
            "connect_telegram",
            &[("agent_id", agent.as_str()), ("token", TOKEN)],
        )
        .await;
    assert_eq!(again.status(), 422);

    let other = app.signed_up("not-bots@example.com").await;
    for name in [
        "telegram_channel",
        "disconnect_telegram",
        "reset_telegram_access",
    ] {
        let res = app
            .call(&other, name, &[("agent_id", agent.as_str())])
            .await;
        assert_eq!(res.status(), 404, "{name}");
    }
    let res = app
        .call(
            &other,
            "connect_telegram",
            &[("agent_id", agent.as_str()), ("token", TOKEN)],
        )
        .await;
    assert_eq!(res.status(), 404);
    let mine = json(
        app.call(&owner, "telegram_channel", &[("agent_id", agent.as_str())])
            .await,
    )
    .await;
    assert_eq!(mine["bot_username"], "fake_enclave_bot");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_schedule_sends_its_reply_to_the_people_let_in(db: PgPool) {
    let (app, fake) = app(db, false, "one").await;
    let client = app.signed_up("sched-bot@example.com").await;
    let agent = scripted_agent(&app, &client, fake, "openai", "fake:echo", &[], &[], "").await;
    let schedule = |name: &'static str| {
        let (app, client, agent) = (&app, &client, agent.clone());
        async move {
            json(
                app.call(
                    client,
                    "create_schedule",
                    &[
                        ("agent_id", agent.as_str()),
                        ("name", name),
                        ("cron", "0 9 * * *"),
                        ("time_zone", "UTC"),
                        ("prompt", "Morning news"),
                        ("deliver_telegram", "yes"),
                    ],
                )
                .await,
            )
            .await
            .as_str()
            .unwrap()
            .to_owned()
        }
    };
    let run = |id: String| {
        let (app, client) = (&app, &client);
        async move {
            app.call(client, "run_schedule_now", &[("id", id.as_str())])
                .await;
            for _ in 0..400 {
                let page = json(
                    app.call(client, "get_schedule", &[("id", id.as_str())])
                        .await,
                )
                .await;
                if page["runs"][0]["status"] == "complete" {
                    return page["runs"][0].clone();
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("the run did not finish");
        }
    };
    // No bot yet: the run is done, and says it could not send.
    let first = schedule("No bot").await;
    let done = run(first).await;
    assert_eq!(
        done["error"],
        "Not sent to Telegram: this agent has no Telegram bot."
    );

    let channel = connect(&app, &client, &agent).await;
    let code = channel["start_code"].as_str().unwrap();
    writes(fake, 42, &format!("/start {code}"), 1).await;
    app::telegram::server::poll(&app.state, 0).await.unwrap();
    chat(fake, 42, 1).await;
    let second = schedule("With bot").await;
    let done = run(second).await;
    assert!(done["error"].is_null(), "{done}");
    let shown = chat(fake, 42, 2).await;
    assert_eq!(shown[1]["text"], "You said: Morning news");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_slow_reply_grows_in_place_then_ends_whole(db: PgPool) {
    let (app, fake) = app(db, true, "one").await;
    let client = app.signed_up("slow-bot@example.com").await;
    // Each word of the echo half a second apart.
    let agent = scripted_agent(
        &app,
        &client,
        fake,
        "openai",
        "fake:echo,delay_ms=500",
        &[],
        &[],
        "",
    )
    .await;
    let channel = connect(&app, &client, &agent).await;
    let code = channel["start_code"].as_str().unwrap();
    writes(fake, 9, &format!("/start {code}"), 1).await;
    chat(fake, 9, 1).await;
    writes(fake, 9, "one two three four five six", 1).await;
    // While it is written, the message shows part of it.
    let mut partial = None;
    for _ in 0..200 {
        let shown = json(
            Client::new()
                .get(format!("http://{fake}/fakes/telegram/{TOKEN}/chats/9"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let text = shown["messages"][1]["text"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        if text.starts_with("You said:") && !text.ends_with("six") {
            partial = Some(text);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(partial.is_some(), "the reply showed while it was written");
    let shown = chat(fake, 9, 2).await;
    let reply = &shown[1];
    // Ended whole, in place: no message added for the growing.
    for _ in 0..200 {
        if chat(fake, 9, 2).await[1]["text"] == "You said: one two three four five six" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let shown = chat(fake, 9, 2).await;
    assert_eq!(shown.len(), 2, "{shown:#?}");
    assert_eq!(shown[1]["text"], "You said: one two three four five six");
    assert!(
        shown[1]["edits"].as_i64().unwrap() >= 2,
        "edited while growing, then at the end: {reply}"
    );
}
