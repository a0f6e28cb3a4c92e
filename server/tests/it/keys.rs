//! Encryption at rest, from the database's side: rotation of the master key
//! with the server running, crypto-shredding, and what happens to tampered,
//! moved or plaintext values.

use crate::common::{PASSWORD, TestApp, kek, keyring};
use app::platform::keystore::{self, RotateReport};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

async fn kek_ids(db: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT kek_id FROM user_keys UNION ALL SELECT kek_id FROM system_keys ORDER BY 1",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

async fn user_id(db: &PgPool, app: &TestApp, email: &str) -> Uuid {
    let crypto = app::platform::keystore::Crypto::load(db, app.keyring.clone())
        .await
        .unwrap();
    sqlx::query_scalar("SELECT id FROM users WHERE email_index = $1")
        .bind(crypto.email_index(email))
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn rotation_end_to_end_with_the_server_running(db: PgPool) {
    // Data sealed while the server runs on master key 1.
    let before = TestApp::spawn_with_keys(db.clone(), keyring(1, &[])).await;
    let emails: Vec<String> = (0..7).map(|i| format!("rot{i}@example.com")).collect();
    for email in &emails {
        before.signed_up(email).await;
    }
    drop(before);

    // The operator deploys key 2 as current, keeping key 1 as previous.
    let during = TestApp::spawn_with_keys(db.clone(), keyring(2, &[1])).await;
    // Old data reads, and new data is sealed under key 2, before any rotation.
    let client = during.client();
    assert_eq!(
        during.sign_in(&client, &emails[0], PASSWORD).await.status(),
        200
    );
    assert_eq!(
        during.current_user(&client).await["email"],
        emails[0].as_str()
    );
    during.signed_up("new-during-rotation@example.com").await;

    // `keys rotate`, in small batches, while the server keeps answering.
    let rotation = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let report = keystore::rotate(&db, &keyring(2, &[1]), 2, |p| seen.push(p))
                .await
                .unwrap();
            (report, seen)
        })
    };
    for email in &emails {
        let client = during.client();
        assert_eq!(during.sign_in(&client, email, PASSWORD).await.status(), 200);
        assert_eq!(during.current_user(&client).await["email"], email.as_str());
    }
    let (report, progress) = rotation.await.unwrap();
    assert_eq!(
        report,
        RotateReport {
            rewrapped: 8,
            remaining: 0
        },
        "{progress:?}"
    );
    assert!(
        progress.len() >= 4,
        "progress after each batch: {progress:?}"
    );
    assert!(kek_ids(&db).await.iter().all(|id| id == kek(2).id()));

    // Everything opens with both keys, then with key 2 alone.
    let both = keystore::verify(&db, &keyring(2, &[1]), app::sealed_columns(), |_| {})
        .await
        .unwrap();
    assert_eq!(both.failures, vec![]);
    // Each account: four sealed user columns and its verification mail's
    // job; each session (one per sign-in): its browser and address, and
    // the sign-in's activity entry the same two.
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        sessions,
        8 + 8,
        "one from each sign-up helper, one per sign-in above"
    );
    assert_eq!(both.values, 8 * 5 + 16 * 2 + 16 * 2);
    drop(during);
    let after = TestApp::spawn_with_keys(db.clone(), keyring(2, &[])).await;
    let only_new = keystore::verify(&db, &after.keyring, app::sealed_columns(), |_| {})
        .await
        .unwrap();
    assert_eq!(only_new.failures, vec![]);
    assert_eq!(only_new.keys, 9, "8 data keys and the blind-index key");
    for email in emails
        .iter()
        .chain(["new-during-rotation@example.com".to_string()].iter())
    {
        let client = after.client();
        assert_eq!(
            after.sign_in(&client, email, PASSWORD).await.status(),
            200,
            "{email}"
        );
        assert_eq!(after.current_user(&client).await["first_name"], "Ada");
    }

    // Running it again finds nothing to do.
    let again = keystore::rotate(&db, &after.keyring, 2, |_| {})
        .await
        .unwrap();
    assert_eq!(
        again,
        RotateReport {
            rewrapped: 0,
            remaining: 0
        }
    );

    // The retired key 1 alone can open nothing any more.
    let old_only = keystore::verify(&db, &keyring(1, &[]), app::sealed_columns(), |_| {})
        .await
        .unwrap();
    // The blind-index key, 8 data keys, their accounts' values, and the
    // browser and address of 24 sessions (8 more sign-ins just above) and
    // of their 24 sign-ins' activity entries.
    assert_eq!(old_only.failures.len(), 1 + 8 + 8 * 5 + 24 * 2 + 24 * 2);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn an_interrupted_rotation_resumes_where_it_stopped(db: PgPool) {
    let app = TestApp::spawn_with_keys(db.clone(), keyring(1, &[])).await;
    for i in 0..6 {
        app.signed_up(&format!("resume{i}@example.com")).await;
    }
    // The first run dies right after its first batch of two has committed.
    let crashed = tokio::spawn({
        let db = db.clone();
        async move {
            keystore::rotate(&db, &keyring(2, &[1]), 2, |p| {
                if p.remaining > 0 {
                    panic!("operator pressed Ctrl-C");
                }
            })
            .await
        }
    })
    .await;
    assert!(crashed.is_err());
    let ids = kek_ids(&db).await;
    let moved = ids.iter().filter(|id| *id == kek(2).id()).count();
    assert_eq!(
        moved, 3,
        "the system key and one batch of two moved: {ids:?}"
    );

    let report = keystore::rotate(&db, &keyring(2, &[1]), 2, |_| {})
        .await
        .unwrap();
    assert_eq!(report.rewrapped, 4);
    assert!(kek_ids(&db).await.iter().all(|id| id == kek(2).id()));
    let verified = keystore::verify(&db, &keyring(2, &[]), app::sealed_columns(), |_| {})
        .await
        .unwrap();
    assert_eq!(verified.failures, vec![]);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn shredding_a_data_key_makes_that_users_data_unreadable(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let victim = app.signed_up("shred@example.com").await;
    let bystander = app.signed_up("keep@example.com").await;
    let id = user_id(&db, &app, "shred@example.com").await;

    assert!(keystore::shred_user_key(&db, id).await.unwrap());
    // The sealed values are still in the table, and nothing can open them.
    let report = keystore::verify(&db, &app.keyring, app::sealed_columns(), |_| {})
        .await
        .unwrap();
    // Four user columns, the verification mail's job payload, the
    // session's browser and address, and the sign-in's activity entry's.
    assert_eq!(report.failures.len(), 9);
    assert!(report.failures.iter().all(|f| f.owner == Some(id)));
    assert_eq!(
        keystore::user_key(&db, &app.keyring, id, keystore::KeyUse::Operator)
            .await
            .unwrap_err(),
        app::error::AppError::NotFound
    );
    // The user's sessions no longer resolve; the bystander is untouched.
    assert_eq!(app.current_user(&victim).await, Value::Null);
    assert_eq!(
        app.current_user(&bystander).await["email"],
        "keep@example.com"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn verify_reports_a_tampered_value_and_carries_on(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    app.signed_up("a@example.com").await;
    app.signed_up("b@example.com").await;
    let a = user_id(&db, &app, "a@example.com").await;
    // Flip one bit inside the ciphertext (the version byte stays valid).
    sqlx::query(
        "UPDATE users SET first_name = set_byte(first_name, 20, get_byte(first_name, 20) # 1)
         WHERE id = $1",
    )
    .bind(a)
    .execute(&db)
    .await
    .unwrap();
    let mut printed = Vec::new();
    let report = keystore::verify(&db, &app.keyring, app::sealed_columns(), |f| {
        printed.push(f.clone())
    })
    .await
    .unwrap();
    assert_eq!(report.values, 2 * 9);
    assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
    assert_eq!(report.failures[0].what, "users.first_name");
    assert_eq!(report.failures[0].row, Some(a));
    assert_eq!(printed, report.failures);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_value_copied_to_another_users_row_does_not_open(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    app.signed_up("owner@example.com").await;
    let thief = app.signed_up("thief@example.com").await;
    let owner = user_id(&db, &app, "owner@example.com").await;
    let thief_id = user_id(&db, &app, "thief@example.com").await;
    sqlx::query(
        "UPDATE users SET first_name = (SELECT first_name FROM users WHERE id = $1) WHERE id = $2",
    )
    .bind(owner)
    .bind(thief_id)
    .execute(&db)
    .await
    .unwrap();
    // The thief's session cannot be loaded: a clear refusal, no detail, no data.
    let res = app.call(&thief, "current_user", &[]).await;
    assert_eq!(res.status(), 503);
    let body = res.text().await.unwrap();
    assert!(!body.contains("Ada") && !body.contains("decrypt"), "{body}");
    let report = keystore::verify(&db, &app.keyring, app::sealed_columns(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].row, Some(thief_id));
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_database_refuses_plaintext_in_a_sealed_column(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    app.signed_up("plain@example.com").await;
    let err = sqlx::query("UPDATE users SET first_name = convert_to('Mallory', 'UTF8')")
        .execute(&db)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("sealed"), "{err}");
    let err = sqlx::query("UPDATE users SET last_name = 'Mallory'")
        .execute(&db)
        .await
        .unwrap_err();
    assert!(!err.to_string().is_empty());
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_server_with_the_wrong_master_key_refuses_to_start(db: PgPool) {
    let first = TestApp::spawn_with_keys(db.clone(), keyring(1, &[])).await;
    first.signed_up("k@example.com").await;
    let err = app::platform::keystore::Crypto::load(&db, keyring(3, &[]))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("ENCLAVE_MASTER_KEY"), "{message}");
    assert!(
        message.contains(kek(1).id()),
        "names the key it needs: {message}"
    );
}
