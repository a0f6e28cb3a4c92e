//! Background jobs: a queue in PostgreSQL (the `jobs` table), so that two
//! server processes never run the same job twice and a job outlives the
//! request (and the process) that made it.
//!
//! A job is enqueued with `enqueue`, in the same transaction as the change
//! that causes it (it exists exactly when the change does). Workers
//! (`Jobs::start`) claim due jobs with `FOR UPDATE SKIP LOCKED` and a lease
//! they renew while the job runs; a job whose worker died is claimed again
//! once its lease lapses. A failure is tried again later (backoff doubling
//! from 10 s to an hour) until `max_attempts`, then the job is dead, with
//! its last error: our own words, never a secret. An idempotency key makes
//! a second enqueue of the same work a no-op. A payload holding user data
//! is sealed with its owner's key (`jobs.payload`), and the job goes when
//! the owner does. Done jobs are kept 7 days, dead ones 30, then purged.
//! Graceful shutdown stops claiming, lets running jobs finish for a while,
//! and hands back the rest at once.
//!
//! Hand-written rather than a crate: the checked crates either pin sqlx 0.8
//! (sqlxmq, underway) or bring their own schema and migrations table
//! (apalis-postgres, graphile_worker), and what we need is one table and
//! three statements. The platform runs jobs; what a job does is the
//! composition root's handler (the `background` module).

use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use serde::{Serialize, de::DeserializeOwned};
use sqlx::{PgConnection, PgPool};
use tokio::{
    sync::{Notify, watch},
    task::JoinSet,
};
use uuid::Uuid;

use super::{
    crypto::{DataKey, Place, Sealed},
    keystore::SealedColumn,
};
use crate::error::AppError;

pub const SEALED: &[SealedColumn] = &[SealedColumn::owned("jobs", "payload")];

/// How long a claim lasts before another worker may take the job; renewed
/// every third of it while the job runs.
pub const LEASE: Duration = Duration::from_secs(120);
/// How often an idle worker looks for due jobs (an enqueue in this process
/// wakes it at once).
const POLL: Duration = Duration::from_secs(1);
/// Jobs one process runs at once.
const CONCURRENCY: usize = 4;
const DEFAULT_MAX_ATTEMPTS: i32 = 8;

fn place(id: Uuid, owner: Uuid) -> Place {
    Place::new("jobs", "payload", id, owner)
}

/// What kind of work a job is (stored as text; the handler matches on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Send one mail (`crate::platform::mail`).
    Mail,
    /// Build an export of one user's data (`data::export`).
    Export,
    /// Erase what is past its retention period (one an hour, whichever
    /// server enqueues it first).
    Retention,
    /// Parse, split and embed one uploaded document (`knowledge`).
    Ingest,
    /// One run of a schedule (`schedules`).
    Schedule,
    /// One update from a Telegram bot (`telegram`).
    Telegram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Mail => "mail",
            Kind::Retention => "retention",
            Kind::Export => "export",
            Kind::Ingest => "ingest",
            Kind::Schedule => "schedule",
            Kind::Telegram => "telegram",
        }
    }

    pub fn parse(value: &str) -> Option<Kind> {
        match value {
            "mail" => Some(Kind::Mail),
            "retention" => Some(Kind::Retention),
            "export" => Some(Kind::Export),
            "ingest" => Some(Kind::Ingest),
            "schedule" => Some(Kind::Schedule),
            "telegram" => Some(Kind::Telegram),
            _ => None,
        }
    }
}

/// A job to enqueue.
pub struct NewJob<'a> {
    pub kind: Kind,
    /// The user whose data the payload holds, and their key to seal it.
    pub owner: Option<(Uuid, &'a DataKey)>,
    pub payload: Option<serde_json::Value>,
    /// Enqueueing the same key again does nothing (while the first job is
    /// kept). Must not hold user data: ids, not addresses.
    pub idempotency_key: Option<String>,
    pub delay: Duration,
    pub max_attempts: i32,
}

