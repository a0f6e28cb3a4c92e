//! Schedules in the database (server only). Every query names the owner.
//!
//! Firing is exactly once across servers: `tick` locks the due schedules
//! (`FOR UPDATE SKIP LOCKED`), moves each one's `next_run_at` to its next
//! time after now, and in the same transaction records the run (unique per
//! schedule and fire time) and enqueues its job (an idempotency key of the
//! same two). A server that was down catches up with one run per schedule,
//! not one per missed time. The job starts the agent's run the way a chat
//! message does (`chat::server::send`), waits for the reply and records it.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    MAX_PER_AGENT, NAME_MAX_CHARS, Preview, RunStatus, RunView, SchedulePage, ScheduleView,
    plan::Plan,
};
use crate::{
    chat::{MESSAGE_MAX_CHARS, MessageStatus},
    error::{AppError, FieldError},
    platform::{
        crypto::{DataKey, Place, Sealed},
        jobs::{self, Job, JobError, Kind, NewJob},
        keystore::{self, KeyUse, SealedColumn},
        mail::{Outgoing, escape_html},
    },
    state::AppState,
};

pub const SEALED: &[SealedColumn] = &[
    SealedColumn::owned("schedules", "name"),
    SealedColumn::owned("schedules", "cron"),
    SealedColumn::owned("schedules", "time_zone"),
    SealedColumn::owned("schedules", "prompt"),
    SealedColumn::owned("schedule_runs", "error"),
];

/// Runs shown on a schedule's page.
pub const RUNS_SHOWN: i64 = 50;
/// The longest a run's job waits for its reply before calling it failed.
const LONGEST_RUN: Duration = Duration::from_secs(30 * 60);

fn place(table: &'static str, column: &'static str, id: Uuid, owner: Uuid) -> Place {
    Place::new(table, column, id, owner)
}

fn schedule_place(column: &'static str, id: Uuid, owner: Uuid) -> Place {
    place("schedules", column, id, owner)
}

/// What the schedule form sends.
#[derive(Debug, Clone, Default)]
pub struct ScheduleForm {
    pub name: String,
    pub cron: String,
    pub time_zone: String,
    pub prompt: String,
    pub continue_conversation: bool,
    pub deliver_mail: bool,
    pub deliver_telegram: bool,
}

/// A form that passed every rule.
struct Checked {
    name: String,
    cron: String,
    zone: String,
    prompt: String,
    plan: Plan,
}

impl ScheduleForm {
    /// Every rule at once: each mistake on its own field.
    fn check(&self) -> Result<Checked, AppError> {
        let mut errors = Vec::new();
        let mut field = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.to_owned(),
                message,
            })
        };
        let name = self.name.trim();
        if name.is_empty() {
            field("name", "Give the schedule a name.".into());
        } else if name.chars().count() > NAME_MAX_CHARS {
            field(
                "name",
                format!("A name has at most {NAME_MAX_CHARS} characters."),
            );
        }
        let prompt = self.prompt.trim();
        if prompt.is_empty() {
            field("prompt", "Write what the agent is asked each time.".into());
        } else if prompt.chars().count() > MESSAGE_MAX_CHARS {
            field(
                "prompt",
                format!("A prompt has at most {MESSAGE_MAX_CHARS} characters."),
            );
        }
        let plan = match Plan::parse(&self.cron, &self.time_zone) {
            Ok(plan) => Some(plan),
            Err(AppError::Invalid(more)) => {
                errors.extend(more);
                None
            }
            Err(other) => return Err(other),
        };
        match plan {
            Some(plan) if errors.is_empty() => Ok(Checked {
                name: name.to_owned(),
                cron: self.cron.trim().to_owned(),
                zone: plan.zone().to_owned(),
                prompt: prompt.to_owned(),
                plan,
            }),
            _ => Err(AppError::Invalid(errors)),
        }
    }
}

/// What an expression means, for the form's preview.
pub fn preview(cron: &str, zone: &str) -> Result<Preview, AppError> {
    let plan = Plan::parse(cron, zone)?;
    Ok(Preview {
        description: plan.describe(),
        next_runs: plan
            .next_runs(Utc::now(), 5)
            .into_iter()
            .map(|t| plan.local(t))
            .collect(),
    })
}

