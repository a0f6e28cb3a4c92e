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
//!
//! Several servers on one database: a reply is written by the server that
//! started it. Another server's reader asks for it on the control channel
//! (`Follow`); the writer then publishes the run (`publish`: a snapshot,
//! then each update, sealed with the owner's key, in pieces under
//! PostgreSQL's notification limit) on the stream channel, and the
//! reader's server hands the pieces to its followers (`follow_remote`).
//! Nothing is published while nobody elsewhere follows.

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

use super::{
    Citation, MessageStatus, ReplyPart, StreamUpdate, ToolCallView, ToolStatus,
    server::message_place,
};
use crate::{
    llm::{self, ChatRequest, LlmError, Part, Role, StreamEvent, StreamLimits, Turn, Usage},
    platform::{
        control::Piece,
        crypto::{DataKey, Sealed},
        persist,
    },
    state::AppState,
    tools::server::Toolbox,
};

/// Where a step's events come from: the provider (through egress), or a
/// test's script.
pub type Model =
    Arc<dyn Fn(ChatRequest) -> BoxStream<'static, Result<StreamEvent, LlmError>> + Send + Sync>;

/// What a run does: the request (context and tools offered) and the tools
/// it may call. A run that resumes a paused reply starts from its stored
/// parts (`resume`), where the calls the user decided on are `Approved` or
/// `Denied`.
pub struct Job {
    pub request: ChatRequest,
    pub tools: Option<Toolbox>,
    pub resume: Vec<ReplyPart>,
    /// Context looked up when the run starts (the agent's knowledge): text
    /// for the system prompt, and the passages it cites.
    pub retrieval: Option<Retrieval>,
    /// Writes each model call to the usage ledger (and settles the reply's
    /// credits when it ends).
    pub meter: Option<crate::usage::server::Meter>,
    /// When a chat send's steps happened (a signed-in send's; see `SendClock`).
    pub clock: Option<Arc<SendClock>>,
}

/// A step of a chat send, timed by its `SendClock`.
#[derive(Clone, Copy)]
pub enum Step {
    /// The send's one statement is back (`SEND_READS_SIGNED_IN`).
    Read,
    /// Its rows opened and checked: the run can start.
    Ready,
    /// The run asks the provider (its first request is made).
    Asked,
    /// The provider's first piece of text reached the run.
    FirstToken,
    /// The user's message and the reply's row are committed.
    Stored,
}

const STEPS: usize = 5;

/// When each step of one chat send happened, counted from the send's
/// arrival: where the time before the first token goes (BENCHMARKS.md, "Where
/// a send's time goes"). A clock read per step on the send's path; one line,
/// logged at debug under `enclave::timing` once the reply has ended (off the
/// token path), with ids and durations only.
pub struct SendClock {
    arrived: std::time::Instant,
    /// The same moment on the wall clock, so that a client on this machine
    /// (the benchmark) can place the steps after its own send.
    arrived_wall: std::time::SystemTime,
    /// Microseconds after `arrived`, plus one (0: not reached).
    marks: [std::sync::atomic::AtomicU64; STEPS],
}

impl SendClock {
    pub fn start() -> Arc<SendClock> {
        Arc::new(SendClock {
            arrived: std::time::Instant::now(),
            arrived_wall: std::time::SystemTime::now(),
            marks: Default::default(),
        })
    }

    /// Notes `step` now, the first time it is reached (a run's later steps
    /// ask the provider again).
    pub fn mark(&self, step: Step) {
        let at = self.arrived.elapsed().as_micros() as u64 + 1;
        let _ =
            self.marks[step as usize].compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
    }

    fn at(&self, step: Step) -> i64 {
        self.marks[step as usize].load(Ordering::Relaxed) as i64 - 1
    }

    /// The debug line (microseconds after arrival; -1: not reached).
    fn log(&self, message: Uuid) {
        let arrived_unix_us = self
            .arrived_wall
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        tracing::debug!(
            target: "enclave::timing",
            message_id = %message,
            arrived_unix_us,
            read_us = self.at(Step::Read),
            ready_us = self.at(Step::Ready),
            asked_us = self.at(Step::Asked),
            first_token_us = self.at(Step::FirstToken),
            stored_us = self.at(Step::Stored),
            "send timing"
        );
    }
}

/// Whether the transaction that stores a reply has committed. A run may
/// start before it has (`Runs::start`): the provider's first token takes far
/// longer than a commit, so the request is on its way meanwhile. Until the
/// commit is in, the run writes nothing, calls no tool and records no usage,
/// and no reader can attach (the reply's id reaches the browser with the
/// commit's answer); if it never commits, the run ends without a trace.
#[derive(Clone)]
pub struct Committed(tokio::sync::watch::Receiver<Option<bool>>);

/// The other end of `Committed`: `stored` once the commit is in. Dropped
/// without it (the commit failed, or the request was dropped), the run ends.
pub struct Commit(tokio::sync::watch::Sender<Option<bool>>);

impl Committed {
    /// A gate and its run's side, for a run started before its commit.
    pub fn pending() -> (Commit, Committed) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        (Commit(tx), Committed(rx))
    }

    /// For a run whose reply is stored already.
    pub fn already() -> Committed {
        Committed(tokio::sync::watch::channel(Some(true)).1)
    }

    /// Whether the reply is stored, now.
    fn is_stored(&self) -> bool {
        *self.0.borrow() == Some(true)
    }

    /// Waits for the commit: whether the reply is stored.
    async fn wait(&self) -> bool {
        let mut rx = self.0.clone();
        matches!(
            rx.wait_for(Option::is_some).await.map(|v| *v),
            Ok(Some(true))
        )
    }
}

impl Commit {
    /// The reply is stored: the run may write it.
    pub fn stored(self) {
        let _ = self.0.send(Some(true));
    }
}

