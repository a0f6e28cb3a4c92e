//! The tool loop end to end: the fake provider scripted to call tools (in
//! each provider's wire format), Enclave running them and giving the results
//! back, the parts stored sealed and streamed, Stop during a call, the step
//! limit, failures passed to the model, and the audit.

use std::time::Duration;

use crate::common::{TestApp, keyring, relaxed_settings, with_fake_provider};
use app::{agents::domain::Provider, platform::settings::PlatformKeys};
use reqwest::Client;
use serde_json::{Value, json};
use sqlx::PgPool;

struct Tooled {
    app: TestApp,
    fake: std::net::SocketAddr,
}

async fn spawn(db: PgPool) -> Tooled {
    let fake = server::fake_provider::start().await.unwrap();
    let keys = [Provider::Openai, Provider::Anthropic, Provider::Google]
        .into_iter()
        .map(|p| (p, "platform-key".to_owned()))
        .collect();
    let settings = app::platform::Settings {
        platform_keys: PlatformKeys::new(keys),
        ..relaxed_settings()
    };
    let app = TestApp::spawn_full(db, with_fake_provider(settings, fake), keyring(1, &[])).await;
    Tooled { app, fake }
}

/// An agent with `tools` enabled and the fake model scripted.
async fn agent(
    t: &Tooled,
    client: &Client,
    provider: &str,
    script: &str,
    tools: &[&str],
    step_limit: &str,
) -> String {
    crate::common::scripted_agent(
        &t.app,
        client,
        t.fake,
        provider,
        script,
        tools,
        &[],
        step_limit,
    )
    .await
}

