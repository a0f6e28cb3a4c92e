//! The user's own MCP servers: added in Settings, their tools listed and
//! enabled per agent, called in the tool loop. The client is tested against
//! the official reference server (`server-everything` from npm, in its
//! streamable HTTP mode; the 2025-11-25 era, with `Mcp-Session-Id` and SSE
//! answers), and against fakes for what a reference server never does
//! (refuse a secret, answer garbage, hang, flood).

use crate::common::peers;
use crate::common::{
    TestApp, keyring, relaxed_settings, reply_when, scripted_agent, send_new, with_fake_provider,
};
use app::{agents::domain::Provider, platform::settings::PlatformKeys};
use reqwest::Client;
use serde_json::Value;
use sqlx::PgPool;

struct Setup {
    app: TestApp,
    fake: std::net::SocketAddr,
    everything: peers::Peer,
}

async fn spawn(db: PgPool) -> Setup {
    let fake = server::fake_provider::start().await.unwrap();
    let everything = peers::everything().await;
    let keys = [Provider::Openai, Provider::Anthropic, Provider::Google]
        .into_iter()
        .map(|p| (p, "platform-key".to_owned()))
        .collect();
    let mut settings = with_fake_provider(
        app::platform::Settings {
            platform_keys: PlatformKeys::new(keys),
            ..relaxed_settings()
        },
        fake,
    );
    settings
        .egress_allow
        .push(app::platform::egress::AllowEntry::parse(&everything.addr()).unwrap());
    let app = TestApp::spawn_full(db, settings, keyring(1, &[])).await;
    Setup {
        app,
        fake,
        everything,
    }
}

impl Setup {
    fn everything_url(&self) -> String {
        format!("http://{}/mcp", self.everything.addr())
    }
}

async fn add_server(app: &TestApp, client: &Client, form: &[(&str, &str)]) -> reqwest::Response {
    app.call(client, "add_mcp_server", form).await
}

/// Adds an open server; returns its view (with its tools, or its error).
async fn added(app: &TestApp, client: &Client, name: &str, url: &str) -> Value {
    let res = add_server(
        app,
        client,
        &[("name", name), ("url", url), ("auth", "none")],
    )
    .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    res.json().await.unwrap()
}