#[derive(sqlx::FromRow)]
struct ScheduleRow {
    id: Uuid,
    agent_id: Uuid,
    name: Sealed,
    cron: Sealed,
    time_zone: Sealed,
    prompt: Sealed,
    continue_conversation: bool,
    conversation_id: Option<Uuid>,
    deliver_mail: bool,
    deliver_telegram: bool,
    enabled: bool,
}

const SCHEDULE_COLUMNS: &str = "id, agent_id, name, cron, time_zone, prompt, \
     continue_conversation, conversation_id, deliver_mail, deliver_telegram, enabled";

/// A schedule's sealed fields, opened.
struct Opened {
    name: String,
    cron: String,
    zone: String,
    prompt: String,
}

impl ScheduleRow {
    fn open(&self, owner: Uuid, key: &DataKey) -> Result<Opened, AppError> {
        let open = |column, sealed| key.open_text(schedule_place(column, self.id, owner), sealed);
        Ok(Opened {
            name: open("name", &self.name)?,
            cron: open("cron", &self.cron)?,
            zone: open("time_zone", &self.time_zone)?,
            prompt: open("prompt", &self.prompt)?,
        })
    }

    fn view(&self, owner: Uuid, key: &DataKey) -> Result<ScheduleView, AppError> {
        let opened = self.open(owner, key)?;
        let plan = Plan::parse(&opened.cron, &opened.zone).ok();
        Ok(ScheduleView {
            id: self.id.to_string(),
            agent_id: self.agent_id.to_string(),
            description: plan.as_ref().map(Plan::describe).unwrap_or_default(),
            next_runs: match &plan {
                Some(plan) if self.enabled => plan
                    .next_runs(Utc::now(), 5)
                    .into_iter()
                    .map(|t| plan.local(t))
                    .collect(),
                _ => Vec::new(),
            },
            name: opened.name,
            cron: opened.cron,
            time_zone: opened.zone,
            prompt: opened.prompt,
            continue_conversation: self.continue_conversation,
            deliver_mail: self.deliver_mail,
            deliver_telegram: self.deliver_telegram,
            enabled: self.enabled,
            conversation_id: self.conversation_id.map(|c| c.to_string()),
        })
    }
}

async fn schedule_row(db: &PgPool, owner: Uuid, id: Uuid) -> Result<ScheduleRow, AppError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = $1 AND owner_id = $2"
    )))
    .bind(id)
    .bind(owner)
    .fetch_optional(db)
    .await?
    .ok_or(AppError::NotFound)
}

use crate::agents::server::check_usable as check_agent;

pub async fn create(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    agent: Uuid,
    form: &ScheduleForm,
) -> Result<Uuid, AppError> {
    let checked = form.check()?;
    check_agent(&state.db, owner, agent).await?;
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM schedules WHERE agent_id = $1 AND owner_id = $2")
            .bind(agent)
            .bind(owner)
            .fetch_one(&state.db)
            .await?;
    if count as usize >= MAX_PER_AGENT {
        return Err(AppError::invalid(
            "name",
            format!("An agent can have at most {MAX_PER_AGENT} schedules."),
        ));
    }
    let id = Uuid::new_v4();
    write(state, INSERT, owner, key, id, Some(agent), &checked, form).await?;
    tracing::info!(schedule_id = %id, owner_id = %owner, "schedule created");
    Ok(id)
}

const INSERT: &str = "INSERT INTO schedules (id, owner_id, name, cron, time_zone, prompt,
       continue_conversation, deliver_mail, next_run_at, deliver_telegram, agent_id, enabled)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, true)";

const UPDATE: &str = "UPDATE schedules SET name = $3, cron = $4, time_zone = $5, prompt = $6,
       continue_conversation = $7, deliver_mail = $8,
       next_run_at = CASE WHEN enabled THEN $9 END, deliver_telegram = $10, updated_at = now()
     WHERE id = $1 AND owner_id = $2 AND ($11::uuid IS NULL OR agent_id = $11)";