/// What a retrieval gives a run: the system prompt's addition and the
/// citations shown with the reply. `None` when there is nothing to add.
pub type Retrieval =
    std::pin::Pin<Box<dyn std::future::Future<Output = Option<(String, Vec<Citation>)>> + Send>>;

/// How often growing replies are written to the database.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Rows per checkpoint statement.
const CHECKPOINT_BATCH: usize = 500;

/// Pieces a subscriber may fall behind before it is sent the whole text
/// again. Allocated up front for every run (about 90 bytes a slot), so kept
/// small: a reader this far behind is better served by one snapshot.
const UPDATES_BUFFER: usize = 32;

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

/// What the run has written so far (its parts: text steps and tool calls)
/// and, once it ended, its `Done`, kept under one lock so that a new reader
/// gets either the `Done` in its snapshot or on its channel, never neither.
#[derive(Default)]
struct Progress {
    parts: Vec<ReplyPart>,
    /// Goes up with every change (the checkpointer writes what moved).
    version: usize,
    done: Option<StreamUpdate>,
}

impl Progress {
    fn text(&self) -> String {
        ReplyPart::text_of(&self.parts)
    }

    fn snapshot(&self) -> StreamUpdate {
        StreamUpdate::Snapshot {
            text: self.text(),
            parts: self.parts.clone(),
        }
    }
}

struct Run {
    owner: Uuid,
    key: DataKey,
    progress: Mutex<Progress>,
    /// The version the last checkpoint wrote.
    saved: AtomicUsize,
    updates: broadcast::Sender<StreamUpdate>,
    stop: Notify,
    stop_reason: Mutex<Option<StopReason>>,
    /// When the run started, and whether its first text has come (for the
    /// time-to-first-token metric).
    started: std::time::Instant,
    first_text: std::sync::atomic::AtomicBool,
    /// Published on the stream channel for followers on other servers
    /// (`Runs::publish`), and the nudge that sends them a fresh snapshot.
    published: std::sync::atomic::AtomicBool,
    resync: Notify,
    /// Whether the reply's row is stored (see `Committed`).
    committed: Committed,
    /// A chat send's step times (`Job::clock`).
    clock: Option<Arc<SendClock>>,
}

impl Run {
    #[cfg(test)]
    fn new(owner: Uuid, key: DataKey) -> Self {
        Run::with_parts(owner, key, Vec::new(), Committed::already())
    }

    /// A run that goes on from `parts` (a paused reply's).
    fn with_parts(owner: Uuid, key: DataKey, parts: Vec<ReplyPart>, committed: Committed) -> Self {
        let (updates, _) = broadcast::channel(UPDATES_BUFFER);
        Run {
            owner,
            key,
            progress: Mutex::new(Progress {
                version: usize::from(!parts.is_empty()),
                parts,
                done: None,
            }),
            saved: AtomicUsize::new(0),
            updates,
            stop: Notify::new(),
            stop_reason: Mutex::new(None),
            started: std::time::Instant::now(),
            first_text: std::sync::atomic::AtomicBool::new(false),
            published: std::sync::atomic::AtomicBool::new(false),
            resync: Notify::new(),
            committed,
            clock: None,
        }
    }

    /// Appends a piece of text (to the last text part, or a new one after a
    /// tool call) and sends it under one lock, so a new subscriber's
    /// snapshot and the pieces after it neither miss nor repeat.
    fn append(&self, piece: String) {
        if let Ok(mut progress) = self.progress.lock() {
            match progress.parts.last_mut() {
                Some(ReplyPart::Text { text }) => text.push_str(&piece),
                _ => progress.parts.push(ReplyPart::Text {
                    text: piece.clone(),
                }),
            }
            progress.version += 1;
            let _ = self.updates.send(StreamUpdate::Delta { text: piece });
        }
    }

    /// Adds a part (at the end) or replaces part `index`; returns its index.
    fn set_part(&self, index: Option<usize>, part: ReplyPart) -> usize {
        let Ok(mut progress) = self.progress.lock() else {
            return 0;
        };
        let index = match index {
            Some(i) if i < progress.parts.len() => {
                progress.parts[i] = part.clone();
                i
            }
            _ => {
                progress.parts.push(part.clone());
                progress.parts.len() - 1
            }
        };
        progress.version += 1;
        let _ = self.updates.send(StreamUpdate::Part { index, part });
        index
    }

    fn parts(&self) -> Vec<ReplyPart> {
        self.progress
            .lock()
            .map(|p| p.parts.clone())
            .unwrap_or_default()
    }

    fn text_len(&self) -> usize {
        self.progress.lock().map(|p| p.text().len()).unwrap_or(0)
    }

