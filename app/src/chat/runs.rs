//! Live runs: one task per streaming reply, owned by the server. It reads
//! the provider's stream and fans each piece out to any number of
//! subscribers. One checkpointer per server writes every growing reply,
//! sealed, about once a second in batched statements, off the token path:
//! a slow database never delays a token. The run writes the final state
//! (complete, stopped, or interrupted with a plain reason) itself, and keeps
//! trying until it is written.
//!
//! Every way a run can end (the reply is done, Stop, a provider error, the
//! deadline, the server shutting down, a panic) goes through the same exit:
//! the final write, then leaving the registry, then `Done` to every reader.
//!
//! Subscribing checks the owner: another user's run is simply not there.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::{Stream, StreamExt as _, stream::BoxStream};
use tokio::sync::{Notify, broadcast, broadcast::error::RecvError};
use uuid::Uuid;

use super::{MessageStatus, StreamUpdate, server::message_place};
use crate::{
    llm::{self, ChatRequest, LlmError, StreamEvent, StreamLimits, Usage},
    platform::crypto::{DataKey, Sealed},
    state::AppState,
};

/// How often growing replies are written to the database.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Rows per checkpoint statement.
const CHECKPOINT_BATCH: usize = 500;

/// Pieces a subscriber may fall behind before it is sent the whole text
/// again. Allocated up front for every run (about 90 bytes a slot), so kept
/// small: a reader this far behind is better served by one snapshot.
const UPDATES_BUFFER: usize = 32;

/// How long a run keeps retrying its final write before giving up (the
/// sweeper then marks the row interrupted, with its last checkpoint).
const FINAL_WRITE_PATIENCE: Duration = Duration::from_secs(600);

/// The reply a run writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub owner: Uuid,
    pub message: Uuid,
    /// The earlier reply this one regenerates: deleted once this one ends
    /// with text, kept when it fails before its first word.
    pub replaces: Option<Uuid>,
}

/// Why a run was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    /// The user pressed Stop.
    User,
    /// The server is shutting down.
    Shutdown,
}

/// How a run ended, before it is written.
struct Outcome {
    status: MessageStatus,
    /// A short machine code (plain) and the sentence the user reads (sealed).
    error: Option<(&'static str, String)>,
    usage: Option<Usage>,
}

impl Outcome {
    fn new(status: MessageStatus, usage: Option<Usage>) -> Self {
        Outcome {
            status,
            error: None,
            usage,
        }
    }

    fn failed(code: &'static str, sentence: String, usage: Option<Usage>) -> Self {
        Outcome {
            status: MessageStatus::Interrupted,
            error: Some((code, sentence)),
            usage,
        }
    }
}

/// What the run has written so far and, once it ended, its `Done`, kept
/// under one lock so that a new reader gets either the `Done` in its
/// snapshot or on its channel, never neither.
#[derive(Default)]
struct Progress {
    text: String,
    done: Option<StreamUpdate>,
}

struct Run {
    owner: Uuid,
    key: DataKey,
    progress: Mutex<Progress>,
    /// Length of the text the last checkpoint wrote.
    saved: AtomicUsize,
    updates: broadcast::Sender<StreamUpdate>,
    stop: Notify,
    stop_reason: Mutex<Option<StopReason>>,
}

impl Run {
    fn new(owner: Uuid, key: DataKey) -> Self {
        let (updates, _) = broadcast::channel(UPDATES_BUFFER);
        Run {
            owner,
            key,
            progress: Mutex::default(),
            saved: AtomicUsize::new(0),
            updates,
            stop: Notify::new(),
            stop_reason: Mutex::new(None),
        }
    }

    /// Appends a piece and sends it under one lock, so a new subscriber's
    /// snapshot and the pieces after it neither miss nor repeat.
    fn append(&self, piece: String) {
        if let Ok(mut progress) = self.progress.lock() {
            progress.text.push_str(&piece);
            let _ = self.updates.send(StreamUpdate::Delta { text: piece });
        }
    }

