//! Settings → Your data, "What we hold": every kind of data Enclave keeps
//! about the user, with how many and the dates, and provider keys and
//! connections by their masks. Each later slice adds its kind here.

use serde::{Deserialize, Serialize};

/// One kind of data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    pub kind: String,
    pub count: i64,
    /// The oldest and newest (`YYYY-MM-DD`), when there are any.
    pub first: Option<String>,
    pub last: Option<String>,
    /// What identifies each without a secret (a key's name and mask).
    pub items: Vec<String>,
}

#[cfg(feature = "ssr")]
pub mod server {
    use chrono::{DateTime, Utc};
    use uuid::Uuid;

    use super::Holding;
    use crate::{error::AppError, platform::crypto::DataKey, state::AppState};

    /// (what the user reads, table, owner column, time column).
    const KINDS: &[(&str, &str, &str, &str)] = &[
        (
            "Sessions (signed-in browsers)",
            "sessions",
            "user_id",
            "created_at",
        ),
        (
            "Sign-in providers",
            "user_identities",
            "user_id",
            "created_at",
        ),
        ("Passkeys", "passkeys", "user_id", "created_at"),
        ("Account activity entries", "activity", "owner_id", "at"),
        ("Agents", "agents", "owner_id", "created_at"),
        ("Conversations", "conversations", "owner_id", "updated_at"),
        ("Messages", "messages", "owner_id", "created_at"),
        (
            "Files attached to messages",
            "chat_files",
            "owner_id",
            "created_at",
        ),
        ("Tool call records", "tool_calls", "owner_id", "created_at"),
        ("MCP servers", "mcp_servers", "owner_id", "created_at"),
        (
            "Knowledge bases",
            "knowledge_bases",
            "owner_id",
            "created_at",
        ),
        (
            "Knowledge documents",
            "knowledge_documents",
            "owner_id",
            "created_at",
        ),
        ("Schedules", "schedules", "owner_id", "created_at"),
        ("API keys", "api_keys", "owner_id", "created_at"),
        (
            "Telegram bots",
            "telegram_channels",
            "owner_id",
            "created_at",
        ),
        ("Telegram chats", "telegram_chats", "owner_id", "created_at"),
        ("Scheduled runs", "schedule_runs", "owner_id", "fire_at"),
        ("Exports on offer", "exports", "owner_id", "created_at"),
        ("Consent records", "consents", "owner_id", "at"),
    ];

    fn day(t: Option<DateTime<Utc>>) -> Option<String> {
        t.map(|t| t.format("%Y-%m-%d").to_string())
    }

    pub async fn holdings(
        state: &AppState,
        owner: Uuid,
        key: &DataKey,
    ) -> Result<Vec<Holding>, AppError> {
        let created: DateTime<Utc> =
            sqlx::query_scalar("SELECT created_at FROM users WHERE id = $1")
                .bind(owner)
                .fetch_one(&state.db)
                .await?;
        let mut out = vec![Holding {
            kind: "Your account (name, email address, password hash)".to_owned(),
            count: 1,
            first: day(Some(created)),
            last: None,
            items: Vec::new(),
        }];
        for (label, table, owner_column, time) in KINDS {
            // Names from the list above, never from input.
            let sql = format!(
                "SELECT count(*), min({time}), max({time}) FROM {table} WHERE {owner_column} = $1"
            );
            let (count, first, last): (i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>) =
                sqlx::query_as(sqlx::AssertSqlSafe(sql))
                    .bind(owner)
                    .fetch_one(&state.db)
                    .await?;
            out.push(Holding {
                kind: (*label).to_owned(),
                count,
                first: day(first),
                last: day(last),
                items: Vec::new(),
            });
        }
        let keys = crate::provider_keys::server::list_keys(state, owner, key).await?;
        out.push(Holding {
            kind: "Provider keys".to_owned(),
            count: keys.len() as i64,
            first: None,
            last: None,
            items: keys
                .into_iter()
                .map(|k| format!("{} ({})", k.label, k.masked))
                .collect(),
        });
        let connections = crate::connections::server::list_own(state, owner, key).await?;
        out.push(Holding {
            kind: "Connections".to_owned(),
            count: connections.len() as i64,
            first: None,
            last: None,
            items: connections
                .into_iter()
                .map(|c| format!("{} ({})", c.label, c.masked))
                .collect(),
        });
        Ok(out)
    }
}