    /// The reply so far, a receiver for what follows, and `Done` if the run
    /// has ended: taken under one lock.
    fn subscribe(
        &self,
    ) -> Option<(
        StreamUpdate,
        broadcast::Receiver<StreamUpdate>,
        Option<StreamUpdate>,
    )> {
        let progress = self.progress.lock().ok()?;
        Some((
            progress.snapshot(),
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
    /// Replies written by other servers that someone here follows: the
    /// pieces the control listener hands over (`Runs::remote_piece`).
    remote: Arc<Mutex<HashMap<Uuid, broadcast::Sender<Piece>>>>,
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
            remote: Arc::default(),
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
        let (snapshot, rx, done) = run.subscribe()?;
        let mut queue = VecDeque::from([snapshot]);
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
                            let (snapshot, fresh, done) = run.subscribe()?;
                            queue.push_back(snapshot);
                            queue.extend(done);
                            rx = fresh;
                        }
                        Err(RecvError::Closed) => return None,
                    }
                }
            },
        ))
    }

    /// Acts on a signal from another server (or the operator's command
    /// line): every check of ownership is the registry's own.
    pub fn on_signal(&self, db: &sqlx::PgPool, signal: crate::platform::control::Signal) {
        use crate::platform::control::Signal;
        match signal {
            Signal::StopOwner(user) => {
                let stopped = self.stop_owner(user);
                if stopped > 0 {
                    tracing::info!(user_id = %user, replies_stopped = stopped, "stopped an account's replies on a signal");
                }
            }
            Signal::Stop { message, owner } => {
                self.stop(message, owner);
            }
            Signal::Follow { message, owner } => self.publish(db.clone(), message, owner),
            Signal::Piece(piece) => self.remote_piece(piece),
        }
    }

    /// Publishes `owner`'s run for `message` on the stream channel (someone
    /// follows it from another server): a snapshot, then every update until
    /// `Done`. Already published: a fresh snapshot for the newcomer. Not
    /// here, or not this owner's: nothing.
    pub fn publish(&self, db: sqlx::PgPool, message: Uuid, owner: Uuid) {
        let Some(run) = self.get(message, owner) else {
            return;
        };
        if run.published.swap(true, Ordering::SeqCst) {
            run.resync.notify_one();
            return;
        }
        tokio::spawn(publish(db, message, run));
    }

    /// A piece of a published reply, from the control listener: handed to
    /// whoever here follows it (nobody: dropped).
    pub fn remote_piece(&self, piece: Piece) {
        if let Ok(remote) = self.remote.lock()
            && let Some(tx) = remote.get(&piece.message)
        {
            let _ = tx.send(piece);
        }
    }

    /// Follows `owner`'s reply `message` that another server is writing:
    /// asks it to publish, then yields what it sends (a snapshot, updates,
    /// `Done`), opened with the owner's `key`. While nothing arrives, the
    /// stored row is checked every few seconds: a reply that ended (its
    /// server stopped, say) ends here with what was saved.
    pub fn follow_remote(
        &self,
        state: AppState,
        message: Uuid,
        owner: Uuid,
        key: DataKey,
    ) -> impl Stream<Item = StreamUpdate> + Send + 'static {
        let rx = {
            let mut remote = self.remote.lock().unwrap_or_else(|e| e.into_inner());
            remote
                .entry(message)
                .or_insert_with(|| broadcast::channel(256).0)
                .subscribe()
        };
        let following = Following {
            runs: self.clone(),
            message,
            rx,
        };
        let follower = RemoteFollower {
            state,
            message,
            owner,
            key,
            following,
            asked: false,
            synced: false,
            assembling: HashMap::new(),
            pending_done: None,
            ended: false,
        };
        futures::stream::unfold(follower, |mut f| async move {
            let update = f.next().await?;
            Some((update, f))
        })
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

    /// Waits until the run for `message` is no longer live here (its final
    /// state written, or it never was).
    pub async fn ended(&self, message: Uuid) {
        loop {
            // Made before the check, so a run leaving in between still wakes it.
            let left = self.left.notified();
            if !self.is_live(message) {
                return;
            }
            left.await;
        }
    }

    /// Asks every live run of `owner` here to stop (their account was
    /// disabled); how many there were.
    pub fn stop_owner(&self, owner: Uuid) -> usize {
        let runs: Vec<Arc<Run>> = self
            .live
            .lock()
            .map(|m| m.values().filter(|r| r.owner == owner).cloned().collect())
            .unwrap_or_default();
        for run in &runs {
            run.ask_to_stop(StopReason::User);
        }
        runs.len()
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

    /// Starts the run that writes `reply`: the provider's answer to the
    /// job's request, and the tool calls it asks for. `committed` says when
    /// the reply's row is stored (the run may start before).
    pub fn start(
        &self,
        state: AppState,
        reply: Reply,
        key: DataKey,
        job: Job,
        committed: Committed,
    ) {
        let limits = StreamLimits {
            deadline: state.settings.run_deadline,
            first_token: state.settings.provider_timeout,
            idle_gap: state.settings.provider_timeout,
            max_reply_bytes: state.settings.max_reply_bytes,
            ..StreamLimits::default()
        };
        let egress = state.egress.clone();
        let model: Model = Arc::new(move |request| {
            let events = llm::stream(egress.clone(), request, limits);
            futures::stream::unfold(events, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            })
            .boxed()
        });
        self.start_with(state, reply, key, job, model, committed);
    }

    /// Starts a run whose steps come from `model` (the provider's, or a
    /// test's).
    pub fn start_with(
        &self,
        state: AppState,
        reply: Reply,
        key: DataKey,
        job: Job,
        model: Model,
        committed: Committed,
    ) {
        self.checkpointer.get_or_init(|| {
            tokio::spawn(checkpoint_loop(state.db.clone(), self.clone()));
        });
        let mut run = Run::with_parts(reply.owner, key, job.resume.clone(), committed);
        run.clock = job.clock.clone();
        let run = Arc::new(run);
        if let Ok(mut runs) = self.live.lock() {
            runs.insert(reply.message, run.clone());
        }
        let registered = Registered {
            runs: self.clone(),
            message: reply.message,
        };
        let meter = job.meter.clone();
        // The run outlives the request that started it, and logs under its
        // span (its request id) all the same.
        let span = tracing::info_span!("run", message_id = %reply.message);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                // The steps run in a task of their own, so that a panic there
                // ends the reply as interrupted instead of leaving it live.
                let mut steps = tokio::spawn(tracing::Instrument::in_current_span(drive(
                    run.clone(),
                    model,
                    job,
                )));
                if !run.committed.wait().await {
                    // Nothing was stored: nothing to write, and nobody to tell.
                    steps.abort();
                    tracing::info!(message_id = %reply.message, "run dropped: its reply was never stored");
                    return;
                }
                let outcome = match (&mut steps).await {
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
                let parts = settle_calls(&run);
                save_final(&state, reply, &run.key, &parts, &outcome).await;
                if let Some(meter) = &meter {
                    meter.settle().await;
                }
                drop(registered);
                run.done(StreamUpdate::Done {
                    status: outcome.status,
                    error: outcome.error.map(|(_, sentence)| sentence),
                    input_tokens: outcome.usage.map(|u| u.input_tokens as u32),
                    output_tokens: outcome.usage.map(|u| u.output_tokens as u32),
                });
                if let Some(clock) = &run.clock {
                    clock.log(reply.message);
                }
                metrics::counter!("enclave_runs_total", "status" => outcome.status.as_str())
                    .increment(1);
                tracing::info!(message_id = %reply.message, status = outcome.status.as_str(), "run finished");
            },
            span,
        ));
    }
}

