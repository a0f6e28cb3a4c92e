//! The schema keeps the encryption promise: every column of the `sealed`
//! domain is one `keys verify` opens (and no listed column is missing), and
//! every other column that could hold text is on a list that says why it
//! may be plain. A migration that adds either kind of column fails here
//! until the list (and the slice's `SEALED`) says what it is.

use std::collections::BTreeSet;

use crate::common::TestApp;
use app::platform::keystore;
use sqlx::PgPool;

/// Columns that can hold text or bytes but are not sealed, and why that is
/// safe. Nothing a user types or chooses may be here.
const PLAIN: &[(&str, &str, &str)] = &[
    (
        "team_keys",
        "kek_id",
        "which master key wrapped the team's data key: an HMAC id",
    ),
    (
        "team_keys",
        "wrapped_key",
        "the team's data key, wrapped by a master key the database never holds",
    ),
    (
        "team_invitations",
        "email_index",
        "keyed HMAC of the invited address (blind index), not the address",
    ),
    (
        "team_invitations",
        "token_hash",
        "SHA-256 of the invitation link's token, never the token",
    ),
    (
        "team_members",
        "role",
        "owner, admin or member: a fixed value the server chooses",
    ),
    (
        "team_invitations",
        "role",
        "admin or member: a fixed value the server chooses",
    ),
    (
        "users",
        "email_index",
        "keyed HMAC of the email (blind index), not the email",
    ),
    (
        "user_keys",
        "kek_id",
        "which master key wrapped the data key: an HMAC id",
    ),
    (
        "user_keys",
        "wrapped_key",
        "the data key, wrapped under the master key",
    ),
    ("system_keys", "name", "a fixed key name (\"blind-index\")"),
    ("system_keys", "kek_id", "which master key wrapped it"),
    (
        "system_keys",
        "wrapped_key",
        "the system key, wrapped under the master key",
    ),
    ("sessions", "token_hash", "SHA-256 of the session token"),
    (
        "oidc_states",
        "state_hash",
        "SHA-256 of a provider sign-in's random state",
    ),
    (
        "oidc_states",
        "browser_hash",
        "SHA-256 of the random token binding a sign-in to its browser",
    ),
    (
        "oidc_states",
        "provider",
        "the id of an operator-configured provider (\"google\")",
    ),
    (
        "oidc_states",
        "next",
        "a local path (no query string) to return to after signing in",
    ),
    (
        "passkeys",
        "credential_index",
        "SHA-256 of a passkey's credential id (public, sent by the browser)",
    ),
    (
        "webauthn_ceremonies",
        "kind",
        "which ceremony: register or sign_in",
    ),
    (
        "webauthn_ceremonies",
        "public_state",
        "a passkey sign-in's state: the random challenge already sent to the browser, and the policy",
    ),
    (
        "user_identities",
        "provider",
        "the id of an operator-configured provider (\"google\")",
    ),
    (
        "user_identities",
        "subject_index",
        "keyed HMAC of the provider's subject (blind index), not the subject",
    ),
    (
        "recovery_codes",
        "code_hash",
        "SHA-256 of an 80-bit random recovery code",
    ),
    (
        "mcp_oauth_states",
        "state_hash",
        "SHA-256 of a random OAuth state (the sign-in itself is sealed)",
    ),
    (
        "agent_mcp_tokens",
        "token_hash",
        "SHA-256 of a 256-bit random token (the token itself is sealed)",
    ),
    (
        "rate_limits",
        "bucket",
        "a kind and a keyed hash of the address or account, or a user id",
    ),
    (
        "provider_keys",
        "provider",
        "one of a fixed list of providers",
    ),
    ("agents", "provider", "one of a fixed list of providers"),
    ("messages", "role", "user or assistant"),
    ("messages", "status", "one of a fixed list of states"),
    ("jobs", "kind", "one of a fixed list of job kinds"),
    (
        "email_tokens",
        "token_hash",
        "SHA-256 of a 256-bit random token (the token lives only in the mail)",
    ),
    ("email_tokens", "purpose", "one of a fixed list of purposes"),
    ("jobs", "state", "one of a fixed list of states"),
    (
        "jobs",
        "idempotency_key",
        "a kind and ids (never user data; the code that makes keys says so)",
    ),
    (
        "jobs",
        "locked_by",
        "the server process's name (the operator's host)",
    ),
    (
        "jobs",
        "last_error",
        "Enclave's own sentence for a failure (no address, no server text)",
    ),
    (
        "messages",
        "error_code",
        "one of a fixed list of failure kinds (checked by the schema)",
    ),
    (
        "messages",
        "runner",
        "the server process writing the reply (operator's host name)",
    ),
    (
        "instances",
        "name",
        "a server process's name (operator's host name and port)",
    ),
    ("tool_calls", "status", "one of a fixed list of outcomes"),
    (
        "policy_versions",
        "kind",
        "privacy or cookies (checked by the schema)",
    ),
    (
        "policy_versions",
        "summary",
        "the operator's public summary of a policy change",
    ),
    ("policy_versions", "body", "the text of a public policy"),
    (
        "consents",
        "purpose",
        "privacy, cookies or marketing_mail (checked by the schema)",
    ),
    (
        "exports",
        "state",
        "queued, building, ready or failed (checked by the schema)",
    ),
    (
        "activity",
        "kind",
        "one of a fixed list of events (data::activity::Event)",
    ),
    (
        "activity",
        "browser_index",
        "a keyed hash (HMAC under the blind-index key) of the browser family and system",
    ),
    ("connections", "kind", "one of a fixed list of services"),
    (
        "knowledge_bases",
        "provider",
        "openai, google, openai_compatible or demo (checked by the schema)",
    ),
    (
        "knowledge_documents",
        "kind",
        "one of seven file kinds (checked by the schema)",
    ),
    (
        "knowledge_documents",
        "state",
        "queued, parsing, embedding, ready or failed (checked by the schema)",
    ),
    (
        "mcp_servers",
        "auth",
        "none or header (checked by the schema)",
    ),
    (
        "chat_files",
        "kind",
        "one of seven file kinds (checked by the schema)",
    ),
    (
        "api_keys",
        "token_hash",
        "SHA-256 of a 256-bit random API key (the key itself is kept nowhere)",
    ),
    (
        "api_keys",
        "prefix",
        "enc_ and the key's first 4 random characters (24 of its 256 bits), to tell keys apart",
    ),
    (
        "telegram_channels",
        "mode",
        "webhook or polling (checked by the schema)",
    ),
    (
        "telegram_channels",
        "secret_hash",
        "SHA-256 of a 256-bit random webhook secret (the secret itself is kept nowhere)",
    ),
    (
        "telegram_channels",
        "poll_lease_owner",
        "the name of the server process polling the bot",
    ),
    (
        "telegram_chats",
        "chat_index",
        "keyed HMAC of the channel and Telegram chat id (blind index), not the id",
    ),
    (
        "schedule_runs",
        "status",
        "queued, running, complete, waiting or failed (checked by the schema)",
    ),
    (
        "model_prices",
        "provider",
        "the operator's price table: a provider's name (checked by the code)",
    ),
    (
        "model_prices",
        "model",
        "the operator's price table: a model's name or *, set by the operator, never by a user",
    ),
    (
        "credit_transactions",
        "kind",
        "top_up, grant or charge (checked by the schema)",
    ),
    (
        "credit_checkouts",
        "session_hash",
        "SHA-256 of Stripe's Checkout Session id (the id itself is kept nowhere)",
    ),
    (
        "credit_checkouts",
        "status",
        "open, paid or expired (checked by the schema)",
    ),
    (
        "usage_alerts",
        "key",
        "which alert went out for which ids and period (quota-80:user:<uuid>:2026-12), no user data",
    ),
    (
        "stripe_events",
        "event_id",
        "Stripe's id of a webhook event (evt_…), kept so a repeated delivery changes nothing",
    ),
];