    fn text(&self) -> String {
        self.progress
            .lock()
            .map(|p| p.text.clone())
            .unwrap_or_default()
    }

    fn text_len(&self) -> usize {
        self.progress.lock().map(|p| p.text.len()).unwrap_or(0)
    }

    /// The text so far, a receiver for what follows, and `Done` if the run
    /// has ended: taken under one lock.
    fn subscribe(
        &self,
    ) -> Option<(
        String,
        broadcast::Receiver<StreamUpdate>,
        Option<StreamUpdate>,
    )> {
        let progress = self.progress.lock().ok()?;
        Some((
            progress.text.clone(),
            self.updates.subscribe(),
            progress.done.clone(),
        ))
    }

    /// Records and sends `Done`.
    fn done(&self, done: StreamUpdate) {
        if let Ok(mut progress) = self.progress.lock() {
            progress.done = Some(done.clone());
            let _ = self.updates.send(done);
        }
    }

    fn ask_to_stop(&self, reason: StopReason) {
        if let Ok(mut current) = self.stop_reason.lock() {
            // Shutdown wins over a user's Stop: the reply did not end by choice.
            if current.is_none() || reason == StopReason::Shutdown {
                *current = Some(reason);
            }
        }
        self.stop.notify_one();
    }

    async fn stopped(&self) -> StopReason {
        self.stop.notified().await;
        self.stop_reason
            .lock()
            .ok()
            .and_then(|r| *r)
            .unwrap_or(StopReason::User)
    }
}

#[derive(Clone)]
pub struct Runs {
    live: Arc<Mutex<HashMap<Uuid, Arc<Run>>>>,
    checkpointer: Arc<OnceLock<()>>,
    /// Which server process runs these replies (stored with each reply, so
    /// a restarted server knows which `streaming` rows were its own).
    instance: Arc<str>,
    /// Woken whenever a run leaves the registry (shutdown waits on it).
    left: Arc<Notify>,
}

impl Default for Runs {
    fn default() -> Self {
        Runs::new("local")
    }
}

impl std::fmt::Debug for Runs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Runs({} live)", self.live_count())
    }
}

/// Leaves the registry when dropped: whatever happens to a run's task, its
/// conversation is not left locked by an entry nobody will remove.
struct Registered {
    runs: Runs,
    message: Uuid,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut live) = self.runs.live.lock() {
            live.remove(&self.message);
        }
        self.runs.left.notify_waiters();
    }
}

impl Runs {
    pub fn new(instance: impl Into<String>) -> Self {
        Runs {
            live: Arc::default(),
            checkpointer: Arc::default(),
            instance: Arc::from(instance.into()),
            left: Arc::default(),
        }
    }