/// Seals a checked form for row `id` and runs `sql` (`INSERT` or `UPDATE`,
/// numbered alike); the rows it wrote.
#[allow(clippy::too_many_arguments)]
async fn write(
    state: &AppState,
    sql: &'static str,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
    agent: Option<Uuid>,
    checked: &Checked,
    form: &ScheduleForm,
) -> Result<u64, AppError> {
    let seal = |column, value: &str| key.seal_str(schedule_place(column, id, owner), value);
    Ok(sqlx::query(sql)
        .bind(id)
        .bind(owner)
        .bind(seal("name", &checked.name))
        .bind(seal("cron", &checked.cron))
        .bind(seal("time_zone", &checked.zone))
        .bind(seal("prompt", &checked.prompt))
        .bind(form.continue_conversation)
        .bind(form.deliver_mail)
        .bind(checked.plan.next_after(Utc::now()))
        .bind(form.deliver_telegram)
        .bind(agent)
        .execute(&state.db)
        .await?
        .rows_affected())
}

/// Saves a changed schedule; its next time is worked out again.
pub async fn update(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
    form: &ScheduleForm,
) -> Result<(), AppError> {
    let checked = form.check()?;
    match write(state, UPDATE, owner, key, id, None, &checked, form).await? {
        0 => Err(AppError::NotFound),
        _ => Ok(()),
    }
}

/// Turns a schedule on (from its next time after now) or off.
pub async fn set_enabled(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
    on: bool,
) -> Result<(), AppError> {
    let row = schedule_row(&state.db, owner, id).await?;
    let opened = row.open(owner, key)?;
    let next = match on {
        true => Plan::parse(&opened.cron, &opened.zone)?.next_after(Utc::now()),
        false => None,
    };
    let done = sqlx::query(
        "UPDATE schedules SET enabled = $3, next_run_at = $4, updated_at = now()
         WHERE id = $1 AND owner_id = $2",
    )
    .bind(id)
    .bind(owner)
    .bind(on)
    .bind(next)
    .execute(&state.db)
    .await?;
    crate::error::found(done)
}

/// Deletes a schedule with its run history (the conversations stay).
pub async fn delete(db: &PgPool, owner: Uuid, id: Uuid) -> Result<Uuid, AppError> {
    let agent: Option<Uuid> = sqlx::query_scalar(
        "DELETE FROM schedules WHERE id = $1 AND owner_id = $2 RETURNING agent_id",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(db)
    .await?;
    agent.ok_or(AppError::NotFound)
}

/// The schedules of one of the owner's agents, oldest first.
pub async fn list(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    agent: Uuid,
) -> Result<Vec<ScheduleView>, AppError> {
    check_agent(&state.db, owner, agent).await?;
    let rows: Vec<ScheduleRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {SCHEDULE_COLUMNS} FROM schedules
         WHERE agent_id = $1 AND owner_id = $2 ORDER BY created_at, id"
    )))
    .bind(agent)
    .bind(owner)
    .fetch_all(&state.db)
    .await?;
    rows.iter().map(|r| r.view(owner, key)).collect()
}

#[derive(sqlx::FromRow)]
struct RunRow {
    id: Uuid,
    fire_at: DateTime<Utc>,
    manual: bool,
    status: String,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    conversation_id: Option<Uuid>,
    input_tokens: Option<i32>,
    output_tokens: Option<i32>,
    error: Option<Sealed>,
}

const RUN_COLUMNS: &str = "id, fire_at, manual, status, started_at, finished_at, \
     conversation_id, input_tokens, output_tokens, error";

impl RunRow {
    fn view(&self, owner: Uuid, key: &DataKey, plan: Option<&Plan>) -> Result<RunView, AppError> {
        Ok(RunView {
            id: self.id.to_string(),
            due: match plan {
                Some(plan) => plan.local(self.fire_at),
                None => self.fire_at.format("%a %-d %b %Y, %H:%M UTC").to_string(),
            },
            manual: self.manual,
            status: RunStatus::parse(&self.status),
            duration_ms: self
                .started_at
                .zip(self.finished_at)
                .map(|(s, f)| (f - s).num_milliseconds().max(0) as u64),
            input_tokens: self.input_tokens.map(|n| n.max(0) as u32),
            output_tokens: self.output_tokens.map(|n| n.max(0) as u32),
            conversation_id: self.conversation_id.map(|c| c.to_string()),
            error: self
                .error
                .as_ref()
                .map(|e| key.open_text(place("schedule_runs", "error", self.id, owner), e))
                .transpose()?,
        })
    }
}

