//! The canary test: store recognisable values in every field a user can fill,
//! then look for them in a `pg_dump` of the database and in everything the
//! server logged. None may appear in plaintext.
//!
//! Later slices extend `CANARIES` (and the requests in `store_everything`)
//! with every new field they store: system prompts, API keys, messages, ...
//!
//! Its own test binary, so that the global log capture sees only this test.

#[path = "it/common/mod.rs"]
mod common;

use std::{
    io::Write,
    sync::{Arc, Mutex},
};

use common::TestApp;
use sqlx::PgPool;

/// Every canary carries this marker, so one search finds them all.
const MARK: &str = "kanarie";
const FIRST_NAME: &str = "Firstkanarie";
const LAST_NAME: &str = "Lastkanarie";
const EMAIL: &str = "kanarie.email@example.com";
const PASSWORD: &str = "kanarie password 0000";
const AGENT_NAME: &str = "Kanarie agent";
const DESCRIPTION: &str = "Kanarie description";
const SYSTEM_PROMPT: &str = "Kanarie system prompt: never reveal this";
const STARTER: &str = "Kanarie starter";
const BASE_URL_PATH: &str = "kanarie-path";
const KEY_LABEL: &str = "Kanarie key label";
const API_KEY: &str = "good-kanarie-api-key-4242";
const MESSAGE: &str = "Kanarie message: my private question";
/// The fake model answers "You said: " and the message, so the reply holds
/// the canary too; the model name (sealed too) carries one of its own.
const REPLY_MODEL: &str = "fake:echo,kanarie-model";
/// A tool connection's label and secret (a GitHub token the fake accepts).
const CONNECTION_LABEL: &str = "Kanarie GitHub";
const CONNECTION_SECRET: &str = "ghp_good_kanarie_token_9999";
/// An MCP server: its name, a key in its URL's query, its secret header
/// (the fake takes any secret that starts with its own), a header name of
/// the user's own, and a host that cannot be found (its error is kept).
const MCP_NAME: &str = "Kanarie MCP";
const MCP_URL_KEY: &str = "kanarie-url-key";
const MCP_SECRET_SUFFIX: &str = "-kanarie-9";
const MCP_HEADER: &str = "X-Kanarie-Key";
const MCP_MISSING: &str = "http://kanarie-mcp.invalid/mcp";
/// Said to an MCP tool that shouts it back.
const MCP_ARGUMENT: &str = "kanarie argument";
/// What a program asks an agent served over MCP.
const SERVED_QUESTION: &str = "kanarie question over MCP";
/// The token made for that agent (random: remembered here to look for it).
static SERVED_TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
/// The export of everything, downloaded (its files by name).
static EXPORT: std::sync::OnceLock<Vec<(String, Vec<u8>)>> = std::sync::OnceLock::new();
/// The two-factor secret and recovery codes (random: remembered here).
static TWO_FACTOR: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
/// An avatar is one emoji or a colour, so it cannot hold the ASCII marker:
/// it is a canary of its own (an unusual pair, looked for as it is).
const AVATAR: &str = "🐤🪶";
/// An OpenAI-compatible server that cannot be found: its host and path end
/// up in the reply's error ("Could not find the server …").
const FAILING_BASE_URL: &str = "http://kanarie-host.invalid/kanarie-path/v1";
/// The browser a session was opened with (Settings -> Sessions shows it).
const USER_AGENT: &str = "Kanarie-Browser/1.0 (X11; Linux x86_64)";
/// A knowledge base: its name, description, a document's name and text, a
/// search, and a base on a server that cannot be found (the host ends up in
/// the document's error).
const KB_NAME: &str = "Kanarie knowledge";
const KB_DESCRIPTION: &str = "Kanarie knowledge description";
const DOC_NAME: &str = "kanarie-handbook.md";
const DOC_TEXT: &str =
    "# Kanarie heading\n\nThe kanarie passage says invoices are paid in thirty days.";