    /// This server process's name in `messages.runner`.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    fn get(&self, message: Uuid, owner: Uuid) -> Option<Arc<Run>> {
        let runs = self.live.lock().ok()?;
        runs.get(&message).filter(|run| run.owner == owner).cloned()
    }

    pub fn live_count(&self) -> usize {
        self.live.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Follows `owner`'s live run for `message`: a snapshot of the text so
    /// far, each piece after it, and `Done`. A reader that falls more than
    /// `UPDATES_BUFFER` pieces behind gets a fresh snapshot, never a gap,
    /// even when the run ended meanwhile. `None` when no such run is live
    /// here (finished, elsewhere, or not this owner's).
    pub fn follow(
        &self,
        message: Uuid,
        owner: Uuid,
    ) -> Option<impl Stream<Item = StreamUpdate> + Send + 'static> {
        let run = self.get(message, owner)?;
        let (text, rx, done) = run.subscribe()?;
        let mut queue = VecDeque::from([StreamUpdate::Snapshot { text }]);
        queue.extend(done);
        Some(futures::stream::unfold(
            (queue, rx, false, run),
            |(mut queue, mut rx, ended, run)| async move {
                loop {
                    if let Some(update) = queue.pop_front() {
                        let ended = matches!(update, StreamUpdate::Done { .. });
                        return Some((update, (queue, rx, ended, run)));
                    }
                    if ended {
                        return None;
                    }
                    match rx.recv().await {
                        Ok(update) => queue.push_back(update),
                        Err(RecvError::Lagged(_)) => {
                            // Start again from the whole text (and its end, if
                            // it has ended): the run is still held here.
                            let (text, fresh, done) = run.subscribe()?;
                            queue.push_back(StreamUpdate::Snapshot { text });
                            queue.extend(done);
                            rx = fresh;
                        }
                        Err(RecvError::Closed) => return None,
                    }
                }
            },
        ))
    }

    /// Asks `owner`'s run for `message` to stop; false if there is none.
    pub fn stop(&self, message: Uuid, owner: Uuid) -> bool {
        match self.get(message, owner) {
            Some(run) => {
                run.ask_to_stop(StopReason::User);
                true
            }
            None => false,
        }
    }

    pub fn is_live(&self, message: Uuid) -> bool {
        self.live
            .lock()
            .map(|m| m.contains_key(&message))
            .unwrap_or(false)
    }

    /// Ends every live run as interrupted (saving its text) and waits, at
    /// most `patience`, until each has written its final state and told its
    /// readers. For graceful shutdown: afterwards no reply stream is open.
    pub async fn shutdown(&self, patience: Duration) -> usize {
        let live: Vec<Arc<Run>> = match self.live.lock() {
            Ok(map) => map.values().cloned().collect(),
            Err(_) => return 0,
        };
        for run in &live {
            run.ask_to_stop(StopReason::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let left = self.left.notified();
            if self.live_count() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, left).await.is_err() {
                tracing::warn!(
                    runs = self.live_count(),
                    "replies still being saved at shutdown"
                );
                break;
            }
        }
        live.len()
    }

    /// Starts the run that writes `reply` from the provider's answer to
    /// `request`.
    pub fn start(&self, state: AppState, reply: Reply, key: DataKey, request: ChatRequest) {
        let limits = StreamLimits {
            deadline: state.settings.run_deadline,
            max_reply_bytes: state.settings.max_reply_bytes,
            ..StreamLimits::default()
        };
        let events = llm::stream(state.egress.clone(), request, limits);
        let events = futures::stream::unfold(events, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        self.start_events(state, reply, key, events.boxed());
    }

    /// Starts a run over any stream of provider events (the provider's, or
    /// a test's).
    pub fn start_events(
        &self,
        state: AppState,
        reply: Reply,
        key: DataKey,
        events: BoxStream<'static, Result<StreamEvent, LlmError>>,
    ) {
        self.checkpointer.get_or_init(|| {
            tokio::spawn(checkpoint_loop(state.db.clone(), self.clone()));
        });
        let run = Arc::new(Run::new(reply.owner, key));
        if let Ok(mut runs) = self.live.lock() {
            runs.insert(reply.message, run.clone());
        }
        let registered = Registered {
            runs: self.clone(),
            message: reply.message,
        };
        tokio::spawn(async move {
            // The provider is read in a task of its own, so that a panic
            // there ends the reply as interrupted instead of leaving it live.
            let outcome = match tokio::spawn(drive(run.clone(), events)).await {
                Ok(outcome) => outcome,
                Err(err) => {
                    tracing::error!(message_id = %reply.message, panicked = err.is_panic(), "a run failed");
                    Outcome::failed(
                        "run_failed",
                        "Something went wrong on our side while writing this reply.".into(),
                        None,
                    )
                }
            };
            let text = run.text();
            save_final(&state, reply, &run.key, &text, &outcome).await;
            drop(registered);
            run.done(StreamUpdate::Done {
                status: outcome.status,
                error: outcome.error.map(|(_, sentence)| sentence),
                input_tokens: outcome.usage.map(|u| u.input_tokens as u32),
                output_tokens: outcome.usage.map(|u| u.output_tokens as u32),
            });
            tracing::info!(message_id = %reply.message, status = outcome.status.as_str(), "run finished");
        });
    }
}