impl<'a> NewJob<'a> {
    pub fn new(kind: Kind) -> Self {
        NewJob {
            kind,
            owner: None,
            payload: None,
            idempotency_key: None,
            delay: Duration::ZERO,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// A payload sealed with `owner`'s key.
    pub fn for_owner(mut self, owner: Uuid, key: &'a DataKey, payload: &impl Serialize) -> Self {
        self.owner = Some((owner, key));
        self.payload = serde_json::to_value(payload).ok();
        self
    }

    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

/// Adds a job, in the caller's transaction. `None` when a job with the
/// same idempotency key exists already.
pub async fn enqueue(conn: &mut PgConnection, job: NewJob<'_>) -> Result<Option<Uuid>, AppError> {
    let id = Uuid::new_v4();
    let (owner, payload) = match (job.owner, &job.payload) {
        (Some((owner, key)), Some(payload)) => (
            Some(owner),
            Some(key.seal_str(place(id, owner), &payload.to_string())),
        ),
        (Some((owner, _)), None) => (Some(owner), None),
        (None, None) => (None, None),
        (None, Some(_)) => {
            return Err(AppError::internal(
                "a job payload needs an owner to seal it with",
            ));
        }
    };
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO jobs (id, kind, owner_id, payload, idempotency_key, run_at, max_attempts)
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6), $7)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING id",
    )
    .bind(id)
    .bind(job.kind.as_str())
    .bind(owner)
    .bind(payload)
    .bind(job.idempotency_key)
    .bind(job.delay.as_secs_f64())
    .bind(job.max_attempts.max(1))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(inserted)
}

/// A claimed job, for its handler.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: Uuid,
    pub kind: Kind,
    pub owner: Option<Uuid>,
    payload: Option<Sealed>,
    /// This run's number, from 1.
    pub attempt: i32,
}

impl Job {
    /// The payload, opened with the owner's key.
    pub fn payload<T: DeserializeOwned>(&self, key: &DataKey) -> Result<T, JobError> {
        let (Some(owner), Some(sealed)) = (self.owner, &self.payload) else {
            return Err(JobError::fatal("The job has no payload."));
        };
        let json = key
            .open_text(place(self.id, owner), sealed)
            .map_err(|_| JobError::fatal("The job's payload could not be opened."))?;
        serde_json::from_str(&json).map_err(|_| JobError::fatal("The job's payload is malformed."))
    }
}

/// Why a job failed, in our own words (stored in plain text: never a
/// secret or a user's data), and whether trying again could help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    pub message: String,
    pub retry: bool,
}

impl JobError {
    pub fn retry(message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
            retry: true,
        }
    }

    pub fn fatal(message: impl Into<String>) -> Self {
        JobError {
            message: message.into(),
            retry: false,
        }
    }
}

/// The wait before attempt `attempt + 1`: 10 s, doubling, at most an hour.
pub fn backoff(attempt: i32) -> Duration {
    let exponent = attempt.clamp(1, 20) as u32 - 1;
    Duration::from_secs(10u64.saturating_mul(1 << exponent.min(10))).min(Duration::from_secs(3600))
}

type Row = (Uuid, String, Option<Uuid>, Option<Sealed>, i32);

