//! Your data: the activity log (security events with address and browser,
//! paged, the owner's only; notice mails for failed sign-ins and new
//! browsers); deleting the account (grace period, restore, erasure by
//! crypto-shredding); retention; deleting every conversation.

use std::time::Duration;

use crate::common::{
    PASSWORD, TestApp, account_key, browser, chat_settings, enrol_totp, keyring, mail_with_subject,
    mails_with_subject, reply_when, scripted_agent, send_new, totp_code, with_catcher,
    with_mail_catcher,
};
use app::{
    data::activity::{Event, PAGE_SIZE},
    platform::{
        crypto::{Place, Sealed},
        keystore::{self, SealedColumn},
    },
};
use reqwest::Client;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) \
     AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const NEW_BROWSER: &str = "A new sign-in to your account";
const FAILED: &str = "A failed sign-in to your account";

async fn activity(app: &TestApp, client: &Client, after: Option<&str>) -> Value {
    let form: Vec<(&str, &str)> = after.map(|a| ("after", a)).into_iter().collect();
    let res = app.call(client, "list_activity", &form).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn kinds(page: &Value) -> Vec<String> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn security_events_are_logged_with_address_and_browser_for_the_owner_only(db: PgPool) {
    let app = with_catcher(db).await;
    app.signed_up("ada@example.com").await;
    let laptop = browser(FIREFOX);
    // A wrong password, then the right one, from Firefox on Linux.
    let res = app
        .sign_in(&laptop, "ada@example.com", "not the password")
        .await;
    assert_eq!(res.status(), 401);
    let res = app.sign_in(&laptop, "ada@example.com", PASSWORD).await;
    assert_eq!(res.status(), 200);
    let res = app
        .call(
            &laptop,
            "add_provider_key",
            &[
                ("provider", "openai"),
                ("label", "Work key"),
                ("secret", "sk-test-1234567890"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .call(
            &laptop,
            "change_password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "another long password"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);

    let page = activity(&app, &laptop, None).await;
    assert_eq!(
        kinds(&page),
        [
            "password_changed",
            "provider_key_added",
            "signed_in",
            "sign_in_failed",
            "signed_in"
        ],
        "newest first: {page:#}"
    );
    let key_added = &page["entries"][1];
    assert_eq!(key_added["label"], "Added a provider key");
    assert_eq!(key_added["detail"], "Work key");
    assert_eq!(key_added["address"], "127.0.0.1");
    assert_eq!(key_added["browser"], "Firefox 133 on Linux");
    let failed = &page["entries"][3];
    assert_eq!(failed["warning"], true);
    assert_eq!(failed["label"], "Failed sign-in");
    assert_eq!(page["next"], Value::Null);

    // The address, browser and detail are sealed; the kind is not.
    let plain: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM activity
         WHERE position('127.0.0.1' in encode(ip, 'escape')) > 0
            OR position('Firefox' in encode(user_agent, 'escape')) > 0
            OR position('Work key' in encode(detail, 'escape')) > 0",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(plain, 0);

    // Another user sees only their own log, and Ada's entry ids are not found.
    let eve = app.signed_up("eve@example.com").await;
    let eve_page = activity(&app, &eve, None).await;
    assert_eq!(kinds(&eve_page), ["signed_in"]);
    let ada_entry = key_added["id"].as_str().unwrap();
    let res = app
        .call(&eve, "list_activity", &[("after", ada_entry)])
        .await;
    assert_eq!(res.status(), 404);
    let res = app
        .call(&eve, "list_activity", &[("after", "not-an-id")])
        .await;
    assert_eq!(res.status(), 404);
    // Signed out: no log at all.
    let res = app.call(&app.client(), "list_activity", &[]).await;
    assert_eq!(res.status(), 401);

    // The page itself, server-rendered for the owner.
    let html = laptop
        .get(app.url("/settings/account-activity"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Failed sign-in") && html.contains("Work key"),
        "{html}"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_log_pages_newest_first_without_gaps_or_repeats(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let client = app.signed_up("ada@example.com").await;
    let (user, key) = account_key(&app, "ada@example.com").await;
    for i in 0..(PAGE_SIZE + 7) {
        app::data::activity::server::record(
            &app.db,
            &app.state.crypto,
            user,
            &key,
            Event::ProviderKeyTested,
            None,
            Some(&format!("key {i}")),
        )
        .await
        .unwrap();
    }
    let first = activity(&app, &client, None).await;
    assert_eq!(first["entries"].as_array().unwrap().len(), PAGE_SIZE);
    let next = first["next"].as_str().expect("a second page").to_owned();
    let second = activity(&app, &client, Some(&next)).await;
    // 57 tests and the sign-in: 58 entries, 50 + 8.
    assert_eq!(second["entries"].as_array().unwrap().len(), 8);
    assert_eq!(second["next"], Value::Null);
    let mut ids: Vec<String> = [&first, &second]
        .iter()
        .flat_map(|p| p["entries"].as_array().unwrap().clone())
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "no entry on two pages");
    assert_eq!(kinds(&second).last().unwrap(), "signed_in", "oldest last");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn failed_sign_ins_and_new_browsers_are_mailed_to_the_owner(db: PgPool) {
    let app = with_catcher(db).await;
    app.signed_up("ada@example.com").await;
    // The first sign-in of an account is not "a new browser".
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mails_with_subject(&app, NEW_BROWSER), 0);

    let phone = browser(SAFARI_IPHONE);
    let res = app.sign_in(&phone, "ada@example.com", PASSWORD).await;
    assert_eq!(res.status(), 200);
    let text = mail_with_subject(&app, NEW_BROWSER, 1).await;
    assert!(text.contains("Safari 17 on iPhone (iOS 17.5)"), "{text}");
    assert!(
        text.contains("127.0.0.1") && text.contains("/settings/sessions"),
        "{text}"
    );
    // The same browser again is known.
    let again = browser(SAFARI_IPHONE);
    let res = app.sign_in(&again, "ada@example.com", PASSWORD).await;
    assert_eq!(res.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mails_with_subject(&app, NEW_BROWSER), 1);

    // Three failures in a row: one mail this hour, three entries.
    for _ in 0..3 {
        let res = app
            .sign_in(&app.client(), "ada@example.com", "wrong guess 123")
            .await;
        assert_eq!(res.status(), 401);
    }
    let text = mail_with_subject(&app, FAILED, 1).await;
    assert!(text.contains("/settings/account-activity"), "{text}");
    assert!(
        !text.contains("wrong guess"),
        "never the password tried: {text}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mails_with_subject(&app, FAILED), 1);
    assert_eq!(
        app.count("SELECT count(*) FROM activity WHERE kind = 'sign_in_failed'")
            .await,
        3
    );
    // An address with no account: nothing logged, nothing mailed.
    let res = app
        .sign_in(&app.client(), "nobody@example.com", "wrong guess 123")
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        app.count("SELECT count(*) FROM activity WHERE kind = 'sign_in_failed'")
            .await,
        3
    );
}

/// A test app with the fake provider and the mail catcher, and a
/// signed-in `email` with an agent and a finished conversation.
async fn with_a_conversation(db: PgPool) -> (TestApp, Client, String) {
    let fake = server::fake_provider::start().await.unwrap();
    let settings = with_mail_catcher(chat_settings(fake));
    let app = TestApp::spawn_full(db, settings, keyring(1, &[])).await;
    let client = app.signed_up("ada@example.com").await;
    let agent = scripted_agent(&app, &client, fake, "openai", "fake:echo", &[], &[], "").await;
    let sent = send_new(&app, &client, &agent, "hello there").await;
    let conversation = sent["conversation_id"].as_str().unwrap().to_owned();
    reply_when(&app, &client, &conversation, "complete").await;
    (app, client, conversation)
}

const DELETED: &str = "Your Enclave account was deleted";
const RESTORED: &str = "Your Enclave account was restored";

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn deleting_the_account_signs_out_everywhere_and_signing_in_within_grace_restores_it(
    db: PgPool,
) {
    let (app, laptop, conversation) = with_a_conversation(db).await;
    let phone = browser(SAFARI_IPHONE);
    assert_eq!(
        app.sign_in(&phone, "ada@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    // An agent served over MCP, with its token: a program's way in.
    let agent = agent_of(&app.db, conversation.parse().unwrap()).await;
    let access: Value = app
        .call(&laptop, "enable_agent_mcp", &[("agent_id", agent.as_str())])
        .await
        .json()
        .await
        .unwrap();
    let mcp = |access: &Value| {
        let url = access["url"].as_str().unwrap().to_owned();
        let token = access["token"].as_str().unwrap().to_owned();
        async move {
            reqwest::Client::new()
                .post(url)
                .bearer_auth(token)
                .header("accept", "application/json, text/event-stream")
                .json(&serde_json::json!({
                    "jsonrpc": "2.0", "id": 1, "method": "initialize",
                    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                               "clientInfo": {"name": "test", "version": "1"}}
                }))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(mcp(&access).await, 200);

    // Neither nothing nor a wrong password will do; nothing changes.
    let res = app.call(&laptop, "delete_account", &[]).await;
    assert_eq!(res.status(), 422);
    let res = app
        .call(
            &laptop,
            "delete_account",
            &[("password", "not my password")],
        )
        .await;
    assert_eq!(res.status(), 422);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("not your current password")
    );
    assert_eq!(app.current_user(&laptop).await["email"], "ada@example.com");

    let res = app
        .call(&laptop, "delete_account", &[("password", PASSWORD)])
        .await;
    assert_eq!(res.status(), 200);
    let erase_on: String = res.json().await.unwrap();
    let expected = (chrono::Utc::now() + chrono::Duration::days(30))
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(erase_on, expected);
    // Both browsers are out, and a signed-out page says so.
    assert_eq!(app.current_user(&laptop).await, Value::Null);
    assert_eq!(app.current_user(&phone).await, Value::Null);
    assert_eq!(app.count("SELECT count(*) FROM sessions").await, 0);
    assert_eq!(
        mcp(&access).await,
        401,
        "the agent's MCP token stops working too"
    );
    let text = mail_with_subject(&app, DELETED, 1).await;
    assert!(
        text.contains(&erase_on) && text.contains("/sign-in"),
        "{text}"
    );
    let page = app
        .client()
        .get(app.url(&format!("/sign-in?deleted={erase_on}")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Your account is deleted") && page.contains(&erase_on));

    // Signing in within the grace period brings everything back.
    let back = app.client();
    assert_eq!(
        app.sign_in(&back, "ada@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(app.current_user(&back).await["email"], "ada@example.com");
    let res = app
        .call(&back, "get_conversation", &[("id", conversation.as_str())])
        .await;
    assert_eq!(res.status(), 200, "the conversation is still there");
    assert_eq!(mcp(&access).await, 200, "and the token works again");
    assert_eq!(
        app.count("SELECT count(*) FROM users WHERE deleted_at IS NOT NULL")
            .await,
        0
    );
    mail_with_subject(&app, RESTORED, 1).await;
    let log = kinds(&activity(&app, &back, None).await);
    assert_eq!(
        log[..3],
        ["account_restored", "signed_in", "deletion_requested"]
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn an_account_without_a_password_is_deleted_with_a_two_factor_code(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let client = app.signed_up("ada@example.com").await;
    let (secret, _) = enrol_totp(&app, &client).await;
    sqlx::query("UPDATE users SET password_hash = NULL")
        .execute(&app.db)
        .await
        .unwrap();
    let res = app
        .call(
            &client,
            "delete_account",
            &[("password", ""), ("code", "000000")],
        )
        .await;
    assert_eq!(res.status(), 422);
    let res = app
        // The enrolment spent this step's code; a code is good once.
        .call(
            &client,
            "delete_account",
            &[("code", &totp_code(&secret, 1))],
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.current_user(&client).await, Value::Null);
}

/// Every sealed value of `owner`, from every sealed column: what a dump of
/// the database holds of them.
async fn sealed_values(db: &PgPool, owner: Uuid) -> Vec<(SealedColumn, Uuid, Vec<u8>)> {
    let mut values = Vec::new();
    for column in app::sealed_columns() {
        // Names from the slices' SEALED lists, never from input.
        let sql = format!(
            "SELECT {id}, {col}::bytea FROM {table} WHERE {owner} = $1 AND {col} IS NOT NULL",
            id = column.id,
            col = column.column,
            table = column.table,
            owner = column.owner,
        );
        let rows: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(owner)
            .fetch_all(db)
            .await
            .unwrap();
        values.extend(rows.into_iter().map(|(id, bytes)| (*column, id, bytes)));
    }
    values
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn after_the_grace_period_the_account_is_erased_and_an_old_dump_cannot_be_opened(db: PgPool) {
    let (app, client, _) = with_a_conversation(db.clone()).await;
    let res = app
        .call(
            &client,
            "add_provider_key",
            &[
                ("provider", "openai"),
                ("label", "Work key"),
                ("secret", "sk-test-1234567890"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    // Credits, granted (their history's notes are sealed) and one card
    // payment begun.
    {
        let (ada, key) = account_key(&app, "ada@example.com").await;
        let mut tx = app.db.begin().await.unwrap();
        app::usage::server::credit(&mut tx, ada, &key, "grant", 5_000_000, "Ada's grant")
            .await
            .unwrap();
        sqlx::query("INSERT INTO credit_checkouts (id, owner_id, amount) VALUES ($1, $2, 5000000)")
            .bind(Uuid::new_v4())
            .bind(ada)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    // A knowledge base with a document (refused at once: no embedding
    // needed, and its reason is sealed too).
    let base = crate::knowledge::ingestion::create_base(&app, &client, "Ada's notes").await;
    crate::knowledge::ingestion::upload(
        &app,
        &client,
        &base,
        vec![("scan.png", b"\x89PNG\r\n\x1a\n\0\0".to_vec())],
    )
    .await;
    // A file attached for a message not sent yet.
    let agent: String = sqlx::query_scalar("SELECT id::text FROM agents LIMIT 1")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let res = crate::chat_files::attach(
        &app,
        &client,
        &agent,
        &[],
        vec![("draft.txt", b"Ada's draft.".to_vec())],
    )
    .await;
    assert_eq!(res.status(), 200);
    // A schedule, run once.
    let schedule: String = app
        .call(
            &client,
            "create_schedule",
            &[
                ("agent_id", agent.as_str()),
                ("name", "Ada's mornings"),
                ("cron", "0 9 * * *"),
                ("time_zone", "Europe/London"),
                ("prompt", "Good morning"),
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
    // An API key.
    let res = app
        .call(
            &client,
            "create_api_key",
            &[("name", "Ada's script"), ("scopes[]", "chat")],
        )
        .await;
    assert_eq!(res.status(), 200);
    // A Telegram bot.
    let res = app
        .call(
            &client,
            "connect_telegram",
            &[
                ("agent_id", agent.as_str()),
                ("token", "123456789:AAE_fake-token-of-ada-for-the-erase"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let bystander = app.signed_up("bob@example.com").await;
    let (ada, ada_key) = account_key(&app, "ada@example.com").await;

    // The "dump": every sealed value of Ada's, taken before anything goes.
    let dump = sealed_values(&app.db, ada).await;
    let columns: std::collections::BTreeSet<_> =
        dump.iter().map(|(c, _, _)| (c.table, c.column)).collect();
    assert!(
        columns.len() >= 12,
        "the dump holds many kinds of Ada's data: {columns:?}"
    );
    // With Ada's key, every one of them opens.
    for (column, row, bytes) in &dump {
        let place = Place::new(column.table, column.column, *row, ada);
        ada_key
            .open(place, &Sealed::from_stored(bytes.clone()))
            .unwrap_or_else(|_| {
                panic!("{}.{} opens before the erase", column.table, column.column)
            });
    }

    // Deleted, restored by signing in within the grace period, deleted again.
    let res = app
        .call(&client, "delete_account", &[("password", PASSWORD)])
        .await;
    assert_eq!(res.status(), 200);
    let client = app.client();
    assert_eq!(
        app.sign_in(&client, "ada@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.count("SELECT count(*) FROM users WHERE deleted_at IS NOT NULL")
            .await,
        0
    );
    let res = app
        .call(&client, "delete_account", &[("password", PASSWORD)])
        .await;
    assert_eq!(res.status(), 200);
    // Within the grace period, the retention job leaves it alone.
    let retention = app::platform::settings::Retention::default();
    let report = app::data::retention::server::run(&app.db, &retention)
        .await
        .unwrap();
    assert_eq!(report.accounts, 0);
    assert_eq!(app.count("SELECT count(*) FROM users").await, 2);
    // Thirty days and a bit later, it is erased.
    sqlx::query("UPDATE users SET deleted_at = now() - interval '30 days 1 minute' WHERE id = $1")
        .bind(ada)
        .execute(&app.db)
        .await
        .unwrap();
    let report = app::data::retention::server::run(&app.db, &retention)
        .await
        .unwrap();
    assert_eq!(report.accounts, 1);
    assert!(
        sealed_values(&app.db, ada).await.is_empty(),
        "no row of Ada's is left"
    );
    // Nor any plain row: activity, consents, exports, jobs, knowledge, sessions.
    for table in [
        "activity",
        "consents",
        "exports",
        "jobs",
        "knowledge_bases",
        "knowledge_documents",
        "chat_files",
        "schedules",
        "schedule_runs",
        "telegram_channels",
        "api_keys",
        "usage_entries",
        "credit_balances",
        "credit_transactions",
        "credit_checkouts",
        "credit_holds",
        "usage_alerts",
    ] {
        let left: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {table} WHERE owner_id = $1"
        )))
        .bind(ada)
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert_eq!(left, 0, "{table} rows of Ada's are left");
    }
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE user_id = $1")
        .bind(ada)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(sessions, 0);
    assert_eq!(
        app.count("SELECT count(*) FROM users").await,
        1,
        "only the bystander's account is left"
    );
    assert_eq!(
        keystore::user_key(&app.db, &app.keyring, ada, keystore::KeyUse::Operator)
            .await
            .unwrap_err(),
        app::error::AppError::NotFound,
        "Ada's data key is gone"
    );

    // Every key left after the erase (each remaining user's data key)
    // opens none of the dump's values, at their own place or anywhere.
    let users: Vec<Uuid> = sqlx::query_scalar("SELECT user_id FROM user_keys")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(users.len(), 1);
    for user in users {
        let key = keystore::user_key(&app.db, &app.keyring, user, keystore::KeyUse::Operator)
            .await
            .unwrap();
        for (column, row, bytes) in &dump {
            let sealed = Sealed::from_stored(bytes.clone());
            for owner in [ada, user] {
                let place = Place::new(column.table, column.column, *row, owner);
                assert!(
                    key.open(place, &sealed).is_err(),
                    "{}.{} opened with a key left after the erase",
                    column.table,
                    column.column
                );
            }
        }
    }
    // The bystander lost nothing.
    assert_eq!(
        app.current_user(&bystander).await["email"],
        "bob@example.com"
    );
    let report = keystore::verify(&app.db, &app.keyring, app::sealed_columns(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.failures, vec![]);
    // Signing in to the erased account is like any unknown address.
    assert_eq!(
        app.sign_in(&app.client(), "ada@example.com", PASSWORD)
            .await
            .status(),
        401
    );
}

/// Moves the row's clock back `days` days.
async fn age(db: &PgPool, table: &str, column: &str, id: Uuid, days: i32) {
    // Table and column names come from this file, never from input.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {table} SET {column} = now() - make_interval(days => $2) WHERE id = $1"
    )))
    .bind(id)
    .bind(days)
    .execute(db)
    .await
    .unwrap();
}

async fn conversation_ids(db: &PgPool, owner: Uuid) -> Vec<Uuid> {
    sqlx::query_scalar("SELECT id FROM conversations WHERE owner_id = $1 ORDER BY id")
        .bind(owner)
        .fetch_all(db)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn retention_erases_only_what_is_due_with_two_servers_running(db: PgPool) {
    let fake = server::fake_provider::start().await.unwrap();
    let settings = chat_settings(fake);
    let one = TestApp::spawn_full(db.clone(), settings.clone(), keyring(1, &[])).await;
    let two = TestApp::spawn_full(db.clone(), settings, keyring(1, &[])).await;
    let ada_client = one.signed_up("ada@example.com").await;
    let bob_client = two.signed_up("bob@example.com").await;
    let (ada, _) = account_key(&one, "ada@example.com").await;
    let (bob, _) = account_key(&one, "bob@example.com").await;
    // Bob keeps conversations 7 days only.
    let res = two
        .call(&bob_client, "set_conversation_retention", &[("days", "7")])
        .await;
    assert_eq!(res.status(), 200);
    let res = two
        .call(&bob_client, "set_conversation_retention", &[("days", "5")])
        .await;
    assert_eq!(res.status(), 422, "only the periods offered");
    for (app, client) in [
        (&one, &ada_client),
        (&one, &ada_client),
        (&one, &ada_client),
        (&two, &bob_client),
        (&two, &bob_client),
    ] {
        let agent = scripted_agent(app, client, fake, "openai", "fake:echo", &[], &[], "").await;
        let sent = send_new(app, client, &agent, "hello").await;
        reply_when(
            app,
            client,
            sent["conversation_id"].as_str().unwrap(),
            "complete",
        )
        .await;
    }
    let ada_conversations = conversation_ids(&db, ada).await;
    let bob_conversations = conversation_ids(&db, bob).await;
    age(&db, "conversations", "updated_at", ada_conversations[0], 91).await;
    age(&db, "conversations", "updated_at", ada_conversations[1], 89).await;
    age(&db, "conversations", "updated_at", bob_conversations[0], 8).await;
    age(&db, "conversations", "updated_at", bob_conversations[1], 6).await;
    // The chat list says when each goes.
    let listed: Value = two
        .call(
            &bob_client,
            "list_conversations",
            &[("agent_id", &agent_of(&db, bob_conversations[1]).await)],
        )
        .await
        .json()
        .await
        .unwrap();
    let expected = (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string();
    assert_eq!(listed[0]["expires_on"], expected.as_str(), "{listed:#}");
    // Activity entries: one 91 days old (due), one 89 (kept).
    let entries: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM activity WHERE owner_id = $1")
        .bind(ada)
        .fetch_all(&db)
        .await
        .unwrap();
    let ada_entries_before = entries.len();
    let (_, ada_key) = account_key(&one, "ada@example.com").await;
    for days in [91, 89] {
        let id = app::data::activity::server::record(
            &db,
            &one.state.crypto,
            ada,
            &ada_key,
            Event::ProviderKeyTested,
            None,
            None,
        )
        .await
        .unwrap();
        age(&db, "activity", "at", id, days).await;
    }
    // Usage entries go with the conversations: one of Ada's three made 91
    // days old.
    let usage: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM usage_entries WHERE owner_id = $1 ORDER BY id")
            .bind(ada)
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(usage.len(), 3, "a usage entry per reply");
    age(&db, "usage_entries", "created_at", usage[0], 91).await;
    // Deleted accounts: Carol 31 days ago (due), Dan 29 days ago (kept).
    for (email, days) in [("carol@example.com", 31), ("dan@example.com", 29)] {
        let client = one.signed_up(email).await;
        assert_eq!(
            one.call(&client, "delete_account", &[("password", PASSWORD)])
                .await
                .status(),
            200
        );
        let (id, _) = account_key(&one, email).await;
        sqlx::query(
            "UPDATE users SET deleted_at = now() - make_interval(days => $2) WHERE id = $1",
        )
        .bind(id)
        .bind(days)
        .execute(&db)
        .await
        .unwrap();
    }

    // Both servers queue this hour's job; one job exists, and it runs once.
    let (a, b) = tokio::join!(
        app::data::retention::server::schedule(&one.state),
        app::data::retention::server::schedule(&two.state)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(
        one.count("SELECT count(*) FROM jobs WHERE kind = 'retention'")
            .await,
        1
    );
    for _ in 0..400 {
        if one
            .count("SELECT count(*) FROM jobs WHERE kind = 'retention' AND state = 'done'")
            .await
            == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        one.count("SELECT count(*) FROM jobs WHERE kind = 'retention' AND state = 'done'")
            .await,
        1
    );

    assert_eq!(
        conversation_ids(&db, ada).await,
        ada_conversations[1..].to_vec()
    );
    assert_eq!(
        conversation_ids(&db, bob).await,
        bob_conversations[1..].to_vec()
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM activity WHERE owner_id = $1")
        .bind(ada)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        left as usize,
        ada_entries_before + 1,
        "the 91-day-old entry went"
    );
    let usage_left: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM usage_entries WHERE owner_id = $1 ORDER BY id")
            .bind(ada)
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(
        usage_left,
        usage[1..].to_vec(),
        "the 91-day-old usage entry went"
    );
    assert_eq!(
        one.count("SELECT count(*) FROM users").await,
        3,
        "Ada, Bob and Dan"
    );
    assert_eq!(
        one.count("SELECT count(*) FROM users WHERE deleted_at IS NOT NULL")
            .await,
        1,
        "Dan, still in his grace period"
    );

    // Two passes at once over fresh due rows share the work: each row goes
    // once, and neither pass fails.
    for id in conversation_ids(&db, ada).await {
        age(&db, "conversations", "updated_at", id, 100).await;
    }
    let retention = app::platform::settings::Retention::default();
    let (a, b) = tokio::join!(
        app::data::retention::server::run(&one.db, &retention),
        app::data::retention::server::run(&two.db, &retention)
    );
    assert_eq!(a.unwrap().conversations + b.unwrap().conversations, 2);
    assert!(conversation_ids(&db, ada).await.is_empty());
}

async fn agent_of(db: &PgPool, conversation: Uuid) -> String {
    let agent: Uuid = sqlx::query_scalar("SELECT agent_id FROM conversations WHERE id = $1")
        .bind(conversation)
        .fetch_one(db)
        .await
        .unwrap();
    agent.to_string()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn every_conversation_can_be_deleted_at_once_and_only_the_owners(db: PgPool) {
    let (app, client, conversation) = with_a_conversation(db).await;
    let other = app.signed_up("eve@example.com").await;
    let res = app
        .call(&other, "delete_all_conversations", &[("confirm", "yes")])
        .await;
    assert_eq!(
        res.json::<u64>().await.unwrap(),
        0,
        "Eve has none, and Ada's stay"
    );
    let res = app.call(&client, "delete_all_conversations", &[]).await;
    assert_eq!(res.status(), 422, "the box must be ticked");
    assert_eq!(app.count("SELECT count(*) FROM conversations").await, 1);
    let res = app
        .call(&client, "delete_all_conversations", &[("confirm", "yes")])
        .await;
    assert_eq!(res.json::<u64>().await.unwrap(), 1);
    let res = app
        .call(
            &client,
            "get_conversation",
            &[("id", conversation.as_str())],
        )
        .await;
    assert_eq!(res.status(), 404);
    assert_eq!(app.count("SELECT count(*) FROM messages").await, 0);
}

/// Asks for an export and waits until it is ready; its id.
async fn export_ready(app: &TestApp, client: &Client) -> String {
    let res = app.call(client, "request_export", &[]).await;
    assert_eq!(res.status(), 200);
    let id: String = res.json().await.unwrap();
    for _ in 0..800 {
        let list: Value = app
            .call(client, "list_exports", &[])
            .await
            .json()
            .await
            .unwrap();
        let this = list
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["id"] == id.as_str())
            .cloned()
            .expect("the export is listed");
        assert_ne!(this["state"], "failed");
        if this["state"] == "ready" {
            assert_eq!(this["progress"], 100);
            return id;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the export never became ready");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn an_export_holds_every_kind_for_its_owner_alone_for_a_day(db: PgPool) {
    let (app, client, conversation) = with_a_conversation(db).await;
    let res = app
        .call(
            &client,
            "add_provider_key",
            &[
                ("provider", "openai"),
                ("label", "Work key"),
                ("secret", "sk-test-secret-0987654321"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let id = export_ready(&app, &client).await;
    let text = mail_with_subject(&app, "Your Enclave export is ready", 1).await;
    assert!(text.contains("/settings/data"), "{text}");

    let res = client
        .get(app.url(&format!("/settings/data/exports/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/zip");
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"enclave-export-")
    );
    let files = app::data::export::server::unzip(&res.bytes().await.unwrap()).unwrap();
    let json = |name: &str| app::data::export::server::json_in(&files, name);
    // The download is in the activity log, with where it went.
    let log = activity(&app, &client, None).await;
    assert_eq!(log["entries"][0]["kind"], "export_downloaded", "{log:#}");
    assert_eq!(log["entries"][0]["address"], "127.0.0.1", "{log:#}");
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "README.md",
        "manifest.json",
        "account.json",
        "sign_in_methods.json",
        "sessions.json",
        "activity.json",
        "agents.json",
        "provider_keys.json",
        "connections.json",
        "mcp_servers.json",
        "tool_calls.json",
        "conversations.json",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    assert_eq!(json("manifest.json")["format"], "enclave-export");
    assert_eq!(
        json("manifest.json")["version"],
        app::data::export::FORMAT_VERSION
    );
    assert_eq!(json("account.json")["email"], "ada@example.com");
    assert_eq!(json("account.json")["conversation_retention_days"], 90);
    assert_eq!(json("agents.json")[0]["model"], "fake:echo");
    assert_eq!(json("provider_keys.json")[0]["label"], "Work key");
    assert!(
        json("activity.json")
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "export_requested")
    );
    let messages = &json(&format!("conversations/{conversation}.json"))["messages"];
    assert_eq!(messages[0]["body"], "hello there");
    assert_eq!(messages[1]["role"], "assistant");
    let markdown = files
        .iter()
        .find(|(n, _)| *n == format!("conversations/{conversation}.md"))
        .map(|(_, b)| String::from_utf8(b.clone()).unwrap())
        .unwrap();
    assert!(markdown.contains("## You\n\nhello there"), "{markdown}");
    let everything: String = files
        .iter()
        .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert!(
        !everything.contains("sk-test-secret-0987654321"),
        "never the key"
    );
    assert!(!everything.contains(PASSWORD), "never the password");

    // Another user: not found, and not listed.
    let eve = app.signed_up("eve@example.com").await;
    let res = eve
        .get(app.url(&format!("/settings/data/exports/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let theirs: Value = app
        .call(&eve, "list_exports", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs, serde_json::json!([]));

    // A day later it is gone: not offered, then deleted by the retention job.
    sqlx::query("UPDATE exports SET expires_at = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .unwrap();
    let res = client
        .get(app.url(&format!("/settings/data/exports/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let report = app::data::retention::server::run(&app.db, &Default::default())
        .await
        .unwrap();
    assert_eq!(report.exports, 1);
    assert_eq!(app.count("SELECT count(*) FROM exports").await, 0);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_new_policy_version_needs_notice_is_mailed_and_shown_until_acknowledged(db: PgPool) {
    use app::data::policies::{PolicyKind, server as policies};
    let app = with_catcher(db).await;
    let ada = app.signed_up("ada@example.com").await;
    let bob = app.signed_up("bob@example.com").await;

    // The shipped first versions are served with their date and history.
    let page: Value = app
        .call(&app.client(), "policy_page", &[("kind", "privacy")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["shown"]["version"], 1);
    assert_eq!(page["shown"]["current"], true);
    assert!(
        page["body_html"]
            .as_str()
            .unwrap()
            .contains("How long we keep it")
    );
    let html = page_text(&app, "/cookies").await;
    assert!(
        html.contains("enclave_session") && html.contains("Version 1"),
        "{html}"
    );
    assert!(
        app.call(&ada, "policy_notices", &[])
            .await
            .json::<Value>()
            .await
            .unwrap()
            == serde_json::json!([])
    );

    // Less than 30 days' notice is refused.
    let soon = (chrono::Utc::now() + chrono::Duration::days(10)).date_naive();
    let err = policies::publish(
        &app.db,
        &app.keyring,
        &app.settings.public_url,
        PolicyKind::Privacy,
        "New text.",
        soon,
        "Shorter logs.",
    )
    .await
    .unwrap_err();
    assert!(
        err.field_message("effective")
            .unwrap()
            .contains("30 days' notice"),
        "{err}"
    );

    let effective = (chrono::Utc::now() + chrono::Duration::days(31)).date_naive();
    let (version, mailed) = policies::publish(
        &app.db,
        &app.keyring,
        &app.settings.public_url,
        PolicyKind::Privacy,
        "## Version two\n\nLogs are kept 60 days now.",
        effective,
        "Technical logs are kept 60 days instead of 90.",
    )
    .await
    .unwrap();
    assert_eq!((version, mailed), (2, 2));
    app.state.jobs.wake();
    let subject = format!(
        "Our Privacy Policy changes on {}",
        effective.format("%Y-%m-%d")
    );
    let text = mail_with_subject(&app, &subject, 2).await;
    assert!(
        text.contains("60 days instead of 90") && text.contains("/privacy?version=2"),
        "{text}"
    );

    // Not in force yet: version 1 is still shown, version 2 listed as coming.
    let page: Value = app
        .call(&app.client(), "policy_page", &[("kind", "privacy")])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["shown"]["version"], 1);
    assert_eq!(page["history"][0]["upcoming"], true);
    let two: Value = app
        .call(
            &app.client(),
            "policy_page",
            &[("kind", "privacy"), ("version", "2")],
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(two["body_html"].as_str().unwrap().contains("60 days now"));
    let res = app
        .call(
            &app.client(),
            "policy_page",
            &[("kind", "privacy"), ("version", "9")],
        )
        .await;
    assert_eq!(res.status(), 404);

    // Each user sees the notice until they acknowledge it.
    let notices: Value = app
        .call(&ada, "policy_notices", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(notices[0]["version"], 2);
    assert_eq!(notices[0]["kind"], "privacy");
    let res = app
        .call(
            &ada,
            "acknowledge_policy",
            &[("kind", "privacy"), ("version", "7")],
        )
        .await;
    assert_eq!(res.status(), 404, "a version that does not exist");
    let res = app
        .call(
            &ada,
            "acknowledge_policy",
            &[("kind", "privacy"), ("version", "2")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let none: Value = app
        .call(&ada, "policy_notices", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none, serde_json::json!([]));
    let still: Value = app
        .call(&bob, "policy_notices", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        still.as_array().unwrap().len(),
        1,
        "Bob has not read it yet"
    );
    // A user who signs up after it was published read it then.
    let carol = app.signed_up("carol@example.com").await;
    let theirs: Value = app
        .call(&carol, "policy_notices", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs, serde_json::json!([]));

    // Ada's consent record is listed for her alone.
    let (marketing, consents): (bool, Vec<Value>) = app
        .call(&ada, "consent_records", &[])
        .await
        .json()
        .await
        .unwrap();
    assert!(!marketing, "marketing mail is off by default");
    assert_eq!(consents.len(), 1);
    assert_eq!(consents[0]["what"], "Privacy Policy, version 2");
    let (_, bobs): (bool, Vec<Value>) = app
        .call(&bob, "consent_records", &[])
        .await
        .json()
        .await
        .unwrap();
    assert!(bobs.is_empty());
}

async fn page_text(app: &TestApp, path: &str) -> String {
    app.client()
        .get(app.url(path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn marketing_mail_is_opt_in_with_consent_records_and_the_summary_counts_every_kind(
    db: PgPool,
) {
    let (app, client, _) = with_a_conversation(db).await;
    let res = app
        .call(&client, "set_marketing_mail", &[("on", "yes")])
        .await;
    assert_eq!(res.status(), 200);
    let res = app.call(&client, "set_marketing_mail", &[]).await;
    assert_eq!(res.status(), 200);
    let (marketing, consents): (bool, Vec<Value>) = app
        .call(&client, "consent_records", &[])
        .await
        .json()
        .await
        .unwrap();
    assert!(!marketing);
    let granted: Vec<bool> = consents
        .iter()
        .map(|c| c["granted"].as_bool().unwrap())
        .collect();
    assert_eq!(
        granted,
        [false, true],
        "newest first: withdrawn after given"
    );
    assert!(consents.iter().all(|c| c["what"] == "Marketing mail"));
    let log = kinds(&activity(&app, &client, None).await);
    assert_eq!(log[..2], ["marketing_changed", "marketing_changed"]);

    let res = app
        .call(
            &client,
            "add_provider_key",
            &[
                ("provider", "openai"),
                ("label", "Work key"),
                ("secret", "sk-test-summary-123456"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let holdings: Vec<Value> = app
        .call(&client, "data_summary", &[])
        .await
        .json()
        .await
        .unwrap();
    let count = |kind: &str| {
        holdings
            .iter()
            .find(|h| h["kind"] == kind)
            .unwrap_or_else(|| panic!("{kind} missing: {holdings:#?}"))["count"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(count("Agents"), 1);
    assert_eq!(count("Conversations"), 1);
    assert_eq!(count("Messages"), 2);
    assert_eq!(count("Consent records"), 2);
    assert_eq!(count("Provider keys"), 1);
    assert!(count("Account activity entries") >= 3);
    let keys = holdings
        .iter()
        .find(|h| h["kind"] == "Provider keys")
        .unwrap();
    let item = keys["items"][0].as_str().unwrap();
    assert!(
        item.starts_with("Work key (") && !item.contains("summary-123456"),
        "{item}"
    );
    // Another user's summary is their own.
    let eve = app.signed_up("eve@example.com").await;
    let theirs: Vec<Value> = app
        .call(&eve, "data_summary", &[])
        .await
        .json()
        .await
        .unwrap();
    assert!(
        theirs
            .iter()
            .any(|h| h["kind"] == "Conversations" && h["count"] == 0)
    );
    let res = app.call(&app.client(), "data_summary", &[]).await;
    assert_eq!(res.status(), 401);
}
