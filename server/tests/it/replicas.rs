//! Several server processes on one database (issue "Scale and speed"): two
//! `TestApp`s on the same database are two replicas, each with its own run
//! registry and its own ear on the control channel, talking through the
//! real PostgreSQL's LISTEN/NOTIFY.

use sqlx::PgPool;

use crate::common::{TestApp, chat_settings, keyring, reply_when, scripted_agent, send_new};

async fn two_replicas(db: PgPool) -> (TestApp, TestApp, std::net::SocketAddr) {
    let fake = server::fake_provider::start().await.unwrap();
    let a = TestApp::spawn_full(db.clone(), chat_settings(fake), keyring(1, &[])).await;
    let b = TestApp::spawn_full(db, chat_settings(fake), keyring(1, &[])).await;
    (a, b, fake)
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_reply_stops_from_the_replica_that_does_not_write_it(db: PgPool) {
    let (a, b, fake) = two_replicas(db.clone()).await;
    let client = a.signed_up("stopper@example.com").await;
    let agent = scripted_agent(
        &a,
        &client,
        fake,
        "openai",
        "fake:tokens=400,delay_ms=50",
        &[],
        &[],
        "",
    )
    .await;
    let started = send_new(&a, &client, &agent, "A long reply").await;
    let conversation = started["conversation_id"].as_str().unwrap().to_owned();
    let message = started["reply_id"].as_str().unwrap().to_owned();
    reply_when(&a, &client, &conversation, "streaming").await;
    assert!(a.state.runs.live_count() == 1 && b.state.runs.live_count() == 0);

    // The same browser, through the other replica (sessions live in the
    // database, so it is signed in there too).
    let res = b
        .call(&client, "stop_reply", &[("message_id", &message)])
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let reply = reply_when(&a, &client, &conversation, "").await;
    assert_eq!(reply["status"], "stopped");

    // Someone else cannot stop a reply through either replica.
    let other = b.signed_up("other@example.com").await;
    let started = send_new(&a, &client, &agent, "Another long reply").await;
    let conversation = started["conversation_id"].as_str().unwrap().to_owned();
    let message = started["reply_id"].as_str().unwrap().to_owned();
    reply_when(&a, &client, &conversation, "streaming").await;
    for app in [&a, &b] {
        let res = app
            .call(&other, "stop_reply", &[("message_id", &message)])
            .await;
        assert_eq!(res.status(), 404);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let status: String = sqlx::query_scalar("SELECT status FROM messages WHERE id = $1::uuid")
        .bind(&message)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(status, "streaming", "another user's stop reached the run");
}
