//! Connections and the service tools against fakes that speak each
//! service's real API: GitHub, Slack, Telegram (over HTTP) and email (a
//! real SMTP server with STARTTLS, in `crate::common::smtp`). Secrets are stored
//! sealed, shown masked, tested, never given to the model; another user's
//! connection is not found anywhere.

use crate::common::smtp;
use crate::common::{TestApp, keyring, relaxed_settings, with_fake_provider};
use app::{agents::domain::Provider, platform::settings::PlatformKeys};
use reqwest::Client;
use serde_json::{Value, json};
use sqlx::PgPool;

struct Setup {
    app: TestApp,
    fake: std::net::SocketAddr,
}

async fn spawn_with(db: PgPool, tweak: impl FnOnce(&mut app::platform::Settings)) -> Setup {
    let fake = server::fake_provider::start().await.unwrap();
    let mut settings = with_fake_provider(
        app::platform::Settings {
            platform_keys: PlatformKeys::new(
                [(Provider::Openai, "platform-key".to_owned())].into(),
            ),
            ..relaxed_settings()
        },
        fake,
    );
    tweak(&mut settings);
    let app = TestApp::spawn_full(db, settings, keyring(1, &[])).await;
    Setup { app, fake }
}

async fn spawn(db: PgPool) -> Setup {
    spawn_with(db, |_| {}).await
}

async fn add(app: &TestApp, client: &Client, form: &[(&str, &str)]) -> reqwest::Response {
    app.call(client, "add_connection", form).await
}

async fn connections(app: &TestApp, client: &Client) -> Vec<Value> {
    let list: Value = app
        .call(client, "list_connections", &[])
        .await
        .json()
        .await
        .unwrap();
    list.as_array().unwrap().clone()
}