/// A follower's receiver of the pieces of a reply written elsewhere. The
/// last one to go takes the reply out of the followers' map (its own
/// receiver still counts while `drop` runs, hence `<= 1`).
struct Following {
    runs: Runs,
    message: Uuid,
    rx: broadcast::Receiver<Piece>,
}

impl Drop for Following {
    fn drop(&mut self) {
        if let Ok(mut remote) = self.runs.remote.lock()
            && remote
                .get(&self.message)
                .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            remote.remove(&self.message);
        }
    }
}

/// How long a follower waits for a piece before it checks the stored row
/// (and asks again).
const REMOTE_PATIENCE: Duration = Duration::from_secs(3);

/// The associated data of a published update: this reply, this owner.
fn published_place(message: Uuid, owner: Uuid) -> crate::platform::crypto::Place {
    crate::platform::crypto::Place::new("messages", "published", message, owner)
}

struct RemoteFollower {
    state: AppState,
    message: Uuid,
    owner: Uuid,
    key: DataKey,
    following: Following,
    /// Whether the writing server was asked to publish (again).
    asked: bool,
    /// Whether a snapshot came since the last (re)start: updates before it
    /// are already in it.
    synced: bool,
    assembling: HashMap<u64, Vec<Option<Arc<str>>>>,
    /// `Done` read from the stored row, sent after its snapshot.
    pending_done: Option<StreamUpdate>,
    ended: bool,
}

impl RemoteFollower {
    async fn ask(&mut self) {
        let signal = crate::platform::control::Signal::Follow {
            message: self.message,
            owner: self.owner,
        };
        if let Err(err) = crate::platform::control::send(&self.state.db, signal).await {
            tracing::warn!(error = %err, "could not ask for a reply being written elsewhere");
        }
        self.asked = true;
    }

    /// The next update to send, or `None` once `Done` was sent.
    async fn next(&mut self) -> Option<StreamUpdate> {
        if let Some(done) = self.pending_done.take() {
            return Some(done);
        }
        if self.ended {
            return None;
        }
        loop {
            if !self.asked {
                self.ask().await;
            }
            match tokio::time::timeout(REMOTE_PATIENCE, self.following.rx.recv()).await {
                Ok(Ok(piece)) => {
                    let Some(update) = self.assemble(piece) else {
                        continue;
                    };
                    if matches!(update, StreamUpdate::Snapshot { .. }) {
                        self.synced = true;
                    } else if !self.synced {
                        continue;
                    }
                    self.ended = matches!(update, StreamUpdate::Done { .. });
                    return Some(update);
                }
                Ok(Err(RecvError::Lagged(_))) => {
                    // Fell behind: start again from a fresh snapshot.
                    self.synced = false;
                    self.assembling.clear();
                    self.asked = false;
                }
                Ok(Err(RecvError::Closed)) => return None,
                Err(_) => {
                    // Quiet: the reply may have ended where nobody published
                    // it (its server stopped); else ask again. Only its
                    // status is read while it goes on (a long silent step
                    // would otherwise open the whole text every few seconds).
                    let status: Option<String> = sqlx::query_scalar(
                        "SELECT status FROM messages WHERE id = $1 AND owner_id = $2",
                    )
                    .bind(self.message)
                    .bind(self.owner)
                    .fetch_optional(&self.state.db)
                    .await
                    .ok()?;
                    if status? == MessageStatus::Streaming.as_str() {
                        self.asked = false;
                        continue;
                    }
                    let stored = super::server::stored_reply(
                        &self.state,
                        self.owner,
                        &self.key,
                        self.message,
                    )
                    .await
                    .ok()?;
                    // Its text now, its `Done` on the next call.
                    let [snapshot, done] = stored.into_updates();
                    self.ended = true;
                    self.pending_done = Some(done);
                    return Some(snapshot);
                }
            }
        }
    }