/// Claims up to `n` due jobs (or jobs whose lease lapsed) for `worker`.
pub async fn claim(db: &PgPool, worker: &str, n: usize) -> Result<Vec<Job>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_by = $1,
                locked_until = now() + make_interval(secs => $2), updated_at = now()
         WHERE id IN (
             SELECT id FROM jobs
             WHERE (state = 'queued' AND run_at <= now())
                OR (state = 'running' AND locked_until < now())
             ORDER BY run_at
             LIMIT $3
             FOR UPDATE SKIP LOCKED
         )
         RETURNING id, kind, owner_id, payload, attempts",
    )
    .bind(worker)
    .bind(LEASE.as_secs_f64())
    .bind(n as i64)
    .fetch_all(db)
    .await?;
    let mut jobs = Vec::with_capacity(rows.len());
    for (id, kind, owner, payload, attempt) in rows {
        match Kind::parse(&kind) {
            Some(kind) => jobs.push(Job {
                id,
                kind,
                owner,
                payload,
                attempt,
            }),
            None => {
                // Written by a newer server, say: leave it for one that knows it.
                sqlx::query(
                    "UPDATE jobs SET state = 'queued', attempts = attempts - 1, locked_by = NULL,
                            locked_until = NULL, run_at = now() + interval '1 minute'
                     WHERE id = $1",
                )
                .bind(id)
                .execute(db)
                .await?;
            }
        }
    }
    Ok(jobs)
}

/// Records how `job` went; only its current holder may.
pub async fn finish(
    db: &PgPool,
    worker: &str,
    job: &Job,
    outcome: Result<(), JobError>,
) -> Result<(), sqlx::Error> {
    match outcome {
        Ok(()) => {
            sqlx::query(
                "UPDATE jobs SET state = 'done', locked_by = NULL, locked_until = NULL,
                        last_error = NULL, updated_at = now()
                 WHERE id = $1 AND locked_by = $2 AND state = 'running'",
            )
            .bind(job.id)
            .bind(worker)
            .execute(db)
            .await?;
        }
        Err(err) => {
            let message: String = err.message.chars().take(500).collect();
            sqlx::query(
                "UPDATE jobs SET
                    state = CASE WHEN $3 AND attempts < max_attempts THEN 'queued' ELSE 'dead' END,
                    run_at = now() + make_interval(secs => $4),
                    locked_by = NULL, locked_until = NULL, last_error = $5, updated_at = now()
                 WHERE id = $1 AND locked_by = $2 AND state = 'running'",
            )
            .bind(job.id)
            .bind(worker)
            .bind(err.retry)
            .bind(backoff(job.attempt).as_secs_f64())
            .bind(message)
            .execute(db)
            .await?;
        }
    }
    Ok(())
}

/// Gives a job back without counting the attempt (shutdown).
async fn release(db: &PgPool, worker: &str, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET state = 'queued', attempts = attempts - 1, locked_by = NULL,
                locked_until = NULL, run_at = now(), updated_at = now()
         WHERE id = $1 AND locked_by = $2 AND state = 'running'",
    )
    .bind(id)
    .bind(worker)
    .execute(db)
    .await?;
    Ok(())
}

async fn renew(db: &PgPool, worker: &str, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE jobs SET locked_until = now() + make_interval(secs => $3)
         WHERE id = $1 AND locked_by = $2 AND state = 'running'",
    )
    .bind(id)
    .bind(worker)
    .bind(LEASE.as_secs_f64())
    .execute(db)
    .await?;
    Ok(())
}

/// Deletes done jobs after 7 days and dead ones after 30.
pub async fn purge(db: &PgPool) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM jobs
         WHERE (state = 'done' AND updated_at < now() - interval '7 days')
            OR (state = 'dead' AND updated_at < now() - interval '30 days')",
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;
/// What runs a job (the composition root's dispatcher).
pub type Handler = Arc<dyn Fn(Job) -> HandlerFuture + Send + Sync>;