/// Types that can carry text or arbitrary bytes.
const TEXTUAL: &[&str] = &[
    "text",
    "character varying",
    "character",
    "bytea",
    "json",
    "jsonb",
];

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn every_sealed_column_is_verified_and_every_plain_one_is_explained(db: PgPool) {
    let columns: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text, data_type::text, domain_name::text
         FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&db)
    .await
    .unwrap();

    let sealed_in_db: BTreeSet<(String, String)> = columns
        .iter()
        .filter(|(_, _, _, domain)| domain.as_deref() == Some("sealed"))
        .map(|(t, c, _, _)| (t.clone(), c.clone()))
        .collect();
    let listed: BTreeSet<(String, String)> = app::sealed_columns()
        .iter()
        .map(|c| (c.table.to_owned(), c.column.to_owned()))
        .collect();
    assert_eq!(
        sealed_in_db, listed,
        "the sealed columns in the database and the slices' SEALED lists differ"
    );

    let plain: BTreeSet<(String, String)> = PLAIN
        .iter()
        .map(|(t, c, _)| ((*t).to_owned(), (*c).to_owned()))
        .collect();
    let unexplained: Vec<String> = columns
        .iter()
        .filter(|(_, _, _, domain)| domain.as_deref() != Some("sealed"))
        .filter(|(_, _, data_type, _)| TEXTUAL.contains(&data_type.as_str()))
        .filter(|(t, c, _, _)| !plain.contains(&(t.clone(), c.clone())))
        .map(|(t, c, ty, _)| format!("{t}.{c} ({ty})"))
        .collect();
    assert!(
        unexplained.is_empty(),
        "plain columns that could hold user text: {unexplained:?}. Seal them, or add them to \
         PLAIN with the reason they are safe."
    );
    for (table, column, _) in PLAIN {
        assert!(
            columns.iter().any(|(t, c, _, _)| t == table && c == column),
            "{table}.{column} is listed as plain but does not exist"
        );
    }
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn keys_verify_opens_every_sealed_column_and_reports_each_broken_one(db: PgPool) {
    let fake = server::fake_provider::start().await.unwrap();
    let app = TestApp::spawn_full(
        db.clone(),
        crate::common::with_fake_provider(
            app::platform::Settings {
                platform_keys: app::platform::settings::PlatformKeys::new(
                    [(app::provider::Provider::Openai, "platform-key".to_owned())].into(),
                ),
                oidc_providers: vec![crate::common::oidc::fake_provider(fake)],
                ..crate::common::relaxed_settings()
            },
            fake,
        ),
        crate::common::keyring(1, &[]),
    )
    .await;
    let client = app.signed_up("verify@example.com").await;
    crate::common::enrol_totp(&app, &client).await;
    let linked = crate::common::oidc::provider_sign_in(
        &app,
        &client,
        "link",
        &[
            ("sub", "schema-1"),
            ("email", "schema@example.net"),
            ("email_verified", "true"),
        ],
    )
    .await;
    assert_eq!(linked, "/settings/sign-in-methods");
    crate::common::stored_passkey(&app, "verify@example.com", "Schema key").await;
    let res = app
        .call(
            &client,
            "change_email",
            &[
                ("new_email", "moved@example.com"),
                ("password", crate::common::PASSWORD),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    // A value in every sealed column: a key with a server address, an agent
    // with a base URL, and a conversation whose reply failed (so it has an
    // error and a model).
    let key = [
        ("provider", "openai_compatible"),
        ("label", "Local"),
        ("secret", "local-key-1"),
        ("base_url", "http://127.0.0.1:9/v1"),
    ];
    assert_eq!(
        app.call(&client, "add_provider_key", &key).await.status(),
        200
    );
    let agent = [
        ("name", "Verified"),
        ("description", "d"),
        ("system_prompt", "p"),
        ("provider", "openai_compatible"),
        ("model", "m"),
        ("base_url", "http://127.0.0.1:9/v1"),
        ("temperature", ""),
        ("top_p", ""),
        ("max_output_tokens", ""),
        ("starter_1", "s"),
        ("avatar", ""),
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
    let agent_id = agents[0]["id"].as_str().unwrap().to_owned();
    // The message carries a file (its name and text).
    let file: serde_json::Value = crate::chat_files::attach(
        &app,
        &client,
        &agent_id,
        &[],
        vec![("note.txt", b"Attached words.".to_vec())],
    )
    .await
    .json()
    .await
    .unwrap();
    let sent: serde_json::Value = app
        .call(
            &client,
            "send_message",
            &[
                ("agent_id", agent_id.as_str()),
                ("message", "hi"),
                ("files[]", file[0]["id"].as_str().unwrap()),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    for _ in 0..400 {
        let failed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE error IS NOT NULL AND model IS NOT NULL)",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if failed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(sent["reply_id"].is_string());

    // An API key (its name).
    assert_eq!(
        app.call(
            &client,
            "create_api_key",
            &[("name", "Verified key"), ("scopes[]", "chat")],
        )
        .await
        .status(),
        200
    );

    // A Telegram bot (long polled) with a chat of someone let in.
    {
        let token = "123456789:AAE_fake-token-for-the-schema-test-x";
        let channel: serde_json::Value = app
            .call(
                &client,
                "connect_telegram",
                &[("agent_id", agent_id.as_str()), ("token", token)],
            )
            .await
            .json()
            .await
            .unwrap();
        let code = channel["start_code"].as_str().unwrap().to_owned();
        for text in [format!("/start {code}"), "hi".to_owned()] {
            reqwest::Client::new()
                .post(format!("http://{fake}/fakes/telegram/{token}/updates"))
                .json(&serde_json::json!({"from": 5, "text": text}))
                .send()
                .await
                .unwrap();
            app::telegram::server::poll(&app.state, 0).await.unwrap();
            // Answered (the welcome first, so "hi" comes from someone let in).
            for _ in 0..400 {
                let shown: serde_json::Value = reqwest::Client::new()
                    .get(format!("http://{fake}/fakes/telegram/{token}/chats/5"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                if shown["messages"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["text"] != "…"))
                {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        }
        for _ in 0..400 {
            if app.count("SELECT count(*) FROM telegram_chats").await == 1 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    // A schedule whose run fails on the unreachable server (its reason).
    let schedule: String = app
        .call(
            &client,
            "create_schedule",
            &[
                ("agent_id", agent_id.as_str()),
                ("name", "Verified schedule"),
                ("cron", "0 9 * * *"),
                ("time_zone", "UTC"),
                ("prompt", "Daily"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        app.call(&client, "run_schedule_now", &[("id", schedule.as_str())])
            .await
            .status(),
        200
    );
    for _ in 0..400 {
        let failed: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM schedule_runs WHERE error IS NOT NULL)",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if failed {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }

    // A connection.
    let connection = [
        ("kind", "github"),
        ("label", "Verified"),
        ("secret", "ghp_good_verify"),
    ];
    assert_eq!(
        app.call(&client, "add_connection", &connection)
            .await
            .status(),
        200
    );
    // The agent served over MCP (its token).
    assert_eq!(
        app.call(
            &client,
            "enable_agent_mcp",
            &[("agent_id", agent_id.as_str())]
        )
        .await
        .status(),
        200
    );
    // Two MCP servers: one with a secret header whose tools are listed,
    // one that cannot be reached (its error is kept).
    let secret_mcp = format!("http://{fake}/mcp/secret");
    let mcp = [
        ("name", "Verified MCP"),
        ("url", secret_mcp.as_str()),
        ("auth", "header"),
        ("secret", server::fake_mcp::SECRET),
    ];
    let added: serde_json::Value = app
        .call(&client, "add_mcp_server", &mcp)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        added["tools"].as_array().is_some_and(|t| !t.is_empty()),
        "{added}"
    );
    // An OAuth server signed in to (its client and tokens), then a second
    // sign-in left half-way (its state).
    let oauth_url = format!("http://{fake}/mcp/oauth");
    let oauth = [
        ("name", "OAuth MCP"),
        ("url", oauth_url.as_str()),
        ("auth", "oauth"),
    ];
    let res = app.call(&client, "add_mcp_server", &oauth).await;
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let oauth_id = res.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let back = app.client().get(location).send().await.unwrap().headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(client.get(back).send().await.unwrap().status(), 303);
    let res = app
        .call(&client, "sign_in_mcp_server", &[("id", oauth_id.as_str())])
        .await;
    assert!(res.headers().get("location").is_some());
    let unreachable = [
        ("name", "Unreachable MCP"),
        ("url", "http://10.0.0.1/mcp"),
        ("auth", "none"),
    ];
    assert_eq!(
        app.call(&client, "add_mcp_server", &unreachable)
            .await
            .status(),
        200
    );
    // A reply that called a tool: its parts and the audit record.
    let tooling = [
        ("name", "Tooling"),
        ("description", ""),
        ("system_prompt", ""),
        ("provider", "openai"),
        ("model", "fake:tool=calculator+http_request"),
        ("base_url", ""),
        ("temperature", ""),
        ("top_p", ""),
        ("max_output_tokens", ""),
        ("avatar", ""),
        ("tools[]", "calculator"),
        ("tools[]", "http_request"),
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
    // Both tools get these arguments (the fake's script): one computes, one
    // reaches a host (so the audit has a target).
    let arguments = serde_json::json!({
        "expression": "6*7",
        "url": format!("http://{fake}/requests/anything"),
    })
    .to_string();
    assert_eq!(
        app.call(
            &client,
            "send_message",
            &[
                ("agent_id", tooling_agent.as_str()),
                ("message", arguments.as_str())
            ],
        )
        .await
        .status(),
        200
    );
    for _ in 0..400 {
        let done: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM messages WHERE parts IS NOT NULL AND status = 'complete')
               AND (SELECT count(*) FROM tool_calls) = 2",
        )
        .fetch_one(&db)
        .await
        .unwrap();
        if done {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }

    // Knowledge: a base embedding through the platform key with a ready
    // document (passages, vectors) and a refused one (its reason); a base
    // on an OpenAI-compatible server (its address) that rate limits, so
    // its document waits in 'embedding' with its upload still kept.
    {
        use crate::knowledge::ingestion::{HANDBOOK, create_base, settled, upload};
        let base = create_base(&app, &client, "Schema base").await;
        upload(
            &app,
            &client,
            &base,
            vec![
                ("handbook.md", HANDBOOK.as_bytes().to_vec()),
                ("image.png", b"\x89PNG\r\n\x1a\n\0\0".to_vec()),
            ],
        )
        .await;
        settled(&app, &client, &base).await;
        let compat_url = format!("http://{fake}/openai/v1");
        let res = app
            .call(
                &client,
                "create_knowledge_base",
                &[
                    ("name", "Compatible"),
                    ("provider", "openai_compatible"),
                    ("model", "embed-429x1000"),
                    ("base_url", compat_url.as_str()),
                ],
            )
            .await;
        assert_eq!(res.status(), 200);
        let compat: String = res.json().await.unwrap();
        upload(
            &app,
            &client,
            &compat,
            vec![("notes.txt", b"Waiting words.".to_vec())],
        )
        .await;
        for _ in 0..400 {
            let waiting: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM knowledge_documents
                                WHERE state = 'embedding' AND source IS NOT NULL)",
            )
            .fetch_one(&db)
            .await
            .unwrap();
            if waiting {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    // A team: its name, an open invitation (the address), and its agent.
    {
        let team: String = app
            .call(&client, "create_team", &[("name", "Schema team")])
            .await
            .json()
            .await
            .unwrap();
        let res = app
            .call(
                &client,
                "invite_to_team",
                &[
                    ("id", &team),
                    ("email", "someone@example.com"),
                    ("role", "member"),
                ],
            )
            .await;
        assert_eq!(res.status(), 200);
        let res = app
            .call(
                &client,
                "create_agent",
                &[
                    ("name", "Team agent"),
                    ("description", "Shared"),
                    ("system_prompt", "Team prompt"),
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
        // A reply from it: a usage entry with the team's copy of its details.
        let agents: serde_json::Value = app
            .call(&client, "list_agents", &[])
            .await
            .json()
            .await
            .unwrap();
        let agent = agents
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "Team agent")
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let sent = crate::common::send_new(&app, &client, &agent, "Hello team").await;
        crate::common::reply_when(&app, &client, sent["conversation_id"].as_str().unwrap(), "")
            .await;
    }

    // Credits granted (the transaction's note).
    {
        let (user, key) = crate::common::account_key(&app, "verify@example.com").await;
        let mut tx = db.begin().await.unwrap();
        app::usage::server::credit(&mut tx, user, &key, "grant", 1_000_000, "Schema grant")
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    // An export of it all, ready (its sealed zip).
    assert_eq!(app.call(&client, "request_export", &[]).await.status(), 200);
    for _ in 0..800 {
        let ready: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM exports WHERE state = 'ready')")
                .fetch_one(&db)
                .await
                .unwrap();
        if ready {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }

    for column in app::sealed_columns() {
        let sql = format!(
            "SELECT count(*) FROM {} WHERE {} IS NOT NULL",
            column.table, column.column
        );
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_one(&db)
            .await
            .unwrap();
        assert!(n > 0, "no value in {}.{}", column.table, column.column);
    }
    let report = keystore::verify(&db, &app.keyring, app::sealed_columns(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.failures, vec![]);
    assert!(report.values as usize >= app::sealed_columns().len());
    // A database with a sealed value of every kind: what the upgrade
    // fixture (`tests/fixtures/`) is made from, when asked to write one.
    if let Some(path) = std::env::var_os("ENCLAVE_WRITE_UPGRADE_FIXTURE") {
        let dump = crate::common::pg_dump(&crate::common::database_url(&db).await);
        std::fs::write(path, dump).unwrap();
    }

    // Break one value in each table that holds user content: each is found.
    for (table, column) in [
        ("agents", "system_prompt"),
        ("provider_keys", "secret"),
        ("conversations", "title"),
        ("messages", "body"),
        ("mcp_servers", "secret"),
        ("agent_mcp_tokens", "token"),
        ("mcp_servers", "oauth_tokens"),
        ("mcp_oauth_states", "state"),
        ("knowledge_chunks", "vector"),
        ("teams", "name"),
        ("usage_entries", "team_details"),
        ("credit_transactions", "note"),
    ] {
        let sql = format!(
            "UPDATE {table} SET {column} = set_byte({column}, 20, get_byte({column}, 20) # 1)
             WHERE id = (SELECT id FROM {table} WHERE {column} IS NOT NULL ORDER BY id LIMIT 1)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&db)
            .await
            .unwrap();
    }
    let report = keystore::verify(&db, &app.keyring, app::sealed_columns(), |_| {})
        .await
        .unwrap();
    let broken: BTreeSet<&str> = report.failures.iter().map(|f| f.what.as_str()).collect();
    assert_eq!(
        broken,
        BTreeSet::from([
            "agents.system_prompt",
            "provider_keys.secret",
            "conversations.title",
            "messages.body",
            "mcp_servers.secret",
            "agent_mcp_tokens.token",
            "mcp_servers.oauth_tokens",
            "mcp_oauth_states.state",
            "knowledge_chunks.vector",
            "teams.name",
            "usage_entries.team_details",
            "credit_transactions.note"
        ])
    );
}