/// Reads the provider's events into the run until the reply ends, the run
/// is stopped, or the provider fails.
async fn drive(
    run: Arc<Run>,
    mut events: BoxStream<'static, Result<StreamEvent, LlmError>>,
) -> Outcome {
    let mut usage = None;
    let mut tools: Vec<String> = Vec::new();
    loop {
        tokio::select! {
            item = events.next() => match item {
                None => break,
                Some(Err(err)) => return Outcome::failed(err.code(), err.to_string(), usage),
                Some(Ok(StreamEvent::Text(piece))) => run.append(piece),
                Some(Ok(StreamEvent::Usage(u))) => usage = Some(u),
                Some(Ok(StreamEvent::ToolCall(call))) => tools.extend(call.name),
                Some(Ok(StreamEvent::Finish(_))) => {}
            },
            reason = run.stopped() => return match reason {
                StopReason::User => Outcome::new(MessageStatus::Stopped, usage),
                StopReason::Shutdown => Outcome::failed(
                    "server_stopped",
                    "The server restarted while this reply was being written: regenerate it to get the rest.".into(),
                    usage,
                ),
            },
        }
    }
    if !tools.is_empty() {
        // Tools arrive with the tools slice; until then the reply says what
        // the model wanted rather than ending empty.
        let names: Vec<String> = tools.iter().map(|t| format!("“{t}”")).collect();
        let gap = if run.text_len() == 0 { "" } else { "\n\n" };
        run.append(format!(
            "{gap}_The model asked to use the tool {}, but this agent has no tools._",
            names.join(", ")
        ));
    }
    Outcome::new(MessageStatus::Complete, usage)
}

/// Writes a reply's final state, retrying with backoff until it is written
/// (a reply is never dropped because the database blinked): meanwhile the
/// run stays live, so readers still see its text.
async fn save_final(state: &AppState, reply: Reply, key: &DataKey, text: &str, outcome: &Outcome) {
    let started = tokio::time::Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        match finish(state, reply, key, text, outcome).await {
            Ok(()) => return,
            Err(err) if started.elapsed() < FINAL_WRITE_PATIENCE => {
                tracing::warn!(message_id = %reply.message, error = %err, retry_in_ms = wait.as_millis() as u64, "could not save the final reply; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(err) => {
                tracing::error!(message_id = %reply.message, error = %err, "gave up saving the final reply");
                return;
            }
        }
    }
}

/// Every `CHECKPOINT_EVERY`, writes the replies that grew since their last
/// checkpoint.
async fn checkpoint_loop(db: sqlx::PgPool, runs: Runs) {
    let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        checkpoint(&db, &runs).await;
    }
}

/// Writes every live reply that grew since it was last written, sealed, in
/// statements of up to `CHECKPOINT_BATCH` rows. Returns how many were written.
async fn checkpoint(db: &sqlx::PgPool, runs: &Runs) -> usize {
    let live: Vec<(Uuid, Arc<Run>)> = match runs.live.lock() {
        Ok(map) => map.iter().map(|(id, run)| (*id, run.clone())).collect(),
        Err(_) => return 0,
    };
    let mut written = 0;
    for chunk in live.chunks(CHECKPOINT_BATCH) {
        let mut ids = Vec::with_capacity(chunk.len());
        let mut owners = Vec::with_capacity(chunk.len());
        let mut bodies: Vec<Sealed> = Vec::with_capacity(chunk.len());
        let mut lengths = Vec::with_capacity(chunk.len());
        for (id, run) in chunk {
            let Ok(progress) = run.progress.lock() else {
                continue;
            };
            if progress.text.len() == run.saved.load(Ordering::Relaxed) {
                continue;
            }
            bodies.push(
                run.key
                    .seal_str(message_place("body", *id, run.owner), &progress.text),
            );
            lengths.push((run, progress.text.len()));
            ids.push(*id);
            owners.push(run.owner);
        }
        if ids.is_empty() {
            continue;
        }
        // A reply that finished meanwhile is no longer `streaming`, so its
        // final text is never overwritten by an older checkpoint.
        let result = sqlx::query(
            "UPDATE messages m SET body = c.body, updated_at = now()
             FROM unnest($1::uuid[], $2::uuid[], $3::bytea[]) AS c(id, owner_id, body)
             WHERE m.id = c.id AND m.owner_id = c.owner_id AND m.status = 'streaming'",
        )
        .bind(&ids)
        .bind(&owners)
        .bind(&bodies)
        .execute(db)
        .await;
        match result {
            Ok(_) => {
                written += ids.len();
                for (run, len) in lengths {
                    run.saved.store(len, Ordering::Relaxed);
                }
            }
            Err(err) => tracing::warn!(replies = ids.len(), error = %err, "checkpoint failed"),
        }
    }
    written
}

