//! Live runs: one task per streaming reply, owned by the server. It reads
//! the provider's stream and fans each piece out to any number of
//! subscribers. One checkpointer per server writes every growing reply,
//! sealed, about once a second in batched statements, off the token path:
//! a slow database never delays a token. The run writes the final state
//! (complete, stopped, or interrupted with a plain reason) itself.
//!
//! Subscribing checks the owner: another user's run is simply not there.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::Stream;
use tokio::sync::{Notify, broadcast, broadcast::error::RecvError};
use uuid::Uuid;

use super::{MessageStatus, StreamUpdate};
use crate::{
    llm::{self, ChatRequest, StreamEvent, StreamLimits, Usage},
    platform::{
        AppState,
        crypto::{DataKey, Place, Sealed},
    },
};

/// How often growing replies are written to the database.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Rows per checkpoint statement.
const CHECKPOINT_BATCH: usize = 500;

/// Pieces a subscriber may fall behind before it is sent the whole text
/// again. Allocated up front for every run (about 90 bytes a slot), so kept
/// small: a reader this far behind is better served by one snapshot.
const UPDATES_BUFFER: usize = 32;

struct Run {
    owner: Uuid,
    key: DataKey,
    text: Mutex<String>,
    /// Length of the text the last checkpoint wrote.
    saved: AtomicUsize,
    updates: broadcast::Sender<StreamUpdate>,
    stop: Notify,
}

impl Run {
    /// Appends a piece and sends it under one lock, so a new subscriber's
    /// snapshot and the pieces after it neither miss nor repeat.
    fn append(&self, piece: String) {
        if let Ok(mut text) = self.text.lock() {
            text.push_str(&piece);
            let _ = self.updates.send(StreamUpdate::Delta { text: piece });
        }
    }
}

#[derive(Clone, Default)]
pub struct Runs {
    live: Arc<Mutex<HashMap<Uuid, Arc<Run>>>>,
    checkpointer: Arc<OnceLock<()>>,
}

impl std::fmt::Debug for Runs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Runs({} live)",
            self.live.lock().map(|m| m.len()).unwrap_or(0)
        )
    }
}

impl Runs {
    fn get(&self, message: Uuid, owner: Uuid) -> Option<Arc<Run>> {
        let runs = self.live.lock().ok()?;
        runs.get(&message).filter(|run| run.owner == owner).cloned()
    }

    /// The reply so far and a receiver for what follows, if `owner`'s run
    /// for `message` is live. Taken under one lock, so nothing falls between.
    fn subscribe(
        &self,
        message: Uuid,
        owner: Uuid,
    ) -> Option<(String, broadcast::Receiver<StreamUpdate>)> {
        let run = self.get(message, owner)?;
        let text = run.text.lock().ok()?;
        Some((text.clone(), run.updates.subscribe()))
    }