const KB_QUERY: &str = "kanarie invoices question";
const KB_FAILING_URL: &str = "http://kanarie-kb.invalid/v1";
/// A file attached to a message: its name and text; and a file refused,
/// whose name is in the refusal.
const CHAT_FILE_NAME: &str = "kanarie-notes.txt";
const CHAT_FILE_TEXT: &str = "The kanarie attachment says the ferry leaves at nine.";
const CHAT_FILE_REFUSED: &str = "kanarie-picture.png";
/// A Telegram bot's token (the fake takes any well-shaped one), and what a
/// Telegram user asks the agent through it.
const TELEGRAM_TOKEN: &str = "123456789:AAE_kanarie-telegram-bot-token-55";
const TELEGRAM_QUESTION: &str = "Kanarie telegram question";
/// A personal API key's name; the key itself (random) once made.
const API_KEY_NAME: &str = "Kanarie API key";
/// What a program sends to /v1/chat/completions: its own instructions (not
/// stored), an earlier reply and a question (stored, sealed), and one asked
/// with `"store": false` (not kept at all).
const API_INSTRUCTIONS: &str = "Kanarie API instructions";
const API_EARLIER: &str = "Kanarie API earlier reply";
const API_QUESTION: &str = "Kanarie API question";
const API_UNSTORED: &str = "Kanarie API unstored question";
const API_AGENT_NAME: &str = "Kanarie API agent";
const API_AGENT_PROMPT: &str = "Kanarie API agent prompt";
static API_SECRET: std::sync::OnceLock<String> = std::sync::OnceLock::new();
// A team, an invitation to it, and its agent.
const TEAM_NAME: &str = "Kanarie team";
const TEAM_INVITEE: &str = "kanarie.invitee@example.com";
const TEAM_AGENT_NAME: &str = "Kanarie team agent";
const TEAM_AGENT_PROMPT: &str = "Kanarie team agent prompt";
const TEAM_CONNECTION_LABEL: &str = "Kanarie team GitHub";
const TEAM_CONNECTION_SECRET: &str = "ghp_good_kanarie_team_7777";
const TEAM_BASE_NAME: &str = "Kanarie team knowledge";
/// A schedule's name and prompt.
const SCHEDULE_NAME: &str = "Kanarie schedule";
const SCHEDULE_PROMPT: &str = "Kanarie scheduled prompt";
/// Credits granted by the operator (the note is sealed), and the Stripe
/// webhook's signing secret and API key (never stored, never logged).
const GRANT_NOTE: &str = "Kanarie grant for the pilot";
const STRIPE_WEBHOOK_SECRET: &str = "whsec_kanarie_signing_secret";
const STRIPE_SECRET_KEY: &str = "sk_test_kanarie_stripe_key";
/// The fake provider rejects this one and echoes it in its error body.
const REJECTED_KEY: &str = "bad-kanarie-api-key-1313";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Drives every request that stores or checks a user-entered value.
async fn store_everything(app: &TestApp) {
    let client = app.client();
    let form = [
        ("first_name", FIRST_NAME),
        ("last_name", LAST_NAME),
        ("email", EMAIL),
        ("password", PASSWORD),
        ("age_confirmed", "yes"),
    ];
    assert_eq!(app.call(&client, "sign_up", &form).await.status(), 200);
    assert_eq!(app.sign_in(&client, EMAIL, PASSWORD).await.status(), 200);
    // This server runs on credits: the operator grants some (each reply
    // then records a charge naming its agent, sealed).
    let (user, key) = common::account_key(app, EMAIL).await;
    let mut tx = app.db.begin().await.unwrap();
    app::usage::server::credit(&mut tx, user, &key, "grant", 1_000_000_000, GRANT_NOTE)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let browser = reqwest::Client::builder()
        .cookie_store(true)
        .user_agent(USER_AGENT)
        .build()
        .unwrap();
    assert_eq!(app.sign_in(&browser, EMAIL, PASSWORD).await.status(), 200);
    let sessions: serde_json::Value = app
        .call(&browser, "list_sessions", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        sessions[0]["system"], "Linux",
        "stored, and read back from it: {sessions}"
    );
    // Two-factor sign-in: the secret is sealed, the recovery codes hashed,
    // and neither is logged, also when a wrong code is tried.
    let (secret, codes) = common::enrol_totp(app, &client).await;
    let second = app.client();
    assert_eq!(app.sign_in(&second, EMAIL, PASSWORD).await.status(), 200);
    let wrong = app
        .call(&second, "complete_sign_in", &[("code", "913572")])
        .await;
    assert_eq!(wrong.status(), 422);
    let res = app
        .call(&second, "complete_sign_in", &[("code", &codes[0])])
        .await;
    assert_eq!(res.status(), 200);
    TWO_FACTOR.set([vec![secret], codes].concat()).unwrap();
    // A new address asked for waits, sealed, with its link.
    let res = app
        .call(
            &client,
            "change_email",
            &[
                ("new_email", "kanarie.new@example.com"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    // A sign-in provider's account: its subject and address are sealed, and
    // the provider's codes and tokens are never logged or stored.
    let linked = common::oidc::provider_sign_in(
        app,
        &client,
        "link",
        &[
            ("sub", "kanarie-subject-7"),
            ("email", "kanarie.provider@example.net"),
            ("email_verified", "true"),
        ],
    )
    .await;
    assert_eq!(linked, "/settings/sign-in-methods");
    let identities: serde_json::Value = app
        .call(&client, "list_identities", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(identities[0]["email"], "kanarie.provider@example.net");
    // The values really are stored, and readable through the app.
    let me = app.current_user(&client).await;
    assert_eq!(me["first_name"], FIRST_NAME);
    assert_eq!(me["email"], EMAIL);

    // The failure paths must not log what they were given either. A second
    // sign-up with the address answers as the first did, and queues a
    // sealed "someone tried to sign up" mail to the owner.
    assert_eq!(
        app.call(&app.client(), "sign_up", &form).await.status(),
        200
    );
    assert_eq!(
        app.sign_in(&app.client(), EMAIL, PASSWORD).await.status(),
        200
    );
    assert_eq!(
        app.sign_in(&app.client(), EMAIL, "kanarie wrong 1")
            .await
            .status(),
        401
    );
    assert_eq!(
        app.sign_in(&app.client(), "kanarie.nobody@example.com", PASSWORD)
            .await
            .status(),
        401
    );
    // Agents and provider keys.
    // The rejected key first: the newest (the good one) is what chats use.
    for (label, secret) in [("second", REJECTED_KEY), (KEY_LABEL, API_KEY)] {
        let form = [
            ("provider", "openai"),
            ("label", label),
            ("secret", secret),
            ("base_url", ""),
        ];
        assert_eq!(
            app.call(&client, "add_provider_key", &form).await.status(),
            200
        );
    }
    let keys: serde_json::Value = app
        .call(&client, "list_provider_keys", &[])
        .await
        .json()
        .await
        .unwrap();
    for key in keys.as_array().unwrap() {
        let id = key["id"].as_str().unwrap();
        let tested: serde_json::Value = app
            .call(&client, "test_provider_key", &[("id", id)])
            .await
            .json()
            .await
            .unwrap();
        assert!(tested["message"].is_string());
    }
    let compat_url = format!("http://127.0.0.1:9/{BASE_URL_PATH}/v1");
    let agent = [
        ("name", AGENT_NAME),
        ("description", DESCRIPTION),
        ("system_prompt", SYSTEM_PROMPT),
        ("provider", "openai_compatible"),
        ("model", "llama3.1"),
        ("base_url", compat_url.as_str()),
        ("temperature", ""),
        ("top_p", ""),
        ("max_output_tokens", ""),
        ("starter_1", STARTER),
        ("avatar", AVATAR),
        ("provider_key_id", ""),
    ];
    assert_eq!(
        app.call(&client, "create_agent", &agent).await.status(),
        200
    );
    let agents: serde_json::Value = app
        .call(&client, "list_agents", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(agents[0]["name"], AGENT_NAME);
    assert_eq!(
        agents[0]["avatar"], AVATAR,
        "the avatar is stored and readable"
    );
    let export = client
        .get(app.url(&format!(
            "/api/agents/{}/export",
            agents[0]["id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        export.contains(SYSTEM_PROMPT),
        "the export holds the prompt: {export}"
    );
    assert_eq!(
        app.call(&client, "import_agent", &[("json", &export)])
            .await
            .status(),
        200
    );

    // A conversation: the message, its title and the streamed reply.
    let chat_agent = [
        ("name", "Chat"),
        ("description", ""),
        ("system_prompt", SYSTEM_PROMPT),
        ("provider", "openai"),
        ("model", REPLY_MODEL),
        ("base_url", ""),
        ("temperature", ""),
        ("top_p", ""),
        ("max_output_tokens", ""),
        ("avatar", ""),
    ];
    assert_eq!(
        app.call(&client, "create_agent", &chat_agent)
            .await
            .status(),
        200
    );
    let agents: serde_json::Value = app
        .call(&client, "list_agents", &[("query", "chat")])
        .await
        .json()
        .await
        .unwrap();
    let chat_agent_id = agents[0]["id"].as_str().unwrap().to_owned();
    let sent: serde_json::Value = app
        .call(
            &client,
            "send_message",
            &[("agent_id", chat_agent_id.as_str()), ("message", MESSAGE)],
        )
        .await
        .json()
        .await
        .unwrap();
    let conversation_id = sent["conversation_id"].as_str().unwrap().to_owned();
    let mut settled = false;
    let mut last = serde_json::Value::Null;
    for _ in 0..200 {
        let c: serde_json::Value = app
            .call(
                &client,
                "get_conversation",
                &[("id", conversation_id.as_str())],
            )
            .await
            .json()
            .await
            .unwrap();
        last = c.clone();
        if c["messages"][1]["status"] == "complete" {
            assert_eq!(c["messages"][1]["body"], format!("You said: {MESSAGE}"));
            assert_eq!(c["title"], MESSAGE);
            settled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(settled, "the reply did not finish: {}", last["messages"][1]);

    // A file attached to a second message (its name and text reach the
    // model, and the echo puts them in the reply), and a file refused (the
    // refusal names it).
    let attach = |name: &'static str, bytes: &'static [u8]| {
        let client = client.clone();
        let agent = chat_agent_id.clone();
        async move {
            let form = reqwest::multipart::Form::new()
                .text("agent_id", agent)
                .text("conversation_id", "")
                .part(
                    "upload",
                    reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(name),
                );
            client
                .post(app.url("/chat/files"))
                .header("accept", "application/json")
                .header("sec-fetch-site", "same-origin")
                .multipart(form)
                .send()
                .await
                .unwrap()
        }
    };
    let refused = attach(CHAT_FILE_REFUSED, b"\x89PNG\r\n\x1a\n\0\0\0").await;
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains(CHAT_FILE_REFUSED));
    let attached: serde_json::Value = attach(CHAT_FILE_NAME, CHAT_FILE_TEXT.as_bytes())
        .await
        .json()
        .await
        .unwrap();
    let res = app
        .call(
            &client,
            "send_message",
            &[
                ("agent_id", chat_agent_id.as_str()),
                ("conversation_id", conversation_id.as_str()),
                ("message", "Read the file"),
                ("files[]", attached[0]["id"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let mut read = false;
    for _ in 0..200 {
        let c: serde_json::Value = app
            .call(
                &client,
                "get_conversation",
                &[("id", conversation_id.as_str())],
            )
            .await
            .json()
            .await
            .unwrap();
        if c["messages"][3]["status"] == "complete" {
            assert!(
                c["messages"][3]["body"]
                    .as_str()
                    .unwrap()
                    .contains(CHAT_FILE_TEXT)
            );
            assert_eq!(c["messages"][2]["files"][0]["name"], CHAT_FILE_NAME);
            read = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(read, "the reply to the file did not finish");

    // An API key (its name a canary) used on /v1: the key is random, so it
    // is remembered to be looked for.
    let created: serde_json::Value = app
        .call(
            &client,
            "create_api_key",
            &[
                ("name", API_KEY_NAME),
                ("scopes[]", "agents:read"),
                ("scopes[]", "agents:write"),
                ("scopes[]", "chat"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    let api_secret = created["secret"].as_str().unwrap().to_owned();
    let listed = reqwest::Client::new()
        .get(app.url("/v1/models"))
        .bearer_auth(&api_secret)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    for (question, store) in [(API_QUESTION, true), (API_UNSTORED, false)] {
        let res = reqwest::Client::new()
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&api_secret)
            .json(&serde_json::json!({
                "model": chat_agent_id,
                "store": store,
                "messages": [
                    {"role": "system", "content": API_INSTRUCTIONS},
                    {"role": "user", "content": "Hello"},
                    {"role": "assistant", "content": API_EARLIER},
                    {"role": "user", "content": question},
                ],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(
            body["choices"][0]["message"]["content"],
            format!("You said: {question}")
        );
    }
    // The unstored one is gone once its reply has ended.
    let mut left = 1;
    for _ in 0..200 {
        left = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM conversations WHERE transient")
            .fetch_one(&app.db)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(left, 0);
    // An agent made through /api/v1 (its name and prompt canaries), and the
    // administrator's account list (this first account administers): the
    // log of both is searched below.
    let res = reqwest::Client::new()
        .post(app.url("/api/v1/agents"))
        .bearer_auth(&api_secret)
        .json(&serde_json::json!({
            "name": API_AGENT_NAME,
            "system_prompt": API_AGENT_PROMPT,
            "provider": "openai",
            "model": "fake:echo",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let listed = app.call(&client, "admin_users", &[]).await;
    assert_eq!(listed.status(), 200);
    assert!(listed.text().await.unwrap().contains(EMAIL));
    API_SECRET.set(api_secret).unwrap();

    // A team with an invitation out and an agent of its own;
    // the administrator lists the teams.
    let team: String = app
        .call(&client, "create_team", &[("name", TEAM_NAME)])
        .await
        .json()
        .await
        .unwrap();
    let res = app
        .call(
            &client,
            "invite_to_team",
            &[("id", &team), ("email", TEAM_INVITEE), ("role", "admin")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .call(
            &client,
            "create_agent",
            &[
                ("name", TEAM_AGENT_NAME),
                ("description", ""),
                ("system_prompt", TEAM_AGENT_PROMPT),
                ("provider", "openai"),
                ("model", "fake:echo"),
                ("temperature", ""),
                ("top_p", ""),
                ("max_output_tokens", ""),
                ("avatar", ""),
                ("team", &team),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .call(
            &client,
            "add_connection",
            &[
                ("kind", "github"),
                ("label", TEAM_CONNECTION_LABEL),
                ("secret", TEAM_CONNECTION_SECRET),
                ("team", &team),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .call(
            &client,
            "create_knowledge_base",
            &[
                ("name", TEAM_BASE_NAME),
                ("description", "Kanarie team base description"),
                ("provider", "openai"),
                ("model", "text-embedding-3-small"),
                ("team", &team),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let teams = app.call(&client, "admin_teams", &[]).await;
    assert!(teams.text().await.unwrap().contains(TEAM_NAME));
    let detail = app.call(&client, "get_team", &[("id", &team)]).await;
    assert!(detail.text().await.unwrap().contains(TEAM_INVITEE));

    // A Telegram bot (its token a canary), long polled: someone let in with
    // the start code asks a question, and the agent answers in the chat.
    let fakes = app
        .settings
        .service_urls
        .telegram
        .trim_end_matches("/telegram")
        .to_owned();
    let channel: serde_json::Value = app
        .call(
            &client,
            "connect_telegram",
            &[
                ("agent_id", chat_agent_id.as_str()),
                ("token", TELEGRAM_TOKEN),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    let code = channel["start_code"].as_str().unwrap().to_owned();
    for (text, shown) in [
        (format!("/start {code}"), 1),
        (TELEGRAM_QUESTION.to_owned(), 2),
    ] {
        reqwest::Client::new()
            .post(format!("{fakes}/fakes/telegram/{TELEGRAM_TOKEN}/updates"))
            .json(&serde_json::json!({"from": 77, "text": text}))
            .send()
            .await
            .unwrap();
        app::telegram::server::poll(&app.state, 0).await.unwrap();
        let mut last = serde_json::Value::Null;
        for _ in 0..400 {
            last = reqwest::Client::new()
                .get(format!("{fakes}/fakes/telegram/{TELEGRAM_TOKEN}/chats/77"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let messages = last["messages"].as_array().unwrap();
            if messages.len() == shown && messages.iter().all(|m| m["text"] != "…") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        assert_eq!(last["messages"].as_array().unwrap().len(), shown, "{last}");
    }

    // A reply that fails on a base URL whose host is a canary: the error
    // sentence names the host, and is stored (sealed) with the reply.
    let failing = [
        ("name", "Unreachable"),
        ("description", ""),
        ("system_prompt", ""),
        ("provider", "openai_compatible"),
        ("model", "llama3.1"),
        ("base_url", FAILING_BASE_URL),
        ("temperature", ""),
        ("top_p", ""),
        ("max_output_tokens", ""),
        ("avatar", ""),
    ];
    assert_eq!(
        app.call(&client, "create_agent", &failing).await.status(),
        200
    );
    let agents: serde_json::Value = app
        .call(&client, "list_agents", &[("query", "unreachable")])
        .await
        .json()
        .await
        .unwrap();
    let failing_agent = agents[0]["id"].as_str().unwrap().to_owned();
    let sent: serde_json::Value = app
        .call(
            &client,
            "send_message",
            &[("agent_id", failing_agent.as_str()), ("message", "hello?")],
        )
        .await
        .json()
        .await
        .unwrap();
    let failed_conversation = sent["conversation_id"].as_str().unwrap().to_owned();
    let mut error = serde_json::Value::Null;
    for _ in 0..400 {
        let c: serde_json::Value = app
            .call(
                &client,
                "get_conversation",
                &[("id", failed_conversation.as_str())],
            )
            .await
            .json()
            .await
            .unwrap();
        if c["messages"][1]["status"] == "interrupted" {
            error = c["messages"][1]["error"].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        error.as_str().is_some_and(|e| e.contains("kanarie-host")),
        "the user reads which host failed: {error}"
    );

    // A schedule (its name and prompt) on that agent, run now: the run
    // fails, and its reason names the host.
    let schedule: String = app
        .call(
            &client,
            "create_schedule",
            &[
                ("agent_id", failing_agent.as_str()),
                ("name", SCHEDULE_NAME),
                ("cron", "0 9 * * 1-5"),
                ("time_zone", "Europe/Berlin"),
                ("prompt", SCHEDULE_PROMPT),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    let res = app
        .call(&client, "run_schedule_now", &[("id", schedule.as_str())])
        .await;
    assert_eq!(res.status(), 200);
    let mut run = serde_json::Value::Null;
    for _ in 0..400 {
        let page: serde_json::Value = app
            .call(&client, "get_schedule", &[("id", schedule.as_str())])
            .await
            .json()
            .await
            .unwrap();
        if page["runs"][0]["status"] == "failed" {
            run = page["runs"][0].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        run["error"]
            .as_str()
            .is_some_and(|e| e.contains("kanarie-host")),
        "the run says which host failed: {run}"
    );

    // A connection, tested, and used by a tool: its secret goes to the
    // service only.
    let connection = [
        ("kind", "github"),
        ("label", CONNECTION_LABEL),
        ("secret", CONNECTION_SECRET),
    ];
    assert_eq!(
        app.call(&client, "add_connection", &connection)
            .await
            .status(),
        200
    );
    let listed: serde_json::Value = app
        .call(&client, "list_connections", &[])
        .await
        .json()
        .await
        .unwrap();
    let connection_id = listed[0]["id"].as_str().unwrap().to_owned();
    let tested: serde_json::Value = app
        .call(
            &client,
            "test_connection",
            &[("id", connection_id.as_str())],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tested["ok"], true, "{tested}");
    let tooling = [
        ("name", "Tooling"),
        ("description", ""),
        ("system_prompt", ""),
        ("provider", "openai"),
        ("model", "fake:tool=github_read"),
        ("base_url", ""),
        ("temperature", ""),
        ("top_p", ""),
        ("max_output_tokens", ""),
        ("avatar", ""),
        ("tools[]", "github_read"),
    ];
    assert_eq!(
        app.call(&client, "create_agent", &tooling).await.status(),
        200
    );
    let agents: serde_json::Value = app
        .call(&client, "list_agents", &[("query", "tooling")])
        .await
        .json()
        .await
        .unwrap();
    let tooling_agent = agents[0]["id"].as_str().unwrap().to_owned();
    let sent: serde_json::Value = app
        .call(
            &client,
            "send_message",
            &[
                ("agent_id", tooling_agent.as_str()),
                ("message", r#"{"action":"search","query":"is:open"}"#),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    let tool_conversation = sent["conversation_id"].as_str().unwrap().to_owned();
    let mut call = serde_json::Value::Null;
    for _ in 0..400 {
        let c: serde_json::Value = app
            .call(
                &client,
                "get_conversation",
                &[("id", tool_conversation.as_str())],
            )
            .await
            .json()
            .await
            .unwrap();
        if c["messages"][1]["status"] == "complete" {
            call = c["messages"][1]["parts"][1].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(
        call["status"], "done",
        "the tool used the connection: {call}"
    );
    assert!(
        !call.to_string().contains(MARK),
        "the secret is not in the call"
    );

    // MCP servers: one whose tools are listed and called, one that refuses
    // a header the user named, one that cannot be found.
    let fake = app
        .settings
        .service_urls
        .github
        .trim_end_matches("/github")
        .to_owned();
    let mcp_url = format!("{fake}/mcp/secret?key={MCP_URL_KEY}");
    let mcp_secret = format!("{}{MCP_SECRET_SUFFIX}", server::fake_mcp::SECRET);
    let mcp = [
        ("name", MCP_NAME),
        ("url", mcp_url.as_str()),
        ("auth", "header"),
        ("secret", mcp_secret.as_str()),
    ];
    let listed: serde_json::Value = app
        .call(&client, "add_mcp_server", &mcp)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["last_error"], serde_json::Value::Null, "{listed}");
    let mcp_id = listed["id"].as_str().unwrap().to_owned();
    let refused = [
        ("name", "Refused"),
        ("url", mcp_url.as_str()),
        ("auth", "header"),
        ("header_name", MCP_HEADER),
        ("secret", mcp_secret.as_str()),
    ];
    let refused: serde_json::Value = app
        .call(&client, "add_mcp_server", &refused)
        .await
        .json()
        .await
        .unwrap();
    assert!(refused["last_error"].is_string(), "{refused}");
    // An OAuth server, signed in to (the fake's codes and tokens start
    // `fake-`: none may be logged or stored in plaintext).
    let oauth_url = format!("{fake}/mcp/oauth?key={MCP_URL_KEY}");
    let oauth = [
        ("name", MCP_NAME),
        ("url", oauth_url.as_str()),
        ("auth", "oauth"),
    ];
    let res = app.call(&client, "add_mcp_server", &oauth).await;
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let back = app.client().get(location).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(client.get(back).send().await.unwrap().status(), 303);
    let listed: serde_json::Value = app
        .call(&client, "list_mcp_servers", &[])
        .await
        .json()
        .await
        .unwrap();
    let signed_in = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["auth"] == "oauth")
        .unwrap();
    assert_eq!(signed_in["signed_in"], true, "{signed_in}");
    assert_eq!(
        signed_in["last_error"],
        serde_json::Value::Null,
        "{signed_in}"
    );

    let missing = [("name", "Missing"), ("url", MCP_MISSING), ("auth", "none")];
    let missing: serde_json::Value = app
        .call(&client, "add_mcp_server", &missing)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        missing["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("kanarie-mcp.invalid")),
        "{missing}"
    );
    let shout_key = format!("mcp:{mcp_id}:shout");
    let shout_model = format!("fake:tool=mcp_{}_shout", &mcp_id[..8]);
    let mcp_agent = [
        ("name", "MCP user"),
        ("description", ""),
        ("system_prompt", ""),
        ("provider", "openai"),
        ("model", shout_model.as_str()),
        ("base_url", ""),
        ("temperature", ""),
        ("top_p", ""),
        ("max_output_tokens", ""),
        ("avatar", ""),
        ("tools[]", shout_key.as_str()),
    ];
    assert_eq!(
        app.call(&client, "create_agent", &mcp_agent).await.status(),
        200
    );
    let agents: serde_json::Value = app
        .call(&client, "list_agents", &[("query", "mcp user")])
        .await
        .json()
        .await
        .unwrap();
    let mcp_agent = agents[0]["id"].as_str().unwrap().to_owned();
    let arguments = serde_json::json!({ "text": MCP_ARGUMENT }).to_string();
    let sent: serde_json::Value = app
        .call(
            &client,
            "send_message",
            &[
                ("agent_id", mcp_agent.as_str()),
                ("message", arguments.as_str()),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    let mcp_conversation = sent["conversation_id"].as_str().unwrap().to_owned();
    let mut shouted = serde_json::Value::Null;
    for _ in 0..400 {
        let c: serde_json::Value = app
            .call(
                &client,
                "get_conversation",
                &[("id", mcp_conversation.as_str())],
            )
            .await
            .json()
            .await
            .unwrap();
        if c["messages"][1]["status"] == "complete" {
            shouted = c["messages"][1]["parts"][1].clone();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(shouted["result"], MCP_ARGUMENT.to_uppercase(), "{shouted}");

    // The same agent served over MCP, asked a question by a program.
    let access: serde_json::Value = app
        .call(
            &client,
            "enable_agent_mcp",
            &[("agent_id", mcp_agent.as_str())],
        )
        .await
        .json()
        .await
        .unwrap();
    let token = access["token"].as_str().unwrap().to_owned();
    SERVED_TOKEN.set(token.clone()).unwrap();
    let asked = reqwest::Client::new()
        .post(access["url"].as_str().unwrap())
        .bearer_auth(&token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .json(&serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "ask", "arguments": {"message": SERVED_QUESTION}}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(asked.status(), 200);
    let answer = asked.text().await.unwrap();
    assert!(answer.contains("\"result\""), "{answer}");

    // Knowledge: a base (embedding with the user's OpenAI key), a document
    // ingested and searched; a base whose server cannot be found.
    let wait_for = |base: String, state: &'static str| {
        let client = client.clone();
        async move {
            for _ in 0..400 {
                let page: serde_json::Value = app
                    .call(&client, "knowledge_base", &[("id", base.as_str())])
                    .await
                    .json()
                    .await
                    .unwrap();
                if page["documents"][0]["state"] == state {
                    return page;
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
            panic!("the document never became {state}");
        }
    };
    let upload = |base: String| {
        let client = client.clone();
        async move {
            let form = reqwest::multipart::Form::new().part(
                "files",
                reqwest::multipart::Part::bytes(DOC_TEXT.as_bytes().to_vec()).file_name(DOC_NAME),
            );
            let res = client
                .post(app.url(&format!("/knowledge/{base}/upload")))
                .header("accept", "application/json")
                .header("sec-fetch-site", "same-origin")
                .multipart(form)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 200);
        }
    };
    let res = app
        .call(
            &client,
            "create_knowledge_base",
            &[
                ("name", KB_NAME),
                ("description", KB_DESCRIPTION),
                ("provider", "openai"),
                ("model", "text-embedding-3-small"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let base: String = res.json().await.unwrap();
    upload(base.clone()).await;
    wait_for(base.clone(), "ready").await;
    let hits: serde_json::Value = app
        .call(
            &client,
            "search_knowledge_base",
            &[("id", base.as_str()), ("query", KB_QUERY)],
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(
        hits[0]["text"]
            .as_str()
            .unwrap()
            .contains("kanarie passage")
    );
    assert_eq!(hits[0]["location"], "Kanarie heading");
    // The base's page searches through a GET form: the question is in the
    // URL, which the request log must not carry (it logs the path alone).
    let page = client
        .get(app.url(&format!(
            "/knowledge/{base}?q={}",
            KB_QUERY.replace(' ', "+")
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("kanarie passage"));
    let res = app
        .call(
            &client,
            "create_knowledge_base",
            &[
                ("name", KB_NAME),
                ("provider", "openai_compatible"),
                ("model", "kanarie-embed"),
                ("base_url", KB_FAILING_URL),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let failing: String = res.json().await.unwrap();
    upload(failing.clone()).await;
    let page = wait_for(failing, "failed").await;
    assert!(
        page["documents"][0]["error"]
            .as_str()
            .unwrap()
            .contains("kanarie-kb.invalid"),
        "{page}"
    );

    // Credits bought with a card through (the fake) Stripe: the checkout,
    // the signed webhook, the top-up.
    let res = client
        .post(app.url("/usage/credits"))
        .form(&[("amount", "5000000")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let pay = res.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(client.post(&pay).send().await.unwrap().status(), 303);
    let top_ups: i64 =
        sqlx::query_scalar("SELECT count(*) FROM credit_transactions WHERE kind = 'top_up'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(top_ups, 1, "the webhook added the credits");
    let usage = app.call(&client, "get_usage", &[]).await;
    assert_eq!(usage.status(), 200);
    let charged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM credit_transactions WHERE kind = 'charge'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(charged > 0, "replies were charged");

    // An export of everything: built by its job and sealed while it waits
    // (so the dump below holds it), then downloaded.
    let res = app.call(&client, "request_export", &[]).await;
    assert_eq!(res.status(), 200);
    let id: String = res.json().await.unwrap();
    let mut ready = false;
    for _ in 0..800 {
        let list: serde_json::Value = app
            .call(&client, "list_exports", &[])
            .await
            .json()
            .await
            .unwrap();
        if list[0]["state"] == "ready" {
            ready = true;
            break;
        }
        assert_ne!(list[0]["state"], "failed", "{list}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(ready, "the export was built");
    let zip = client
        .get(app.url(&format!("/settings/data/exports/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(zip.status(), 200);
    let files = app::data::export::server::unzip(&zip.bytes().await.unwrap()).unwrap();
    EXPORT.set(files).unwrap();

    let too_long = format!("{MARK}{}", "x".repeat(200));
    let invalid = [
        ("first_name", too_long.as_str()),
        ("last_name", LAST_NAME),
        ("email", "kanarie-not-an-email"),
        ("password", "kanarie"),
    ];
    assert_eq!(
        app.call(&app.client(), "sign_up", &invalid).await.status(),
        422
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn no_canary_reaches_the_database_dump_or_the_log(db: PgPool) {
    let capture = Capture::default();
    let writer = capture.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            // What the server logs at its most verbose.
            .with_env_filter(server::telemetry::filter(
                tracing_subscriber::EnvFilter::new("trace"),
            ))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();

    let fake = server::fake_provider::start().await.unwrap();
    let settings = app::platform::Settings {
        oidc_providers: vec![common::oidc::fake_provider(fake)],
        billing: app::platform::settings::Billing {
            mode: app::platform::settings::BillingMode::Credits,
            charge_own_keys: true,
            stripe: Some(app::platform::settings::Stripe {
                api_url: format!("http://{fake}/stripe"),
                secret_key: STRIPE_SECRET_KEY.into(),
                webhook_secret: STRIPE_WEBHOOK_SECRET.into(),
            }),
            ..app::platform::Settings::default().billing
        },
        ..common::with_fake_provider(common::relaxed_settings(), fake)
    };
    let app = TestApp::spawn_full(db.clone(), settings, common::keyring(1, &[])).await;
    common::configure_fake_stripe(fake, &app, STRIPE_WEBHOOK_SECRET, STRIPE_SECRET_KEY).await;
    store_everything(&app).await;
    // The activity log took the canary browser, and the canary key and
    // connection names as its entries' details.
    let noted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM activity
         WHERE detail IS NOT NULL AND user_agent IS NOT NULL AND ip IS NOT NULL",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(noted >= 2, "the activity log holds the named entries");

    // The export holds what the user stored, and none of their secrets.
    let files = EXPORT.get().unwrap();
    let everything: String = files
        .iter()
        .map(|(name, bytes)| format!("{name}\n{}\n", String::from_utf8_lossy(bytes)))
        .collect();
    for kept in [
        FIRST_NAME,
        LAST_NAME,
        EMAIL,
        AGENT_NAME,
        SYSTEM_PROMPT,
        KEY_LABEL,
        MESSAGE,
        CONNECTION_LABEL,
        MCP_NAME,
        "Kanarie-Browser",
        KB_NAME,
        DOC_NAME,
        "kanarie passage",
        CHAT_FILE_NAME,
        CHAT_FILE_TEXT,
        SCHEDULE_NAME,
        SCHEDULE_PROMPT,
        TELEGRAM_QUESTION,
        API_KEY_NAME,
        API_EARLIER,
        API_QUESTION,
        API_AGENT_NAME,
        API_AGENT_PROMPT,
        TEAM_NAME,
        TEAM_AGENT_NAME,
        GRANT_NOTE,
    ] {
        assert!(everything.contains(kept), "the export lacks {kept:?}");
    }
    for gone in [API_UNSTORED, API_INSTRUCTIONS] {
        assert!(!everything.contains(gone), "the export has {gone:?}");
    }
    let token = SERVED_TOKEN.get().unwrap();
    let mut secrets = vec![
        PASSWORD,
        API_KEY,
        CONNECTION_SECRET,
        TEAM_CONNECTION_SECRET,
        MCP_SECRET_SUFFIX,
        MCP_URL_KEY,
        TELEGRAM_TOKEN,
        token.as_str(),
        API_SECRET.get().unwrap().as_str(),
        STRIPE_SECRET_KEY,
        STRIPE_WEBHOOK_SECRET,
    ];
    secrets.extend(TWO_FACTOR.get().unwrap().iter().map(String::as_str));
    for secret in secrets {
        assert!(
            !everything.contains(secret),
            "a secret is in the export: {}",
            &secret[..secret.len().min(6)]
        );
    }
    assert!(
        files
            .iter()
            .any(|(name, _)| name.starts_with("conversations/") && name.ends_with(".md")),
        "a readable copy of each conversation"
    );

    let dump = common::pg_dump(&common::database_url(&db).await);
    assert!(
        dump.contains("COPY public.users"),
        "the dump holds the users table"
    );
    assert!(
        dump.contains("COPY public.user_keys"),
        "the dump holds the wrapped keys"
    );
    assert!(
        dump.contains("COPY public.messages"),
        "the dump holds the messages"
    );
    let dump_lower = dump.to_lowercase();
    assert!(
        !dump_lower.contains(MARK),
        "a canary is in plaintext in the database: {}",
        dump.lines()
            .find(|l| l.to_lowercase().contains(MARK))
            .unwrap_or_default()
    );

    assert!(
        !dump.contains(AVATAR),
        "the avatar is in plaintext in the database"
    );

    let token = SERVED_TOKEN.get().unwrap();
    assert!(
        !dump.contains(token.as_str()),
        "the MCP token is in plaintext in the database"
    );

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    for value in TWO_FACTOR.get().unwrap() {
        assert!(
            !dump.contains(value.as_str()),
            "a two-factor secret or code is in the dump"
        );
        assert!(
            !logs.contains(value.as_str()),
            "a two-factor secret or code reached the log"
        );
    }
    assert!(
        logs.contains("second factor refused"),
        "the refusal was logged, without the code"
    );
    assert!(!logs.contains("913572"), "the wrong code reached the log");
    assert!(!logs.contains(AVATAR), "the avatar reached the log");
    assert!(
        !logs.contains(token.as_str()),
        "the MCP token reached the log"
    );
    let api_secret = API_SECRET.get().unwrap();
    assert!(
        !dump.contains(api_secret.as_str()) && !logs.contains(api_secret.as_str()),
        "an API key is in the dump or the log"
    );
    for oauth in [
        "fake-access-",
        "fake-refresh-",
        "fake-code-",
        "fake-oidc-code-",
        "fake-oidc-access-",
        server::fake_oidc::CLIENT_SECRET,
    ] {
        assert!(
            !logs.contains(oauth),
            "an OAuth {oauth}… value reached the log"
        );
        assert!(
            !dump.contains(oauth),
            "an OAuth {oauth}… value is in plaintext in the database"
        );
    }
    assert!(logs.contains("account created"), "the log was captured");
    // A signed-in send's step times (the benchmark's "where a send's time
    // goes"): ids and durations only, every step reached and in order.
    let field = |line: &str, name: &str| -> Option<i64> {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    let timed = logs
        .lines()
        .filter(|line| line.contains("send timing"))
        .filter(|line| {
            let steps = ["read_us", "ready_us", "asked_us", "first_token_us"]
                .map(|name| field(line, name).unwrap_or(-1));
            let stored = field(line, "stored_us").unwrap_or(-1);
            field(line, "arrived_unix_us").is_some_and(|at| at > 0)
                && steps[0] >= 0
                && steps.windows(2).all(|pair| pair[0] <= pair[1])
                && stored >= steps[1]
        })
        .count();
    assert!(timed >= 1, "no send's step times were logged in order");
    // Every line of a request carries its id, and so does the reply it
    // started, though the reply ends after the request.
    let finished = logs
        .lines()
        .find(|l| l.contains("run finished"))
        .expect("a run finished");
    assert!(
        finished.contains("request{request_id=") && finished.contains("run{message_id="),
        "{finished}"
    );
    assert!(
        !logs.to_lowercase().contains(MARK),
        "a canary reached the log: {}",
        logs.lines()
            .find(|l| l.to_lowercase().contains(MARK))
            .unwrap_or_default()
    );
}