/// Writes a reply's final state and touches its conversation, in one
/// statement; a regenerated reply's predecessor goes once this one has text.
async fn finish(
    state: &AppState,
    reply: Reply,
    key: &DataKey,
    text: &str,
    outcome: &Outcome,
) -> Result<(), sqlx::Error> {
    let Reply {
        owner,
        message,
        replaces,
    } = reply;
    let (code, sentence) = match &outcome.error {
        Some((code, sentence)) => (Some(*code), Some(sentence.as_str())),
        None => (None, None),
    };
    sqlx::query(
        "WITH reply AS (
           UPDATE messages SET body = $3, status = $4, error_code = $5, error = $6,
             input_tokens = $7, output_tokens = $8, updated_at = now()
           WHERE id = $1 AND owner_id = $2
           RETURNING conversation_id
         ), replaced AS (
           DELETE FROM messages WHERE id = $9 AND owner_id = $2 AND $10
         )
         UPDATE conversations SET updated_at = now()
         WHERE id = (SELECT conversation_id FROM reply) AND owner_id = $2",
    )
    .bind(message)
    .bind(owner)
    .bind(key.seal_str(message_place("body", message, owner), text))
    .bind(outcome.status.as_str())
    .bind(code)
    .bind(sentence.map(|s| key.seal_str(message_place("error", message, owner), s)))
    .bind(outcome.usage.map(|u| u.input_tokens as i32))
    .bind(outcome.usage.map(|u| u.output_tokens as i32))
    .bind(replaces)
    .bind(!text.is_empty())
    .execute(&state.db)
    .await?;
    Ok(())
}

/// Marks replies left `streaming` by a server that died as interrupted.
/// Live runs touch their row at least every `CHECKPOINT_EVERY` while tokens
/// flow, so `stale_after` must be well above it (and above a slow first token).
pub async fn recover_interrupted(
    db: &sqlx::PgPool,
    runs: &Runs,
    stale_after: Duration,
) -> Result<u64, sqlx::Error> {
    let stale: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM messages WHERE status = 'streaming' AND updated_at < now() - make_interval(secs => $1)",
    )
    .bind(stale_after.as_secs_f64())
    .fetch_all(db)
    .await?;
    let mut marked = 0;
    for id in stale.into_iter().filter(|id| !runs.is_live(*id)) {
        marked += sqlx::query(
            "UPDATE messages SET status = 'interrupted', error_code = 'server_stopped'
             WHERE id = $1 AND status = 'streaming'",
        )
        .bind(id)
        .execute(db)
        .await?
        .rows_affected();
    }
    Ok(marked)
}