async fn token(app: &TestApp, client: &Client, kind: &str, label: &str, secret: &str) -> String {
    let res = add(
        app,
        client,
        &[("kind", kind), ("label", label), ("secret", secret)],
    )
    .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    connections(app, client)
        .await
        .into_iter()
        .find(|c| c["label"] == label)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn test_message(app: &TestApp, client: &Client, id: &str) -> (bool, String) {
    let res: Value = app
        .call(client, "test_connection", &[("id", id)])
        .await
        .json()
        .await
        .unwrap();
    (
        res["ok"].as_bool().unwrap(),
        res["message"].as_str().unwrap().to_owned(),
    )
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn connections_are_stored_sealed_shown_masked_and_tested(db: PgPool) {
    let s = spawn(db).await;
    let client = s.app.signed_up("conn@example.com").await;
    let github = token(
        &s.app,
        &client,
        "github",
        "Work GitHub",
        "ghp_good_token_7x9Q",
    )
    .await;
    let list = connections(&s.app, &client).await;
    assert_eq!(list[0]["masked"], "…7x9Q");
    assert!(!list.iter().any(|c| c.to_string().contains("ghp_good")));
    assert_eq!(
        test_message(&s.app, &client, &github).await,
        (true, "Connected to GitHub as octocat.".to_owned())
    );
    let bad = token(&s.app, &client, "github", "Old", "ghp_bad_token").await;
    let (ok, message) = test_message(&s.app, &client, &bad).await;
    assert!(!ok && message.contains("rejected this token"), "{message}");

    let slack = token(&s.app, &client, "slack", "Team", "xoxb-good-1").await;
    let (ok, message) = test_message(&s.app, &client, &slack).await;
    assert!(ok && message.contains("Fake Team"), "{message}");
    let slack_bad = token(&s.app, &client, "slack", "Gone", "xoxb-bad-1").await;
    let (ok, message) = test_message(&s.app, &client, &slack_bad).await;
    assert!(!ok && message.contains("invalid or revoked"), "{message}");

    let telegram = token(&s.app, &client, "telegram", "Bot", "123:good").await;
    let (ok, message) = test_message(&s.app, &client, &telegram).await;
    assert!(ok && message.contains("@fake_enclave_bot"), "{message}");
    let telegram_bad = token(&s.app, &client, "telegram", "Bad bot", "123:bad").await;
    let (ok, message) = test_message(&s.app, &client, &telegram_bad).await;
    assert!(!ok && message.contains("rejected"), "{message}");

    // Replace, then delete.
    assert_eq!(
        s.app
            .call(
                &client,
                "replace_connection",
                &[("id", bad.as_str()), ("secret", "ghp_good_new_abcd")]
            )
            .await
            .status(),
        200
    );
    assert!(test_message(&s.app, &client, &bad).await.0);
    assert_eq!(
        s.app
            .call(&client, "delete_connection", &[("id", bad.as_str())])
            .await
            .status(),
        200
    );
    assert_eq!(connections(&s.app, &client).await.len(), 5);

    // Bad input is refused field by field.
    let res = add(
        &s.app,
        &client,
        &[("kind", "smtp"), ("label", "Mail"), ("secret", "pw")],
    )
    .await;
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert!(body.to_string().contains("smtp_host"), "{body}");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn another_users_connection_is_not_found_anywhere(db: PgPool) {
    let s = spawn(db).await;
    let alice = s.app.signed_up("alice-conn@example.com").await;
    let bob = s.app.signed_up("bob-conn@example.com").await;
    let id = token(&s.app, &alice, "github", "Alice", "ghp_good_alice").await;
    assert!(connections(&s.app, &bob).await.is_empty());
    for (name, form) in [
        ("test_connection", vec![("id", id.as_str())]),
        (
            "replace_connection",
            vec![("id", id.as_str()), ("secret", "ghp_good_bob")],
        ),
        ("delete_connection", vec![("id", id.as_str())]),
    ] {
        assert_eq!(s.app.call(&bob, name, &form).await.status(), 404, "{name}");
    }
    // Nor can Bob's agent be set to use it.
    let field = "connections[github]";
    let form = [
        ("name", "Sneaky"),
        ("description", ""),
        ("system_prompt", ""),
        ("provider", "openai"),
        ("model", "fake"),
        ("base_url", ""),
        ("temperature", ""),
        ("top_p", ""),
        ("max_output_tokens", ""),
        ("avatar", ""),
        ("tools[]", "github_read"),
        (field, id.as_str()),
    ];
    assert_eq!(s.app.call(&bob, "create_agent", &form).await.status(), 404);
    // Alice's own still works.
    assert!(test_message(&s.app, &alice, &id).await.0);
}

/// An agent whose fake model calls `tool` with the JSON message as
/// arguments; returns the tool call part of the reply.
async fn call_tool(s: &Setup, client: &Client, tool: &str, arguments: Value) -> Value {
    let script = format!("fake:tool={tool}");
    let agent =
        crate::common::scripted_agent(&s.app, client, s.fake, "openai", &script, &[tool], &[], "")
            .await;
    let sent = crate::common::send_new(&s.app, client, &agent, &arguments.to_string()).await;
    let reply = crate::common::reply_when(
        &s.app,
        client,
        sent["conversation_id"].as_str().unwrap(),
        "",
    )
    .await;
    reply["parts"][1].clone()
}

async fn sent(s: &Setup) -> Vec<Value> {
    let list: Value = reqwest::get(format!("http://{}/fakes/sent", s.fake))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list.as_array().unwrap().clone()
}

fn result(call: &Value) -> String {
    assert_eq!(call["status"], "done", "{call}");
    call["result"].as_str().unwrap().to_owned()
}

fn failure(call: &Value) -> String {
    assert_eq!(call["status"], "failed", "{call}");
    call["error"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_github_tools_read_and_write_through_the_users_token(db: PgPool) {
    let s = spawn(db).await;
    let client = s.app.signed_up("gh@example.com").await;
    // Without a connection, the tool says what to do.
    let call = call_tool(
        &s,
        &client,
        "github_read",
        json!({"action": "search", "query": "bug"}),
    )
    .await;
    assert!(failure(&call).contains("Settings → Connections"));

    token(&s.app, &client, "github", "GH", "ghp_good_1").await;
    let found = result(
        &call_tool(
            &s,
            &client,
            "github_read",
            json!({"action": "search", "query": "is:open bug"}),
        )
        .await,
    );
    assert!(found.contains("#7 Found by: is:open bug"), "{found}");
    let issue = result(
        &call_tool(
            &s,
            &client,
            "github_read",
            json!({"action": "issue", "repo": "octo/demo", "number": 3}),
        )
        .await,
    );
    assert!(issue.starts_with("Issue #3 “Crash on start”"), "{issue}");
    let file = result(
        &call_tool(
            &s,
            &client,
            "github_read",
            json!({"action": "file", "repo": "octo/demo", "path": "docs/read me.md"}),
        )
        .await,
    );
    assert_eq!(
        file,
        "# docs/read me.md\n\nHello from the fake repository.\n"
    );

    let created = result(&call_tool(&s, &client, "github_write", json!({"action": "create_issue", "repo": "octo/demo", "title": "From Enclave", "body": "Hello"})).await);
    assert_eq!(
        created,
        "Created issue #42: https://github.com/octo/demo/issues/42"
    );
    let commented = result(
        &call_tool(
            &s,
            &client,
            "github_write",
            json!({"action": "comment", "repo": "octo/demo", "number": 5, "body": "Thanks"}),
        )
        .await,
    );
    assert!(commented.starts_with("Commented: "), "{commented}");
    let actions: Vec<String> = sent(&s)
        .await
        .iter()
        .map(|a| a["action"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(actions, ["create_issue", "comment"]);

    // The service's errors, in plain words.
    let missing = failure(
        &call_tool(
            &s,
            &client,
            "github_read",
            json!({"action": "issue", "repo": "octo/missing", "number": 1}),
        )
        .await,
    );
    assert!(missing.contains("no such repository"), "{missing}");
    let bad_repo = failure(
        &call_tool(
            &s,
            &client,
            "github_read",
            json!({"action": "issue", "repo": "../etc", "number": 1}),
        )
        .await,
    );
    assert!(bad_repo.contains("not a repository name"), "{bad_repo}");
    token(&s.app, &client, "github", "Limited", "limited-token").await;
    let limited = failure(
        &call_tool(
            &s,
            &client,
            "github_read",
            json!({"action": "search", "query": "x"}),
        )
        .await,
    );
    assert!(limited.contains("rate limit"), "{limited}");
    token(&s.app, &client, "github", "Revoked", "ghp_bad_2").await;
    let revoked = failure(
        &call_tool(
            &s,
            &client,
            "github_read",
            json!({"action": "search", "query": "x"}),
        )
        .await,
    );
    assert!(revoked.contains("rejected the token"), "{revoked}");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_slack_and_telegram_tools_read_and_send(db: PgPool) {
    let s = spawn(db).await;
    let client = s.app.signed_up("chatops@example.com").await;
    token(&s.app, &client, "slack", "Slack", "xoxb-good-2").await;
    let channels =
        result(&call_tool(&s, &client, "slack_read", json!({"action": "channels"})).await);
    assert_eq!(channels, "#general (C0GENERAL)\n#random (C0RANDOM)");
    let history = result(
        &call_tool(
            &s,
            &client,
            "slack_read",
            json!({"action": "history", "channel": "C0GENERAL"}),
        )
        .await,
    );
    assert_eq!(
        history, "U1: First message\nU2: Second message",
        "oldest first"
    );
    let posted = result(
        &call_tool(
            &s,
            &client,
            "slack_post",
            json!({"channel": "C0GENERAL", "text": "Deployed"}),
        )
        .await,
    );
    assert!(posted.starts_with("Posted to C0GENERAL"), "{posted}");
    let missing = failure(
        &call_tool(
            &s,
            &client,
            "slack_post",
            json!({"channel": "C404", "text": "x"}),
        )
        .await,
    );
    assert!(missing.contains("no such channel"), "{missing}");

    token(&s.app, &client, "telegram", "Bot", "555:good").await;
    let sent_to = result(
        &call_tool(
            &s,
            &client,
            "telegram_send",
            json!({"chat_id": "12345", "text": "Hi"}),
        )
        .await,
    );
    assert_eq!(sent_to, "Sent to 12345 (message 1).");
    let missing = failure(
        &call_tool(
            &s,
            &client,
            "telegram_send",
            json!({"chat_id": "404", "text": "Hi"}),
        )
        .await,
    );
    assert!(missing.contains("check the chat id"), "{missing}");

    let records = sent(&s).await;
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["text"], "Deployed");
    assert_eq!(records[1]["chat_id"], "12345");
    // Rate limits read as such.
    token(&s.app, &client, "slack", "Limited", "limited-xoxb").await;
    let limited =
        failure(&call_tool(&s, &client, "slack_read", json!({"action": "channels"})).await);
    assert!(limited.contains("rate limiting"), "{limited}");
}

async fn mail_connection(s: &Setup, client: &Client, server: &smtp::SmtpFake, password: &str) {
    let port = server.addr.port().to_string();
    let form = [
        ("kind", "smtp"),
        ("label", "Mail"),
        ("secret", password),
        ("smtp_host", "127.0.0.1"),
        ("smtp_port", port.as_str()),
        ("smtp_username", "ada"),
        ("smtp_from", "ada@example.com"),
        ("smtp_security", "starttls"),
    ];
    let res = add(&s.app, client, &form).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

async fn smtp_setup(db: PgPool, starttls: bool) -> (Setup, smtp::SmtpFake) {
    let server = smtp::start(starttls).await;
    let (addr, ca) = (server.addr, server.ca_pem.clone());
    let s = spawn_with(db, move |settings| {
        settings
            .egress_allow
            .push(app::platform::egress::AllowEntry::parse(&addr.to_string()).unwrap());
        settings.smtp_roots = vec![ca];
    })
    .await;
    (s, server)
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_email_tool_sends_through_the_users_own_smtp_account_over_tls(db: PgPool) {
    let (s, server) = smtp_setup(db, true).await;
    let client = s.app.signed_up("mailer@example.com").await;
    mail_connection(&s, &client, &server, "app-password-1").await;
    let id = connections(&s.app, &client).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        test_message(&s.app, &client, &id).await,
        (true, "Signed in to 127.0.0.1 as ada.".to_owned())
    );

    let call = call_tool(
        &s,
        &client,
        "send_email",
        json!({"to": "grace@example.com", "subject": "Status", "body": "All green."}),
    )
    .await;
    assert_eq!(result(&call), "Sent “Status” to grace@example.com.");
    let mails = server.record.mails.lock().unwrap().clone();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].user, "ada");
    assert_eq!(mails[0].from, "<ada@example.com>");
    assert_eq!(mails[0].to, vec!["<grace@example.com>"]);
    assert!(
        mails[0].data.contains("Subject: Status"),
        "{}",
        mails[0].data
    );
    assert!(mails[0].data.contains("All green."));
    assert_eq!(
        *server.record.plain_auths.lock().unwrap(),
        0,
        "the password only went over TLS"
    );

    // The server's refusals, in plain words.
    let refused = failure(
        &call_tool(
            &s,
            &client,
            "send_email",
            json!({"to": "nobody@example.com", "subject": "x", "body": "y"}),
        )
        .await,
    );
    assert!(refused.contains("refused a recipient"), "{refused}");
    let invalid = failure(
        &call_tool(
            &s,
            &client,
            "send_email",
            json!({"to": "not an address", "subject": "x", "body": "y"}),
        )
        .await,
    );
    assert!(invalid.contains("is not an address"), "{invalid}");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_wrong_password_or_a_server_without_tls_is_refused_with_the_reason(db: PgPool) {
    let (s, server) = smtp_setup(db, true).await;
    let client = s.app.signed_up("mailer2@example.com").await;
    mail_connection(&s, &client, &server, "bad-password").await;
    let id = connections(&s.app, &client).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, message) = test_message(&s.app, &client, &id).await;
    assert!(
        !ok && message.contains("user name or password"),
        "{message}"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_server_that_offers_no_tls_never_gets_the_password(db: PgPool) {
    let (s, plain) = smtp_setup(db, false).await;
    let client = s.app.signed_up("mailer3@example.com").await;
    mail_connection(&s, &client, &plain, "app-password-2").await;
    let id = connections(&s.app, &client).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, message) = test_message(&s.app, &client, &id).await;
    assert!(!ok, "{message}");
    assert!(
        !message.contains("private, local"),
        "the server was reached (the refusal is about TLS): {message}"
    );
    assert_eq!(
        *plain.record.plain_auths.lock().unwrap(),
        0,
        "no password in the clear"
    );
    assert!(plain.record.mails.lock().unwrap().is_empty());
}

/// An agent whose `tool` asks first; returns (agent id, conversation id,
/// reply id) after sending `arguments`, with the reply paused.
async fn paused(
    s: &Setup,
    client: &Client,
    tool: &str,
    arguments: Value,
) -> (String, String, String) {
    paused_on(s, client, "openai", tool, arguments).await
}

/// `paused` on a given provider.
async fn paused_on(
    s: &Setup,
    client: &Client,
    provider: &str,
    tool: &str,
    arguments: Value,
) -> (String, String, String) {
    let script = format!("fake:tool={tool}");
    let agent = crate::common::scripted_agent(
        &s.app,
        client,
        s.fake,
        provider,
        &script,
        &[tool],
        &[tool],
        "",
    )
    .await;
    let sent = crate::common::send_new(&s.app, client, &agent, &arguments.to_string()).await;
    let conversation = sent["conversation_id"].as_str().unwrap().to_owned();
    let reply = sent["reply_id"].as_str().unwrap().to_owned();
    (agent, conversation, reply)
}

async fn reply_of(s: &Setup, client: &Client, conversation: &str, until: &str) -> Value {
    crate::common::reply_when(&s.app, client, conversation, until).await
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_tool_that_asks_first_pauses_the_reply_until_the_user_decides(db: PgPool) {
    let s = spawn(db).await;
    let client = s.app.signed_up("careful@example.com").await;
    token(&s.app, &client, "slack", "Slack", "xoxb-good-3").await;
    let post = json!({"channel": "C0GENERAL", "text": "Release is out"});
    let (agent, conversation, reply) = paused(&s, &client, "slack_post", post.clone()).await;
    let waiting = reply_of(&s, &client, &conversation, "awaiting_approval").await;
    let call = &waiting["parts"][1];
    assert_eq!(call["status"], "awaiting_approval");
    assert!(sent(&s).await.is_empty(), "nothing was posted yet");
    // A stored state, no task: the run leaves the registry as its task
    // ends, just after writing that state (seen once under load: still
    // registered when the state was first read).
    let id = uuid::Uuid::parse_str(&reply).unwrap();
    let ended = s.app.state.runs.ended(id);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), ended).await;
    assert!(!s.app.state.runs.is_live(id), "a stored state, no task");
    // The conversation waits for the decision.
    let more = s
        .app
        .call(
            &client,
            "send_message",
            &[
                ("agent_id", agent.as_str()),
                ("conversation_id", conversation.as_str()),
                ("message", "and?"),
            ],
        )
        .await;
    assert_eq!(more.status(), 422);
    // Only its owner decides.
    let other = s.app.signed_up("stranger@example.com").await;
    let call_id = call["id"].as_str().unwrap().to_owned();
    let decide = |client: &Client, decision: &'static str| {
        let (reply, call_id) = (reply.clone(), call_id.clone());
        let client = client.clone();
        let app = &s.app;
        async move {
            app.call(
                &client,
                "decide_tool_call",
                &[
                    ("message_id", reply.as_str()),
                    ("call_id", call_id.as_str()),
                    ("decision", decision),
                ],
            )
            .await
            .status()
        }
    };
    assert_eq!(decide(&other, "approve").await, 404);

    assert_eq!(decide(&client, "approve").await, 200);
    let done = reply_of(&s, &client, &conversation, "complete").await;
    assert_eq!(done["parts"][1]["status"], "done");
    assert!(
        done["parts"][1]["result"]
            .as_str()
            .unwrap()
            .starts_with("Posted to C0GENERAL")
    );
    assert!(
        done["body"]
            .as_str()
            .unwrap()
            .contains("The tools said: Posted to C0GENERAL")
    );
    let posts = sent(&s).await;
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0]["text"], "Release is out");
    // Deciding twice is refused.
    assert_eq!(decide(&client, "approve").await, 422);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_denied_call_is_not_made_and_the_model_is_told(db: PgPool) {
    let s = spawn(db).await;
    let client = s.app.signed_up("denier@example.com").await;
    token(&s.app, &client, "telegram", "Bot", "777:good").await;
    let (_, conversation, reply) = paused(
        &s,
        &client,
        "telegram_send",
        json!({"chat_id": "42", "text": "Hi"}),
    )
    .await;
    let waiting = reply_of(&s, &client, &conversation, "awaiting_approval").await;
    let call_id = waiting["parts"][1]["id"].as_str().unwrap().to_owned();
    let res = s
        .app
        .call(
            &client,
            "decide_tool_call",
            &[
                ("message_id", reply.as_str()),
                ("call_id", call_id.as_str()),
                ("decision", "deny"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let done = reply_of(&s, &client, &conversation, "complete").await;
    assert_eq!(done["parts"][1]["status"], "denied");
    assert!(
        done["body"]
            .as_str()
            .unwrap()
            .contains("The user declined this call.")
    );
    assert!(sent(&s).await.is_empty());

    // Stop ends a paused reply for good.
    let (_, conversation, reply) = paused(
        &s,
        &client,
        "telegram_send",
        json!({"chat_id": "43", "text": "Hi"}),
    )
    .await;
    reply_of(&s, &client, &conversation, "awaiting_approval").await;
    assert_eq!(
        s.app
            .call(&client, "stop_reply", &[("message_id", reply.as_str())])
            .await
            .status(),
        200
    );
    reply_of(&s, &client, &conversation, "stopped").await;
    assert!(sent(&s).await.is_empty());
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn approval_resumes_the_reply_on_every_provider(db: PgPool) {
    let s = spawn_with(db, |settings| {
        settings.platform_keys = PlatformKeys::new(
            [Provider::Openai, Provider::Anthropic, Provider::Google]
                .into_iter()
                .map(|p| (p, "platform-key".to_owned()))
                .collect(),
        );
    })
    .await;
    let client = s.app.signed_up("every-provider@example.com").await;
    token(&s.app, &client, "slack", "Slack", "xoxb-good-4").await;
    for provider in ["openai", "anthropic", "google", "openai_compatible"] {
        let text = format!("From {provider}");
        let (_, conversation, reply) = paused_on(
            &s,
            &client,
            provider,
            "slack_post",
            json!({"channel": "C0GENERAL", "text": text}),
        )
        .await;
        let waiting = reply_of(&s, &client, &conversation, "awaiting_approval").await;
        let call_id = waiting["parts"][1]["id"].as_str().unwrap().to_owned();
        let res = s
            .app
            .call(
                &client,
                "decide_tool_call",
                &[
                    ("message_id", reply.as_str()),
                    ("call_id", call_id.as_str()),
                    ("decision", "approve"),
                ],
            )
            .await;
        assert_eq!(res.status(), 200, "{provider}");
        let done = reply_of(&s, &client, &conversation, "complete").await;
        assert!(
            done["body"]
                .as_str()
                .unwrap()
                .contains("The tools said: Posted to C0GENERAL"),
            "{provider}: the model read the resumed result: {done}"
        );
    }
    let texts: Vec<String> = sent(&s)
        .await
        .iter()
        .map(|p| p["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        texts,
        [
            "From openai",
            "From anthropic",
            "From google",
            "From openai_compatible"
        ]
    );
}
