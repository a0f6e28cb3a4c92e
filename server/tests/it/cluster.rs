//! Two server processes (the real binary) on one database behind nginx with
//! round robin and no sticky sessions (issue "Scale and speed"): what a
//! browser sees when each of its requests may land on either replica, and
//! when one replica stops, gracefully or not. `replicas.rs` holds the same
//! mechanisms tested in one process.

use std::{net::SocketAddr, time::Duration};

use sqlx::PgPool;

use crate::common::{
    Http, PASSWORD,
    cluster::{Cluster, PrivateDatabase},
    read_to_done, reply_when, reply_within, scripted_agent, send_message, send_new,
    streaming_reply, text_of,
};

async fn cluster(db: &PgPool, extra: &[(&str, &str)]) -> (Cluster, SocketAddr) {
    let fake = server::fake_provider::start().await.unwrap();
    (Cluster::start(db, fake, extra).await, fake)
}

/// The fake's numbered tokens: "t0 t1 … t{n-1} ".
fn numbered(n: usize) -> String {
    (0..n).map(|i| format!("t{i} ")).collect()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn one_session_one_rate_limit_and_one_job_queue_across_two_replicas(db: PgPool) {
    let sink = crate::common::smtp::start(false).await;
    let smtp = format!("smtp://enclave:relay-password@{}", sink.addr);
    let (cluster, _) = cluster(
        &db,
        &[
            ("ENCLAVE_SIGN_IN_LIMIT_PER_ACCOUNT", "4"),
            ("ENCLAVE_MAIL_CATCHER", "false"),
            ("ENCLAVE_SMTP_URL", &smtp),
            ("ENCLAVE_MAIL_FROM", "Enclave <enclave@example.com>"),
        ],
    )
    .await;
    let front = &cluster.front;

    // Signed in through one replica, the session works on both.
    let client = front.signed_up("both@example.com").await;
    for _ in 0..4 {
        assert_eq!(
            front.current_user(&client).await["email"],
            "both@example.com"
        );
    }
    let served = cluster.served("/api/current_user", 4).await;
    assert_eq!(served.len(), 4);
    assert!(
        served.contains(&0) && served.contains(&1),
        "nginx balanced nothing: {served:?}"
    );

    // Four wrong passwords are allowed for the account in all, not four on
    // each replica.
    let stranger = front.client();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let res = front
            .sign_in(&stranger, "both@example.com", "not the password")
            .await;
        statuses.push(res.status().as_u16());
    }
    assert!(
        statuses[..4].iter().all(|s| *s != 429) && statuses[4..].iter().all(|s| *s == 429),
        "{statuses:?}"
    );
    let refused: Vec<usize> = cluster.served("/api/sign_in", 9).await.split_off(5);
    assert!(
        refused.contains(&0) && refused.contains(&1),
        "both replicas refused: {refused:?}"
    );
    // The limit refuses the right password too, on either replica.
    let res = front.sign_in(&stranger, "both@example.com", PASSWORD).await;
    assert_eq!(res.status(), 429);
    // What was typed never reached a log line on either server.
    cluster.assert_logs_hold_none(&[PASSWORD, "not the password"]);

    // Each sign-up queues one confirmation mail; both replicas work the
    // queue, and each mail is sent once.
    let addresses: Vec<String> = (0..6).map(|i| format!("queue{i}@example.com")).collect();
    for address in &addresses {
        let res = front.sign_up(&front.client(), address, PASSWORD).await;
        assert_eq!(res.status(), 200);
    }
    for _ in 0..400 {
        if sink.record.mails.lock().unwrap().len() >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Another second for a second copy to arrive, if either replica sent one.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut sent: Vec<(String, String)> = sink
        .record
        .mails
        .lock()
        .unwrap()
        .iter()
        .map(|m| {
            let subject = m.data.lines().find_map(|l| l.strip_prefix("Subject: "));
            (m.to.join(","), subject.unwrap_or_default().to_owned())
        })
        .collect();
    sent.sort();
    let confirm = "Confirm your email address for Enclave";
    let mut wanted: Vec<(String, String)> = addresses
        .iter()
        .chain(["both@example.com".to_owned()].iter())
        .map(|a| (format!("<{a}>"), confirm.to_owned()))
        .collect();
    // The wrong passwords above warned the owner, once.
    wanted.push((
        "<both@example.com>".to_owned(),
        "A failed sign-in to your account".to_owned(),
    ));
    wanted.sort();
    assert_eq!(sent, wanted, "each mail exactly once");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_reply_is_followed_and_stopped_from_the_replica_that_does_not_write_it(db: PgPool) {
    let (cluster, fake) = cluster(&db, &[]).await;
    let front = &cluster.front;
    let client = front.signed_up("follow@example.com").await;

    // Re-attached on the other replica, the page gets every token as it
    // comes and the end, not a snapshot and `done{streaming}`.
    let (conversation, reply) = streaming_reply(
        front,
        &client,
        fake,
        "fake:tokens=60,delay_ms=30",
        "Tell me a story",
    )
    .await;
    let writer = cluster.writer_of(&db, &reply).await;
    cluster.aim_at(1 - writer).await;
    let events = read_to_done(front, &client, &reply).await;
    assert_eq!(
        cluster
            .served(&format!("/api/chat/stream/{reply}"), 1)
            .await,
        [1 - writer],
        "the stream was read from the replica that does not write the reply"
    );
    assert_eq!(events.last().unwrap().1["status"], "complete");
    let deltas = events.iter().filter(|(name, _)| name == "delta").count();
    assert!(deltas >= 10, "{deltas} deltas: not the tokens as they came");
    assert_eq!(text_of(&events), numbered(60));
    let stored = reply_when(front, &client, &conversation, "complete").await;
    assert_eq!(stored["body"], numbered(60));

    // Stop, asked of the other replica, stops the run (it used to answer
    // success while the run went on), and a reader there sees it end.
    let (conversation, reply) = streaming_reply(
        front,
        &client,
        fake,
        "fake:tokens=400,delay_ms=50",
        "A long story",
    )
    .await;
    let writer = cluster.writer_of(&db, &reply).await;
    cluster.aim_at(1 - writer).await;
    let reading = read_to_done(front, &client, &reply);
    let stopping = async {
        // The reader's request reaches nginx first.
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.aim_at(1 - writer).await;
        let res = front
            .call(&client, "stop_reply", &[("message_id", &reply)])
            .await;
        assert_eq!(res.status(), 200);
    };
    let (events, ()) = tokio::join!(reading, stopping);
    assert_eq!(
        cluster.served("/api/stop_reply", 1).await,
        [1 - writer],
        "stop was asked of the replica that does not write the reply"
    );
    assert_eq!(
        cluster
            .served(&format!("/api/chat/stream/{reply}"), 1)
            .await,
        [1 - writer]
    );
    assert_eq!(events.last().unwrap().1["status"], "stopped");
    let stored = reply_when(front, &client, &conversation, "stopped").await;
    let body = stored["body"].as_str().unwrap();
    assert_eq!(text_of(&events), body);
    assert!(
        !body.is_empty() && numbered(400).starts_with(body) && body.len() < numbered(400).len(),
        "{body:?}"
    );
}

/// A long reply (400 tokens, 20 s) being written through nginx, with the
/// next request aimed at the replica that does not write it.
struct LongReply {
    cluster: Cluster,
    front: Http,
    client: reqwest::Client,
    fake: SocketAddr,
    conversation: String,
    reply: String,
    writer: usize,
}

async fn long_reply(db: &PgPool, email: &str) -> LongReply {
    let (cluster, fake) = cluster(db, &[]).await;
    let front = Http::new(&cluster.front.url(""));
    let client = front.signed_up(email).await;
    let (conversation, reply) = streaming_reply(
        &front,
        &client,
        fake,
        "fake:tokens=400,delay_ms=50",
        "A long story",
    )
    .await;
    let writer = cluster.writer_of(db, &reply).await;
    cluster.aim_at(1 - writer).await;
    LongReply {
        cluster,
        front,
        client,
        fake,
        conversation,
        reply,
        writer,
    }
}

impl LongReply {
    /// What a reader who saw `events` and the stored conversation agree
    /// on once the reply ended interrupted: the saved text, every token up
    /// to a point, after the user's message. Returns the text.
    async fn saved_interrupted(&self, events: &[(String, serde_json::Value)]) -> String {
        assert_eq!(events.last().unwrap().1["status"], "interrupted");
        let stored = reply_when(&self.front, &self.client, &self.conversation, "interrupted").await;
        let body = stored["body"].as_str().unwrap().to_owned();
        assert_eq!(text_of(events), body);
        assert!(
            body.len() > "t0 t1 t2 ".len() && numbered(400).starts_with(&body),
            "every token up to a point: {body:?}"
        );
        assert!(
            stored["error"].as_str().is_some_and(|e| !e.is_empty()),
            "the reply says why it ended: {stored}"
        );
        let now: serde_json::Value = self
            .front
            .call(
                &self.client,
                "get_conversation",
                &[("id", &self.conversation)],
            )
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(now["messages"][0]["body"], "A long story");
        body
    }
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn sigterm_saves_a_replicas_replies_and_the_other_serves_them(db: PgPool) {
    let mut r = long_reply(&db, "rolling@example.com").await;
    let writer = r.writer;
    let reading = read_to_done(&r.front, &r.client, &r.reply);
    let stopping = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        r.cluster.terminate(writer).await
    };
    let (events, exit) = tokio::join!(reading, stopping);
    assert!(exit.success(), "SIGTERM ends the server cleanly: {exit}");
    assert!(
        r.cluster.replicas[writer]
            .log()
            .contains("live replies saved and ended"),
        "the writer said nothing of the replies it saved"
    );
    // The reader on the other replica saw the reply end with what was saved.
    let body = r.saved_interrupted(&events).await;

    // The browser re-attaches through nginx, which now has one replica.
    let (front, client) = (&r.front, &r.client);
    let again = read_to_done(front, client, &r.reply).await;
    assert_eq!(text_of(&again), body);
    assert_eq!(again.last().unwrap().1["status"], "interrupted");
    // And the user chats on.
    let agent = scripted_agent(
        front,
        client,
        r.fake,
        "openai",
        "fake:tokens=5",
        &[],
        &[],
        "",
    )
    .await;
    let started = send_new(front, client, &agent, "Still there?").await;
    let conversation = started["conversation_id"].as_str().unwrap();
    let stored = reply_when(front, client, conversation, "complete").await;
    assert_eq!(stored["body"], numbered(5));

    // Back in the pool (nginx tries a failed server again after its
    // fail_timeout, 10 s), the restarted replica serves its share again.
    r.cluster.restart(writer).await;
    let mut served = Vec::new();
    for asked in 1..=100 {
        assert_eq!(
            front.current_user(client).await["email"],
            "rolling@example.com"
        );
        served = r.cluster.served("/api/current_user", asked).await;
        if served.contains(&writer) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(served.contains(&writer), "{served:?}");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_replica_killed_mid_reply_leaves_the_reply_to_its_last_checkpoint_marked_in_seconds(
    db: PgPool,
) {
    let mut r = long_reply(&db, "killed@example.com").await;
    let writer = r.writer;
    let reading = read_to_done(&r.front, &r.client, &r.reply);
    let killing = async {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        r.cluster.kill(writer).await;
        tokio::time::Instant::now()
    };
    let (events, killed_at) = tokio::join!(reading, killing);
    // The other replica's sweep saw the writer's heartbeat stop.
    let waited = killed_at.elapsed();
    assert!(
        waited < Duration::from_secs(20),
        "marked {waited:?} after the kill"
    );
    r.saved_interrupted(&events).await;

    // Started again, the killed replica serves.
    r.cluster.restart(writer).await;
    let res = reqwest::get(format!("http://{}/ready", r.cluster.replicas[writer].addr))
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn the_database_restarted_mid_reply_loses_nothing_and_the_server_serves_on() {
    let database = PrivateDatabase::start().await;
    let fake = server::fake_provider::start().await.unwrap();
    let cluster = Cluster::start_on(&database.url(), 1, fake, &[]).await;
    let front = &cluster.front;
    let client = front.signed_up("restart@example.com").await;
    let (conversation, reply) = streaming_reply(
        front,
        &client,
        fake,
        "fake:tokens=60,delay_ms=50",
        "A story",
    )
    .await;
    let agent = scripted_agent(
        front,
        &client,
        fake,
        "openai",
        "fake:tokens=5",
        &[],
        &[],
        "",
    )
    .await;
    // The reply (3 s) ends while the database is down (1 s to about 5 s):
    // its checkpoints fail, and its final write waits for the database.
    let reading = async {
        let events = read_to_done(front, &client, &reply).await;
        (events, tokio::time::Instant::now())
    };
    let restarting = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        database.stop().await;
        // Meanwhile a message sent gets a plain answer, not internals.
        let refused = send_message(front, &client, &agent, "Are you there?").await;
        let status = refused.status();
        let text = refused.text().await.unwrap();
        // Any other request stops at its session, with the same plain words.
        let other = front.call(&client, "list_agents", &[]).await;
        let other = (other.status(), other.text().await.unwrap());
        tokio::time::sleep(Duration::from_secs(3)).await;
        database.resume().await;
        (status, text, other, tokio::time::Instant::now())
    };
    let ((events, done_at), (status, text, other, resumed_at)) = tokio::join!(reading, restarting);
    assert_eq!(other.0, 503, "{}", other.1);
    assert!(other.1.contains("Please try again shortly"), "{}", other.1);
    assert_eq!(status, 503, "{text}");
    // The send reads its session with its agent: the refusal is the
    // server function's, shown by the page in these words.
    let refusal: app::error::AppError = serde_json::from_str(&text).unwrap();
    assert_eq!(refusal, app::error::AppError::Unavailable);
    assert!(
        refusal.to_string().contains("Please try again shortly"),
        "{refusal}"
    );
    for internal in [
        "sqlx",
        "pool",
        "connection",
        "Postgres",
        "postgres",
        "refused",
    ] {
        assert!(!text.contains(internal), "{internal} in {text}");
        assert!(!other.1.contains(internal), "{internal} in {}", other.1);
    }

    // The reply's words were all there before the database came back, and
    // it ended once its last writes had landed.
    assert!(
        done_at > resumed_at,
        "the reply ended while the database was down: its writes were lost"
    );
    assert!(
        cluster.replicas[0]
            .log()
            .contains("could not save; retrying"),
        "no write waited for the database: the test proves nothing"
    );
    let done = &events.last().unwrap().1;
    assert_eq!(done["status"], "complete", "{done}");
    assert_eq!(text_of(&events), numbered(60));
    let stored = reply_when(front, &client, &conversation, "complete").await;
    assert_eq!(stored["body"], numbered(60));
    // What the model call cost was written too (it used to be dropped).
    let db = sqlx::PgPool::connect(&database.url()).await.unwrap();
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_entries")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(entries, 1, "the reply's usage entry");
    db.close().await;
    // The refused message left nothing behind: two messages there, and no
    // conversation of its own.
    let conversations: serde_json::Value = front
        .call(&client, "list_conversations", &[("agent_id", &agent)])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        conversations.as_array().map(Vec::len),
        Some(0),
        "{conversations}"
    );

    // The server serves again without a restart: same session, new reply.
    let res = reqwest::get(front.url("/ready")).await.unwrap();
    assert_eq!(res.status(), 200);
    let started = send_new(front, &client, &agent, "Still there?").await;
    let conversation = started["conversation_id"].as_str().unwrap();
    let stored = reply_when(front, &client, conversation, "complete").await;
    assert_eq!(stored["body"], numbered(5));
}

/// How long a 60,000-token reply may take on a loaded machine.
const MINUTE: Duration = Duration::from_secs(60);

/// How many readers read nothing in the slow-client test.
const READERS: usize = 40;

/// A reader that sent its request and reads nothing: a small receive
/// buffer, HTTP/1.0 (so the body ends when the server closes).
async fn stalled_reader(addr: SocketAddr, token: &str, reply: &str) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    let request = format!(
        "GET /api/chat/stream/{reply} HTTP/1.0\r\nHost: {addr}\r\nCookie: enclave_session={token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn readers_that_read_nothing_do_not_grow_the_servers_memory_and_lose_nothing(db: PgPool) {
    use eventsource_stream::Eventsource as _;
    use futures::StreamExt as _;
    use tokio::io::AsyncReadExt as _;

    let fake = server::fake_provider::start().await.unwrap();
    let cluster = Cluster::start_on(&crate::common::database_url(&db).await, 1, fake, &[]).await;
    let front = &cluster.front;
    let client = front.client();
    assert_eq!(
        front
            .sign_up(&client, "slow@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    let res = front.sign_in(&client, "slow@example.com", PASSWORD).await;
    let token = crate::common::session_token(&res);
    // The reply: 60,000 tokens (about 400 KB of text; each a server-sent
    // event of its own, about 2.4 MB for each reader), as fast as the fake
    // can, after a second and a half in which the readers attach.
    let script = "fake:tokens=60000,first_delay_ms=1500";
    let agent = scripted_agent(front, &client, fake, "openai", script, &[], &[], "").await;
    // A first reply warms the server up (pools, caches, the allocator).
    let started = send_new(front, &client, &agent, "Warm up").await;
    let conversation = started["conversation_id"].as_str().unwrap();
    reply_within(front, &client, conversation, "complete", MINUTE).await;
    let server = &cluster.replicas[0];
    let before = server.rss_kib();

    let started = send_new(front, &client, &agent, "A very long story").await;
    let conversation = started["conversation_id"].as_str().unwrap();
    let reply = started["reply_id"].as_str().unwrap();
    let mut readers = Vec::new();
    for _ in 0..READERS {
        readers.push(stalled_reader(server.addr, &token, reply).await);
    }
    let stored = reply_within(front, &client, conversation, "complete", MINUTE).await;
    assert_eq!(stored["body"], numbered(60_000));
    // The readers still read nothing, for a few seconds more.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = server.rss_kib();
    // The kernel's socket buffers take the first 600 KB or so of each
    // stream. Had the server queued the rest for each reader, 40 readers
    // would hold 70 MB of events, and as much again in allocations of one
    // event each. What it holds instead is at most one snapshot being
    // written to each (the reply's text, three times over as JSON and as
    // the event): about 1.2 MB a reader here, bounded by the reply's length
    // limit (1 MiB) however long the reader stalls. Resident memory moves
    // by a few MiB between runs, so this bound is coarse; the resync below
    // is the exact check.
    let grown = after.saturating_sub(before);
    assert!(
        grown < 100 * 1024,
        "the server grew by {grown} KiB for {READERS} readers that read nothing"
    );

    // They lose nothing: each, reading at last, ends with every word. What
    // it missed while stalled came as one fresh snapshot, not as the
    // thousands of pieces the server would otherwise have kept for it.
    // The patience is for a loaded machine (the whole suite shares 2
    // cores); what is checked is that nothing is lost, not how fast.
    for mut reader in readers.into_iter().take(3) {
        let mut raw = Vec::new();
        tokio::time::timeout(Duration::from_secs(90), reader.read_to_end(&mut raw))
            .await
            .expect("the stream ends")
            .unwrap();
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        assert!(raw.starts_with(b"HTTP/1.0 200") || raw.starts_with(b"HTTP/1.1 200"));
        let body = futures::stream::iter([Ok::<_, std::io::Error>(raw[split..].to_vec())]);
        let events: Vec<(String, serde_json::Value)> = body
            .eventsource()
            .filter_map(|e| async move {
                let e = e.ok()?;
                Some((e.event, serde_json::from_str(&e.data).ok()?))
            })
            .collect()
            .await;
        let count = |name: &str| events.iter().filter(|(n, _)| n == name).count();
        assert_eq!(events.last().unwrap().1["status"], "complete");
        assert_eq!(text_of(&events), numbered(60_000));
        assert!(
            count("snapshot") >= 2 && count("delta") < 60_000,
            "a stalled reader was sent {} snapshots and {} pieces: the server kept its backlog",
            count("snapshot"),
            count("delta")
        );
    }
    // The session token went in raw requests' cookies: never into a log.
    cluster.assert_logs_hold_none(&[&token, PASSWORD]);
}