    /// Follows `owner`'s live run for `message`: a snapshot of the text so
    /// far, each piece after it, and `Done`. A reader that falls more than
    /// `UPDATES_BUFFER` pieces behind gets a fresh snapshot, never a gap.
    /// `None` when no such run is live here (finished, elsewhere, or not
    /// this owner's).
    pub fn follow(
        &self,
        message: Uuid,
        owner: Uuid,
    ) -> Option<impl Stream<Item = StreamUpdate> + Send + 'static> {
        let (text, rx) = self.subscribe(message, owner)?;
        let first = StreamUpdate::Snapshot { text };
        let state = (Some(first), rx, false, self.clone());
        Some(futures::stream::unfold(
            state,
            move |(pending, mut rx, done, runs)| async move {
                if let Some(update) = pending {
                    return Some((update, (None, rx, false, runs)));
                }
                if done {
                    return None;
                }
                loop {
                    match rx.recv().await {
                        Ok(update) => {
                            let finished = matches!(update, StreamUpdate::Done { .. });
                            return Some((update, (None, rx, finished, runs)));
                        }
                        Err(RecvError::Lagged(_)) => {
                            if let Some((text, fresh)) = runs.subscribe(message, owner) {
                                let update = StreamUpdate::Snapshot { text };
                                return Some((update, (None, fresh, false, runs)));
                            }
                            // The run ended meanwhile: its `Done` is still queued.
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
                run.stop.notify_one();
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

    /// Starts the run that writes reply `message`.
    pub fn start(
        &self,
        state: AppState,
        owner: Uuid,
        message: Uuid,
        key: DataKey,
        request: ChatRequest,
    ) {
        self.checkpointer.get_or_init(|| {
            tokio::spawn(checkpoint_loop(state.db.clone(), self.clone()));
        });
        let (updates, _) = broadcast::channel(UPDATES_BUFFER);
        let run = Arc::new(Run {
            owner,
            key,
            text: Mutex::new(String::new()),
            saved: AtomicUsize::new(0),
            updates,
            stop: Notify::new(),
        });
        if let Ok(mut runs) = self.live.lock() {
            runs.insert(message, run.clone());
        }
        let runs = self.clone();
        tokio::spawn(async move {
            let (status, error, usage) = drive(&state, &run, request).await;
            let text = run.text.lock().map(|t| t.clone()).unwrap_or_default();
            if let Err(err) = finish(
                &state,
                owner,
                message,
                &run.key,
                &text,
                status,
                error.as_deref(),
                usage,
            )
            .await
            {
                tracing::error!(message_id = %message, error = %err, "could not save the final reply");
            }
            if let Ok(mut map) = runs.live.lock() {
                map.remove(&message);
            }
            let _ = run.updates.send(StreamUpdate::Done {
                status,
                error,
                input_tokens: usage.map(|u| u.input_tokens as u32),
                output_tokens: usage.map(|u| u.output_tokens as u32),
            });
            tracing::info!(message_id = %message, status = status.as_str(), "run finished");
        });
    }
}

async fn drive(
    state: &AppState,
    run: &Run,
    request: ChatRequest,
) -> (MessageStatus, Option<String>, Option<Usage>) {
    let mut events = llm::stream(state.egress.clone(), request, StreamLimits::default());
    let mut usage = None;
    loop {
        tokio::select! {
            item = events.recv() => match item {
                None => return (MessageStatus::Complete, None, usage),
                Some(Err(err)) => return (MessageStatus::Interrupted, Some(err.to_string()), usage),
                Some(Ok(StreamEvent::Text(piece))) => run.append(piece),
                Some(Ok(StreamEvent::Usage(u))) => usage = Some(u),
                // Tool calls are executed by the tools slice; finish reasons need nothing.
                Some(Ok(_)) => {}
            },
            () = run.stop.notified() => return (MessageStatus::Stopped, None, usage),
        }
    }
}

fn place(message: Uuid, owner: Uuid) -> Place {
    Place::new("messages", "body", message, owner)
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
            let Ok(text) = run.text.lock() else { continue };
            if text.len() == run.saved.load(Ordering::Relaxed) {
                continue;
            }
            bodies.push(run.key.seal_str(place(*id, run.owner), &text));
            lengths.push((run, text.len()));
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

/// Writes a reply's final state and touches its conversation, in one statement.
#[allow(clippy::too_many_arguments)]
async fn finish(
    state: &AppState,
    owner: Uuid,
    message: Uuid,
    key: &DataKey,
    text: &str,
    status: MessageStatus,
    error: Option<&str>,
    usage: Option<Usage>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH reply AS (
           UPDATE messages SET body = $3, status = $4, error = $5, input_tokens = $6,
             output_tokens = $7, updated_at = now()
           WHERE id = $1 AND owner_id = $2
           RETURNING conversation_id
         )
         UPDATE conversations SET updated_at = now()
         WHERE id = (SELECT conversation_id FROM reply) AND owner_id = $2",
    )
    .bind(message)
    .bind(owner)
    .bind(key.seal_str(place(message, owner), text))
    .bind(status.as_str())
    .bind(error)
    .bind(usage.map(|u| u.input_tokens as i32))
    .bind(usage.map(|u| u.output_tokens as i32))
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
            "UPDATE messages SET status = 'interrupted',
               error = 'The server stopped while this reply was being written.'
             WHERE id = $1 AND status = 'streaming'",
        )
        .bind(id)
        .execute(db)
        .await?
        .rows_affected();
    }
    Ok(marked)
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;

    use super::*;

    fn live_run(runs: &Runs, message: Uuid, owner: Uuid) -> Arc<Run> {
        let (updates, _) = broadcast::channel(UPDATES_BUFFER);
        let run = Arc::new(Run {
            owner,
            key: DataKey::generate(),
            text: Mutex::new(String::new()),
            saved: AtomicUsize::new(0),
            updates,
            stop: Notify::new(),
        });
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
        let _ = run.updates.send(StreamUpdate::Done {
            status: MessageStatus::Complete,
            error: None,
            input_tokens: None,
            output_tokens: None,
        });
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
}
