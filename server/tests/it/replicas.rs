//! Several server processes on one database (issue "Scale and speed"): two
//! `TestApp`s on the same database are two replicas, each with its own run
//! registry and its own ear on the control channel, talking through the
//! real PostgreSQL's LISTEN/NOTIFY.

use sqlx::PgPool;

use crate::common::{
    TestApp, chat_settings, keyring, read_stream, read_to_done, reply_when, scripted_agent,
    send_new, streaming_reply, text_of,
};

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
    let (conversation, message) = streaming_reply(
        &a,
        &client,
        fake,
        "fake:tokens=400,delay_ms=50",
        "A long reply",
    )
    .await;
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
    let (_, message) = streaming_reply(
        &a,
        &client,
        fake,
        "fake:tokens=400,delay_ms=50",
        "Another long reply",
    )
    .await;
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

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_reply_is_followed_token_by_token_from_the_replica_that_does_not_write_it(db: PgPool) {
    let (a, b, fake) = two_replicas(db.clone()).await;
    let client = a.signed_up("follower@example.com").await;
    let (conversation, reply) = streaming_reply(
        &a,
        &client,
        fake,
        "fake:tokens=60,delay_ms=30",
        "Tell me a long story",
    )
    .await;
    assert_eq!(b.state.runs.live_count(), 0);
    // Everything that crosses the database, as a third listener hears it.
    let mut listener = sqlx::postgres::PgListener::connect_with(&db).await.unwrap();
    listener
        .listen(app::platform::control::STREAM_CHANNEL)
        .await
        .unwrap();
    let heard = tokio::spawn(async move {
        let mut payloads = Vec::new();
        while let Ok(Ok(note)) =
            tokio::time::timeout(std::time::Duration::from_secs(2), listener.recv()).await
        {
            payloads.push(note.payload().to_owned());
        }
        payloads
    });

    // Followed through both at once: the replica writing it, and the other.
    // A second tab on the other replica reads the start and closes: the
    // first reader there goes on to the end.
    let (here, there, glance) = tokio::join!(
        read_to_done(&a, &client, &reply),
        read_to_done(&b, &client, &reply),
        read_stream(&b, &client, &reply, 3)
    );
    assert_eq!(glance.len(), 3);
    let stored = reply_when(&a, &client, &conversation, "complete").await;
    let body = stored["body"].as_str().unwrap();
    assert!(!body.is_empty());
    assert_eq!(text_of(&here), body);
    assert_eq!(
        text_of(&there),
        body,
        "the other replica lost or repeated a token"
    );
    let deltas = there.iter().filter(|(name, _)| name == "delta").count();
    assert!(
        deltas >= 10,
        "the other replica sent {deltas} deltas, not the tokens as they came"
    );
    assert_eq!(there.last().unwrap().0, "done");
    assert_eq!(there.last().unwrap().1["status"], "complete");

    // The other replica checks the owner as the first does.
    let stranger = b.signed_up("stranger@example.com").await;
    let (_, reply) = streaming_reply(
        &a,
        &client,
        fake,
        "fake:tokens=60,delay_ms=30",
        "Another story",
    )
    .await;
    for app in [&a, &b] {
        let res = stranger
            .get(app.url(&format!("/api/chat/stream/{reply}")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
    }
    // What crossed the database was sealed: no word of the reply in it.
    let payloads = heard.await.unwrap();
    assert!(payloads.len() >= 10, "{payloads:?}");
    use base64::Engine as _;
    for token in ["t10 ", "t25 ", "t40 "] {
        assert!(body.contains(token));
        for payload in &payloads {
            let data = payload.splitn(5, ':').nth(4).unwrap();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap();
            assert!(
                !payload.contains(token)
                    && !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "{token:?} crossed the database in the clear"
            );
        }
    }
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_follower_on_the_other_replica_ends_with_what_was_saved_when_the_writer_stops(
    db: PgPool,
) {
    let (mut a, b, fake) = two_replicas(db.clone()).await;
    let client = a.signed_up("survivor@example.com").await;
    let (conversation, reply) = streaming_reply(
        &a,
        &client,
        fake,
        "fake:tokens=400,delay_ms=40",
        "A very long story",
    )
    .await;
    // The writing replica shuts down (SIGTERM) while the other replica's
    // reader follows: the reply is saved as interrupted with every token
    // so far, and that reader ends with that text.
    let (events, ()) = tokio::join!(read_to_done(&b, &client, &reply), async {
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        a.shut_down().await;
    });
    let (status, body): (String, Option<Vec<u8>>) =
        sqlx::query_as("SELECT status, body FROM messages WHERE id = $1::uuid")
            .bind(&reply)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(status, "interrupted");
    assert!(body.is_some());
    assert_eq!(events.last().unwrap().0, "done");
    assert_eq!(events.last().unwrap().1["status"], "interrupted");
    let stored = crate::common::reply_when(&b, &client, &conversation, "interrupted").await;
    assert_eq!(text_of(&events), stored["body"].as_str().unwrap());
    assert!(!text_of(&events).is_empty());
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_sweep_never_marks_a_beating_replicas_reply_and_marks_a_dead_ones_in_seconds(
    db: PgPool,
) {
    let (a, b, fake) = two_replicas(db.clone()).await;
    let client = a.signed_up("sweep@example.com").await;
    let agent = scripted_agent(&a, &client, fake, "openai", "fake:tokens=3", &[], &[], "").await;
    let mut replies = Vec::new();
    for text in ["one", "two", "three"] {
        let started = send_new(&a, &client, &agent, text).await;
        let conversation = started["conversation_id"].as_str().unwrap().to_owned();
        reply_when(&a, &client, &conversation, "complete").await;
        replies.push(started["reply_id"].as_str().unwrap().to_owned());
    }
    // Both replicas beat (every 2 s, from the start).
    let beating: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM instances WHERE heartbeat_at > now() - interval '5 seconds'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(beating, 2);
    // As the sweep finds them: a reply of the live replica A silent for ten
    // minutes (a long Retry-After wait, say), one of a replica whose last
    // beat was a minute ago, one of a server that never beat (an older
    // version) silent for ten minutes.
    sqlx::query("INSERT INTO instances (name, heartbeat_at) VALUES ('gone:3000', now() - interval '1 minute')")
        .execute(&db)
        .await
        .unwrap();
    for (reply, runner) in
        replies
            .iter()
            .zip([a.settings.instance.as_str(), "gone:3000", "old:3000"])
    {
        sqlx::query(
            "UPDATE messages SET status = 'streaming', runner = $2, updated_at = now() - interval '10 minutes'
             WHERE id = $1::uuid",
        )
        .bind(reply)
        .bind(runner)
        .execute(&db)
        .await
        .unwrap();
    }
    // B sweeps (A's reply is not live in B, nor, here, in A: only the
    // heartbeat keeps it).
    let marked = app::chat::runs::recover_interrupted(
        &db,
        &b.state.runs,
        std::time::Duration::from_secs(300),
    )
    .await
    .unwrap();
    assert_eq!(marked, 2);
    let status = |id: &str| {
        let db = db.clone();
        let id = id.to_owned();
        async move {
            sqlx::query_scalar::<_, String>("SELECT status FROM messages WHERE id = $1::uuid")
                .bind(id)
                .fetch_one(&db)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        status(&replies[0]).await,
        "streaming",
        "a beating replica's reply was marked"
    );
    assert_eq!(status(&replies[1]).await, "interrupted");
    assert_eq!(status(&replies[2]).await, "interrupted");
    // A itself knows the reply is not running there: its own sweep marks it.
    let marked = app::chat::runs::recover_interrupted(
        &db,
        &a.state.runs,
        std::time::Duration::from_secs(300),
    )
    .await
    .unwrap();
    assert_eq!(marked, 1);
    assert_eq!(status(&replies[0]).await, "interrupted");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_final_write_never_flips_back_a_reply_that_is_no_longer_streaming(db: PgPool) {
    let (a, _b, fake) = two_replicas(db.clone()).await;
    let client = a.signed_up("final@example.com").await;
    let (_, reply) = streaming_reply(&a, &client, fake, "fake:tokens=60,delay_ms=20", "Go").await;
    // Marked interrupted by someone else while the run goes on.
    sqlx::query("UPDATE messages SET status = 'interrupted', error_code = 'server_stopped' WHERE id = $1::uuid")
        .bind(&reply)
        .execute(&db)
        .await
        .unwrap();
    a.state.runs.ended(reply.parse().unwrap()).await;
    let status: String = sqlx::query_scalar("SELECT status FROM messages WHERE id = $1::uuid")
        .bind(&reply)
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(
        status, "interrupted",
        "the run's final write flipped the row back"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_follower_whose_writer_died_silently_ends_with_the_saved_reply(db: PgPool) {
    let (a, b, fake) = two_replicas(db.clone()).await;
    let client = a.signed_up("orphan@example.com").await;
    let agent = scripted_agent(&a, &client, fake, "openai", "fake:tokens=5", &[], &[], "").await;
    let started = send_new(&a, &client, &agent, "Hi").await;
    let conversation = started["conversation_id"].as_str().unwrap().to_owned();
    let reply = started["reply_id"].as_str().unwrap().to_owned();
    let saved = reply_when(&a, &client, &conversation, "complete").await;
    // As a server killed mid-reply leaves it: `streaming`, run nowhere.
    sqlx::query("UPDATE messages SET status = 'streaming', runner = 'gone:1' WHERE id = $1::uuid")
        .bind(&reply)
        .execute(&db)
        .await
        .unwrap();
    // Nobody publishes it; the sweep marks it interrupted meanwhile.
    let (events, ()) = tokio::join!(read_to_done(&b, &client, &reply), async {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        sqlx::query(
            "UPDATE messages SET status = 'interrupted', error_code = 'server_stopped' WHERE id = $1::uuid",
        )
        .bind(&reply)
        .execute(&db)
        .await
        .unwrap();
    });
    assert_eq!(text_of(&events), saved["body"].as_str().unwrap());
    assert_eq!(events.last().unwrap().0, "done");
    assert_eq!(events.last().unwrap().1["status"], "interrupted");
}
