//! An OpenAPI-driven fuzz of every `/api/v1` route with schemathesis (PyPI,
//! `.ci/peers/python`): generated requests, valid and not, with a key of
//! every scope. No answer may be a 5xx, or break the document's own
//! promises (content type, response schema), or carry a secret or another
//! user's data (a check of our own, `sdk/fuzz_hooks.py`).

use std::path::PathBuf;

use sqlx::PgPool;

use crate::common::{TestApp, chat_settings, keyring, ok_json, peers, scripted_agent, send_new};

const OTHER_AGENT: &str = "Zebra other user agent";
const OTHER_MESSAGE: &str = "Zebra other user question";
const OTHER_BASE: &str = "Zebra other user base";

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn no_generated_request_gets_a_server_error_or_a_leak(db: PgPool) {
    let fake = server::fake_provider::start().await.unwrap();
    let settings = app::platform::settings::Settings {
        api_requests_per_key: app::platform::settings::Limit::new(100_000, 60),
        chat_sends_per_user: app::platform::settings::Limit::new(100_000, 60),
        ..chat_settings(fake)
    };
    let app = TestApp::spawn_full(db, settings, keyring(1, &[])).await;

    // Someone else's agent and conversation: their ids are offered to the
    // fuzzer too, and what they hold must never come back.
    let other = app.signed_up("fuzz-other@example.com").await;
    let form = [
        ("name", OTHER_AGENT),
        ("description", ""),
        ("system_prompt", ""),
        ("provider", "openai"),
        ("model", "fake:echo"),
        ("temperature", ""),
        ("top_p", ""),
        ("max_output_tokens", ""),
        ("avatar", ""),
    ];
    assert_eq!(app.call(&other, "create_agent", &form).await.status(), 200);
    let theirs = ok_json(app.call(&other, "list_agents", &[]).await).await;
    let their_agent = theirs[0]["id"].as_str().unwrap().to_owned();
    let their_sent = send_new(&app, &other, &their_agent, OTHER_MESSAGE).await;
    let their_base = crate::knowledge::ingestion::create_base(&app, &other, OTHER_BASE).await;

    // The fuzzer's own: agents with conversations, so real ids exist (one
    // agent and one conversation to be deleted).
    let client = app.signed_up("fuzz@example.com").await;
    let keep_base = crate::knowledge::ingestion::create_base(&app, &client, "Fuzz base").await;
    let mut agents = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..2 {
        let agent = scripted_agent(&app, &client, fake, "openai", "fake:echo", &[], &[], "").await;
        sent.push(send_new(&app, &client, &agent, "Hello").await);
        agents.push(agent);
    }
    let form = [
        ("name", "Fuzz"),
        ("scopes[]", "agents:read"),
        ("scopes[]", "agents:write"),
        ("scopes[]", "chat"),
        ("scopes[]", "knowledge"),
        ("expires", ""),
    ];
    let secret = ok_json(app.call(&client, "create_api_key", &form).await).await["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let id = |v: &serde_json::Value, field: &str| format!("{:?}", v[field].as_str().unwrap());
    // One entry per operation, named exactly: which real ids it is offered.
    let operations: String = [
        ("GET /api/v1/agents/{id}", "agents"),
        ("PUT /api/v1/agents/{id}", "agents"),
        ("DELETE /api/v1/agents/{id}", "doomed_agents"),
        ("GET /api/v1/agents/{id}/conversations", "agents"),
        ("POST /api/v1/agents/{id}/conversations", "agents"),
        ("GET /api/v1/conversations/{id}", "conversations"),
        ("DELETE /api/v1/conversations/{id}", "doomed_conversations"),
        ("GET /api/v1/messages/{id}", "messages"),
        ("GET /api/v1/messages/{id}/stream", "messages"),
        ("POST /api/v1/messages/{id}/stop", "messages"),
        ("POST /api/v1/knowledge/{id}/search", "bases"),
    ]
    .iter()
    .map(|(name, dictionary)| {
        format!(
            "[[operations]]\ninclude-name = {name:?}\n\
             parameters = {{ \"path.id\" = {{ dictionary = {dictionary:?}, probability = 0.8 }} }}\n\n"
        )
    })
    .collect();
    let config = format!(
        r#"
# Hermetic: no crash cache kept between runs (nor in the checkout).
[cache]
enabled = false

[dictionaries.agents]
values = [{keep_agent:?}, {keep_agent:?}, {keep_agent:?}, {their_agent:?}]
[dictionaries.doomed_agents]
values = [{doomed_agent:?}, {their_agent:?}]
[dictionaries.conversations]
values = [{keep_conversation}, {keep_conversation}, {keep_conversation}, {their_conversation}]
[dictionaries.doomed_conversations]
values = [{doomed_conversation}, {their_conversation}]
[dictionaries.bases]
values = [{keep_base:?}, {keep_base:?}, {keep_base:?}, {their_base:?}]
[dictionaries.messages]
values = [{keep_reply}, {keep_reply}, {keep_reply}, {keep_user}, {their_reply}, {their_user}]

{operations}"#,
        keep_agent = agents[0],
        doomed_agent = agents[1],
        keep_conversation = id(&sent[0], "conversation_id"),
        doomed_conversation = id(&sent[1], "conversation_id"),
        their_conversation = id(&their_sent, "conversation_id"),
        keep_reply = id(&sent[0], "reply_id"),
        keep_user = id(&sent[0], "user_message_id"),
        their_reply = id(&their_sent, "reply_id"),
        their_user = id(&their_sent, "user_message_id"),
    );
    let config_file =
        std::env::temp_dir().join(format!("enclave-fuzz-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(&config_file, config).unwrap();

    let hooks = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/it/sdk/fuzz_hooks.py");
    let schemathesis = peers::python().with_file_name("schemathesis");
    let forbidden = [secret.as_str(), OTHER_AGENT, OTHER_MESSAGE, OTHER_BASE].join("\n");
    // Two passes: everything but deleting, then deleting (the fuzzer reuses
    // ids it sees, and would otherwise delete the data the rest needs).
    let fuzz = |methods: &'static str| {
        let mut args: Vec<std::ffi::OsString> = vec![
            "--config-file".into(),
            config_file.clone().into(),
            "--no-color".into(),
            "run".into(),
            app.url("/api/openapi.json").into(),
            "--header".into(),
            format!("Authorization: Bearer {secret}").into(),
            "--checks".into(),
            "not_a_server_error,content_type_conformance,response_schema_conformance,no_leak"
                .into(),
            "--phases".into(),
            "examples,coverage,fuzzing".into(),
            "--max-examples".into(),
            "30".into(),
            "--workers".into(),
            "2".into(),
            "--seed".into(),
            "20261201".into(),
        ];
        args.push(methods.into());
        args.push("DELETE".into());
        let env = vec![
            ("SCHEMATHESIS_HOOKS", hooks.display().to_string()),
            ("PYTHONPATH", hooks.parent().unwrap().display().to_string()),
            ("ENCLAVE_FORBIDDEN", forbidden.clone()),
        ];
        let schemathesis = schemathesis.clone();
        async move { peers::run(schemathesis, &args, &env).await }
    };
    let (ok, stdout, stderr) = fuzz("--exclude-method").await;
    assert!(ok, "schemathesis found problems:\n{stdout}\n{stderr}");
    assert!(stdout.contains("12 selected / 14 total"), "{stdout}");
    // The generated messages reached the agent (more conversations than
    // the one made here).
    let mine: i64 =
        sqlx::query_scalar("SELECT count(*) FROM conversations WHERE agent_id = $1::uuid")
            .bind(&agents[0])
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(mine > 1, "no generated message reached the agent: {stdout}");
    assert!(!stdout.contains("Missing test data"), "{stdout}");
    let (ok, stdout, stderr) = fuzz("--include-method").await;
    let _ = std::fs::remove_file(&config_file);
    assert!(ok, "schemathesis found problems:\n{stdout}\n{stderr}");
    assert!(stdout.contains("2 selected / 14 total"), "{stdout}");
    // Nothing of the other user's changed.
    let theirs: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM conversations WHERE id = $1::uuid AND agent_id = $2::uuid",
    )
    .bind(their_sent["conversation_id"].as_str().unwrap())
    .bind(&their_agent)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(theirs, 1, "the other user's conversation is untouched");
}
