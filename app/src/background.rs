//! What each background job does (`platform::jobs` runs them): the
//! composition root's dispatcher, so the platform never names a slice.

use std::sync::Arc;

use crate::{
    platform::{
        jobs::{Handler, Job, JobError, Kind},
        keystore::{self, KeyUse},
        mail::Outgoing,
    },
    state::AppState,
};

/// The handler the server's workers run.
pub fn handler(state: AppState) -> Handler {
    Arc::new(move |job| {
        let state = state.clone();
        Box::pin(async move { run(&state, job).await })
    })
}

/// The data key of the user a job works for (its payload is sealed with it).
async fn owner_key(
    state: &AppState,
    job: &Job,
) -> Result<crate::platform::crypto::DataKey, JobError> {
    let owner = job
        .owner
        .ok_or_else(|| JobError::fatal("The job has no owner."))?;
    keystore::user_key(
        &state.db,
        &state.crypto.keyring,
        owner,
        KeyUse::BackgroundJob,
    )
    .await
    .map_err(|_| JobError::fatal("The account this job was for is gone."))
}

async fn run(state: &AppState, job: Job) -> Result<(), JobError> {
    match job.kind {
        Kind::Mail => {
            let key = owner_key(state, &job).await?;
            let mail: Outgoing = job.payload(&key)?;
            state.settings.mailer.send(&mail).await
        }
        Kind::Export => {
            let key = owner_key(state, &job).await?;
            crate::data::export::server::run(state, &job, &key).await
        }
        Kind::Ingest => {
            let key = owner_key(state, &job).await?;
            crate::knowledge::server::ingest(state, &job, &key).await
        }
        Kind::Schedule => {
            let key = owner_key(state, &job).await?;
            crate::schedules::server::run(state, &job, &key).await
        }
        Kind::Telegram => {
            let key = owner_key(state, &job).await?;
            crate::telegram::server::handle(state, &job, &key).await
        }
        Kind::Retention => {
            let report = crate::data::retention::server::run(&state.db, &state.settings.retention)
                .await
                .map_err(|_| {
                    JobError::retry(
                        "The database was not reachable; the rest waits for the next try.",
                    )
                })?;
            tracing::info!(
                accounts = report.accounts,
                conversations = report.conversations,
                activity = report.activity,
                tool_calls = report.tool_calls,
                exports = report.exports,
                unsent_files = report.unsent_files,
                schedule_runs = report.schedule_runs,
                api_keys = report.api_keys,
                team_invitations = report.team_invitations,
                usage_entries = report.usage_entries,
                credit_holds = report.credit_holds,
                "retention pass done"
            );
            Ok(())
        }
    }
}
