//! Live runs: one task per streaming reply, owned by the server. It reads
//! the provider's stream, fans each piece out to any number of subscribers,
//! checkpoints the sealed reply about once a second, and writes the final
//! state (complete, stopped, or interrupted with a plain reason).
//!
//! Subscribing checks the owner: another user's run is simply not there.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{Notify, broadcast};
use uuid::Uuid;

use super::{MessageStatus, StreamUpdate};
use crate::{
    llm::{self, ChatRequest, StreamEvent, StreamLimits, Usage},
    platform::{
        AppState,
        crypto::{DataKey, Place},
    },
};

/// How often a growing reply is written to the database.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

struct Run {
    owner: Uuid,
    text: Mutex<String>,
    updates: broadcast::Sender<StreamUpdate>,
    stop: Notify,
}

#[derive(Clone, Default)]
pub struct Runs(Arc<Mutex<HashMap<Uuid, Arc<Run>>>>);

impl std::fmt::Debug for Runs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Runs({} live)",
            self.0.lock().map(|m| m.len()).unwrap_or(0)
        )
    }
}

impl Runs {
    fn get(&self, message: Uuid, owner: Uuid) -> Option<Arc<Run>> {
        let runs = self.0.lock().ok()?;
        runs.get(&message).filter(|run| run.owner == owner).cloned()
    }

    /// The reply so far and a receiver for what follows, if `owner`'s run
    /// for `message` is live. Taken under one lock, so nothing falls between.
    pub fn subscribe(
        &self,
        message: Uuid,
        owner: Uuid,
    ) -> Option<(String, broadcast::Receiver<StreamUpdate>)> {
        let run = self.get(message, owner)?;
        let text = run.text.lock().ok()?;
        Some((text.clone(), run.updates.subscribe()))
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
        self.0
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
        let (updates, _) = broadcast::channel(256);
        let run = Arc::new(Run {
            owner,
            text: Mutex::new(String::new()),
            updates,
            stop: Notify::new(),
        });
        if let Ok(mut runs) = self.0.lock() {
            runs.insert(message, run.clone());
        }
        let runs = self.clone();
        tokio::spawn(async move {
            let outcome = drive(&state, &run, message, &key, request).await;
            let (status, error, usage) = outcome;
            let text = run.text.lock().map(|t| t.clone()).unwrap_or_default();
            if let Err(err) = finish(
                &state,
                owner,
                message,
                &key,
                &text,
                status,
                error.as_deref(),
                usage,
            )
            .await
            {
                tracing::error!(message_id = %message, error = %err, "could not save the final reply");
            }
            if let Ok(mut map) = runs.0.lock() {
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
    message: Uuid,
    key: &DataKey,
    request: ChatRequest,
) -> (MessageStatus, Option<String>, Option<Usage>) {
    let mut events = llm::stream(state.egress.clone(), request, StreamLimits::default());
    let mut usage = None;
    let mut last_checkpoint = Instant::now();
    loop {
        tokio::select! {
            item = events.recv() => match item {
                None => return (MessageStatus::Complete, None, usage),
                Some(Err(err)) => return (MessageStatus::Interrupted, Some(err.to_string()), usage),
                Some(Ok(StreamEvent::Text(piece))) => {
                    let snapshot = {
                        let Ok(mut text) = run.text.lock() else { continue };
                        text.push_str(&piece);
                        let _ = run.updates.send(StreamUpdate::Delta { text: piece });
                        (last_checkpoint.elapsed() >= CHECKPOINT_EVERY).then(|| text.clone())
                    };
                    if let Some(text) = snapshot {
                        last_checkpoint = Instant::now();
                        checkpoint(state, run.owner, message, key, &text).await;
                    }
                }
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

async fn checkpoint(state: &AppState, owner: Uuid, message: Uuid, key: &DataKey, text: &str) {
    let result = sqlx::query(
        "UPDATE messages SET body = $3, updated_at = now() WHERE id = $1 AND owner_id = $2 AND status = 'streaming'",
    )
    .bind(message)
    .bind(owner)
    .bind(key.seal_str(place(message, owner), text))
    .execute(&state.db)
    .await;
    if let Err(err) = result {
        tracing::warn!(message_id = %message, error = %err, "checkpoint failed");
    }
}

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
        "UPDATE messages SET body = $3, status = $4, error = $5, input_tokens = $6, output_tokens = $7,
           updated_at = now()
         WHERE id = $1 AND owner_id = $2",
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
    sqlx::query(
        "UPDATE conversations SET updated_at = now()
         WHERE id = (SELECT conversation_id FROM messages WHERE id = $1) AND owner_id = $2",
    )
    .bind(message)
    .bind(owner)
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
