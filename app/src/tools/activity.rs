//! Settings → Tool activity: every tool call of the user, for them to read:
//! the tool, the host it reached, how it ended, what crossed the wire and
//! how long it took (never the arguments, the results or a secret). Kept
//! for 90 days (`purge`, run by the retention job).

use leptos::prelude::*;
use leptos_meta::Title;
use serde::{Deserialize, Serialize};

use crate::{
    error::AppError,
    ui::{RequireUser, error_view},
};

/// How long tool call records are kept.
pub const KEEP_DAYS: u32 = 90;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolActivity {
    /// When, as `YYYY-MM-DD HH:MM:SS` UTC.
    pub at: String,
    pub tool: String,
    pub target: Option<String>,
    pub status: String,
    pub bytes_sent: i64,
    pub bytes_received: i64,
    pub duration_ms: i32,
}

/// The signed-in user's latest tool calls (at most 200).
#[server(prefix = "/api", endpoint = "list_tool_activity")]
pub async fn list_tool_activity() -> Result<Vec<ToolActivity>, AppError> {
    use crate::ctx;
    let session = ctx::require_session()?;
    server::list(&ctx::state()?, session.user_id, &session.key, 200).await
}

#[cfg(feature = "ssr")]
pub mod server {
    use uuid::Uuid;

    use super::ToolActivity;
    use crate::{
        error::AppError,
        platform::crypto::{DataKey, Place, Sealed},
        state::AppState,
    };

    #[derive(sqlx::FromRow)]
    struct Row {
        id: Uuid,
        at: chrono::DateTime<chrono::Utc>,
        tool: Sealed,
        target: Option<Sealed>,
        status: String,
        bytes_sent: i64,
        bytes_received: i64,
        duration_ms: i32,
    }

    /// The owner's newest `limit` tool calls.
    pub async fn list(
        state: &AppState,
        owner: Uuid,
        key: &DataKey,
        limit: i64,
    ) -> Result<Vec<ToolActivity>, AppError> {
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, created_at AS at, tool, target, status, bytes_sent, bytes_received, duration_ms
             FROM tool_calls WHERE owner_id = $1 ORDER BY created_at DESC LIMIT $2",
        )
        .bind(owner)
        .bind(limit)
        .fetch_all(&state.db)
        .await?;
        rows.iter()
            .map(|row| {
                let place = |column| Place::new("tool_calls", column, row.id, owner);
                Ok(ToolActivity {
                    at: row.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                    tool: key.open_text(place("tool"), &row.tool)?,
                    target: key.open_optional(place("target"), row.target.as_ref())?,
                    status: row.status.clone(),
                    bytes_sent: row.bytes_sent,
                    bytes_received: row.bytes_received,
                    duration_ms: row.duration_ms,
                })
            })
            .collect()
    }

    /// Deletes tool call records older than `days`, at most `batch` of
    /// them (the retention job calls again until none are left).
    pub async fn purge(db: &sqlx::PgPool, days: u32, batch: i64) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "DELETE FROM tool_calls WHERE id IN (
                 SELECT id FROM tool_calls WHERE created_at < now() - make_interval(days => $1)
                 LIMIT $2 FOR UPDATE SKIP LOCKED)",
        )
        .bind(days as i32)
        .bind(batch)
        .execute(db)
        .await?
        .rows_affected())
    }
}

#[component]
pub fn ToolActivityPage() -> impl IntoView {
    view! {
        <Title text="Tool activity"/>
        <RequireUser>
            <Activity/>
        </RequireUser>
    }
}

fn size(bytes: i64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

#[component]
fn Activity() -> impl IntoView {
    let list = Resource::new(|| (), |_| list_tool_activity());
    view! {
        <h1>"Tool activity"</h1>
        <p class="muted">
            "Every call your agents' tools made: which tool, the host it reached, how it ended and "
            "how much was sent and received. Never what was sent. Kept for "
            {KEEP_DAYS} " days."
        </p>
        <Transition fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match list.await {
                    Err(err) => error_view(err).into_any(),
                    Ok(rows) if rows.is_empty() => {
                        view! { <p class="card muted">"No tool calls yet."</p> }.into_any()
                    }
                    Ok(rows) => {
                        view! {
                            <div class="table-wrap">
                                <table class="activity" data-testid="tool-activity">
                                    <thead>
                                        <tr>
                                            <th scope="col">"When (UTC)"</th>
                                            <th scope="col">"Tool"</th>
                                            <th scope="col">"Host"</th>
                                            <th scope="col">"Outcome"</th>
                                            <th scope="col">"Sent"</th>
                                            <th scope="col">"Received"</th>
                                            <th scope="col">"Took"</th>
                                        </tr>
                                    </thead>
                                    <tbody>
                                        {rows
                                            .into_iter()
                                            .map(|row| {
                                                view! {
                                                    <tr>
                                                        <td>{row.at}</td>
                                                        <td>{row.tool}</td>
                                                        <td>{row.target.unwrap_or_else(|| "—".into())}</td>
                                                        <td>{row.status}</td>
                                                        <td>{size(row.bytes_sent)}</td>
                                                        <td>{size(row.bytes_received)}</td>
                                                        <td>{format!("{} ms", row.duration_ms)}</td>
                                                    </tr>
                                                }
                                            })
                                            .collect_view()}
                                    </tbody>
                                </table>
                            </div>
                        }
                            .into_any()
                    }
                }
            })}
        </Transition>
    }
}