/// A schedule with its agent's name and its latest runs.
pub async fn page(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<SchedulePage, AppError> {
    let row = schedule_row(&state.db, owner, id).await?;
    let schedule = row.view(owner, key)?;
    let plan = Plan::parse(&schedule.cron, &schedule.time_zone).ok();
    let agent_name = crate::agents::server::agent_name(state, owner, key, row.agent_id).await?;
    let runs: Vec<RunRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {RUN_COLUMNS} FROM schedule_runs
         WHERE schedule_id = $1 AND owner_id = $2 ORDER BY fire_at DESC, id LIMIT $3"
    )))
    .bind(id)
    .bind(owner)
    .bind(RUNS_SHOWN)
    .fetch_all(&state.db)
    .await?;
    Ok(SchedulePage {
        schedule,
        agent_name,
        runs: runs
            .iter()
            .map(|r| r.view(owner, key, plan.as_ref()))
            .collect::<Result<_, _>>()?,
    })
}

/// What a schedule's job carries (sealed): the run it does.
#[derive(Serialize, Deserialize)]
pub struct RunPayload {
    pub run: Uuid,
}

/// Records a run of `schedule` due at `fire_at` and enqueues its job, in
/// the caller's transaction. None when that run exists already.
async fn fire(
    conn: &mut sqlx::PgConnection,
    schedule: Uuid,
    owner: Uuid,
    key: &DataKey,
    fire_at: DateTime<Utc>,
    manual: bool,
) -> Result<Option<Uuid>, AppError> {
    let run: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO schedule_runs (id, schedule_id, owner_id, fire_at, manual)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (schedule_id, fire_at) DO NOTHING RETURNING id",
    )
    .bind(Uuid::new_v4())
    .bind(schedule)
    .bind(owner)
    .bind(fire_at)
    .bind(manual)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(run) = run else { return Ok(None) };
    jobs::enqueue(
        conn,
        NewJob::new(Kind::Schedule)
            .for_owner(owner, key, &RunPayload { run })
            .idempotency_key(format!(
                "schedule:{schedule}:{}",
                fire_at.timestamp_micros()
            )),
    )
    .await?;
    Ok(Some(run))
}

/// Starts a run of the owner's schedule now, whether it is on or off.
pub async fn run_now(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<Uuid, AppError> {
    schedule_row(&state.db, owner, id).await?;
    let mut tx = state.db.begin().await?;
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&mut *tx)
        .await?;
    let run = fire(&mut tx, id, owner, key, now, true)
        .await?
        .ok_or_else(|| AppError::invalid("schedule", "That run was started already."))?;
    tx.commit().await?;
    state.jobs.wake();
    Ok(run)
}

