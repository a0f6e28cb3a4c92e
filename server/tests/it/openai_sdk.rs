//! The official `openai` SDKs, npm and PyPI, as real clients of `/v1`: each
//! lists the agents, asks for a reply with and without streaming (usage
//! included), and meets a bad key, an unknown model, a rate limit and a
//! provider failing mid-stream. The client scripts (`sdk/`) only call and
//! report; the checks are here.

use std::path::PathBuf;

use serde_json::Value;
use sqlx::PgPool;

use crate::common::{TestApp, chat_settings, keyring, ok_json, peers, scripted_agent};

const LIMIT: u32 = 10;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/sdk")
        .join(name)
}

/// Runs a client script against a fresh app; what it printed.
async fn run_client(
    db: PgPool,
    program: PathBuf,
    client_script: &str,
    extra: &[(&str, String)],
) -> (Value, String) {
    let fake = server::fake_provider::start().await.unwrap();
    let settings = app::platform::settings::Settings {
        api_requests_per_key: app::platform::settings::Limit::new(LIMIT, 60),
        ..chat_settings(fake)
    };
    let app = TestApp::spawn_full(db, settings, keyring(1, &[])).await;
    let client = app.signed_up("sdk@example.com").await;
    let agent = scripted_agent(&app, &client, fake, "openai", "fake:echo", &[], &[], "").await;
    let failing = scripted_agent(
        &app,
        &client,
        fake,
        "openai",
        "fake:tokens=10,error_after=4",
        &[],
        &[],
        "",
    )
    .await;
    let create = |name: &'static str| {
        let app = &app;
        let client = &client;
        async move {
            let form = [
                ("name", name),
                ("scopes[]", "chat"),
                ("scopes[]", "agents:read"),
                ("expires", "30"),
            ];
            ok_json(app.call(client, "create_api_key", &form).await).await["secret"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let secret = create("SDK").await;
    let limited = create("Limited").await;
    for _ in 0..LIMIT {
        let res = reqwest::Client::new()
            .get(app.url("/v1/models"))
            .bearer_auth(&limited)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let mut env = vec![
        ("ENCLAVE_URL", app.url("")),
        ("ENCLAVE_KEY", secret),
        ("ENCLAVE_LIMITED_KEY", limited),
        ("ENCLAVE_MODEL", agent.clone()),
        ("ENCLAVE_FAILING_MODEL", failing),
    ];
    env.extend(extra.iter().cloned());
    let (ok, stdout, stderr) = peers::run(program, &[script(client_script).into()], &env).await;
    assert!(ok, "the client failed:\n{stderr}\n{stdout}");
    (serde_json::from_str(stdout.trim()).unwrap(), agent)
}

/// What both SDKs must have seen.
fn check(out: &Value, agent: &str, said: &str) {
    assert!(
        out["models"].as_array().unwrap().iter().any(|m| m == agent),
        "{out}"
    );
    let completion = &out["completion"];
    assert_eq!(
        completion["content"],
        format!("You said: Hello from {said}")
    );
    assert_eq!(completion["finish"], "stop");
    assert_eq!(completion["usage"]["prompt_tokens"], 11);
    assert!(completion["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let stream = &out["stream"];
    assert_eq!(stream["text"], format!("You said: Stream to {said}"));
    assert_eq!(stream["finish"], "stop");
    assert_eq!(stream["usage"]["prompt_tokens"], 11);
    assert!(stream["chunks"].as_u64().unwrap() > 3, "{stream}");
    assert_eq!(out["bad_key"]["status"], 401, "{out}");
    assert_eq!(out["bad_key"]["code"], "invalid_api_key");
    assert_eq!(out["unknown_model"]["status"], 404);
    assert_eq!(out["unknown_model"]["code"], "model_not_found");
    assert_eq!(out["rate_limited"]["status"], 429);
    assert_eq!(out["rate_limited"]["code"], "rate_limit_exceeded");
    // An error inside a 200 stream reaches the SDK as an APIError.
    assert_eq!(out["failed_stream"]["code"], "upstream_error", "{out}");
    assert!(out["failed_stream"]["ok"].is_null());
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_openai_npm_sdk_chats_with_an_agent(db: PgPool) {
    let module = peers::modules().join("openai");
    let (out, agent) = run_client(
        db,
        peers::node(),
        "openai_client.cjs",
        &[("OPENAI_MODULE", module.display().to_string())],
    )
    .await;
    check(&out, &agent, "node");
    assert_eq!(out["bad_key"]["name"], "AuthenticationError");
    assert_eq!(out["unknown_model"]["name"], "NotFoundError");
    assert_eq!(out["rate_limited"]["name"], "RateLimitError");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_openai_python_sdk_chats_with_an_agent(db: PgPool) {
    let (out, agent) = run_client(db, peers::python(), "openai_client.py", &[]).await;
    check(&out, &agent, "python");
    assert_eq!(out["bad_key"]["name"], "AuthenticationError");
    assert_eq!(out["unknown_model"]["name"], "NotFoundError");
    assert_eq!(out["rate_limited"]["name"], "RateLimitError");
}
