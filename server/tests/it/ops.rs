//! Running it for real: `/ready` says whether a load balancer may send
//! traffic (and why not); a `pg_dump` restores into a fresh database that
//! opens with the same master key and refuses any other, changing nothing;
//! two servers starting at once on an empty database migrate it once.

use std::collections::HashMap;

use reqwest::Client;
use serde_json::Value;
use sqlx::PgPool;

use crate::common::{
    PASSWORD, TestApp, chat_settings, database_url, keyring, ok_json, pg_dump, psql_restore,
    reply_when, scripted_agent, send_new,
};

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn ready_answers_only_when_the_server_can_serve_and_says_why_not(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let client = Client::new();
    let ready = |client: Client, url: String| async move {
        let res = client.get(url).send().await.unwrap();
        (res.status().as_u16(), res.text().await.unwrap())
    };
    assert_eq!(
        ready(client.clone(), app.url("/ready")).await,
        (200, "ready".into())
    );
    // A migration this binary knows is missing: not ready, in plain words.
    let latest: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(&db)
        .await
        .unwrap();
    let row: (String, Vec<u8>, i64) = sqlx::query_as(
        "SELECT description, checksum, execution_time FROM _sqlx_migrations WHERE version = $1",
    )
    .bind(latest)
    .fetch_one(&db)
    .await
    .unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = $1")
        .bind(latest)
        .execute(&db)
        .await
        .unwrap();
    let (status, reason) = ready(client.clone(), app.url("/ready")).await;
    assert_eq!(status, 503);
    assert_eq!(
        reason,
        "The database schema is older than this server: restart it to apply the migrations."
    );
    // Liveness is another matter: the process is up.
    assert_eq!(ready(client.clone(), app.url("/health")).await.0, 200);
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES ($1, $2, true, $3, $4)",
    )
    .bind(latest)
    .bind(row.0)
    .bind(row.1)
    .bind(row.2)
    .execute(&db)
    .await
    .unwrap();
    assert_eq!(ready(client.clone(), app.url("/ready")).await.0, 200);
    // The database now holds another deployment's keys (a wrong restore).
    let other = app::platform::crypto::Keyring::new(crate::common::kek(9), vec![]);
    let wrapped = other.wrap_system_key(
        &app::platform::crypto::BlindIndexKey::generate(),
        "blind-index",
    );
    sqlx::query("UPDATE system_keys SET kek_id = $1, wrapped_key = $2 WHERE name = 'blind-index'")
        .bind(&wrapped.kek_id)
        .bind(&wrapped.bytes)
        .execute(&db)
        .await
        .unwrap();
    assert_eq!(
        ready(client.clone(), app.url("/ready")).await,
        (
            503,
            "The master key does not open this database's keys.".into()
        )
    );
    // The database gone: not ready, and nothing internal said.
    app.db.close().await;
    let (status, reason) = ready(client, app.url("/ready")).await;
    assert_eq!(
        (status, reason.as_str()),
        (503, "The database is not reachable.")
    );
}

