//! The one tool interface (server only). A tool has a name, a description, a
//! JSON schema for its arguments, whether it has side effects, and `call`.
//! Built-in tools implement it now; the user's MCP servers will too, and the
//! loop in `chat::runs` does not know which is which. Secrets are resolved
//! inside `call` (from sealed connections) and never enter the model's
//! context, a stored part or a log line.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use serde_json::Value;
use uuid::Uuid;

use super::{ToolConfig, builtin::builtin_tool};
use crate::{
    llm::ToolDecl,
    platform::{
        crypto::{DataKey, Place},
        keystore::SealedColumn,
    },
    state::AppState,
};

/// The sealed columns of this slice (`keys verify` opens them all).
pub const SEALED: &[SealedColumn] = &[
    SealedColumn::owned("tool_calls", "tool"),
    SealedColumn::owned("tool_calls", "target"),
];

/// What a tool may read while it runs: whose run it is (for their
/// connections), and the server's state (egress, database, settings).
#[derive(Clone)]
pub struct ToolCtx {
    pub state: AppState,
    pub owner: Uuid,
    pub key: DataKey,
    /// The reply whose run makes the calls.
    pub message: Uuid,
    /// The agent's tool settings (allowed hosts, say).
    pub config: ToolConfig,
    /// The team whose agent this is (`None`: the user's own agent). A
    /// team's agent uses no one's personal connections or MCP servers.
    pub team: Option<Uuid>,
}

/// A tool's answer: the text the model reads, and for the audit where it
/// went and how much crossed the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolOutput {
    pub content: String,
    /// The host the tool talked to, if any.
    pub target: Option<String>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl ToolOutput {
    pub fn text(content: impl Into<String>) -> Self {
        ToolOutput {
            content: content.into(),
            ..ToolOutput::default()
        }
    }
}

/// Why a call failed, in words for the model and the user (never a secret,
/// never a raw upstream body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Failed(String),
}

pub trait Tool: Send + Sync {
    fn decl(&self) -> ToolDecl;
    fn side_effects(&self) -> bool;
    fn call<'a>(
        &'a self,
        ctx: &'a ToolCtx,
        arguments: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>>;
}

/// The most of a tool's answer the model is given (and kept).
pub const MAX_RESULT_CHARS: usize = 16_000;

/// The tools of one run, with what they need: each with the key the
/// agent's settings know it by (a built-in's name, `mcp:<server>:<tool>`).
#[derive(Clone)]
pub struct Toolbox {
    tools: Vec<(String, Arc<dyn Tool>)>,
    pub config: ToolConfig,
    pub ctx: ToolCtx,
    pub timeout: Duration,
}

impl Toolbox {
    /// The agent's enabled tools: built-in ones and those of the owner's
    /// MCP servers. Unknown names (a tool since removed, a server deleted)
    /// are skipped.
    pub async fn for_agent(ctx: ToolCtx) -> Self {
        let config = ctx.config.clone();
        let mut tools: Vec<(String, Arc<dyn Tool>)> = config
            .enabled
            .iter()
            .filter_map(|name| builtin_tool(name).map(|tool| (name.clone(), tool)))
            .collect();
        if ctx.team.is_none() {
            tools.extend(crate::mcp::server::tools_for(&ctx, &config.enabled).await);
        }
        let timeout = ctx.state.settings.tool_timeout;
        Toolbox {
            tools,
            config,
            ctx,
            timeout,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    pub fn declarations(&self) -> Vec<ToolDecl> {
        self.tools.iter().map(|(_, t)| t.decl()).collect()
    }

    /// The tool the model calls `name`, with its settings key.
    fn find(&self, name: &str) -> Option<&(String, Arc<dyn Tool>)> {
        self.tools.iter().find(|(_, t)| t.decl().name == name)
    }

    /// Whether a call of `name` waits for the user's approval.
    pub fn asks_first(&self, name: &str) -> bool {
        self.find(name)
            .is_some_and(|(key, t)| t.side_effects() && self.config.asks_first(key))
    }

    /// Runs one call, within the tool timeout, and records it in the audit
    /// (also when it is cancelled half-way). The answer is cut to
    /// `MAX_RESULT_CHARS`.
    pub async fn call(&self, name: &str, arguments: Value) -> Result<ToolOutput, ToolError> {
        let mut audit = Audit::start(&self.ctx, name);
        let Some((_, tool)) = self.find(name) else {
            audit.finish("failed", None);
            return Err(ToolError::Invalid(format!(
                "There is no tool called “{name}” for this agent."
            )));
        };
        let result = tokio::time::timeout(self.timeout, tool.call(&self.ctx, arguments))
            .await
            .map_err(|_| {
                let secs = self.timeout.as_secs();
                ToolError::Failed(format!(
                    "The tool did not finish within {secs} second{}.",
                    if secs == 1 { "" } else { "s" }
                ))
            })
            .and_then(|r| r);
        match &result {
            Ok(output) => audit.finish("done", Some(output)),
            Err(_) => audit.finish("failed", None),
        }
        let mut output = result?;
        if output.content.chars().count() > MAX_RESULT_CHARS {
            let cut: String = output.content.chars().take(MAX_RESULT_CHARS).collect();
            output.content = format!("{cut}\n[… cut at {MAX_RESULT_CHARS} characters]");
        }
        Ok(output)
    }
}

/// One call's audit record: written when the call ends, or, if it is
/// cancelled (the reply stopped), when it is dropped. Holds only the tool's
/// name, the host it reached and numbers: never arguments, results or a
/// secret.
struct Audit {
    ctx: ToolCtx,
    tool: String,
    started: tokio::time::Instant,
    status: &'static str,
    target: Option<String>,
    sent: u64,
    received: u64,
}

impl Audit {
    fn start(ctx: &ToolCtx, tool: &str) -> Self {
        Audit {
            ctx: ctx.clone(),
            tool: tool.to_owned(),
            started: tokio::time::Instant::now(),
            status: "cancelled",
            target: None,
            sent: 0,
            received: 0,
        }
    }

    fn finish(&mut self, status: &'static str, output: Option<&ToolOutput>) {
        self.status = status;
        if let Some(output) = output {
            self.target = output.target.clone();
            self.sent = output.bytes_sent;
            self.received = output.bytes_received;
        }
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        let id = Uuid::new_v4();
        let owner = self.ctx.owner;
        let place = |column| Place::new("tool_calls", column, id, owner);
        let tool = self.ctx.key.seal_str(place("tool"), &self.tool);
        let target = self
            .target
            .as_deref()
            .map(|t| self.ctx.key.seal_str(place("target"), t));
        let (status, sent, received) = (self.status, self.sent, self.received);
        let duration = self.started.elapsed().as_millis().min(i32::MAX as u128) as i32;
        let (db, message) = (self.ctx.state.db.clone(), self.ctx.message);
        tokio::spawn(async move {
            let written = sqlx::query(
                "INSERT INTO tool_calls (id, owner_id, message_id, tool, target, status,
                   bytes_sent, bytes_received, duration_ms)
                 VALUES ($1, $2, (SELECT id FROM messages WHERE id = $3), $4, $5, $6, $7, $8, $9)",
            )
            .bind(id)
            .bind(owner)
            .bind(message)
            .bind(tool)
            .bind(target)
            .bind(status)
            .bind(sent as i64)
            .bind(received as i64)
            .bind(duration)
            .execute(&db)
            .await;
            if let Err(err) = written {
                tracing::warn!(error = %err, "could not record a tool call");
            }
        });
    }
}
