//! Schedules end to end: two servers on one database fire a due schedule
//! once (one of them with its clock hours ahead), a server that was down
//! catches up with one run, runs are recorded with their reply, tokens and
//! conversation and mailed when asked; run now, on and off, continuing one
//! conversation, a failing run said plainly; another user's schedule is 404.

use std::time::Duration;

use chrono::Utc;
use reqwest::Client;
use serde_json::Value;
use sqlx::PgPool;

use crate::common::{
    TestApp, chat_settings, keyring, mail_with_subject, scripted_agent, with_mail_catcher,
};

async fn app(db: PgPool) -> (TestApp, std::net::SocketAddr) {
    let fake = server::fake_provider::start().await.unwrap();
    let settings = with_mail_catcher(chat_settings(fake));
    (
        TestApp::spawn_full(db, settings, keyring(1, &[])).await,
        fake,
    )
}

use crate::common::ok_json as json;

/// A schedule for `agent`; its id.
async fn schedule(
    app: &TestApp,
    client: &Client,
    agent: &str,
    cron: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut form = vec![
        ("agent_id", agent),
        ("name", "Morning summary"),
        ("cron", cron),
        ("time_zone", "Europe/Berlin"),
        ("prompt", "Summarise the day ahead"),
    ];
    form.extend_from_slice(extra);
    json(app.call(client, "create_schedule", &form).await)
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

async fn page(app: &TestApp, client: &Client, id: &str) -> Value {
    json(app.call(client, "get_schedule", &[("id", id)]).await).await
}

/// The schedule's page once its newest run is no longer queued or running.
async fn settled(app: &TestApp, client: &Client, id: &str, runs: usize) -> Value {
    for _ in 0..400 {
        let page = page(app, client, id).await;
        let list = page["runs"].as_array().unwrap();
        if list.len() >= runs
            && list
                .iter()
                .all(|r| !matches!(r["status"].as_str(), Some("queued" | "running")))
        {
            return page;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the run did not finish: {:#}", page(app, client, id).await);
}

async fn make_due(app: &TestApp, id: &str, ago: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE schedules SET next_run_at = now() - interval '{ago}' WHERE id = $1::uuid"
    )))
    .bind(id)
    .execute(&app.db)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_due_schedule_runs_once_on_two_servers_and_its_run_is_recorded_and_mailed(db: PgPool) {
    let (one, fake) = app(db.clone()).await;
    let two = TestApp::spawn_full(db, (*one.state.settings).clone(), keyring(1, &[])).await;
    let client = one.signed_up("planner@example.com").await;
    let agent = scripted_agent(&one, &client, fake, "openai", "fake:echo", &[], &[], "").await;
    // Daily, about eleven hours from now in Berlin (UTC+1 or +2), so the
    // server whose clock is two hours ahead never sees the next time due
    // too, whenever the test runs.
    use chrono::Timelike as _;
    let hour = (Utc::now().hour() + 13) % 24;
    let id = schedule(
        &one,
        &client,
        &agent,
        &format!("0 {hour} * * *"),
        &[("deliver_mail", "yes")],
    )
    .await;
    let before = page(&one, &client, &id).await;
    assert_eq!(before["schedule"]["next_runs"].as_array().unwrap().len(), 5);
    assert!(
        before["schedule"]["description"]
            .as_str()
            .unwrap()
            .ends_with("(Europe/Berlin)"),
        "{before:#}"
    );

    make_due(&one, &id, "1 minute").await;
    // Both servers look at once, again and again; one's clock is two hours
    // ahead. (Their own background schedulers look too.)
    let ahead = Utc::now() + chrono::Duration::hours(2);
    let mut fired = 0;
    for _ in 0..5 {
        let (a, b) = tokio::join!(
            app::schedules::server::tick(&one.state, Utc::now()),
            app::schedules::server::tick(&two.state, ahead),
        );
        fired += a.unwrap() + b.unwrap();
    }
    assert!(fired <= 1);
    assert_eq!(
        one.count("SELECT count(*) FROM schedule_runs").await,
        1,
        "one run, however many servers looked"
    );
    let next: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT next_run_at FROM schedules WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&one.db)
            .await
            .unwrap();
    assert!(next > Utc::now(), "moved on to its next time");

    let done = settled(&one, &client, &id, 1).await;
    let run = &done["runs"][0];
    assert_eq!(run["status"], "complete", "{done:#}");
    assert_eq!(run["manual"], false);
    assert!(run["output_tokens"].as_u64().unwrap() > 0);
    assert!(run["duration_ms"].is_u64());
    let conversation = run["conversation_id"].as_str().unwrap();
    let c = json(
        one.call(&client, "get_conversation", &[("id", conversation)])
            .await,
    )
    .await;
    assert_eq!(c["messages"][0]["body"], "Summarise the day ahead");
    assert_eq!(
        c["messages"][1]["body"],
        "You said: Summarise the day ahead"
    );
    let mail = mail_with_subject(&one, "Morning summary: your scheduled run", 1).await;
    assert!(mail.contains("You said: Summarise the day ahead"), "{mail}");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_server_that_was_down_catches_up_with_one_run_not_a_burst(db: PgPool) {
    let (app, fake) = app(db).await;
    let client = app.signed_up("catchup@example.com").await;
    let agent = scripted_agent(&app, &client, fake, "openai", "fake:echo", &[], &[], "").await;
    let id = schedule(&app, &client, &agent, "0 * * * *", &[]).await;
    // Another account's schedule whose key cannot be opened (its account
    // half erased) is turned off, and holds up no one else's.
    let other = app.signed_up("half-erased@example.com").await;
    let other_agent = scripted_agent(&app, &other, fake, "openai", "fake:echo", &[], &[], "").await;
    let broken = schedule(&app, &other, &other_agent, "0 * * * *", &[]).await;
    make_due(&app, &broken, "1 hour").await;
    sqlx::query(
        "DELETE FROM user_keys WHERE user_id = (SELECT owner_id FROM schedules WHERE id = $1::uuid)",
    )
    .bind(&broken)
    .execute(&app.db)
    .await
    .unwrap();
    // Due every hour, and no server ran for three days.
    make_due(&app, &id, "3 days").await;
    for _ in 0..3 {
        app::schedules::server::tick(&app.state, Utc::now())
            .await
            .unwrap();
    }
    assert_eq!(app.count("SELECT count(*) FROM schedule_runs").await, 1);
    let done = settled(&app, &client, &id, 1).await;
    assert_eq!(done["runs"][0]["status"], "complete");
    let off: bool = sqlx::query_scalar("SELECT NOT enabled FROM schedules WHERE id = $1::uuid")
        .bind(&broken)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(off, "the unreadable schedule is turned off");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn run_now_on_and_off_one_conversation_and_a_failing_run_said_plainly(db: PgPool) {
    let (app, fake) = app(db).await;
    let client = app.signed_up("manual@example.com").await;
    let agent = scripted_agent(&app, &client, fake, "openai", "fake:echo", &[], &[], "").await;
    let id = schedule(
        &app,
        &client,
        &agent,
        "30 7 * * *",
        &[("continue_conversation", "yes")],
    )
    .await;
    // Off: no next time, but it still runs when asked.
    let res = app
        .call(
            &client,
            "set_schedule_enabled",
            &[("id", id.as_str()), ("enabled", "no")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let off = page(&app, &client, &id).await;
    assert_eq!(off["schedule"]["enabled"], false);
    assert_eq!(off["schedule"]["next_runs"], serde_json::json!([]));
    for n in 1..=2 {
        let res = app
            .call(&client, "run_schedule_now", &[("id", id.as_str())])
            .await;
        assert_eq!(res.status(), 200);
        settled(&app, &client, &id, n).await;
    }
    let done = page(&app, &client, &id).await;
    let runs = done["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert!(
        runs.iter()
            .all(|r| r["manual"] == true && r["status"] == "complete")
    );
    assert_eq!(
        runs[0]["conversation_id"], runs[1]["conversation_id"],
        "both runs wrote in one conversation"
    );
    assert_eq!(
        done["schedule"]["conversation_id"],
        runs[0]["conversation_id"]
    );
    let on = app
        .call(
            &client,
            "set_schedule_enabled",
            &[("id", id.as_str()), ("enabled", "yes")],
        )
        .await;
    assert_eq!(on.status(), 200);
    assert_eq!(
        page(&app, &client, &id).await["schedule"]["next_runs"]
            .as_array()
            .unwrap()
            .len(),
        5
    );

    // A model that fails: the run says why.
    let failing = scripted_agent(
        &app,
        &client,
        fake,
        "openai",
        "fake:status=401",
        &[],
        &[],
        "",
    )
    .await;
    let broken = schedule(&app, &client, &failing, "0 8 * * *", &[]).await;
    app.call(&client, "run_schedule_now", &[("id", broken.as_str())])
        .await;
    let done = settled(&app, &client, &broken, 1).await;
    assert_eq!(done["runs"][0]["status"], "failed");
    assert!(
        !done["runs"][0]["error"].as_str().unwrap().is_empty(),
        "{done:#}"
    );

    // Mistakes are said on their fields, and nothing is saved.
    let res = app
        .call(
            &client,
            "create_schedule",
            &[
                ("agent_id", agent.as_str()),
                ("name", ""),
                ("cron", "every morning"),
                ("time_zone", "Mars/Olympus"),
                ("prompt", "x"),
            ],
        )
        .await;
    assert_eq!(res.status(), 422);
    let text = res.text().await.unwrap();
    for said in ["Give the schedule a name.", "five fields", "Europe/Berlin"] {
        assert!(text.contains(said), "{said:?} in {text}");
    }
    assert_eq!(app.count("SELECT count(*) FROM schedules").await, 2);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn another_users_schedule_is_not_found(db: PgPool) {
    let (app, fake) = app(db).await;
    let owner = app.signed_up("sched-owner@example.com").await;
    let agent = scripted_agent(&app, &owner, fake, "openai", "fake:echo", &[], &[], "").await;
    let id = schedule(&app, &owner, &agent, "0 9 * * *", &[]).await;
    let other = app.signed_up("sched-other@example.com").await;
    let edit = [
        ("id", id.as_str()),
        ("name", "Mine now"),
        ("cron", "0 10 * * *"),
        ("time_zone", "UTC"),
        ("prompt", "Hello"),
    ];
    let create = [
        ("agent_id", agent.as_str()),
        ("name", "Sneaky"),
        ("cron", "0 10 * * *"),
        ("time_zone", "UTC"),
        ("prompt", "Hello"),
    ];
    for (name, form) in [
        ("get_schedule", vec![("id", id.as_str())]),
        ("list_schedules", vec![("agent_id", agent.as_str())]),
        ("update_schedule", edit.to_vec()),
        ("create_schedule", create.to_vec()),
        (
            "set_schedule_enabled",
            vec![("id", id.as_str()), ("enabled", "no")],
        ),
        ("run_schedule_now", vec![("id", id.as_str())]),
        ("delete_schedule", vec![("id", id.as_str())]),
    ] {
        assert_eq!(app.call(&other, name, &form).await.status(), 404, "{name}");
    }
    let kept = page(&app, &owner, &id).await;
    assert_eq!(kept["schedule"]["name"], "Morning summary");
    assert_eq!(kept["schedule"]["enabled"], true);
    assert_eq!(kept["runs"], serde_json::json!([]));
    assert_eq!(app.count("SELECT count(*) FROM schedules").await, 1);
}