/// What a user sees of their conversations: each one's messages' bodies.
async fn conversations(app: &TestApp, client: &Client, agent: &str) -> Vec<Vec<String>> {
    let list = ok_json(
        app.call(client, "list_conversations", &[("agent_id", agent)])
            .await,
    )
    .await;
    let mut out = Vec::new();
    for c in list.as_array().unwrap() {
        let conversation = ok_json(
            app.call(
                client,
                "get_conversation",
                &[("id", c["id"].as_str().unwrap())],
            )
            .await,
        )
        .await;
        out.push(
            conversation["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["body"].as_str().unwrap().to_owned())
                .collect(),
        );
    }
    out
}

fn config(url: &str, master_key: u8) -> server::config::Config {
    use base64::Engine as _;
    let key = base64::engine::general_purpose::STANDARD.encode([master_key; 32]);
    let env: HashMap<&str, &str> = HashMap::from([
        ("ENCLAVE_DATABASE_URL", url),
        ("ENCLAVE_MASTER_KEY", key.as_str()),
    ]);
    server::config::Config::from_source(&env).unwrap()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_dump_restores_and_opens_with_the_same_master_key_and_no_other(db: PgPool) {
    let fake = server::fake_provider::start().await.unwrap();
    let app = TestApp::spawn_full(db.clone(), chat_settings(fake), keyring(1, &[])).await;
    // Two people with agents, a provider key and conversations.
    let mut people = Vec::new();
    for email in ["ada@example.com", "bob@example.com"] {
        let client = app.signed_up(email).await;
        let res = app
            .call(
                &client,
                "add_provider_key",
                &[
                    ("provider", "anthropic"),
                    ("label", "Mine"),
                    ("secret", "sk-ant-test-123456"),
                ],
            )
            .await;
        assert_eq!(res.status(), 200);
        let agent = scripted_agent(&app, &client, fake, "openai", "fake:echo", &[], &[], "").await;
        for text in ["First question", "Second question"] {
            let sent = send_new(&app, &client, &agent, &format!("{text} from {email}")).await;
            reply_when(
                &app,
                &client,
                sent["conversation_id"].as_str().unwrap(),
                "complete",
            )
            .await;
        }
        let seen = conversations(&app, &client, &agent).await;
        assert_eq!(seen.len(), 2);
        people.push((email, agent, seen));
    }
    let dump = pg_dump(&database_url(&db).await);

    // Restored into a fresh database, and served with the same master key.
    let name = format!("restore_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&db)
        .await
        .unwrap();
    let base = database_url(&db).await;
    let restored_url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
    psql_restore(&restored_url, &dump);
    let restored_db = PgPool::connect(&restored_url).await.unwrap();
    let keys_before: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT kek_id, wrapped_key FROM system_keys ORDER BY name")
            .fetch_all(&restored_db)
            .await
            .unwrap();

    // Another master key: the server refuses to start, in plain words, and
    // the restored keys are as they were.
    let err = server::app_state(&config(&restored_url, 2), server::leptos_options())
        .await
        .err()
        .expect("another master key is refused");
    let message = format!("{err:#}");
    assert!(
        message.contains("cannot be opened with the configured master key"),
        "{message}"
    );
    let keys_after: Vec<(String, Vec<u8>)> =
        sqlx::query_as("SELECT kek_id, wrapped_key FROM system_keys ORDER BY name")
            .fetch_all(&restored_db)
            .await
            .unwrap();
    assert_eq!(keys_before, keys_after, "nothing was overwritten");

    // The same key: everyone signs in and reads everything.
    let restored =
        TestApp::spawn_full(restored_db.clone(), chat_settings(fake), keyring(1, &[])).await;
    for (email, agent, seen) in &people {
        let client = restored.client();
        assert_eq!(
            restored.sign_in(&client, email, PASSWORD).await.status(),
            200
        );
        assert_eq!(&conversations(&restored, &client, agent).await, seen);
        let keys: Value = ok_json(restored.call(&client, "list_provider_keys", &[]).await).await;
        assert_eq!(keys[0]["label"], "Mine");
    }
    let report = app::platform::keystore::verify(
        &restored_db,
        &keyring(1, &[]),
        app::sealed_columns(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.failures, vec![]);
    drop(restored);
    restored_db.close().await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&db)
    .await
    .unwrap();
}

#[sqlx::test(migrations = false)]
async fn two_servers_starting_at_once_on_an_empty_database_migrate_it_once(db: PgPool) {
    let url = database_url(&db).await;
    let (a, b) = tokio::join!(server::connect_db(&url), server::connect_db(&url));
    let (a, b) = (a.unwrap(), b.unwrap());
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(applied as usize, server::MIGRATOR.iter().count());
    // Both load the same system keys (the first to insert wins).
    let (ca, cb) = tokio::join!(
        app::platform::keystore::Crypto::load(&a, keyring(1, &[])),
        app::platform::keystore::Crypto::load(&b, keyring(1, &[]))
    );
    let (ca, cb) = (ca.unwrap(), cb.unwrap());
    assert_eq!(
        ca.email_index("ada@example.com"),
        cb.email_index("ada@example.com")
    );
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM system_keys")
            .fetch_one(&db)
            .await
            .unwrap(),
        1
    );
    a.close().await;
    b.close().await;
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_operator_disables_enables_and_deletes_accounts_from_the_command_line(db: PgPool) {
    let fake = server::fake_provider::start().await.unwrap();
    let app = TestApp::spawn_with(db.clone(), chat_settings(fake)).await;
    let _first = app.signed_up("ada@example.com").await;
    let bob = app.signed_up("bob@example.com").await;
    // A long reply being written by the server (not by the command line,
    // which is a process of its own).
    crate::common::streaming_reply(
        &app,
        &bob,
        fake,
        "fake:tokens=400,delay_ms=50",
        "A long one",
    )
    .await;
    let config = config(&database_url(&db).await, 1);
    let users = |args: &'static [&'static str]| {
        let config = &config;
        async move { server::users_cli::run(config, args).await }
    };
    users(&["list"]).await.unwrap();
    users(&["list", "bob"]).await.unwrap();
    let err = users(&["disable", "nobody@example.com"]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "no account has the address nobody@example.com"
    );
    assert!(users(&["frobnicate"]).await.is_err());

    // Disabled: signed out at once, the reply stops on the server writing
    // it (told through the database), and signing in says why.
    users(&["disable", "Bob@Example.com"]).await.unwrap();
    assert_eq!(app.current_user(&bob).await, Value::Null);
    let mut status = String::new();
    for _ in 0..100 {
        status = sqlx::query_scalar("SELECT status FROM messages WHERE role = 'assistant'")
            .fetch_one(&db)
            .await
            .unwrap();
        if status != "streaming" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        status, "stopped",
        "the reply went on after the account was disabled"
    );
    let again = app.client();
    let res = app.sign_in(&again, "bob@example.com", PASSWORD).await;
    assert_ne!(res.status(), 200);
    assert_eq!(
        app.count("SELECT count(*) FROM activity WHERE kind = 'account_disabled'")
            .await,
        1
    );
    // Enabled: back in.
    users(&["enable", "bob@example.com"]).await.unwrap();
    assert_eq!(
        app.sign_in(&again, "bob@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    // Deleted: disabled now, erased after the grace period.
    users(&["delete", "bob@example.com"]).await.unwrap();
    assert_eq!(app.current_user(&again).await, Value::Null);
    assert_eq!(
        app.count(
            "SELECT count(*) FROM users WHERE deleted_at IS NOT NULL AND disabled_at IS NOT NULL"
        )
        .await,
        1
    );
}

/// A database made with the schema of 2026-12-01 holding a sealed value of
/// every kind there was (the data of `schema::keys_verify_…`, master key
/// `kek(1)`), dumped with `ENCLAVE_WRITE_UPGRADE_FIXTURE=path`. Kept as it
/// is: every later migration is tested on it.
const FIXTURE_2026_12_01: &str = include_str!("../fixtures/upgrade-20261201.sql");

/// Each of the server's connections keeps one generic plan per statement
/// from its first run, not five custom plans first (the send's reads:
/// 0.63 against 0.2 ms a run, BENCHMARKS.md).
#[sqlx::test(migrations = false)]
async fn every_pooled_connection_plans_a_statement_once(db: PgPool) {
    let url = database_url(&db).await;
    let pool = server::connect_db(&url).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut conn = pool.acquire().await.unwrap();
        let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(mode, "force_generic_plan");
        held.push(conn);
    }
    drop(held);
    pool.close().await;
}

#[sqlx::test(migrations = false)]
async fn a_database_from_an_older_release_upgrades_and_every_sealed_value_still_opens(db: PgPool) {
    let url = database_url(&db).await;
    psql_restore(&url, FIXTURE_2026_12_01);
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&db)
        .await
        .unwrap();
    // The server's own start: the newer migrations apply on the old data.
    let pool = server::connect_db(&url).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, server::MIGRATOR.iter().count());
    assert!(applied >= before);
    let report =
        app::platform::keystore::verify(&pool, &keyring(1, &[]), app::sealed_columns(), |_| {})
            .await
            .unwrap();
    assert_eq!(report.failures, vec![], "every old value opens");
    assert!(
        report.values >= 100,
        "the fixture holds values: {}",
        report.values
    );
    // Its account signs in (password, then the code of its authenticator,
    // whose secret it sealed back then) and finds its agents.
    let app = TestApp::spawn(pool.clone()).await;
    let client = app.client();
    assert_eq!(
        app.sign_in(&client, "verify@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    let (user, key) = crate::common::account_key(&app, "verify@example.com").await;
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT secret FROM totp_factors WHERE user_id = $1")
        .bind(user)
        .fetch_one(&pool)
        .await
        .unwrap();
    let secret = key
        .open(
            app::platform::crypto::Place::new("totp_factors", "secret", user, user),
            &app::platform::crypto::Sealed::from_stored(sealed),
        )
        .unwrap();
    let base32 = totp_rs::Secret::from(secret).to_base32();
    let code = crate::common::totp_code(&base32, 0);
    let res = app
        .call(&client, "complete_sign_in", &[("code", code.as_str())])
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let agents = ok_json(app.call(&client, "list_agents", &[]).await).await;
    assert!(!agents.as_array().unwrap().is_empty(), "{agents}");
}

#[sqlx::test(migrations = false)]
async fn a_failing_migration_leaves_the_database_as_it_was_and_is_named(db: PgPool) {
    // Today's migrations and a broken one after them, in a folder of their own.
    let dir = std::env::temp_dir().join(format!("enclave-migrations-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let ours = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    for entry in std::fs::read_dir(&ours).unwrap().flatten() {
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    std::fs::write(
        dir.join("20991231000001_broken_upgrade.sql"),
        "CREATE TABLE half_done (id int);\nUPDATE users SET first_name = first_name;\nSELECT 1 / 0;\n",
    )
    .unwrap();
    let migrator = sqlx::migrate::Migrator::new(dir.as_path()).await.unwrap();
    let url = database_url(&db).await;
    let err = server::connect_db_with(&url, &migrator)
        .await
        .expect_err("the broken migration fails");
    let message = err.to_string();
    assert!(
        message.starts_with(
            "database migration 20991231000001 (broken upgrade) failed and was rolled back"
        ),
        "{message}"
    );
    // Everything before it applied; nothing of it did.
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(applied.len(), server::MIGRATOR.iter().count());
    assert!(!applied.contains(&20991231000001));
    let half: bool = sqlx::query_scalar("SELECT to_regclass('half_done') IS NOT NULL")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(!half, "the broken migration's table is not there");
    // The server's own migrations still start it.
    server::connect_db(&url).await.unwrap().close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `server/deploy/enclave.service` with the release folder at `dir`.
fn unit_at(dir: &std::path::Path) -> String {
    let unit = std::fs::read_to_string(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/enclave.service"),
    )
    .unwrap();
    unit.replace("/opt/enclave", &dir.display().to_string())
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_systemd_unit_is_valid_hardened_and_its_environment_starts_the_server(db: PgPool) {
    let binary = std::path::PathBuf::from(env!("CARGO_BIN_EXE_server"));
    let release = binary.parent().unwrap();
    let unit = unit_at(release);
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for wanted in [
        "User=enclave",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "ProtectHome=true",
        "PrivateTmp=true",
        "CapabilityBoundingSet=",
        "LoadCredential=master-key:/etc/enclave/master.key",
    ] {
        assert!(lines.contains(&wanted), "the unit lacks {wanted}");
    }
    // systemd's own check: every key known, every value valid (an unknown
    // key is only a warning, so nothing may be printed either).
    let dir = std::env::temp_dir().join(format!("enclave-unit-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("enclave.service");
    std::fs::write(&path, &unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze (Debian's systemd) is installed");
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success() && said.trim().is_empty(), "{said}");

    // Exactly the environment the unit gives: its Environment= lines (the
    // credential directory for %d), then the EnvironmentFile's.
    let credentials = dir.join("credentials");
    std::fs::create_dir_all(&credentials).unwrap();
    use base64::Engine as _;
    std::fs::write(
        credentials.join("master-key"),
        // Random: production refuses a key anyone could guess.
        base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()),
    )
    .unwrap();
    let mut env: Vec<(String, String)> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("Environment="))
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (
                k.to_owned(),
                v.replace("%d", &credentials.display().to_string()),
            )
        })
        .collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // What the operator writes in /etc/enclave/enclave.env.
    let env_file = format!(
        "ENCLAVE_DATABASE_URL={}\nENCLAVE_ADDR=127.0.0.1:{port}\nENCLAVE_PUBLIC_URL=https://enclave.example.com\n",
        database_url(&db).await
    );
    env.extend(env_file.lines().map(|l| {
        let (k, v) = l.split_once('=').unwrap();
        (k.to_owned(), v.to_owned())
    }));
    assert!(
        env.iter()
            .any(|(k, v)| k == "ENCLAVE_ENV" && v == "production"),
        "the unit runs in production mode"
    );
    let exec = lines
        .iter()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let mut words = exec.split_whitespace();
    /// Stops the server however the test ends.
    struct Running(std::process::Child);
    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Running(
        std::process::Command::new(words.next().unwrap())
            .args(words)
            .env_clear()
            .envs(env)
            .current_dir(release)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    app::platform::tls::init();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(res) = reqwest::get(format!("http://127.0.0.1:{port}/ready")).await {
            ready = res.status() == 200;
            if ready {
                break;
            }
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            panic!("the server exited: {status}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(ready, "the server never became ready");
    drop(child);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn doctor_says_what_works_and_what_to_fix_without_a_secret(db: PgPool) {
    use base64::Engine as _;
    let fake = server::fake_provider::start().await.unwrap();
    let url = database_url(&db).await;
    let master = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
    let base = format!("http://{fake}/openai/v1");
    let allow = fake.to_string();
    let report = |key: &'static str, extra: &'static [(&'static str, &'static str)]| {
        let mut env: HashMap<&str, &str> = HashMap::from([
            ("ENCLAVE_DATABASE_URL", url.as_str()),
            ("ENCLAVE_MASTER_KEY", master.as_str()),
            ("ENCLAVE_OPENAI_BASE_URL", base.as_str()),
            ("ENCLAVE_OPENAI_API_KEY", key),
            ("ENCLAVE_EGRESS_ALLOW", allow.as_str()),
        ]);
        env.extend(extra.iter().copied());
        let config = server::config::Config::from_source(&env).unwrap();
        async move { server::doctor::check(&config).await }
    };
    let lines = report("sk-doctor-good-key", &[]).await;
    let shown: Vec<String> = lines.iter().map(ToString::to_string).collect();
    let text = shown.join("\n");
    let part = |name: &str| lines.iter().find(|l| l.part == name).unwrap().clone();
    assert!(
        part("database").ok && part("database").said.starts_with("PostgreSQL "),
        "{text}"
    );
    assert!(part("master key").ok, "{text}");
    assert!(
        part("egress").ok && part("egress").said.contains(&allow),
        "{text}"
    );
    assert!(part("openai key").ok, "{text}");
    assert_eq!(part("openai key").said, "the provider answers (2 models)");
    assert!(
        !part("mail").ok && part("mail").said.starts_with("mail is off"),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("FIX  mail")), "{text}");
    assert!(
        !text.contains("sk-doctor-good-key"),
        "no secret in the report"
    );
    assert!(
        server::doctor::run(&{
            let env: HashMap<&str, &str> = HashMap::from([
                ("ENCLAVE_DATABASE_URL", url.as_str()),
                ("ENCLAVE_MASTER_KEY", master.as_str()),
            ]);
            server::config::Config::from_source(&env).unwrap()
        })
        .await
        .is_err(),
        "something to fix: an error (non-zero exit)"
    );

    // A key the provider refuses, and the development mail catcher.
    let lines = report("bad-doctor-key-777", &[("ENCLAVE_MAIL_CATCHER", "true")]).await;
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let key = lines.iter().find(|l| l.part == "openai key").unwrap();
    assert!(
        !key.ok && key.said.ends_with("Check ENCLAVE_OPENAI_API_KEY."),
        "{text}"
    );
    assert!(!text.contains("bad-doctor-key-777"), "{text}");
    let mail = lines.iter().find(|l| l.part == "mail").unwrap();
    assert!(
        !mail.ok && mail.said.contains("development catcher"),
        "{text}"
    );

    // Another master key: said, and nothing after it is checked.
    let other = base64::engine::general_purpose::STANDARD.encode([2u8; 32]);
    let env: HashMap<&str, &str> = HashMap::from([
        ("ENCLAVE_DATABASE_URL", url.as_str()),
        ("ENCLAVE_MASTER_KEY", other.as_str()),
    ]);
    let lines = server::doctor::check(&server::config::Config::from_source(&env).unwrap()).await;
    assert_eq!(lines.len(), 2);
    assert!(
        !lines[1].ok
            && lines[1]
                .said
                .contains("cannot be opened with the configured master key")
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn every_response_carries_its_own_request_id_never_the_clients(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let client = Client::new();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let res = client
            .get(app.url("/health"))
            .header("x-request-id", "0123456789abcdef0123456789abcdef")
            .send()
            .await
            .unwrap();
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        assert_ne!(id, "0123456789abcdef0123456789abcdef", "not the client's");
        seen.push(id);
    }
    assert_ne!(seen[0], seen[1], "one per request");
}

/// The exposition parsed by the Prometheus project's own Python client
/// (`prometheus_client.parser`): every family with its type and samples.
fn parse_exposition(text: &str) -> serde_json::Value {
    let script = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = [{'name': f.name, 'type': f.type, 'samples': [\n\
            {'name': s.name, 'labels': s.labels, 'value': s.value} for s in f.samples]}\n\
            for f in text_string_to_metric_families(sys.stdin.read())]\n\
        print(json.dumps(out))\n";
    let mut python = std::process::Command::new(crate::common::peers::python());
    python.args(["-c", script]);
    let out = crate::common::run_with_input(python, text.as_bytes(), "the Prometheus parser");
    serde_json::from_slice(&out).unwrap()
}

/// The samples named `name` whose labels include `labels`.
fn samples<'a>(
    families: &'a serde_json::Value,
    name: &str,
    labels: &[(&str, &str)],
) -> Vec<&'a serde_json::Value> {
    families
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["samples"].as_array().unwrap())
        .filter(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        .collect()
}

fn family_type<'a>(families: &'a serde_json::Value, name: &str) -> &'a str {
    families
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no family {name}"))["type"]
        .as_str()
        .unwrap()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn metrics_are_off_by_default_and_behind_the_token_hold_no_user_data(db: PgPool) {
    let fake = server::fake_provider::start().await.unwrap();
    // Off unless asked for: /metrics is the app's 404 page.
    let plain = TestApp::spawn_with(db.clone(), crate::common::chat_settings(fake)).await;
    let res = reqwest::get(plain.url("/metrics")).await.unwrap();
    assert_eq!(res.status(), 404);
    assert!(!res.text().await.unwrap().contains("enclave_http"));

    let token = "operator-metrics-token-5f1c9a";
    let app = TestApp::spawn_serving(
        db,
        crate::common::chat_settings(fake),
        crate::common::keyring(1, &[]),
        &server::metrics::MetricsConfig {
            addr: None,
            token: Some(token.into()),
        },
    )
    .await;
    let email = "canary-metrics-9e1f@example.com";
    let client = app.signed_up(email).await;
    let agent = scripted_agent(&app, &client, fake, "openai", "fake:echo", &[], &[], "").await;
    let secret_text = "canary metrics message 7b3d";
    let started = crate::common::send_new(&app, &client, &agent, secret_text).await;
    let conversation = started["conversation_id"].as_str().unwrap().to_owned();
    let reply = reply_when(&app, &client, &conversation, "complete").await;
    assert!(reply["body"].as_str().unwrap().contains(secret_text));
    // A reply the provider breaks off: an error of a kind, by provider.
    let failing = scripted_agent(
        &app,
        &client,
        fake,
        "openai",
        "fake:tokens=5,error_after=2",
        &[],
        &[],
        "",
    )
    .await;
    let broken = crate::common::send_new(&app, &client, &failing, "break it").await;
    reply_when(
        &app,
        &client,
        broken["conversation_id"].as_str().unwrap(),
        "",
    )
    .await;

    let http = reqwest::Client::new();
    for auth in [None, Some("Bearer wrong-token-of-enough-length")] {
        let mut req = http.get(app.url("/metrics"));
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 401, "{auth:?}");
        assert!(!res.text().await.unwrap().contains("enclave_http"));
    }
    let res = http
        .get(app.url("/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = res.text().await.unwrap();
    let families = parse_exposition(&text);

    // Requests by route template, method and status, with latency buckets.
    assert_eq!(family_type(&families, "enclave_http_requests"), "counter");
    let sends = samples(
        &families,
        "enclave_http_requests_total",
        &[("method", "POST"), ("status", "200")],
    );
    assert!(
        sends.iter().any(|s| s["labels"]["route"]
            .as_str()
            .unwrap()
            .starts_with("/api/send_message")),
        "{sends:?}"
    );
    assert_eq!(
        family_type(&families, "enclave_http_request_duration_seconds"),
        "histogram"
    );
    assert!(
        !samples(
            &families,
            "enclave_http_request_duration_seconds_bucket",
            &[("le", "0.005")]
        )
        .is_empty()
    );
    // Replies: time to first token by provider, errors by kind, live runs.
    assert_eq!(
        family_type(&families, "enclave_time_to_first_token_seconds"),
        "histogram"
    );
    let first_tokens = samples(
        &families,
        "enclave_time_to_first_token_seconds_count",
        &[("provider", "openai")],
    );
    assert!(first_tokens[0]["value"].as_f64().unwrap() >= 2.0);
    let errors = samples(
        &families,
        "enclave_provider_errors_total",
        &[("provider", "openai")],
    );
    assert!(
        errors.iter().any(|s| s["value"].as_f64().unwrap() >= 1.0),
        "{errors:?}"
    );
    assert_eq!(family_type(&families, "enclave_runs_live"), "gauge");
    assert!(!samples(&families, "enclave_runs_total", &[("status", "complete")]).is_empty());
    // The database pool and the job queue.
    assert!(
        !samples(
            &families,
            "enclave_db_pool_connections",
            &[("state", "idle")]
        )
        .is_empty()
    );
    assert!(
        samples(&families, "enclave_db_pool_max_connections", &[])[0]["value"]
            .as_f64()
            .unwrap()
            >= 1.0
    );
    assert!(!samples(&families, "enclave_jobs_oldest_age_seconds", &[]).is_empty());

    // Nothing of a user: no email, no message, no id, no model name.
    let user_id: String = sqlx::query_scalar("SELECT id::text FROM users")
        .fetch_one(&app.db)
        .await
        .unwrap();
    for private in [
        email,
        "canary",
        secret_text,
        &agent,
        &conversation,
        &user_id,
        "fake:echo",
        "error_after",
    ] {
        assert!(!text.contains(private), "the metrics hold {private:?}");
    }
}