    /// Adds a piece; the update once all its pieces are in.
    fn assemble(&mut self, piece: Piece) -> Option<StreamUpdate> {
        let count = piece.count.clamp(1, 64) as usize;
        let slots = self
            .assembling
            .entry(piece.seq)
            .or_insert_with(|| vec![None; count]);
        if slots.len() != count || piece.index as usize >= count {
            self.assembling.remove(&piece.seq);
            return None;
        }
        slots[piece.index as usize] = Some(piece.data);
        if slots.iter().any(Option::is_none) {
            // Keep a few partial updates only (a lost piece never completes).
            if self.assembling.len() > 8
                && let Some(oldest) = self.assembling.keys().min().copied()
            {
                self.assembling.remove(&oldest);
            }
            return None;
        }
        let slots = self.assembling.remove(&piece.seq)?;
        let encoded: String = slots.into_iter().flatten().map(|s| s.to_string()).collect();
        use base64::Engine as _;
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let json = self
            .key
            .open(
                published_place(self.message, self.owner),
                &Sealed::from_stored(sealed),
            )
            .ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// Sends `run`'s updates on the stream channel until it is done: a
/// snapshot first (and again whenever a follower asks or this falls
/// behind), then each update.
async fn publish(db: sqlx::PgPool, message: Uuid, run: Arc<Run>) {
    let mut seq = 0u64;
    let mut send = async |update: &StreamUpdate| {
        seq += 1;
        publish_update(&db, message, &run, seq, update).await;
        matches!(update, StreamUpdate::Done { .. })
    };
    loop {
        let Some((snapshot, mut rx, done)) = run.subscribe() else {
            return;
        };
        send(&snapshot).await;
        if let Some(done) = done {
            send(&done).await;
            return;
        }
        // Until it ends, or a fresh snapshot is due.
        loop {
            tokio::select! {
                received = rx.recv() => match received {
                    Ok(update) => {
                        if send(&update).await {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return,
                },
                _ = run.resync.notified() => break,
            }
        }
    }
}

/// One update on the stream channel: JSON sealed with the owner's key,
/// base64, in numbered pieces small enough for a notification.
async fn publish_update(
    db: &sqlx::PgPool,
    message: Uuid,
    run: &Run,
    seq: u64,
    update: &StreamUpdate,
) {
    use crate::platform::control::{self, PIECE_BYTES, Signal};
    use base64::Engine as _;
    let Ok(json) = serde_json::to_vec(update) else {
        return;
    };
    let sealed = run.key.seal(published_place(message, run.owner), &json);
    // base64 is ASCII, so any byte boundary is a character boundary.
    let encoded = base64::engine::general_purpose::STANDARD.encode(sealed.as_bytes());
    let count = encoded.len().div_ceil(PIECE_BYTES).max(1) as u32;
    for index in 0..count {
        let start = index as usize * PIECE_BYTES;
        let data = encoded[start..(start + PIECE_BYTES).min(encoded.len())].into();
        let signal = Signal::Piece(Piece {
            message,
            seq,
            index,
            count,
            data,
        });
        if let Err(err) = control::send(db, signal).await {
            tracing::warn!(error = %err, "could not publish a reply's update");
            return;
        }
    }
}

/// Tool calls still running when a run ends (stopped, failed, shut down)
/// were cancelled: they say so. Returns the final parts.
fn settle_calls(run: &Run) -> Vec<ReplyPart> {
    for (index, part) in run.parts().into_iter().enumerate() {
        if let ReplyPart::ToolCall(mut call) = part
            && call.status == ToolStatus::Running
        {
            call.status = ToolStatus::Cancelled;
            call.error = Some("Stopped before the tool finished.".into());
            run.set_part(Some(index), ReplyPart::ToolCall(call));
        }
    }
    run.parts()
}

fn add_usage(total: Option<Usage>, more: Option<Usage>) -> Option<Usage> {
    match (total, more) {
        (Some(a), Some(b)) => Some(Usage {
            input_tokens: a.input_tokens + b.input_tokens,
            output_tokens: a.output_tokens + b.output_tokens,
        }),
        (a, b) => a.or(b),
    }
}

fn stopped(reason: StopReason, usage: Option<Usage>) -> Outcome {
    match reason {
        StopReason::User => Outcome::new(MessageStatus::Stopped, usage),
        StopReason::Shutdown => Outcome::failed(
            "server_stopped",
            "The server writing this reply stopped before it was done: regenerate it to get the rest.".into(),
            usage,
        ),
    }
}

/// A tool call as the model streamed it, assembled from its pieces.
#[derive(Default)]
struct Asked {
    id: Option<String>,
    name: String,
    arguments: String,
}

/// One step: the model's answer to `request`, streamed into the run.
/// Returns the text it said and the calls it asked for.
async fn step(
    run: &Run,
    model: &Model,
    request: ChatRequest,
    usage: &mut Option<Usage>,
    meter: Option<&crate::usage::server::Meter>,
) -> Result<(String, Vec<Asked>), Outcome> {
    let result = stream_step(run, model, request, usage).await;
    // Usage is recorded against a stored reply only (a run never stored is
    // ended by its task).
    if let Some(meter) = meter
        && run.committed.wait().await
    {
        let step_usage = match &result {
            Ok((_, _, u)) => *u,
            Err((_, u)) => *u,
        };
        if let Some(u) = step_usage {
            meter.record(u, false).await;
        }
    }
    match result {
        Ok((text, asked, _)) => Ok((text, asked)),
        Err((outcome, _)) => Err(outcome),
    }
}

/// What one step's stream said, and the usage it reported (also on
/// failure, for the ledger).
type StepResult = Result<(String, Vec<Asked>, Option<Usage>), (Outcome, Option<Usage>)>;

async fn stream_step(
    run: &Run,
    model: &Model,
    request: ChatRequest,
    usage: &mut Option<Usage>,
) -> StepResult {
    let provider = request.provider.as_str();
    if let Some(clock) = &run.clock {
        clock.mark(Step::Asked);
    }
    let mut events = model(request);
    let mut text = String::new();
    let mut asked: std::collections::BTreeMap<u32, Asked> = Default::default();
    let mut step_usage = None;
    loop {
        tokio::select! {
            item = events.next() => match item {
                None => break,
                Some(Err(err)) => {
                    metrics::counter!("enclave_provider_errors_total", "provider" => provider, "kind" => err.code()).increment(1);
                    return Err((Outcome::failed(err.code(), err.to_string(), add_usage(*usage, step_usage)), step_usage));
                }
                Some(Ok(StreamEvent::Text(piece))) => {
                    if !run.first_text.load(Ordering::Relaxed)
                        && !run.first_text.swap(true, Ordering::Relaxed)
                    {
                        metrics::histogram!("enclave_time_to_first_token_seconds", "provider" => provider)
                            .record(run.started.elapsed().as_secs_f64());
                        if let Some(clock) = &run.clock {
                            clock.mark(Step::FirstToken);
                        }
                    }
                    text.push_str(&piece);
                    run.append(piece);
                }
                Some(Ok(StreamEvent::Usage(u))) => step_usage = Some(u),
                Some(Ok(StreamEvent::ToolCall(delta))) => {
                    let call = asked.entry(delta.index).or_default();
                    if delta.id.is_some() {
                        call.id = delta.id;
                    }
                    if let Some(name) = delta.name {
                        call.name = name;
                    }
                    call.arguments.push_str(&delta.arguments);
                }
                Some(Ok(StreamEvent::Finish(_))) => {}
            },
            reason = run.stopped() => return Err((stopped(reason, add_usage(*usage, step_usage)), step_usage)),
        }
    }
    *usage = add_usage(*usage, step_usage);
    Ok((text, asked.into_values().collect(), step_usage))
}

/// A call the model asked for, with its part's index.
struct Call {
    index: usize,
    id: String,
    name: String,
    arguments: Result<serde_json::Value, String>,
}

/// What the model reads for a call that did not run normally.
const DECLINED: &str = "The user declined this call.";
const CANCELLED: &str = "Stopped before the tool finished.";

/// Runs `calls` together (each updating its part as it ends), unless the
/// run is stopped first. Returns each call's answer for the model.
async fn run_calls(
    run: &Arc<Run>,
    toolbox: &Toolbox,
    calls: &[Call],
) -> Result<Vec<(String, bool)>, StopReason> {
    // No tool runs for a reply that was never stored (its task ends the
    // run without a trace, whatever this returns).
    if !calls.is_empty() && !run.committed.wait().await {
        return Err(StopReason::Shutdown);
    }
    let running = futures::future::join_all(calls.iter().map(|call| {
        let run = run.clone();
        async move {
            let started = tokio::time::Instant::now();
            let result = match &call.arguments {
                Ok(arguments) => toolbox.call(&call.name, arguments.clone()).await,
                Err(message) => Err(crate::tools::server::ToolError::Invalid(message.clone())),
            };
            if let Some(ReplyPart::ToolCall(mut view)) = run.parts().get(call.index).cloned() {
                view.duration_ms = Some(started.elapsed().as_millis() as u64);
                match &result {
                    Ok(output) => {
                        view.status = ToolStatus::Done;
                        view.result = Some(output.content.clone());
                    }
                    Err(err) => {
                        view.status = ToolStatus::Failed;
                        view.error = Some(err.to_string());
                    }
                }
                run.set_part(Some(call.index), ReplyPart::ToolCall(view));
            }
            match result {
                Ok(output) => (output.content, false),
                Err(err) => (err.to_string(), true),
            }
        }
    }));
    tokio::select! {
        answers = running => Ok(answers),
        reason = run.stopped() => Err(reason),
    }
}

/// The turns a reply's parts stand for: each step's text and calls (the
/// model's turn), then the calls' answers (the tools' turn). Returns them
/// and how many steps they took.
fn turns_from_parts(parts: &[ReplyPart]) -> (Vec<Turn>, u32) {
    let mut turns = Vec::new();
    let (mut said, mut answers): (Vec<Part>, Vec<Part>) = (Vec::new(), Vec::new());
    let mut steps = 0;
    let mut flush = |said: &mut Vec<Part>, answers: &mut Vec<Part>| {
        if !answers.is_empty() {
            turns.push(Turn {
                role: Role::Assistant,
                parts: std::mem::take(said),
            });
            turns.push(Turn {
                role: Role::User,
                parts: std::mem::take(answers),
            });
            steps += 1;
        }
    };
    for part in parts {
        match part {
            ReplyPart::Text { text } => {
                flush(&mut said, &mut answers);
                if !text.is_empty() {
                    said.push(Part::Text(text.clone()));
                }
            }
            ReplyPart::Sources { .. } => {}
            ReplyPart::ToolCall(call) => {
                said.push(Part::ToolCall {
                    id: call.id.clone(),
                    name: call.tool.clone(),
                    arguments: serde_json::from_str(&call.arguments)
                        .unwrap_or(serde_json::Value::Object(Default::default())),
                });
                let (content, is_error) = match call.status {
                    ToolStatus::Done => (call.result.clone().unwrap_or_default(), false),
                    ToolStatus::Denied => (DECLINED.to_owned(), true),
                    ToolStatus::Cancelled => (CANCELLED.to_owned(), true),
                    _ => (call.error.clone().unwrap_or_default(), true),
                };
                answers.push(Part::ToolResult {
                    id: call.id.clone(),
                    name: call.tool.clone(),
                    content,
                    is_error,
                });
            }
        }
    }
    flush(&mut said, &mut answers);
    (turns, steps)
}

/// The loop: ask the model; if it calls tools, run them (independent calls
/// in parallel), give it the results, and ask again, up to the step limit.
/// Stop ends it at once, cancelling calls still running. A call of a tool
/// set to "ask first" pauses the reply (a stored state); deciding on it
/// starts a run that resumes here.
async fn drive(run: Arc<Run>, model: Model, job: Job) -> Outcome {
    let Job {
        mut request,
        tools,
        resume,
        retrieval,
        meter,
        clock: _,
    } = job;
    if let Some(retrieval) = retrieval
        && let Some((context, citations)) = retrieval.await
    {
        request.system_prompt.push_str(&context);
        // A resumed reply has its sources already.
        if !resume
            .iter()
            .any(|p| matches!(p, ReplyPart::Sources { .. }))
        {
            run.set_part(None, ReplyPart::Sources { sources: citations });
        }
    }
    let limit = tools.as_ref().map_or(1, |t| t.config.step_limit.max(1));
    let mut usage = None;
    let mut steps = 0;
    if !resume.is_empty() {
        let Some(toolbox) = tools.as_ref() else {
            return Outcome::failed(
                "run_failed",
                "This agent no longer has the tool it was waiting to use.".into(),
                None,
            );
        };
        // The decided calls: approved ones run now, denied ones say so.
        let mut approved = Vec::new();
        for (index, part) in resume.iter().enumerate() {
            if let ReplyPart::ToolCall(call) = part
                && call.status == ToolStatus::Approved
            {
                let mut running = call.clone();
                running.status = ToolStatus::Running;
                run.set_part(Some(index), ReplyPart::ToolCall(running));
                approved.push(Call {
                    index,
                    id: call.id.clone(),
                    name: call.tool.clone(),
                    arguments: serde_json::from_str(&call.arguments)
                        .map_err(|_| "The arguments were not valid JSON.".to_owned()),
                });
            }
        }
        if let Err(reason) = run_calls(&run, toolbox, &approved).await {
            return stopped(reason, usage);
        }
        let (turns, taken) = turns_from_parts(&run.parts());
        request.turns.extend(turns);
        steps = taken;
    }
    loop {
        steps += 1;
        let (text, asked) =
            match step(&run, &model, request.clone(), &mut usage, meter.as_ref()).await {
                Ok(answer) => answer,
                Err(outcome) => return outcome,
            };
        if asked.is_empty() {
            break;
        }
        let Some(toolbox) = tools.as_ref().filter(|t| !t.is_empty()) else {
            // The model asked for a tool the agent does not have.
            let names: Vec<String> = asked.iter().map(|a| format!("“{}”", a.name)).collect();
            let gap = if run.text_len() == 0 { "" } else { "\n\n" };
            run.append(format!(
                "{gap}_The model asked to use the tool {}, but this agent has no tools._",
                names.join(", ")
            ));
            break;
        };
        if steps >= limit {
            let gap = if run.text_len() == 0 { "" } else { "\n\n" };
            run.append(format!(
                "{gap}_Stopped after {limit} steps (this agent's limit) with the model still calling tools._"
            ));
            break;
        }
        // Each call gets its part at once: running, or waiting for approval.
        let mut calls = Vec::new();
        let mut waiting = false;
        for (i, asked) in asked.into_iter().enumerate() {
            let id = asked
                .id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| format!("call_{steps}_{i}"));
            let raw = if asked.arguments.trim().is_empty() {
                "{}".to_owned()
            } else {
                asked.arguments
            };
            let ask = toolbox.asks_first(&asked.name);
            waiting |= ask;
            let index = run.set_part(
                None,
                ReplyPart::ToolCall(ToolCallView {
                    id: id.clone(),
                    tool: asked.name.clone(),
                    arguments: raw.clone(),
                    status: if ask {
                        ToolStatus::AwaitingApproval
                    } else {
                        ToolStatus::Running
                    },
                    result: None,
                    error: None,
                    duration_ms: None,
                }),
            );
            if !ask {
                calls.push(Call {
                    index,
                    id,
                    name: asked.name,
                    arguments: serde_json::from_str(&raw)
                        .map_err(|_| "The arguments were not valid JSON.".to_owned()),
                });
            }
        }
        let answers = match run_calls(&run, toolbox, &calls).await {
            Ok(answers) => answers,
            Err(reason) => return stopped(reason, usage),
        };
        if waiting {
            // The rest waits for the user; the parts hold everything.
            return Outcome::new(MessageStatus::AwaitingApproval, usage);
        }
        // The model's turn (its words and calls), then the tools' answers.
        let mut said: Vec<Part> = Vec::new();
        if !text.is_empty() {
            said.push(Part::Text(text));
        }
        let mut results = Vec::new();
        for (call, (content, is_error)) in calls.into_iter().zip(answers) {
            said.push(Part::ToolCall {
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call
                    .arguments
                    .unwrap_or(serde_json::Value::Object(Default::default())),
            });
            results.push(Part::ToolResult {
                id: call.id,
                name: call.name,
                content,
                is_error,
            });
        }
        request.turns.push(Turn {
            role: Role::Assistant,
            parts: said,
        });
        request.turns.push(Turn {
            role: Role::User,
            parts: results,
        });
    }
    Outcome::new(MessageStatus::Complete, usage)
}

/// Writes a reply's final state, retrying until it is written (a reply is
/// never dropped because the database blinked): meanwhile the run stays
/// live, so readers still see its text.
async fn save_final(
    state: &AppState,
    reply: Reply,
    key: &DataKey,
    parts: &[ReplyPart],
    outcome: &Outcome,
) {
    persist::until_written("the final reply", persist::PATIENCE, || {
        finish(state, reply, key, parts, outcome)
    })
    .await;
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
        let mut parts: Vec<Option<Sealed>> = Vec::with_capacity(chunk.len());
        let mut versions = Vec::with_capacity(chunk.len());
        for (id, run) in chunk {
            if !run.committed.is_stored() {
                continue;
            }
            let Ok(progress) = run.progress.lock() else {
                continue;
            };
            if progress.version == run.saved.load(Ordering::Relaxed) {
                continue;
            }
            let (body, structure) = seal_parts(&run.key, *id, run.owner, &progress.parts);
            bodies.push(body);
            parts.push(structure);
            versions.push((run, progress.version));
            ids.push(*id);
            owners.push(run.owner);
        }
        if ids.is_empty() {
            continue;
        }
        // A reply that finished meanwhile is no longer `streaming`, so its
        // final text is never overwritten by an older checkpoint.
        let result = sqlx::query(
            "UPDATE messages m SET body = c.body, parts = c.parts, updated_at = now()
             FROM unnest($1::uuid[], $2::uuid[], $3::bytea[], $4::bytea[])
               AS c(id, owner_id, body, parts)
             WHERE m.id = c.id AND m.owner_id = c.owner_id AND m.status = 'streaming'",
        )
        .bind(&ids)
        .bind(&owners)
        .bind(&bodies)
        .bind(&parts)
        .execute(db)
        .await;
        match result {
            Ok(_) => {
                written += ids.len();
                for (run, version) in versions {
                    run.saved.store(version, Ordering::Relaxed);
                }
            }
            Err(err) => tracing::warn!(replies = ids.len(), error = %err, "checkpoint failed"),
        }
    }
    written
}

/// A reply as stored: its text (sealed, in `body`), and when it called
/// tools its parts as JSON (sealed, in `parts`); a reply of text alone has
/// no `parts`, its body is all there is.
fn seal_parts(
    key: &DataKey,
    message: Uuid,
    owner: Uuid,
    parts: &[ReplyPart],
) -> (Sealed, Option<Sealed>) {
    let body = key.seal_str(
        message_place("body", message, owner),
        &ReplyPart::text_of(parts),
    );
    let structured = parts
        .iter()
        .any(|p| !matches!(p, ReplyPart::Text { .. }))
        .then(|| serde_json::to_string(parts).ok())
        .flatten()
        .map(|json| key.seal_str(message_place("parts", message, owner), &json));
    (body, structured)
}

/// Writes a reply's final state and touches its conversation, in one
/// statement; a regenerated reply's predecessor goes once this one has text.
async fn finish(
    state: &AppState,
    reply: Reply,
    key: &DataKey,
    parts: &[ReplyPart],
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
    let (body, structured) = seal_parts(key, message, owner, parts);
    sqlx::query(
        "WITH reply AS (
           UPDATE messages SET body = $3, status = $4, error_code = $5, error = $6,
             input_tokens = $7, output_tokens = $8, parts = $11, updated_at = now()
           WHERE id = $1 AND owner_id = $2 AND status = 'streaming'
           RETURNING conversation_id
         ), replaced AS (
           DELETE FROM messages WHERE id = $9 AND owner_id = $2 AND $10
             AND EXISTS (SELECT 1 FROM reply)
         )
         UPDATE conversations SET updated_at = now()
         WHERE id = (SELECT conversation_id FROM reply) AND owner_id = $2",
    )
    .bind(message)
    .bind(owner)
    .bind(&body)
    .bind(outcome.status.as_str())
    .bind(code)
    .bind(sentence.map(|s| key.seal_str(message_place("error", message, owner), s)))
    .bind(outcome.usage.map(|u| u.input_tokens as i32))
    .bind(outcome.usage.map(|u| u.output_tokens as i32))
    .bind(replaces)
    // The regenerated reply goes only when this one has something to show.
    .bind(!parts.is_empty())
    .bind(&structured)
    .execute(&state.db)
    .await?;
    Ok(())
}

/// How often each server says it is alive (`heartbeat`).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A server silent this long is taken for stopped.
pub const HEARTBEAT_DEAD: Duration = Duration::from_secs(10);

/// This server is alive: its row in `instances`, now.
pub async fn heartbeat(db: &sqlx::PgPool, runs: &Runs) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO instances (name, heartbeat_at) VALUES ($1, now())
         ON CONFLICT (name) DO UPDATE SET heartbeat_at = now()",
    )
    .bind(runs.instance())
    .execute(db)
    .await?;
    Ok(())
}