/// Fires every schedule due at `now` (this server's clock): one run each,
/// however many times it was due while no server ran, and never twice
/// across servers. Returns how many runs it started.
pub async fn tick(state: &AppState, now: DateTime<Utc>) -> Result<usize, AppError> {
    let mut tx = state.db.begin().await?;
    let due: Vec<(Uuid, Uuid, Sealed, Sealed, DateTime<Utc>)> = sqlx::query_as(
        "SELECT s.id, s.owner_id, s.cron, s.time_zone, s.next_run_at FROM schedules s
         WHERE s.enabled AND s.next_run_at <= $1
           -- An account waiting to be erased, or disabled, runs nothing.
           AND NOT EXISTS (SELECT 1 FROM users u WHERE u.id = s.owner_id
                           AND (u.deleted_at IS NOT NULL OR u.disabled_at IS NOT NULL))
         ORDER BY s.next_run_at LIMIT 100 FOR UPDATE OF s SKIP LOCKED",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    let mut keys: HashMap<Uuid, DataKey> = HashMap::new();
    let mut fired = 0;
    for (id, owner, cron, zone, fire_at) in due {
        let key = match keys.entry(owner) {
            std::collections::hash_map::Entry::Occupied(found) => Ok(&*found.into_mut()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                keystore::user_key(&state.db, &state.crypto.keyring, owner, KeyUse::Schedule)
                    .await
                    .map(|key| &*slot.insert(key))
            }
        };
        // A key that cannot be opened (an account being erased) or an
        // expression that no longer reads turns this schedule off; the
        // others still run.
        let plan = key.as_ref().map_err(Clone::clone).and_then(|key| {
            let cron = key.open_text(schedule_place("cron", id, owner), &cron)?;
            let zone = key.open_text(schedule_place("time_zone", id, owner), &zone)?;
            Plan::parse(&cron, &zone)
        });
        // The next time after now: the times missed while no server ran
        // are skipped, the one due now runs.
        let next = match &plan {
            Ok(plan) => plan.next_after(now.max(fire_at)),
            Err(_) => None,
        };
        if plan.is_err() {
            tracing::warn!(schedule_id = %id, "a schedule could not be read; it is turned off");
        }
        sqlx::query(
            "UPDATE schedules SET next_run_at = $2, enabled = $3, updated_at = now() WHERE id = $1",
        )
        .bind(id)
        .bind(next)
        .bind(next.is_some())
        .execute(&mut *tx)
        .await?;
        if let (Ok(_), Ok(key)) = (&plan, key)
            && fire(&mut tx, id, owner, key, fire_at, false)
                .await?
                .is_some()
        {
            fired += 1;
        }
    }
    tx.commit().await?;
    if fired > 0 {
        state.jobs.wake();
    }
    Ok(fired)
}

/// A run and what its schedule asks, for the job.
#[derive(sqlx::FromRow)]
struct Due {
    status: String,
    message_id: Option<Uuid>,
    fire_at: DateTime<Utc>,
    schedule_id: Uuid,
    agent_id: Uuid,
    name: Sealed,
    cron: Sealed,
    time_zone: Sealed,
    prompt: Sealed,
    continue_conversation: bool,
    conversation_id: Option<Uuid>,
    deliver_mail: bool,
    deliver_telegram: bool,
}

/// The job of one run (`Kind::Schedule`): sends the prompt as a message
/// (in a new conversation, or the schedule's own), waits for the reply and
/// records how it went. Run again after a restart, it does not send twice:
/// a run with a reply only waits for it.
pub async fn run(state: &AppState, job: &Job, key: &DataKey) -> Result<(), JobError> {
    let RunPayload { run } = job.payload(key)?;
    let owner = job
        .owner
        .ok_or_else(|| JobError::fatal("The job has no owner."))?;
    let db_error = |_| JobError::retry("The database was not reachable.");
    let due: Option<Due> = sqlx::query_as(
        "SELECT r.status, r.message_id, r.fire_at, s.id AS schedule_id, s.agent_id, s.name,
                s.cron, s.time_zone, s.prompt, s.continue_conversation, s.conversation_id,
                s.deliver_mail, s.deliver_telegram
         FROM schedule_runs r JOIN schedules s ON s.id = r.schedule_id
         WHERE r.id = $1 AND r.owner_id = $2",
    )
    .bind(run)
    .bind(owner)
    .fetch_optional(&state.db)
    .await
    .map_err(db_error)?;
    // Deleted with its schedule, or done already.
    let Some(due) = due else { return Ok(()) };
    if !matches!(
        RunStatus::parse(&due.status),
        RunStatus::Queued | RunStatus::Running
    ) {
        return Ok(());
    }
    let open = |column, sealed| {
        key.open_text(schedule_place(column, due.schedule_id, owner), sealed)
            .map_err(|_| JobError::fatal("The schedule could not be opened."))
    };
    let name = open("name", &due.name)?;
    let prompt = open("prompt", &due.prompt)?;
    let plan = Plan::parse(
        &open("cron", &due.cron)?,
        &open("time_zone", &due.time_zone)?,
    )
    .ok();
    let reply = match due.message_id {
        Some(reply) => reply,
        None => match start(state, owner, key, run, &due, &prompt).await? {
            Some(reply) => reply,
            None => return Ok(()),
        },
    };
    let message = wait_for(state, owner, key, reply).await;
    let (status, error) = match &message {
        Ok(m) => match m.status {
            MessageStatus::Complete => (RunStatus::Complete, None),
            MessageStatus::AwaitingApproval => (RunStatus::Waiting, None),
            MessageStatus::Stopped => (RunStatus::Failed, Some("The reply was stopped.".into())),
            MessageStatus::Interrupted | MessageStatus::Streaming => (
                RunStatus::Failed,
                Some(
                    m.error
                        .clone()
                        .unwrap_or_else(|| "The reply could not be finished.".into()),
                ),
            ),
        },
        Err(err) => (RunStatus::Failed, Some(err.clone())),
    };
    let tokens = message
        .as_ref()
        .map(|m| (m.input_tokens, m.output_tokens))
        .unwrap_or_default();
    // To the agent's Telegram chats: a reply that could not go is said
    // with the run (which still succeeded).
    let mut error = error;
    if status == RunStatus::Complete
        && due.deliver_telegram
        && let Ok(message) = &message
        && let Err(why) =
            crate::telegram::server::send_to_people(state, owner, key, due.agent_id, &message.body)
                .await
    {
        error = Some(format!("Not sent to Telegram: {why}"));
    }
    finish(state, owner, key, run, status, error.as_deref(), tokens)
        .await
        .map_err(db_error)?;
    if status == RunStatus::Complete
        && due.deliver_mail
        && let Ok(message) = &message
    {
        let when = plan
            .as_ref()
            .map(|p| p.local(due.fire_at))
            .unwrap_or_default();
        mail_reply(state, owner, key, &name, &when, &message.body, due.agent_id)
            .await
            .map_err(|_| JobError::retry("The reply could not be mailed yet."))?;
    }
    tracing::info!(schedule_id = %due.schedule_id, run_id = %run, status = status.as_str(), "scheduled run done");
    Ok(())
}

/// Sends the schedule's prompt; the reply's id, or None when it could not
/// be sent (the run is recorded failed, with the reason).
async fn start(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    run: Uuid,
    due: &Due,
    prompt: &str,
) -> Result<Option<Uuid>, JobError> {
    let db_error = |_| JobError::retry("The database was not reachable.");
    sqlx::query(
        "UPDATE schedule_runs SET status = 'running', started_at = coalesce(started_at, now())
         WHERE id = $1 AND owner_id = $2",
    )
    .bind(run)
    .bind(owner)
    .execute(&state.db)
    .await
    .map_err(db_error)?;
    let conversation = due.conversation_id.filter(|_| due.continue_conversation);
    let sent =
        crate::chat::server::send(state, owner, key, due.agent_id, conversation, prompt, &[]).await;
    let sent = match sent {
        Ok(sent) => sent,
        Err(err) => {
            finish(
                state,
                owner,
                key,
                run,
                RunStatus::Failed,
                Some(&err.sentence()),
                (None, None),
            )
            .await
            .map_err(db_error)?;
            return Ok(None);
        }
    };
    let (Ok(reply), Ok(conversation)) = (
        Uuid::parse_str(&sent.reply_id),
        Uuid::parse_str(&sent.conversation_id),
    ) else {
        return Err(JobError::fatal("The reply's id could not be read."));
    };
    sqlx::query(
        "UPDATE schedule_runs SET message_id = $3, conversation_id = $4
         WHERE id = $1 AND owner_id = $2",
    )
    .bind(run)
    .bind(owner)
    .bind(reply)
    .bind(conversation)
    .execute(&state.db)
    .await
    .map_err(db_error)?;
    if due.continue_conversation && due.conversation_id.is_none() {
        sqlx::query(
            "UPDATE schedules SET conversation_id = $3 WHERE id = $1 AND owner_id = $2
               AND conversation_id IS NULL",
        )
        .bind(due.schedule_id)
        .bind(owner)
        .bind(conversation)
        .execute(&state.db)
        .await
        .map_err(db_error)?;
    }
    Ok(Some(reply))
}

/// The reply once it is no longer being written (here or on another
/// server), or why it could not be waited for.
async fn wait_for(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    reply: Uuid,
) -> Result<crate::chat::MessageView, String> {
    use futures::StreamExt as _;
    let started = tokio::time::Instant::now();
    loop {
        // Written here: wait for its end; elsewhere (or ended): look again.
        if let Some(updates) = state.runs.follow(reply, owner) {
            let mut updates = std::pin::pin!(updates);
            while let Some(update) = updates.next().await {
                if matches!(update, crate::chat::StreamUpdate::Done { .. }) {
                    break;
                }
            }
        }
        match crate::chat::server::stored_reply(state, owner, key, reply).await {
            Ok(m) if m.status != MessageStatus::Streaming => return Ok(m),
            Ok(_) => {}
            Err(AppError::NotFound) => {
                return Err("The reply was deleted before it was finished.".into());
            }
            Err(_) => {}
        }
        if started.elapsed() > LONGEST_RUN {
            return Err("The reply took longer than 30 minutes.".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn finish(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    run: Uuid,
    status: RunStatus,
    error: Option<&str>,
    (input, output): (Option<u32>, Option<u32>),
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE schedule_runs SET status = $3, error = $4, input_tokens = $5, output_tokens = $6,
           started_at = coalesce(started_at, now()), finished_at = now()
         WHERE id = $1 AND owner_id = $2",
    )
    .bind(run)
    .bind(owner)
    .bind(status.as_str())
    .bind(error.map(|e| key.seal_str(place("schedule_runs", "error", run, owner), e)))
    .bind(input.map(|n| n as i32))
    .bind(output.map(|n| n as i32))
    .execute(&state.db)
    .await?;
    Ok(())
}

/// Mails the owner what the agent answered.
async fn mail_reply(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    name: &str,
    when: &str,
    reply: &str,
    agent: Uuid,
) -> Result<(), AppError> {
    let (email, first_name) = crate::data::activity::server::contact(&state.db, owner, key).await?;
    let base = state.settings.public_url.trim_end_matches('/');
    let link = format!("{base}/agents/{agent}/chat");
    let text = format!(
        "Hello {first_name},\n\nYour schedule \"{name}\" ran ({when}). The agent answered:\n\n\
         {reply}\n\nThe conversation: {link}\n"
    );
    let html = format!(
        "<p>Hello {first},</p><p>Your schedule “{name}” ran ({when}). The agent answered:</p>\
         <blockquote style=\"white-space: pre-wrap\">{reply}</blockquote>\
         <p><a href=\"{href}\">Open the conversation</a></p>",
        first = escape_html(&first_name),
        name = escape_html(name),
        when = escape_html(when),
        reply = escape_html(reply),
        href = escape_html(&link),
    );
    let mail = Outgoing {
        to: email,
        subject: format!("{name}: your scheduled run"),
        text,
        html,
    };
    let mut conn = state.db.acquire().await?;
    jobs::enqueue(
        &mut conn,
        NewJob::new(Kind::Mail).for_owner(owner, key, &mail),
    )
    .await?;
    state.jobs.wake();
    Ok(())
}

/// Erases up to `batch` runs older than `days` (the conversations' retention:
/// the history of what ran goes with what it wrote).
pub async fn purge_runs(db: &PgPool, days: u32, batch: i64) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "DELETE FROM schedule_runs WHERE id IN (
             SELECT id FROM schedule_runs
             WHERE fire_at < now() - make_interval(days => $1)
               AND status NOT IN ('queued', 'running')
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(days as i32)
    .bind(batch)
    .execute(db)
    .await?
    .rows_affected())
}

/// Every schedule of the owner's with its runs, for their export.
pub async fn export(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
) -> Result<serde_json::Value, AppError> {
    let ids: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM schedules WHERE owner_id = $1 ORDER BY created_at, id")
            .bind(owner)
            .fetch_all(&state.db)
            .await?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let page = page(state, owner, key, id).await?;
        let mut value = serde_json::to_value(&page.schedule).map_err(AppError::internal)?;
        value["agent"] = serde_json::json!(page.agent_name);
        value["runs"] = serde_json::to_value(&page.runs).map_err(AppError::internal)?;
        out.push(value);
    }
    Ok(serde_json::Value::Array(out))
}