async fn send(t: &Tooled, client: &Client, agent: &str, text: &str) -> Value {
    let res = t
        .app
        .call(
            client,
            "send_message",
            &[("agent_id", agent), ("message", text)],
        )
        .await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// The conversation once its reply is no longer streaming.
async fn settled(t: &Tooled, client: &Client, conversation: &str) -> Value {
    for _ in 0..400 {
        let res = t
            .app
            .call(client, "get_conversation", &[("id", conversation)])
            .await;
        let c: Value = res.json().await.unwrap();
        if c["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] != "streaming")
        {
            return c;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the reply never settled");
}

/// The kinds of a reply's parts, as `text:…` and `call:tool:status`.
fn shape(reply: &Value) -> Vec<String> {
    reply["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| match p["type"].as_str().unwrap() {
            "text" => format!("text:{}", p["text"].as_str().unwrap()),
            _ => format!(
                "call:{}:{}",
                p["tool"].as_str().unwrap(),
                p["status"].as_str().unwrap()
            ),
        })
        .collect()
}

const SIX_TIMES_SEVEN: &str = r#"{"expression":"6*7"}"#;

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_tool_call_runs_and_the_model_answers_with_its_result_on_every_provider(db: PgPool) {
    let t = spawn(db).await;
    let client = t.app.signed_up("loop@example.com").await;
    let mut model_calls = 0;
    for provider in ["openai", "anthropic", "google", "openai_compatible"] {
        let agent = agent(
            &t,
            &client,
            provider,
            "fake:tool=calculator",
            &["calculator"],
            "",
        )
        .await;
        let sent = send(&t, &client, &agent, SIX_TIMES_SEVEN).await;
        let c = settled(&t, &client, sent["conversation_id"].as_str().unwrap()).await;
        let reply = &c["messages"][1];
        assert_eq!(reply["status"], "complete", "{provider}: {reply}");
        assert_eq!(
            shape(reply),
            vec![
                "text:Hello from the fake model.",
                "call:calculator:done",
                "text:The tools said: 6*7 = 42",
            ],
            "{provider}"
        );
        assert_eq!(reply["parts"][1]["result"], "6*7 = 42");
        assert_eq!(
            serde_json::from_str::<Value>(reply["parts"][1]["arguments"].as_str().unwrap())
                .unwrap(),
            json!({"expression": "6*7"})
        );
        // The loop asked the model twice (the call, then the answer): a
        // usage entry for each.
        model_calls += 2;
        assert_eq!(
            t.app.count("SELECT count(*) FROM usage_entries").await,
            model_calls,
            "{provider}"
        );
        assert_eq!(
            reply["body"], "Hello from the fake model.The tools said: 6*7 = 42",
            "the body is the reply's text"
        );
        // Usage adds up both steps.
        assert!(reply["output_tokens"].as_u64().unwrap() > 5, "{provider}");
    }
}

const PROVIDERS: [&str; 4] = ["openai", "anthropic", "google", "openai_compatible"];

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn independent_calls_run_together_and_a_failing_one_goes_back_to_the_model(db: PgPool) {
    let t = spawn(db).await;
    let client = t.app.signed_up("parallel@example.com").await;
    for provider in PROVIDERS {
        let agent = agent(
            &t,
            &client,
            provider,
            "fake:tool=calculator+current_time",
            &["calculator", "current_time"],
            "",
        )
        .await;
        let sent = send(&t, &client, &agent, SIX_TIMES_SEVEN).await;
        let c = settled(&t, &client, sent["conversation_id"].as_str().unwrap()).await;
        let reply = &c["messages"][1];
        assert_eq!(
            shape(reply)[1..3],
            ["call:calculator:done", "call:current_time:done"],
            "{provider}"
        );
        let last = reply["parts"][3]["text"].as_str().unwrap();
        assert!(
            last.starts_with("The tools said: 6*7 = 42 / "),
            "{provider}: {last}"
        );

        // A call that fails: its error is the result the model reads.
        let agent = agent_with(&t, &client, provider, "fake:tool=calculator,reply=Checking").await;
        let sent = send(&t, &client, &agent, r#"{"expression":"sin(1)"}"#).await;
        let c = settled(&t, &client, sent["conversation_id"].as_str().unwrap()).await;
        let reply = &c["messages"][1];
        assert_eq!(reply["status"], "complete", "{provider}");
        assert_eq!(reply["parts"][1]["status"], "failed", "{provider}");
        let error = reply["parts"][1]["error"].as_str().unwrap();
        assert!(error.contains("Only numbers"), "{provider}: {error}");
        assert!(
            reply["parts"][2]["text"]
                .as_str()
                .unwrap()
                .contains("Only numbers"),
            "{provider}: the model was told"
        );
    }
}

async fn agent_with(t: &Tooled, client: &Client, provider: &str, script: &str) -> String {
    agent(t, client, provider, script, &["calculator"], "").await
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_step_limit_ends_a_model_that_keeps_calling_tools(db: PgPool) {
    let t = spawn(db).await;
    let client = t.app.signed_up("limit@example.com").await;
    for provider in PROVIDERS {
        let agent = agent(
            &t,
            &client,
            provider,
            "fake:tool=calculator,loop",
            &["calculator"],
            "3",
        )
        .await;
        let sent = send(&t, &client, &agent, SIX_TIMES_SEVEN).await;
        let c = settled(&t, &client, sent["conversation_id"].as_str().unwrap()).await;
        let reply = &c["messages"][1];
        let calls = shape(reply)
            .iter()
            .filter(|p| p.starts_with("call:"))
            .count();
        assert_eq!(
            calls, 2,
            "{provider}: two rounds of calls, then the third step is the last"
        );
        assert!(
            reply["body"]
                .as_str()
                .unwrap()
                .contains("Stopped after 3 steps")
        );
    }
}

/// Sends a call of the web request tool to the fake's slow page and waits
/// until it is seen running (checkpointed). Returns (conversation, reply).
async fn slow_call(t: &Tooled, client: &Client, provider: &str) -> (String, String) {
    let agent = agent(
        t,
        client,
        provider,
        "fake:tool=http_request",
        &["http_request"],
        "",
    )
    .await;
    let slow = json!({"url": format!("http://{}/slow", t.fake)}).to_string();
    let sent = send(t, client, &agent, &slow).await;
    let conversation = sent["conversation_id"].as_str().unwrap().to_owned();
    for _ in 0..200 {
        let c: Value = t
            .app
            .call(client, "get_conversation", &[("id", conversation.as_str())])
            .await
            .json()
            .await
            .unwrap();
        if c["messages"][1]["parts"][1]["status"] == "running" {
            return (conversation, sent["reply_id"].as_str().unwrap().to_owned());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{provider}: the call was never seen running");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn stop_during_a_call_cancels_it_at_once(db: PgPool) {
    let t = spawn(db).await;
    let client = t.app.signed_up("stopcall@example.com").await;
    for provider in PROVIDERS {
        let (conversation, reply_id) = slow_call(&t, &client, provider).await;
        let started = std::time::Instant::now();
        assert_eq!(
            t.app
                .call(&client, "stop_reply", &[("message_id", reply_id.as_str())])
                .await
                .status(),
            200
        );
        let c = settled(&t, &client, &conversation).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{provider}: not after the 20 s call"
        );
        let reply = &c["messages"][1];
        assert_eq!(reply["status"], "stopped", "{provider}");
        assert_eq!(reply["parts"][1]["status"], "cancelled", "{provider}");
    }
    // The audit says so too.
    let mut cancelled = 0;
    for _ in 0..100 {
        cancelled = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM tool_calls WHERE status = 'cancelled'",
        )
        .fetch_one(&t.app.db)
        .await
        .unwrap();
        if cancelled == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(cancelled, 4);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_restart_mid_loop_keeps_how_far_the_reply_got(db: PgPool) {
    let mut t = spawn(db.clone()).await;
    let client = t.app.signed_up("restart-loop@example.com").await;
    let mut replies = Vec::new();
    for provider in PROVIDERS {
        replies.push(slow_call(&t, &client, provider).await);
    }
    // SIGTERM while the calls run.
    tokio::time::timeout(Duration::from_secs(20), t.app.shut_down())
        .await
        .expect("the server stopped without waiting for the calls");
    let again = TestApp::spawn(db).await;
    let client = again.client();
    assert_eq!(
        again
            .sign_in(&client, "restart-loop@example.com", crate::common::PASSWORD)
            .await
            .status(),
        200
    );
    for (conversation, _) in replies {
        let c: Value = again
            .call(
                &client,
                "get_conversation",
                &[("id", conversation.as_str())],
            )
            .await
            .json()
            .await
            .unwrap();
        let reply = &c["messages"][1];
        assert_eq!(reply["status"], "interrupted");
        assert!(
            reply["error"]
                .as_str()
                .unwrap()
                .contains("server writing this reply stopped")
        );
        assert_eq!(
            shape(reply),
            vec![
                "text:Hello from the fake model.",
                "call:http_request:cancelled"
            ],
            "the stored reply shows how far it got"
        );
    }
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_web_request_tool_reads_pages_and_keeps_to_its_limits(db: PgPool) {
    let t = spawn(db).await;
    let client = t.app.signed_up("web@example.com").await;
    let agent = agent(
        &t,
        &client,
        "openai",
        "fake:tool=http_request",
        &["http_request"],
        "",
    )
    .await;
    let page = json!({"url": format!("http://{}/page", t.fake)}).to_string();
    let sent = send(&t, &client, &agent, &page).await;
    let c = settled(&t, &client, sent["conversation_id"].as_str().unwrap()).await;
    let result = c["messages"][1]["parts"][1]["result"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(result.starts_with("HTTP 200"), "{result}");
    assert!(
        result.contains("Opening hours") && result.contains("9 to 5"),
        "{result}"
    );
    assert!(
        !result.contains("<p>") && !result.contains("hidden"),
        "text, not HTML: {result}"
    );

    // A private address is refused, for its reason, and the model is told.
    let private = json!({"url": "http://169.254.169.254/latest/meta-data/"}).to_string();
    let sent = send(&t, &client, &agent, &private).await;
    let c = settled(&t, &client, sent["conversation_id"].as_str().unwrap()).await;
    let call = &c["messages"][1]["parts"][1];
    assert_eq!(call["status"], "failed");
    assert!(
        call["error"]
            .as_str()
            .unwrap()
            .contains("private, local or reserved"),
        "{call}"
    );

    // The audit: the host and sizes, never the page or the arguments.
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT status, bytes_sent, bytes_received FROM tool_calls ORDER BY created_at",
    )
    .fetch_all(&t.app.db)
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].0, "done");
    assert!(rows[0].1 > 0 && rows[0].2 > 100, "{rows:?}");
    assert_eq!(rows[1].0, "failed");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn an_agent_limited_to_some_hosts_reaches_only_those(db: PgPool) {
    let t = spawn(db).await;
    let client = t.app.signed_up("hosts@example.com").await;
    let form = [
        ("name", "Limited"),
        ("description", ""),
        ("system_prompt", ""),
        ("provider", "openai"),
        ("model", "fake:tool=http_request"),
        ("base_url", ""),
        ("temperature", ""),
        ("top_p", ""),
        ("max_output_tokens", ""),
        ("avatar", ""),
        ("tools[]", "http_request"),
        ("allowed_hosts", "api.example.com, docs.example.com"),
    ];
    assert_eq!(
        t.app.call(&client, "create_agent", &form).await.status(),
        200
    );
    let list: Value = t
        .app
        .call(&client, "list_agents", &[])
        .await
        .json()
        .await
        .unwrap();
    let agent = list[0]["id"].as_str().unwrap().to_owned();
    let detail: Value = t
        .app
        .call(&client, "get_agent", &[("id", agent.as_str())])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        detail["spec"]["tools"]["allowed_hosts"],
        json!(["api.example.com", "docs.example.com"])
    );
    // The export carries the tool settings (and no connection ids).
    let export: Value = client
        .get(t.app.url(&format!("/api/agents/{agent}/export")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(export["tools"]["enabled"], json!(["http_request"]));
    assert_eq!(export["tools"]["step_limit"], 8);
    assert_eq!(export["tools"]["connections"], json!({}));
    let page = json!({"url": format!("http://{}/page", t.fake)}).to_string();
    let sent = send(&t, &client, &agent, &page).await;
    let c = settled(&t, &client, sent["conversation_id"].as_str().unwrap()).await;
    let call = &c["messages"][1]["parts"][1];
    assert_eq!(call["status"], "failed");
    assert!(
        call["error"].as_str().unwrap().contains("may only reach"),
        "{call}"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_loop_is_checkpointed_as_it_goes(db: PgPool) {
    let t = spawn(db).await;
    let client = t.app.signed_up("checkpoint-loop@example.com").await;
    // Each step streams slowly: a word every 400 ms.
    let agent = agent(
        &t,
        &client,
        "openai",
        "fake:tool=calculator,delay_ms=400",
        &["calculator"],
        "",
    )
    .await;
    let sent = send(&t, &client, &agent, SIX_TIMES_SEVEN).await;
    let reply = uuid::Uuid::parse_str(sent["reply_id"].as_str().unwrap()).unwrap();
    // While the second step still streams, the stored row already holds the
    // finished call: a crash now would show how far the reply got.
    let mut seen = false;
    for _ in 0..200 {
        let (status, has_parts): (String, bool) =
            sqlx::query_as("SELECT status, parts IS NOT NULL FROM messages WHERE id = $1")
                .bind(reply)
                .fetch_one(&t.app.db)
                .await
                .unwrap();
        if status == "streaming" && has_parts {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the parts were checkpointed while the reply streamed");
    settled(&t, &client, sent["conversation_id"].as_str().unwrap()).await;
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_demo_model_calls_a_tool(db: PgPool) {
    let mut settings = relaxed_settings();
    server::enable_demo_model(&mut settings).await.unwrap();
    let app = TestApp::spawn_full(db, settings, keyring(1, &[])).await;
    let client = app.signed_up("demo-tool@example.com").await;
    let form = [
        ("name", "Demo"),
        ("description", ""),
        ("system_prompt", ""),
        ("provider", "demo"),
        ("model", "demo"),
        ("base_url", ""),
        ("temperature", ""),
        ("top_p", ""),
        ("max_output_tokens", ""),
        ("avatar", ""),
        ("tools[]", "calculator"),
        ("tools[]", "current_time"),
    ];
    assert_eq!(app.call(&client, "create_agent", &form).await.status(), 200);
    let list: Value = app
        .call(&client, "list_agents", &[])
        .await
        .json()
        .await
        .unwrap();
    let agent = list[0]["id"].as_str().unwrap().to_owned();
    let res = app
        .call(
            &client,
            "send_message",
            &[("agent_id", agent.as_str()), ("message", "What is 6*7?")],
        )
        .await;
    let sent: Value = res.json().await.unwrap();
    let conversation = sent["conversation_id"].as_str().unwrap().to_owned();
    let mut reply = Value::Null;
    for _ in 0..400 {
        let c: Value = app
            .call(
                &client,
                "get_conversation",
                &[("id", conversation.as_str())],
            )
            .await
            .json()
            .await
            .unwrap();
        if c["messages"][1]["status"] == "complete" {
            reply = c["messages"][1].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reply["parts"][1]["tool"], "calculator", "{reply}");
    assert_eq!(reply["parts"][1]["result"], "6*7 = 42");
    assert!(
        reply["body"]
            .as_str()
            .unwrap()
            .contains("The tool answered: 6*7 = 42")
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn tool_activity_lists_each_call_for_its_user_and_is_kept_90_days(db: PgPool) {
    let t = spawn(db).await;
    let client = t.app.signed_up("activity@example.com").await;
    let agent = agent(
        &t,
        &client,
        "openai",
        "fake:tool=http_request",
        &["http_request"],
        "",
    )
    .await;
    let page = json!({"url": format!("http://{}/page", t.fake)}).to_string();
    let sent = send(&t, &client, &agent, &page).await;
    settled(&t, &client, sent["conversation_id"].as_str().unwrap()).await;
    let mut rows = Value::Null;
    for _ in 0..100 {
        rows = t
            .app
            .call(&client, "list_tool_activity", &[])
            .await
            .json()
            .await
            .unwrap();
        if rows.as_array().is_some_and(|r| !r.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let row = &rows[0];
    assert_eq!(row["tool"], "http_request");
    assert_eq!(row["target"], "127.0.0.1");
    assert_eq!(row["status"], "done");
    assert!(row["bytes_received"].as_i64().unwrap() > 100);
    assert!(
        !row.to_string().contains("Opening hours"),
        "never the content"
    );
    // Another user sees none of it.
    let other = t.app.signed_up("other-activity@example.com").await;
    let theirs: Value = t
        .app
        .call(&other, "list_tool_activity", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs, json!([]));
    // After 90 days the retention job takes it.
    assert_eq!(
        app::data::retention::server::run(&t.app.db, &Default::default())
            .await
            .unwrap()
            .tool_calls,
        0
    );
    sqlx::query("UPDATE tool_calls SET created_at = now() - interval '91 days'")
        .execute(&t.app.db)
        .await
        .unwrap();
    assert_eq!(
        app::data::retention::server::run(&t.app.db, &Default::default())
            .await
            .unwrap()
            .tool_calls,
        1
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_call_that_takes_too_long_fails_with_the_reason(db: PgPool) {
    let fake = server::fake_provider::start().await.unwrap();
    let settings = app::platform::Settings {
        platform_keys: PlatformKeys::new([(Provider::Openai, "platform-key".to_owned())].into()),
        tool_timeout: Duration::from_secs(1),
        ..relaxed_settings()
    };
    let app = TestApp::spawn_full(db, with_fake_provider(settings, fake), keyring(1, &[])).await;
    let t = Tooled { app, fake };
    let client = t.app.signed_up("timeout@example.com").await;
    let agent = agent(
        &t,
        &client,
        "openai",
        "fake:tool=http_request",
        &["http_request"],
        "",
    )
    .await;
    let slow = json!({"url": format!("http://{}/slow", t.fake)}).to_string();
    let sent = send(&t, &client, &agent, &slow).await;
    let c = settled(&t, &client, sent["conversation_id"].as_str().unwrap()).await;
    let call = &c["messages"][1]["parts"][1];
    assert_eq!(call["status"], "failed");
    assert_eq!(call["error"], "The tool did not finish within 1 second.");
    assert_eq!(c["messages"][1]["status"], "complete", "the model went on");
}