/// Marks replies left `streaming` by a server that stopped as interrupted:
/// - this server's own that it no longer runs (silent `HEARTBEAT_DEAD`);
/// - those of a server whose heartbeat is `HEARTBEAT_DEAD` old;
/// - those of a server that never beat (an older version), silent
///   `stale_after` (live runs touch their row every `CHECKPOINT_EVERY`
///   while tokens flow).
///
/// A reply whose server beats is never marked, however long it is silent.
pub async fn recover_interrupted(
    db: &sqlx::PgPool,
    runs: &Runs,
    stale_after: Duration,
) -> Result<u64, sqlx::Error> {
    let stale: Vec<Uuid> = sqlx::query_scalar(
        "SELECT m.id FROM messages m LEFT JOIN instances i ON i.name = m.runner
         WHERE m.status = 'streaming'
           AND CASE
             WHEN m.runner = $3 THEN m.updated_at < now() - make_interval(secs => $2)
             WHEN i.name IS NOT NULL THEN i.heartbeat_at < now() - make_interval(secs => $2)
             ELSE m.updated_at < now() - make_interval(secs => $1)
           END",
    )
    .bind(stale_after.as_secs_f64())
    .bind(HEARTBEAT_DEAD.as_secs_f64())
    .bind(runs.instance())
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
            Some(StreamUpdate::Snapshot { text, .. }) => format!("snapshot:{text}"),
            Some(StreamUpdate::Part { index, .. }) => format!("part:{index}"),
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
        let model: Model = Arc::new(|_| {
            futures::stream::iter([
                Ok(StreamEvent::ToolCall(llm::ToolCallDelta {
                    index: 0,
                    id: Some("call_1".into()),
                    name: Some("get_weather".into()),
                    arguments: String::new(),
                })),
                Ok(StreamEvent::Finish("tool_calls".into())),
            ])
            .boxed()
        });
        let job = Job {
            request: ChatRequest {
                provider: crate::provider::Provider::Openai,
                base_url: String::new(),
                api_key: String::new(),
                model: "m".into(),
                system_prompt: String::new(),
                turns: vec![],
                tools: vec![],
                temperature: None,
                top_p: None,
                max_output_tokens: None,
            },
            tools: None,
            resume: vec![],
            retrieval: None,
            meter: None,
            clock: None,
        };
        let outcome = drive(run.clone(), model, job).await;
        assert_eq!(outcome.status, MessageStatus::Complete);
        let text = ReplyPart::text_of(&run.parts());
        assert!(
            text.contains("get_weather") && text.contains("no tools"),
            "{text}"
        );
    }
}
