//! The background job queue (`platform::jobs`) and Enclave's own mail:
//! two server processes on one database never run a job twice; failures
//! are retried with backoff and end dead; idempotency keys; leases; mail
//! delivered to a real SMTP server; the development catcher.

use crate::common::smtp;
use std::{collections::HashSet, time::Duration};

use crate::common::{TestApp, keyring, link_in, page, relaxed_settings, with_mail_catcher};
use app::platform::{
    jobs::{self, JobError, Kind, NewJob},
    keystore::{self, KeyUse},
    mail::{Mailer, Outgoing},
};
use sqlx::PgPool;
use uuid::Uuid;

async fn user_id(db: &PgPool) -> Uuid {
    sqlx::query_scalar("SELECT id FROM users ORDER BY created_at DESC LIMIT 1")
        .fetch_one(db)
        .await
        .unwrap()
}

async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..400 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} never happened");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn two_server_processes_never_run_the_same_job_twice(db: PgPool) {
    let catcher = || with_mail_catcher(relaxed_settings());
    let one = TestApp::spawn_full(db.clone(), catcher(), keyring(1, &[])).await;
    let two = TestApp::spawn_full(db.clone(), catcher(), keyring(1, &[])).await;
    one.signed_up("jobs@example.com").await;
    let owner = user_id(&db).await;
    let key = keystore::user_key(&db, &one.keyring, owner, KeyUse::Operator)
        .await
        .unwrap();
    let mut tx = db.begin().await.unwrap();
    // Fewer than the catchers keep (100 each).
    for n in 0..80 {
        let mail = Outgoing {
            to: "jobs@example.com".into(),
            subject: format!("mail {n}"),
            text: "text".into(),
            html: "<p>text</p>".into(),
        };
        jobs::enqueue(
            &mut tx,
            NewJob::new(Kind::Mail).for_owner(owner, &key, &mail),
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    // 80 mails and the sign-up's verification mail.
    let caught =
        || one.state.settings.mailer.caught().len() + two.state.settings.mailer.caught().len();
    wait_until("every job done", async || {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state <> 'done'")
            .fetch_one(&db)
            .await
            .unwrap();
        left == 0
    })
    .await;
    assert_eq!(caught(), 81);
    let subjects: Vec<String> = one
        .state
        .settings
        .mailer
        .caught()
        .into_iter()
        .chain(two.state.settings.mailer.caught())
        .map(|c| c.mail.subject)
        .collect();
    let unique: HashSet<&String> = subjects.iter().collect();
    assert_eq!(unique.len(), subjects.len(), "a mail went out twice");
    let attempts: Vec<i32> = sqlx::query_scalar("SELECT DISTINCT attempts FROM jobs")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(attempts, [1]);
    println!(
        "one sent {}, two sent {}",
        one.state.settings.mailer.caught().len(),
        two.state.settings.mailer.caught().len()
    );
}

/// A job no worker will take: the queue functions are driven by hand
/// (the tests' own worker name; no server runs here).
async fn bare_job(db: &PgPool, key: Option<&str>, max_attempts: i32) -> Option<Uuid> {
    let mut conn = db.acquire().await.unwrap();
    let mut job = NewJob::new(Kind::Mail);
    job.max_attempts = max_attempts;
    if let Some(key) = key {
        job = job.idempotency_key(key);
    }
    jobs::enqueue(&mut conn, job).await.unwrap()
}

async fn state_of(db: &PgPool, id: Uuid) -> (String, i32, Option<String>, bool) {
    sqlx::query_as("SELECT state, attempts, last_error, run_at > now() FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_failing_job_is_retried_later_then_ends_dead_with_its_reason(db: PgPool) {
    let id = bare_job(&db, None, 2).await.unwrap();
    let job = jobs::claim(&db, "test", 5).await.unwrap().pop().unwrap();
    assert_eq!((job.id, job.attempt), (id, 1));
    // Claimed: nobody else gets it.
    assert!(jobs::claim(&db, "other", 5).await.unwrap().is_empty());
    jobs::finish(
        &db,
        "test",
        &job,
        Err(JobError::retry("The mail server could not be reached.")),
    )
    .await
    .unwrap();
    let (state, attempts, error, later) = state_of(&db, id).await;
    assert_eq!((state.as_str(), attempts), ("queued", 1));
    assert_eq!(
        error.as_deref(),
        Some("The mail server could not be reached.")
    );
    assert!(later, "the retry waits (backoff)");
    assert!(
        jobs::claim(&db, "test", 5).await.unwrap().is_empty(),
        "not due yet"
    );
    sqlx::query("UPDATE jobs SET run_at = now()")
        .execute(&db)
        .await
        .unwrap();
    let job = jobs::claim(&db, "test", 5).await.unwrap().pop().unwrap();
    assert_eq!(job.attempt, 2);
    jobs::finish(&db, "test", &job, Err(JobError::retry("Still down.")))
        .await
        .unwrap();
    let (state, attempts, error, _) = state_of(&db, id).await;
    assert_eq!((state.as_str(), attempts), ("dead", 2));
    assert_eq!(error.as_deref(), Some("Still down."));
    sqlx::query("UPDATE jobs SET run_at = now()")
        .execute(&db)
        .await
        .unwrap();
    assert!(
        jobs::claim(&db, "test", 5).await.unwrap().is_empty(),
        "dead stays dead"
    );

    // A failure that cannot get better ends it at once.
    let id = bare_job(&db, None, 8).await.unwrap();
    let job = jobs::claim(&db, "test", 5).await.unwrap().pop().unwrap();
    jobs::finish(
        &db,
        "test",
        &job,
        Err(JobError::fatal("The recipient's address is not valid.")),
    )
    .await
    .unwrap();
    assert_eq!(state_of(&db, id).await.0, "dead");

    // Backoff doubles from 10 s, at most an hour.
    assert_eq!(jobs::backoff(1), Duration::from_secs(10));
    assert_eq!(jobs::backoff(2), Duration::from_secs(20));
    assert_eq!(jobs::backoff(30), Duration::from_secs(3600));
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn an_idempotency_key_enqueues_once_and_a_lapsed_lease_is_taken_over(db: PgPool) {
    let first = bare_job(&db, Some("test:1"), 8).await;
    assert!(first.is_some());
    assert_eq!(bare_job(&db, Some("test:1"), 8).await, None);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(count, 1);

    // A worker that died: its lease lapses and another takes the job; the
    // first one's late word changes nothing.
    let job = jobs::claim(&db, "dead-worker", 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    sqlx::query("UPDATE jobs SET locked_until = now() - interval '1 second'")
        .execute(&db)
        .await
        .unwrap();
    let again = jobs::claim(&db, "live-worker", 1)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!((again.id, again.attempt), (job.id, 2));
    jobs::finish(&db, "dead-worker", &job, Ok(()))
        .await
        .unwrap();
    assert_eq!(state_of(&db, job.id).await.0, "running");
    jobs::finish(&db, "live-worker", &again, Ok(()))
        .await
        .unwrap();
    assert_eq!(state_of(&db, job.id).await.0, "done");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn sign_up_mails_a_link_that_confirms_the_address_once(db: PgPool) {
    let sink = smtp::start(false).await;
    let settings = app::platform::Settings {
        mailer: Mailer::smtp(
            &format!("smtp://enclave:relay-password@{}", sink.addr),
            "Enclave <enclave@example.com>",
            &[],
        )
        .unwrap(),
        ..relaxed_settings()
    };
    let app = TestApp::spawn_full(db.clone(), settings, keyring(1, &[])).await;
    let client = app.signed_up("verify-me@example.com").await;
    assert_eq!(app.current_user(&client).await["email_verified"], false);
    let html = page(&client, app.url("/dashboard")).await;
    assert!(
        html.contains("Please confirm your email address"),
        "the banner shows"
    );

    for _ in 0..200 {
        if !sink.record.mails.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let jobs: Vec<(String, Option<String>)> = sqlx::query_as("SELECT state, last_error FROM jobs")
        .fetch_all(&db)
        .await
        .unwrap();
    assert!(
        !sink.record.mails.lock().unwrap().is_empty(),
        "no mail arrived: {jobs:?}"
    );
    let mail = sink.record.mails.lock().unwrap()[0].clone();
    assert_eq!(mail.to, ["<verify-me@example.com>"]);
    assert!(mail.from.contains("enclave@example.com"), "{}", mail.from);
    assert_eq!(
        mail.user, "enclave",
        "signed in to the relay as the URL says"
    );
    assert!(
        mail.data
            .contains("Subject: Confirm your email address for Enclave"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("text/plain") && mail.data.contains("text/html"));
    assert!(!mail.data.contains("<img"), "no images, no tracking");
    let link = link_in(&mail.data);
    assert!(link.starts_with(&app.url("/verify-email?token=")), "{link}");

    let html = page(&client, &link).await;
    assert!(html.contains("Your email address is confirmed"), "{html}");
    assert_eq!(app.current_user(&client).await["email_verified"], true);
    let html = page(&client, app.url("/dashboard")).await;
    assert!(!html.contains("Please confirm your email address"));
    // Single use.
    let html = page(&client, &link).await;
    assert!(html.contains("not valid or was used already"), "{html}");
    // Stored only hashed: the token is not in the database.
    let token = link.rsplit('=').next().unwrap();
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM email_tokens")
        .fetch_all(&db)
        .await
        .unwrap();
    assert!(
        hashes
            .iter()
            .all(|h| !String::from_utf8_lossy(h).contains(token))
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_new_link_replaces_the_old_one_and_an_expired_link_says_so(db: PgPool) {
    let settings = with_mail_catcher(relaxed_settings());
    let app = TestApp::spawn_full(db.clone(), settings, keyring(1, &[])).await;
    let client = app.signed_up("resend@example.com").await;
    let mailer = &app.state.settings.mailer;
    wait_until("the first mail", async || mailer.caught().len() == 1).await;
    let first = link_in(&mailer.caught()[0].mail.text);
    let res = app.call(&client, "resend_verification", &[]).await;
    assert_eq!(res.status(), 200);
    wait_until("the second mail", async || mailer.caught().len() == 2).await;
    let second = link_in(&mailer.caught()[0].mail.text);
    assert_ne!(first, second);
    let html = page(&client, &first).await;
    assert!(
        html.contains("not valid or was used already"),
        "the older link stops"
    );

    sqlx::query("UPDATE email_tokens SET expires_at = now() - interval '1 second'")
        .execute(&db)
        .await
        .unwrap();
    let html = page(&client, &second).await;
    assert!(html.contains("This link has expired"), "{html}");
    assert_eq!(app.current_user(&client).await["email_verified"], false);
    // A made-up token changes nothing either.
    let html = page(&client, app.url("/verify-email?token=made-up")).await;
    assert!(html.contains("not valid or was used already"));

    // Resending is limited.
    let mut limited = false;
    for _ in 0..6 {
        let res = app.call(&client, "resend_verification", &[]).await;
        if res.status() == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "resending is rate-limited");

    // The development page lists what was sent, links clickable; a server
    // without the catcher has no such page.
    let html = page(&client, app.url("/dev/mail")).await;
    assert!(html.contains("Confirm your email address for Enclave"));
    assert!(html.contains("<a href=\"http://"), "{html}");
    let plain = TestApp::spawn(db).await;
    let res = plain
        .client()
        .get(plain.url("/dev/mail"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_mail_server_that_is_down_slows_nothing_and_the_mail_waits(db: PgPool) {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let settings = app::platform::Settings {
        mailer: Mailer::smtp(&format!("smtp://{closed}"), "Enclave <e@example.com>", &[]).unwrap(),
        ..relaxed_settings()
    };
    let app = TestApp::spawn_full(db.clone(), settings, keyring(1, &[])).await;
    let started = std::time::Instant::now();
    app.signed_up("down@example.com").await;
    assert!(started.elapsed() < Duration::from_secs(5));
    wait_until("the attempt fails", async || {
        let failed: Option<String> = sqlx::query_scalar("SELECT last_error FROM jobs")
            .fetch_one(&db)
            .await
            .unwrap();
        failed.is_some()
    })
    .await;
    let (state, error): (String, String) = sqlx::query_as("SELECT state, last_error FROM jobs")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(state, "queued", "tried again later");
    assert_eq!(
        error,
        "The mail server could not be reached or did not answer."
    );
}