fn tool_names(server: &Value) -> Vec<String> {
    server["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

/// The name the model calls tool `tool` of server `id` by.
fn model_name(id: &str, tool: &str) -> String {
    format!("mcp_{}_{tool}", &id[..8])
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_user_adds_the_reference_server_and_sees_its_tools(db: PgPool) {
    let s = spawn(db).await;
    let client = s.app.signed_up("mcp@example.com").await;
    let server = added(&s.app, &client, "Everything", &s.everything_url()).await;
    assert_eq!(server["last_error"], Value::Null, "{server}");
    assert!(server["refreshed_at"].is_string());
    let names = tool_names(&server);
    for expected in ["echo", "get-sum", "trigger-long-running-operation"] {
        assert!(names.contains(&expected.to_owned()), "{names:?}");
    }
    let sum = server["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "get-sum")
        .unwrap();
    assert_eq!(sum["input_schema"]["type"], "object");
    assert!(sum["input_schema"]["properties"]["a"].is_object(), "{sum}");
    assert!(!sum["description"].as_str().unwrap().is_empty());

    // The list is kept: it reads back without asking the server again.
    let list: Value = s
        .app
        .call(&client, "list_mcp_servers", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(tool_names(&list[0]), names);

    // Refresh reads it again.
    let id = server["id"].as_str().unwrap();
    let res = s
        .app
        .call(&client, "refresh_mcp_server", &[("id", id)])
        .await;
    assert_eq!(res.status(), 200);
    let refreshed: Value = res.json().await.unwrap();
    assert_eq!(tool_names(&refreshed), names);

    // The settings page shows them, as text.
    let page = client
        .get(s.app.url("/settings/mcp"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Everything"), "{page}");
    assert!(page.contains("get-sum"));
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn an_agent_calls_a_tool_of_the_reference_server_on_every_provider(db: PgPool) {
    let s = spawn(db).await;
    let client = s.app.signed_up("mcp-chat@example.com").await;
    let server = added(&s.app, &client, "Everything", &s.everything_url()).await;
    let id = server["id"].as_str().unwrap();
    let key = format!("mcp:{id}:get-sum");
    let name = model_name(id, "get-sum");
    for provider in ["openai", "anthropic", "google", "openai_compatible"] {
        let agent = scripted_agent(
            &s.app,
            &client,
            s.fake,
            provider,
            &format!("fake:tool={name}"),
            &[&key],
            &[],
            "",
        )
        .await;
        let started = send_new(&s.app, &client, &agent, r#"{"a": 2, "b": 3}"#).await;
        let conversation = started["conversation_id"].as_str().unwrap();
        let reply = reply_when(&s.app, &client, conversation, "").await;
        assert_eq!(reply["status"], "complete", "{provider}: {reply}");
        let body = reply["body"].as_str().unwrap();
        assert!(
            body.contains("The sum of 2 and 3 is 5"),
            "{provider}: {body}"
        );
        let call = reply["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["type"] == "tool_call")
            .unwrap_or_else(|| panic!("{provider}: no tool call in {reply}"));
        assert_eq!(call["tool"], name.as_str(), "{call}");
        assert_eq!(call["status"], "done", "{call}");
    }
    // Each call is in the audit, with the host it reached.
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM tool_calls WHERE status = 'done'")
        .fetch_one(&s.app.db)
        .await
        .unwrap();
    assert_eq!(audited, 4);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn an_mcp_tool_set_to_ask_first_waits_for_approval(db: PgPool) {
    let s = spawn(db).await;
    let client = s.app.signed_up("mcp-ask@example.com").await;
    let server = added(&s.app, &client, "Everything", &s.everything_url()).await;
    let id = server["id"].as_str().unwrap();
    let key = format!("mcp:{id}:echo");
    let agent = scripted_agent(
        &s.app,
        &client,
        s.fake,
        "openai",
        &format!("fake:tool={}", model_name(id, "echo")),
        &[&key],
        &[&key],
        "",
    )
    .await;
    let started = send_new(&s.app, &client, &agent, r#"{"message": "hi there"}"#).await;
    let conversation = started["conversation_id"].as_str().unwrap();
    let waiting = reply_when(&s.app, &client, conversation, "awaiting_approval").await;
    let call_id = waiting["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == "tool_call")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = s
        .app
        .call(
            &client,
            "decide_tool_call",
            &[
                ("message_id", waiting["id"].as_str().unwrap()),
                ("call_id", call_id.as_str()),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let reply = reply_when(&s.app, &client, conversation, "complete").await;
    assert!(
        reply["body"].as_str().unwrap().contains("Echo: hi there"),
        "{reply}"
    );
}

// ---- against the fakes (`server::fake_mcp`) ---------------------------------

impl Setup {
    fn fake_url(&self, path: &str) -> String {
        format!("http://{}/mcp/{path}", self.fake)
    }

    async fn seen(&self) -> Vec<String> {
        reqwest::get(format!("http://{}/mcp/seen", self.fake))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// A scripted agent that calls `tool` of `server` (enabled), with
/// `arguments` as the user's message; returns the settled reply.
async fn call_through_agent(
    s: &Setup,
    client: &Client,
    server: &Value,
    tool: &str,
    arguments: &str,
) -> Value {
    let id = server["id"].as_str().unwrap();
    let key = format!("mcp:{id}:{tool}");
    let agent = scripted_agent(
        &s.app,
        client,
        s.fake,
        "openai",
        &format!("fake:tool={}", model_name(id, tool)),
        &[&key],
        &[],
        "",
    )
    .await;
    let started = send_new(&s.app, client, &agent, arguments).await;
    let conversation = started["conversation_id"].as_str().unwrap();
    reply_when(&s.app, client, conversation, "").await
}

fn tool_call(reply: &Value) -> Value {
    reply["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == "tool_call")
        .unwrap_or_else(|| panic!("no tool call in {reply}"))
        .clone()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_client_speaks_both_protocol_eras(db: PgPool) {
    let s = spawn(db).await;
    let client = s.app.signed_up("mcp-eras@example.com").await;

    // A current server: the stateless 2026-07-28 revision, every request
    // carrying its version.
    let modern = added(&s.app, &client, "Modern", &s.fake_url("open")).await;
    assert_eq!(modern["last_error"], Value::Null, "{modern}");
    assert!(tool_names(&modern).contains(&"add".to_owned()));
    let seen = s.seen().await;
    assert!(
        !seen.is_empty() && seen.iter().all(|v| v == "2026-07-28"),
        "{seen:?}"
    );
    let reply = call_through_agent(&s, &client, &modern, "add", r#"{"a": 2, "b": 40}"#).await;
    assert_eq!(tool_call(&reply)["result"], "2 + 40 = 42", "{reply}");

    // A server of the 2025-11-25 era refuses `server/discover`: the client
    // falls back to `initialize`.
    let before = s.seen().await.len();
    let legacy = added(&s.app, &client, "Legacy", &s.fake_url("legacy")).await;
    assert_eq!(legacy["last_error"], Value::Null, "{legacy}");
    assert!(tool_names(&legacy).contains(&"shout".to_owned()));
    let seen = s.seen().await;
    assert!(
        seen[before..].iter().any(|v| v == "2025-11-25"),
        "{:?}",
        &seen[before..]
    );
    let reply = call_through_agent(&s, &client, &legacy, "shout", r#"{"text": "quiet"}"#).await;
    assert_eq!(tool_call(&reply)["result"], "QUIET", "{reply}");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_secret_header_is_sealed_sent_and_replaceable(db: PgPool) {
    let s = spawn(db).await;
    let client = s.app.signed_up("mcp-secret@example.com").await;
    let url = s.fake_url("secret");

    // Authorization: Bearer (the default header).
    let res = add_server(
        &s.app,
        &client,
        &[
            ("name", "Bearer"),
            ("url", &url),
            ("auth", "header"),
            ("secret", server::fake_mcp::SECRET),
        ],
    )
    .await;
    let bearer: Value = res.json().await.unwrap();
    assert_eq!(bearer["last_error"], Value::Null, "{bearer}");
    assert_eq!(bearer["header_name"], "Authorization");
    assert_eq!(bearer["masked"], "…oken");
    assert!(!bearer.to_string().contains(server::fake_mcp::SECRET));

    // A header of the server's own.
    let res = add_server(
        &s.app,
        &client,
        &[
            ("name", "Key"),
            ("url", &url),
            ("auth", "header"),
            ("header_name", "X-Api-Key"),
            ("secret", server::fake_mcp::SECRET),
        ],
    )
    .await;
    let keyed: Value = res.json().await.unwrap();
    assert_eq!(keyed["last_error"], Value::Null, "{keyed}");
    let reply = call_through_agent(&s, &client, &keyed, "shout", r#"{"text": "ok"}"#).await;
    assert_eq!(tool_call(&reply)["result"], "OK", "{reply}");

    // A wrong secret: kept, with the reason in words; replacing it mends it.
    let res = add_server(
        &s.app,
        &client,
        &[
            ("name", "Wrong"),
            ("url", &url),
            ("auth", "header"),
            ("secret", "not-the-token"),
        ],
    )
    .await;
    let wrong: Value = res.json().await.unwrap();
    let error = wrong["last_error"].as_str().unwrap();
    assert!(error.contains("refused the credentials"), "{error}");
    assert!(!error.contains("not-the-token"));
    let id = wrong["id"].as_str().unwrap();
    let res = s
        .app
        .call(
            &client,
            "replace_mcp_secret",
            &[("id", id), ("secret", server::fake_mcp::SECRET)],
        )
        .await;
    assert_eq!(res.status(), 200);
    let mended: Value = s
        .app
        .call(&client, "refresh_mcp_server", &[("id", id)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mended["last_error"], Value::Null, "{mended}");
    assert!(!tool_names(&mended).is_empty());

    // The secret is sealed: no column holds it in the clear.
    let plain: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM mcp_servers WHERE position($1::bytea in secret::bytea) > 0",
    )
    .bind(server::fake_mcp::SECRET.as_bytes())
    .fetch_one(&s.app.db)
    .await
    .unwrap();
    assert_eq!(plain, 0);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn bad_servers_get_plain_errors_and_lose_nothing(db: PgPool) {
    let s = spawn_with_timeout(db, 2).await;
    let client = s.app.signed_up("mcp-bad@example.com").await;

    // Not an address at all: the form says so, nothing is stored.
    for url in [
        "mcp.example.com",
        "ftp://example.com/mcp",
        "https://u:p@example.com/mcp",
    ] {
        let res = add_server(
            &s.app,
            &client,
            &[("name", "Bad"), ("url", url), ("auth", "none")],
        )
        .await;
        assert_eq!(res.status(), 422, "{url}");
        let body: Value = res.json().await.unwrap();
        assert!(body.to_string().contains("url"), "{body}");
    }
    // A header secret left empty.
    let res = add_server(
        &s.app,
        &client,
        &[
            ("name", "Bad"),
            ("url", &s.fake_url("secret")),
            ("auth", "header"),
        ],
    )
    .await;
    assert_eq!(res.status(), 422);

    // Each of these is kept, with what went wrong in words.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let cases = [
        (s.fake_url("garbage"), "not MCP"),
        (s.fake_url("slow"), "did not answer within 2 seconds"),
        (
            "http://10.0.0.1/mcp".to_owned(),
            "private, local or reserved",
        ),
        (
            "http://169.254.169.254/mcp".to_owned(),
            "private, local or reserved",
        ),
        (format!("http://{closed}/mcp"), "private, local or reserved"),
    ];
    for (url, expected) in cases {
        let server = added(&s.app, &client, "Broken", &url).await;
        let error = server["last_error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{url}: {error}");
        assert_eq!(server["tools"], serde_json::json!([]), "{url}");
    }
    let list: Value = s
        .app
        .call(&client, "list_mcp_servers", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 5);
}

async fn spawn_with_timeout(db: PgPool, secs: u64) -> Setup {
    let fake = server::fake_provider::start().await.unwrap();
    let everything = peers::everything().await;
    let mut settings = with_fake_provider(
        app::platform::Settings {
            platform_keys: PlatformKeys::new(
                [(Provider::Openai, "platform-key".to_owned())].into(),
            ),
            tool_timeout: std::time::Duration::from_secs(secs),
            ..relaxed_settings()
        },
        fake,
    );
    settings
        .egress_allow
        .push(app::platform::egress::AllowEntry::parse(&everything.addr()).unwrap());
    let app = TestApp::spawn_full(db, settings, keyring(1, &[])).await;
    Setup {
        app,
        fake,
        everything,
    }
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_failing_slow_or_flooding_tool_fails_alone_and_the_run_goes_on(db: PgPool) {
    let s = spawn_with_timeout(db, 3).await;
    let client = s.app.signed_up("mcp-fail@example.com").await;
    let server = added(&s.app, &client, "Open", &s.fake_url("open")).await;

    // An error result: the call fails with the server's words; the model
    // still answers.
    let reply = call_through_agent(&s, &client, &server, "fail", "{}").await;
    assert_eq!(reply["status"], "complete", "{reply}");
    let call = tool_call(&reply);
    assert_eq!(call["status"], "failed", "{call}");
    assert!(
        call["error"]
            .as_str()
            .unwrap()
            .contains("failed on purpose"),
        "{call}"
    );

    // A long answer is cut to what the model is given.
    let reply = call_through_agent(&s, &client, &server, "big", "{}").await;
    let call = tool_call(&reply);
    assert_eq!(call["status"], "done", "{call}");
    let result = call["result"].as_str().unwrap();
    assert!(
        result.len() < 17_000 && result.contains("cut at"),
        "{}",
        result.len()
    );

    // One too large to take is refused, in words.
    let reply = call_through_agent(&s, &client, &server, "flood", "{}").await;
    assert_eq!(reply["status"], "complete", "{reply}");
    let call = tool_call(&reply);
    assert_eq!(call["status"], "failed", "{call}");
    assert!(
        call["error"]
            .as_str()
            .unwrap()
            .contains("answers over 4 MiB are refused"),
        "{call}"
    );

    // A tool that never answers: the call times out, the reply completes.
    let reply = call_through_agent(&s, &client, &server, "hang", "{}").await;
    assert_eq!(reply["status"], "complete", "{reply}");
    let call = tool_call(&reply);
    assert_eq!(call["status"], "failed", "{call}");
    assert!(
        call["error"].as_str().unwrap().contains("within 3 seconds"),
        "{call}"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_server_that_went_down_fails_the_call_not_the_reply(db: PgPool) {
    let mut s = spawn(db).await;
    let client = s.app.signed_up("mcp-down@example.com").await;
    let server = added(&s.app, &client, "Everything", &s.everything_url()).await;
    // The reference server stops (its port stays allowlisted, and closed).
    let port = s.everything.port;
    s.everything = peers::Peer::none(port);
    let reply = call_through_agent(&s, &client, &server, "echo", r#"{"message": "hi"}"#).await;
    assert_eq!(reply["status"], "complete", "{reply}");
    let call = tool_call(&reply);
    assert_eq!(call["status"], "failed", "{call}");
    assert!(
        call["error"]
            .as_str()
            .unwrap()
            .contains("Could not connect to 127.0.0.1"),
        "{call}"
    );
    assert!(
        reply["body"].as_str().unwrap().contains("The tools said"),
        "{reply}"
    );
    // Settings says so too, and keeps the tools it had.
    let id = server["id"].as_str().unwrap();
    let refreshed: Value = s
        .app
        .call(&client, "refresh_mcp_server", &[("id", id)])
        .await
        .json()
        .await
        .unwrap();
    assert!(
        refreshed["last_error"]
            .as_str()
            .unwrap()
            .contains("Could not connect"),
        "{refreshed}"
    );
    assert_eq!(tool_names(&refreshed), tool_names(&server));
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn unusable_tools_are_shown_but_never_offered(db: PgPool) {
    let s = spawn(db).await;
    let client = s.app.signed_up("mcp-weird@example.com").await;
    let server = added(&s.app, &client, "Open", &s.fake_url("open")).await;
    let weird = server["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "weird")
        .unwrap()
        .clone();
    assert!(
        weird["unusable"]
            .as_str()
            .unwrap()
            .contains("not a JSON object schema"),
        "{weird}"
    );
    let id = server["id"].as_str().unwrap();
    let agent = scripted_agent(
        &s.app,
        &client,
        s.fake,
        "openai",
        "fake:offered",
        &[&format!("mcp:{id}:weird"), &format!("mcp:{id}:add")],
        &[],
        "",
    )
    .await;
    let started = send_new(&s.app, &client, &agent, "hello").await;
    let reply = reply_when(
        &s.app,
        &client,
        started["conversation_id"].as_str().unwrap(),
        "",
    )
    .await;
    // What the model was offered: `add`, not `weird`.
    let offered = reply["body"].as_str().unwrap();
    assert!(offered.contains(&model_name(id, "add")), "{offered}");
    assert!(!offered.contains(&model_name(id, "weird")), "{offered}");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_server_that_says_its_tools_changed_is_listed_again(db: PgPool) {
    let s = spawn(db).await;
    let client = s.app.signed_up("mcp-grow@example.com").await;
    // The 2025-11-25 era: the notification comes in the call's SSE answer.
    let server = added(&s.app, &client, "Legacy", &s.fake_url("legacy")).await;
    assert!(!tool_names(&server).contains(&"grown".to_owned()));
    let reply = call_through_agent(&s, &client, &server, "grow", "{}").await;
    assert_eq!(tool_call(&reply)["status"], "done", "{reply}");
    // Read again in the background: within 20 s, however loaded the machine
    // (the suite also runs server processes of its own, cluster.rs).
    for _ in 0..800 {
        let list: Value = s
            .app
            .call(&client, "list_mcp_servers", &[])
            .await
            .json()
            .await
            .unwrap();
        if tool_names(&list[0]).contains(&"grown".to_owned()) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the changed tool list was never read");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn another_users_mcp_server_is_not_found_anywhere(db: PgPool) {
    let s = spawn(db).await;
    let owner = s.app.signed_up("mcp-owner@example.com").await;
    let other = s.app.signed_up("mcp-other@example.com").await;
    let server = added(&s.app, &owner, "Mine", &s.fake_url("open")).await;
    let id = server["id"].as_str().unwrap();
    for (name, form) in [
        ("refresh_mcp_server", vec![("id", id)]),
        ("delete_mcp_server", vec![("id", id)]),
        ("replace_mcp_secret", vec![("id", id), ("secret", "x-1234")]),
    ] {
        let res = s.app.call(&other, name, &form).await;
        assert_eq!(res.status(), 404, "{name}");
    }
    let theirs: Value = s
        .app
        .call(&other, "list_mcp_servers", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs, serde_json::json!([]));

    // An agent cannot be given another user's MCP tool…
    let key = format!("mcp:{id}:add");
    let form = [
        ("name", "Thief"),
        ("description", ""),
        ("system_prompt", ""),
        ("provider", "openai"),
        ("model", "fake"),
        ("base_url", ""),
        ("temperature", ""),
        ("top_p", ""),
        ("max_output_tokens", ""),
        ("avatar", ""),
        ("tools[]", key.as_str()),
    ];
    let res = s.app.call(&other, "create_agent", &form).await;
    assert_eq!(res.status(), 422);
    let body = res.text().await.unwrap();
    assert!(body.contains("no longer exists"), "{body}");

    // …and a run never reaches it even if the key is stored somehow.
    let ctx = app::tools::server::ToolCtx {
        state: s.app.state.clone(),
        owner: sqlx::query_scalar(
            "SELECT id FROM users WHERE id <> (SELECT owner_id FROM mcp_servers)",
        )
        .fetch_one(&s.app.db)
        .await
        .unwrap(),
        key: app::platform::crypto::DataKey::generate(),
        message: uuid::Uuid::new_v4(),
        config: app::tools::ToolConfig {
            enabled: vec![key.clone()],
            ..Default::default()
        },
        team: None,
    };
    let toolbox = app::tools::server::Toolbox::for_agent(ctx).await;
    assert!(toolbox.is_empty());

    // The owner deletes it: gone for them too.
    let res = s.app.call(&owner, "delete_mcp_server", &[("id", id)]).await;
    assert_eq!(res.status(), 200);
    let res = s
        .app
        .call(&owner, "refresh_mcp_server", &[("id", id)])
        .await;
    assert_eq!(res.status(), 404);
}

// ---- agents served as MCP servers (`/mcp/agents/{id}`) ----------------------

/// Turns serving on for `agent`; returns (endpoint, token).
async fn serve_agent(app: &TestApp, client: &Client, agent: &str) -> (String, String) {
    let res = app
        .call(client, "enable_agent_mcp", &[("agent_id", agent)])
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let access: Value = res.json().await.unwrap();
    (
        access["url"].as_str().unwrap().to_owned(),
        access["token"].as_str().unwrap().to_owned(),
    )
}

/// The inspector CLI against `url` in protocol era `era`, as JSON.
async fn inspect(url: &str, token: &str, era: &str, method: &[&str]) -> Value {
    let header = format!("Authorization: Bearer {token}");
    let mut args = vec![
        "--transport",
        "http",
        "--protocol-era",
        era,
        "--format",
        "json",
        "--header",
        header.as_str(),
        // Before the method: `--tool-arg` takes every word after it.
        "--server-url",
        url,
    ];
    args.extend_from_slice(method);
    let (ok, out, err) = peers::inspector(&args).await;
    // `--format json` prints `{"result": …}`; a tool result with `isError`
    // also makes the CLI exit with an error, which is not a failure here.
    let result = out
        .lines()
        .next()
        .and_then(|line| serde_json::from_str::<Value>(line).ok())
        .map(|v| v["result"].clone())
        .filter(|r| !r.is_null());
    match result {
        Some(result) if ok || result["isError"] == true => result,
        _ => panic!("inspector {method:?} ({era}) failed:\n{out}\n{err}"),
    }
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn an_agent_served_over_mcp_answers_the_inspector_in_both_eras(db: PgPool) {
    let s = spawn(db).await;
    let client = s.app.signed_up("mcp-serve@example.com").await;
    let agent = scripted_agent(&s.app, &client, s.fake, "openai", "fake:echo", &[], &[], "").await;

    // Off by default.
    let access: Value = s
        .app
        .call(&client, "agent_mcp_access", &[("agent_id", &agent)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(access["token"], Value::Null, "{access}");
    assert_eq!(access["url"], s.app.url(&format!("/mcp/agents/{agent}")));

    let (url, token) = serve_agent(&s.app, &client, &agent).await;
    assert!(token.starts_with("enclave_mcp_"), "{token}");
    for era in ["legacy", "modern"] {
        let listed = inspect(&url, &token, era, &["--method", "tools/list"]).await;
        let tools = listed["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{listed}"));
        assert_eq!(tools.len(), 1, "{listed}");
        assert_eq!(tools[0]["name"], "ask");
        assert!(
            tools[0]["description"]
                .as_str()
                .unwrap()
                .contains("fake:echo"),
            "the description names the agent: {listed}"
        );
        assert_eq!(tools[0]["inputSchema"]["required"][0], "message");

        let message = format!("message=hello from the {era} era");
        let called = inspect(
            &url,
            &token,
            era,
            &[
                "--method",
                "tools/call",
                "--tool-name",
                "ask",
                "--tool-arg",
                &message,
            ],
        )
        .await;
        assert_ne!(called["isError"], true, "{called}");
        assert_eq!(
            called["content"][0]["text"],
            format!("You said: hello from the {era} era"),
            "{called}"
        );
        assert_eq!(called["structuredContent"]["status"], "complete");

        // The conversation it started continues with its id.
        let conversation = called["structuredContent"]["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let again = inspect(
            &url,
            &token,
            era,
            &[
                "--method",
                "tools/call",
                "--tool-name",
                "ask",
                "--tool-args-json",
                &serde_json::json!({"message": "and again", "conversation_id": conversation})
                    .to_string(),
            ],
        )
        .await;
        assert_eq!(
            again["content"][0]["text"], "You said: and again",
            "{again}"
        );
        assert_eq!(
            again["structuredContent"]["conversation_id"],
            conversation.as_str()
        );
        let c: Value = s
            .app
            .call(&client, "get_conversation", &[("id", &conversation)])
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(c["messages"].as_array().unwrap().len(), 4, "{c}");
        assert_eq!(c["agent_id"], agent.as_str());
    }

    // The owner sees when it was last used.
    let access: Value = s
        .app
        .call(&client, "agent_mcp_access", &[("agent_id", &agent)])
        .await
        .json()
        .await
        .unwrap();
    assert!(access["last_used_at"].is_string(), "{access}");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn enclave_s_own_client_calls_an_agent_served_over_mcp(db: PgPool) {
    // Enclave at both ends, as two server processes on one database: one
    // serves an agent; the other, whose operator allowlisted the first's
    // (loopback) address, has it added as an MCP server with its token as
    // the secret and lets another agent call it.
    let s = spawn(db).await;
    let mut settings = s.app.settings.clone();
    settings
        .egress_allow
        .push(app::platform::egress::AllowEntry::parse(&s.app.addr.to_string()).unwrap());
    let caller = TestApp::spawn_full(s.app.db.clone(), settings, keyring(1, &[])).await;
    let client = s.app.signed_up("mcp-loop@example.com").await;
    let served = scripted_agent(&s.app, &client, s.fake, "openai", "fake:echo", &[], &[], "").await;
    let (url, token) = serve_agent(&s.app, &client, &served).await;
    let res = add_server(
        &caller,
        &client,
        &[
            ("name", "Echo agent"),
            ("url", &url),
            ("auth", "header"),
            ("header_name", ""),
            ("secret", &token),
        ],
    )
    .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let server: Value = res.json().await.unwrap();
    assert_eq!(server["last_error"], Value::Null, "{server}");
    assert_eq!(tool_names(&server), ["ask"]);
    let id = server["id"].as_str().unwrap();
    let key = format!("mcp:{id}:ask");
    let agent = scripted_agent(
        &caller,
        &client,
        s.fake,
        "openai",
        &format!("fake:tool={}", model_name(id, "ask")),
        &[&key],
        &[],
        "",
    )
    .await;
    let started = send_new(&caller, &client, &agent, r#"{"message": "ping"}"#).await;
    let conversation = started["conversation_id"].as_str().unwrap();
    let reply = reply_when(&caller, &client, conversation, "").await;
    assert_eq!(tool_call(&reply)["result"], "You said: ping", "{reply}");
    assert_eq!(tool_call(&reply)["status"], "done", "{reply}");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn an_agent_answers_only_to_its_own_token(db: PgPool) {
    let s = spawn(db).await;
    let client = s.app.signed_up("mcp-token@example.com").await;
    let first = scripted_agent(&s.app, &client, s.fake, "openai", "fake:echo", &[], &[], "").await;
    let second = scripted_agent(&s.app, &client, s.fake, "openai", "fake:echo", &[], &[], "").await;
    let (url, token) = serve_agent(&s.app, &client, &first).await;
    let http = Client::new();
    let list = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}});
    let post = |url: String, token: Option<String>| {
        let http = http.clone();
        let list = list.clone();
        async move {
            let mut req = http
                .post(url)
                .header("accept", "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-11-25")
                .json(&list);
            if let Some(token) = token {
                req = req.bearer_auth(token);
            }
            req.send().await.unwrap()
        }
    };
    // No token, a wrong one, a session token: 401, saying which header.
    for wrong in [
        None,
        Some("enclave_mcp_nope".to_owned()),
        Some("abc".to_owned()),
    ] {
        let res = post(url.clone(), wrong).await;
        assert_eq!(res.status(), 401);
        assert!(
            res.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
    // The right token works.
    let res = post(url.clone(), Some(token.clone())).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    // The token of one agent opens no other: the second agent (served or
    // not) and another user's agent are not found.
    let second_url = s.app.url(&format!("/mcp/agents/{second}"));
    assert_eq!(
        post(second_url.clone(), Some(token.clone())).await.status(),
        404
    );
    let (_, second_token) = serve_agent(&s.app, &client, &second).await;
    assert_eq!(post(url.clone(), Some(second_token)).await.status(), 404);
    let other = s.app.signed_up("mcp-token-other@example.com").await;
    let theirs = scripted_agent(&s.app, &other, s.fake, "openai", "fake:echo", &[], &[], "").await;
    let their_url = s.app.url(&format!("/mcp/agents/{theirs}"));
    assert_eq!(post(their_url, Some(token.clone())).await.status(), 404);
    // Their server functions find nothing of mine.
    for name in ["agent_mcp_access", "enable_agent_mcp", "disable_agent_mcp"] {
        let res = s.app.call(&other, name, &[("agent_id", &first)]).await;
        assert_eq!(res.status(), 404, "{name}");
    }
    assert_eq!(post(url.clone(), Some(token.clone())).await.status(), 200);

    // A new token retires the old one; stopping retires every one.
    let (_, renewed) = serve_agent(&s.app, &client, &first).await;
    assert_ne!(renewed, token);
    assert_eq!(post(url.clone(), Some(token)).await.status(), 401);
    assert_eq!(post(url.clone(), Some(renewed.clone())).await.status(), 200);
    let res = s
        .app
        .call(&client, "disable_agent_mcp", &[("agent_id", &first)])
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(post(url.clone(), Some(renewed.clone())).await.status(), 401);

    // Sealed at rest, found by its hash alone.
    let (_, token) = serve_agent(&s.app, &client, &first).await;
    let stored: Vec<u8> =
        sqlx::query_scalar("SELECT token FROM agent_mcp_tokens WHERE agent_id = $1::uuid")
            .bind(&first)
            .fetch_one(&s.app.db)
            .await
            .unwrap();
    assert!(!String::from_utf8_lossy(&stored).contains(&token));
    // Deleting the agent ends it.
    let res = s
        .app
        .call(
            &client,
            "delete_agent",
            &[("id", &first), ("confirm", "yes")],
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    assert_eq!(post(url, Some(token)).await.status(), 401);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn bad_calls_to_a_served_agent_get_plain_errors(db: PgPool) {
    let s = spawn(db).await;
    let client = s.app.signed_up("mcp-serve-bad@example.com").await;
    let agent = scripted_agent(&s.app, &client, s.fake, "openai", "fake:echo", &[], &[], "").await;
    let (url, token) = serve_agent(&s.app, &client, &agent).await;
    let call = |args: Value| {
        let (url, token) = (url.clone(), token.clone());
        async move {
            let json = args.to_string();
            inspect(
                &url,
                &token,
                "modern",
                &[
                    "--method",
                    "tools/call",
                    "--tool-name",
                    "ask",
                    "--tool-args-json",
                    &json,
                ],
            )
            .await
        }
    };
    for (args, expected) in [
        (serde_json::json!({}), "Pass the message"),
        (serde_json::json!({"message": "  "}), "message"),
        (
            serde_json::json!({"message": "hi", "conversation_id": "nope"}),
            "There is no conversation with that id.",
        ),
        (
            serde_json::json!({"message": "hi", "conversation_id": uuid::Uuid::new_v4().to_string()}),
            "There is no conversation with that id.",
        ),
    ] {
        let result = call(args.clone()).await;
        assert_eq!(result["isError"], true, "{args}: {result}");
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(text.contains(expected), "{args}: {text}");
    }
    // Another user's conversation is not found either.
    let other = s.app.signed_up("mcp-serve-bad-other@example.com").await;
    let theirs = scripted_agent(&s.app, &other, s.fake, "openai", "fake:echo", &[], &[], "").await;
    let started = send_new(&s.app, &other, &theirs, "private").await;
    let result = call(serde_json::json!({
        "message": "hi",
        "conversation_id": started["conversation_id"],
    }))
    .await;
    assert_eq!(result["isError"], true, "{result}");
    assert_eq!(
        result["content"][0]["text"],
        "There is no conversation with that id."
    );

    // A provider failure comes back as the reply's error, not a crash.
    let failing = scripted_agent(
        &s.app,
        &client,
        s.fake,
        "openai",
        "fake:status=500",
        &[],
        &[],
        "",
    )
    .await;
    let (url, token) = serve_agent(&s.app, &client, &failing).await;
    let result = inspect(
        &url,
        &token,
        "legacy",
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "ask",
            "--tool-arg",
            "message=hi",
        ],
    )
    .await;
    assert_eq!(result["isError"], true, "{result}");
    assert!(!result["content"][0]["text"].as_str().unwrap().is_empty());
    // An unknown tool is a protocol error.
    let header = format!("Authorization: Bearer {token}");
    let (ok, _, _) = peers::inspector(&[
        "--transport",
        "http",
        "--format",
        "json",
        "--header",
        &header,
        "--method",
        "tools/call",
        "--tool-name",
        "nope",
        &url,
    ])
    .await;
    assert!(!ok);
}

// ---- OAuth (`server::fake_oauth`) -------------------------------------------

/// Plays the browser through a sign-in the app started: to the
/// authorization server at `location`, which signs in at once and sends it
/// back to Enclave's callback. Returns the callback's answer.
async fn sign_in_at(s: &Setup, client: &Client, location: &str) -> reqwest::Response {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let at_server = browser.get(location).send().await.unwrap();
    assert_eq!(
        at_server.status(),
        303,
        "the authorization server refused: {}",
        at_server.text().await.unwrap()
    );
    let back = at_server.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        back.starts_with(&s.app.url("/settings/mcp/oauth/callback?")),
        "{back}"
    );
    client.get(back).send().await.unwrap()
}

/// Adds the OAuth server for `client` and signs in; returns its view.
async fn add_oauth_server(s: &Setup, client: &Client) -> Value {
    let url = s.fake_url("oauth");
    let res = add_server(
        &s.app,
        client,
        &[("name", "Protected"), ("url", &url), ("auth", "oauth")],
    )
    .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let location = res
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("no redirect to sign in: {:?}", res.headers()))
        .to_str()
        .unwrap()
        .to_owned();
    let server: Value = res.json().await.unwrap();
    assert_eq!(server["signed_in"], false, "{server}");
    let authorize = url::Url::parse(&location).unwrap();
    let query: std::collections::HashMap<_, _> = authorize.query_pairs().into_owned().collect();
    assert_eq!(authorize.path(), "/oauth/authorize", "{location}");
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["resource"], url);
    assert!(query["client_id"].starts_with("fake-client-"));
    let back = sign_in_at(s, client, &location).await;
    assert_eq!(back.status(), 303, "{}", back.text().await.unwrap());
    assert_eq!(back.headers()["location"], "/settings/mcp");
    let list: Value = s
        .app
        .call(client, "list_mcp_servers", &[])
        .await
        .json()
        .await
        .unwrap();
    let server = list
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == server["id"])
        .unwrap()
        .clone();
    assert_eq!(server["signed_in"], true, "{server}");
    assert_eq!(server["last_error"], Value::Null, "{server}");
    assert!(
        tool_names(&server).contains(&"whoami".to_owned()),
        "{server}"
    );
    server
}

async fn whoami(s: &Setup, client: &Client, server: &Value) -> Value {
    let reply = call_through_agent(s, client, server, "whoami", "{}").await;
    tool_call(&reply)
}

async fn oauth_seen(s: &Setup) -> Vec<String> {
    reqwest::get(format!("http://{}/oauth/seen", s.fake))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn an_oauth_server_is_signed_in_to_and_its_tokens_refreshed_and_kept_per_user(db: PgPool) {
    let s = spawn(db).await;
    let ada = s.app.signed_up("mcp-oauth-ada@example.com").await;
    let server = add_oauth_server(&s, &ada).await;
    // Registration, then the code exchange (with the verifier and the
    // resource, or the fake would have refused).
    assert_eq!(oauth_seen(&s).await, ["register", "authorization_code"]);
    let call = whoami(&s, &ada, &server).await;
    assert_eq!(call["status"], "done", "{call}");
    assert_eq!(call["result"], "user-1");

    // The access token lives two seconds: the next call refreshes it.
    tokio::time::sleep(server::fake_oauth::ACCESS_TTL + std::time::Duration::from_millis(200))
        .await;
    let call = whoami(&s, &ada, &server).await;
    assert_eq!(call["result"], "user-1", "{call}");
    assert!(
        oauth_seen(&s).await.contains(&"refresh_token".to_owned()),
        "{:?}",
        oauth_seen(&s).await
    );

    // Another user signs in as someone else; each call uses its own user's
    // token, never the other's.
    let bob = s.app.signed_up("mcp-oauth-bob@example.com").await;
    let bobs = add_oauth_server(&s, &bob).await;
    assert_eq!(whoami(&s, &bob, &bobs).await["result"], "user-2");
    assert_eq!(whoami(&s, &ada, &server).await["result"], "user-1");
    // And neither can use the other's server.
    let res = s
        .app
        .call(
            &bob,
            "sign_in_mcp_server",
            &[("id", server["id"].as_str().unwrap())],
        )
        .await;
    assert_eq!(res.status(), 404);

    // The tokens and the registration are sealed.
    let stored: Vec<(Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT oauth_client, oauth_tokens FROM mcp_servers")
            .fetch_all(&s.app.db)
            .await
            .unwrap();
    assert_eq!(stored.len(), 2);
    for (client, tokens) in stored {
        for bytes in [client, tokens] {
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains("fake-"), "plaintext OAuth data: {text}");
        }
    }
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn an_oauth_callback_is_only_its_own_user_s_and_a_refusal_is_shown(db: PgPool) {
    let s = spawn(db).await;
    let ada = s.app.signed_up("mcp-oauth-cb@example.com").await;
    let url = s.fake_url("oauth");
    let res = add_server(
        &s.app,
        &ada,
        &[("name", "Protected"), ("url", &url), ("auth", "oauth")],
    )
    .await;
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let server: Value = res.json().await.unwrap();
    let state = url::Url::parse(&location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();

    // Not signed in, its tools cannot be listed; the reason says what to do.
    let refreshed: Value = s
        .app
        .call(
            &ada,
            "refresh_mcp_server",
            &[("id", server["id"].as_str().unwrap())],
        )
        .await
        .json()
        .await
        .unwrap();
    let error = refreshed["last_error"].as_str().unwrap();
    assert!(error.contains("Sign in to 127.0.0.1 again"), "{error}");

    // Someone else's browser coming back with Ada's state finds nothing,
    // and neither does a made-up state.
    let eve = s.app.signed_up("mcp-oauth-eve@example.com").await;
    let callback = |state: &str, extra: &str| {
        s.app.url(&format!(
            "/settings/mcp/oauth/callback?state={state}{extra}"
        ))
    };
    let res = eve.get(callback(&state, "&code=x")).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let res = ada
        .get(callback("made-up", "&code=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // Signed out: to the sign-in page.
    let res = s
        .app
        .client()
        .get(callback(&state, "&code=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);

    // The user said no at the server: the reason shows beside it.
    let res = ada
        .get(callback(&state, "&error=access_denied"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let list: Value = s
        .app
        .call(&ada, "list_mcp_servers", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["signed_in"], false);
    assert_eq!(
        list[0]["last_error"],
        "The sign-in to 127.0.0.1 was refused or cancelled."
    );
    // The state is spent.
    let res = ada.get(callback(&state, "&code=x")).send().await.unwrap();
    assert_eq!(res.status(), 404);

    // "Sign in" starts again, and this time it works.
    let res = s
        .app
        .call(
            &ada,
            "sign_in_mcp_server",
            &[("id", server["id"].as_str().unwrap())],
        )
        .await;
    assert_eq!(res.status(), 200);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let back = sign_in_at(&s, &ada, &location).await;
    assert_eq!(back.status(), 303);
    assert_eq!(whoami(&s, &ada, &server).await["result"], "user-1");
    // Registered once: the second sign-in reused the client.
    assert_eq!(
        oauth_seen(&s)
            .await
            .iter()
            .filter(|g| *g == "register")
            .count(),
        1
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_server_without_oauth_metadata_gets_a_plain_error(db: PgPool) {
    let s = spawn(db).await;
    let client = s.app.signed_up("mcp-oauth-none@example.com").await;
    let res = add_server(
        &s.app,
        &client,
        &[
            ("name", "Open"),
            ("url", &s.fake_url("open")),
            ("auth", "oauth"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("location").is_none());
    let server: Value = res.json().await.unwrap();
    let error = server["last_error"].as_str().unwrap();
    assert!(error.contains("OAuth metadata"), "{error}");
}