/// At startup: replies this server process was writing when it stopped (by
/// its `instance` name) are interrupted now, not after the sweeper's wait.
pub async fn recover_own(db: &sqlx::PgPool, runs: &Runs) -> Result<u64, sqlx::Error> {
    let live: Vec<Uuid> = runs
        .live
        .lock()
        .map(|m| m.keys().copied().collect())
        .unwrap_or_default();
    Ok(sqlx::query(
        "UPDATE messages SET status = 'interrupted', error_code = 'server_stopped'
         WHERE status = 'streaming' AND runner = $1 AND NOT (id = ANY($2))",
    )
    .bind(runs.instance())
    .bind(&live)
    .execute(db)
    .await?
    .rows_affected())
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;

    use super::*;

    fn live_run(runs: &Runs, message: Uuid, owner: Uuid) -> Arc<Run> {
        let run = Arc::new(Run::new(owner, DataKey::generate()));
        runs.live.lock().unwrap().insert(message, run.clone());
        run
    }

    fn text(update: Option<StreamUpdate>) -> String {
        match update {
            Some(StreamUpdate::Snapshot { text }) => format!("snapshot:{text}"),
            Some(StreamUpdate::Delta { text }) => format!("delta:{text}"),
            Some(StreamUpdate::Done { status, .. }) => format!("done:{}", status.as_str()),
            None => "end".into(),
        }
    }

    fn done() -> StreamUpdate {
        StreamUpdate::Done {
            status: MessageStatus::Complete,
            error: None,
            input_tokens: None,
            output_tokens: None,
        }
    }

    #[tokio::test]
    async fn a_reader_that_falls_behind_gets_the_whole_text_not_a_gap() {
        let runs = Runs::default();
        let (message, owner) = (Uuid::new_v4(), Uuid::new_v4());
        let run = live_run(&runs, message, owner);
        run.append("a ".into());
        let follower = runs.follow(message, owner).unwrap();
        futures::pin_mut!(follower);
        assert_eq!(text(follower.next().await), "snapshot:a ");
        // Far more pieces than the buffer holds, none of them read yet.
        let pieces: Vec<String> = (0..UPDATES_BUFFER * 3).map(|i| format!("p{i} ")).collect();
        for piece in &pieces {
            run.append(piece.clone());
        }
        assert_eq!(
            text(follower.next().await),
            format!("snapshot:a {}", pieces.concat()),
            "the lagging reader is sent everything so far"
        );
        run.append("z ".into());
        assert_eq!(text(follower.next().await), "delta:z ");
        // As a run ends: leave the registry, then say done.
        runs.live.lock().unwrap().remove(&message);
        run.done(done());
        assert_eq!(text(follower.next().await), "done:complete");
        assert_eq!(text(follower.next().await), "end");
    }

    #[tokio::test]
    async fn a_reader_behind_when_the_run_ends_gets_the_final_text_then_done() {
        let runs = Runs::default();
        let (message, owner) = (Uuid::new_v4(), Uuid::new_v4());
        let run = live_run(&runs, message, owner);
        let follower = runs.follow(message, owner).unwrap();
        futures::pin_mut!(follower);
        assert_eq!(text(follower.next().await), "snapshot:");
        let pieces: Vec<String> = (0..UPDATES_BUFFER * 2).map(|i| format!("p{i} ")).collect();
        for piece in &pieces {
            run.append(piece.clone());
        }
        // The run ends while this reader is far behind.
        runs.live.lock().unwrap().remove(&message);
        run.done(done());
        assert_eq!(
            text(follower.next().await),
            format!("snapshot:{}", pieces.concat()),
            "no piece is lost to the gap"
        );
        assert_eq!(text(follower.next().await), "done:complete");
        assert_eq!(text(follower.next().await), "end");
    }

    #[tokio::test]
    async fn another_owner_cannot_follow_a_live_run() {
        let runs = Runs::default();
        let (message, owner) = (Uuid::new_v4(), Uuid::new_v4());
        live_run(&runs, message, owner);
        assert!(runs.follow(message, Uuid::new_v4()).is_none());
        assert!(runs.follow(message, owner).is_some());
    }

    #[tokio::test]
    async fn a_reply_of_only_a_tool_call_says_so() {
        let run = Arc::new(Run::new(Uuid::new_v4(), DataKey::generate()));
        let events = futures::stream::iter([
            Ok(StreamEvent::ToolCall(llm::ToolCallDelta {
                index: 0,
                id: Some("call_1".into()),
                name: Some("get_weather".into()),
                arguments: String::new(),
            })),
            Ok(StreamEvent::Finish("tool_calls".into())),
        ])
        .boxed();
        let outcome = drive(run.clone(), events).await;
        assert_eq!(outcome.status, MessageStatus::Complete);
        let text = run.text();
        assert!(
            text.contains("get_weather") && text.contains("no tools"),
            "{text}"
        );
    }
}