/// This process's workers.
#[derive(Clone)]
pub struct Jobs {
    worker: Arc<str>,
    wake: Arc<Notify>,
    stop: Arc<watch::Sender<bool>>,
    done: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Jobs {
    pub fn new(instance: &str) -> Self {
        Jobs {
            worker: Arc::from(format!("{instance}/{}", Uuid::new_v4().simple())),
            wake: Arc::new(Notify::new()),
            stop: Arc::new(watch::channel(false).0),
            done: Arc::default(),
        }
    }

    /// Wakes this process's workers (after enqueueing, so a job starts at
    /// once instead of at the next poll).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts the workers; `handler` runs each job.
    pub async fn start(&self, db: PgPool, handler: Handler) {
        let mut done = self.done.lock().await;
        if done.is_some() {
            return;
        }
        let me = self.clone();
        *done = Some(tokio::spawn(async move { me.work(db, handler).await }));
    }

    async fn work(self, db: PgPool, handler: Handler) {
        let mut stop = self.stop.subscribe();
        let mut running: JoinSet<()> = JoinSet::new();
        let mut ids: HashMap<tokio::task::Id, Uuid> = HashMap::new();
        let mut purged = tokio::time::Instant::now() - Duration::from_secs(3600);
        loop {
            if *stop.borrow() {
                break;
            }
            let free = CONCURRENCY.saturating_sub(running.len());
            if free > 0 {
                match claim(&db, &self.worker, free).await {
                    Ok(jobs) => {
                        for job in jobs {
                            let id = job.id;
                            let task = running.spawn(run(
                                db.clone(),
                                self.worker.clone(),
                                handler.clone(),
                                job,
                            ));
                            ids.insert(task.id(), id);
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "could not claim jobs"),
                }
            }
            if purged.elapsed() > Duration::from_secs(3600) {
                purged = tokio::time::Instant::now();
                match purge(&db).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(jobs = n, "purged old jobs"),
                    Err(err) => tracing::warn!(error = %err, "could not purge jobs"),
                }
            }
            tokio::select! {
                _ = stop.changed() => {}
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
                Some(ended) = running.join_next_with_id(), if !running.is_empty() => {
                    let task = match ended {
                        Ok((task, ())) => task,
                        Err(err) => err.id(),
                    };
                    ids.remove(&task);
                }
            }
        }
        // Shutting down: let running jobs finish for a while, then give the
        // rest back so another process takes them at once.
        let patience = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(patience);
        loop {
            tokio::select! {
                next = running.join_next_with_id() => {
                    match next {
                        Some(Ok((task, ()))) => { ids.remove(&task); }
                        Some(Err(err)) => { ids.remove(&err.id()); }
                        None => break,
                    }
                }
                () = &mut patience => break,
            }
        }
        running.abort_all();
        for id in ids.into_values() {
            if let Err(err) = release(&db, &self.worker, id).await {
                tracing::warn!(job_id = %id, error = %err, "could not hand back a job");
            }
        }
    }

    /// Stops claiming, waits for running jobs (up to 10 s), hands back the
    /// rest.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        if let Some(handle) = self.done.lock().await.take() {
            let _ = handle.await;
        }
    }
}

/// Runs one job, renewing its lease, and records the outcome. A panicking
/// handler is a failure like any other.
async fn run(db: PgPool, worker: Arc<str>, handler: Handler, job: Job) {
    let mut work = tokio::spawn(handler(job.clone()));
    let mut renewal = tokio::time::interval(LEASE / 3);
    renewal.tick().await;
    let outcome = loop {
        tokio::select! {
            ended = &mut work => {
                break match ended {
                    Ok(outcome) => outcome,
                    Err(err) if err.is_panic() => Err(JobError::retry("The job failed unexpectedly.")),
                    Err(_) => Err(JobError::retry("The job was cancelled.")),
                };
            }
            _ = renewal.tick() => {
                if let Err(err) = renew(&db, &worker, job.id).await {
                    tracing::warn!(job_id = %job.id, error = %err, "could not renew a job's lease");
                }
            }
        }
    };
    match &outcome {
        Ok(()) => tracing::info!(job_id = %job.id, kind = job.kind.as_str(), "job done"),
        Err(err) => {
            tracing::info!(job_id = %job.id, kind = job.kind.as_str(), attempt = job.attempt, retry = err.retry, "job failed")
        }
    }
    if let Err(err) = finish(&db, &worker, &job, outcome).await {
        tracing::warn!(job_id = %job.id, error = %err, "could not record a job's outcome");
    }
}
