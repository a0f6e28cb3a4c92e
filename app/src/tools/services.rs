//! Built-in tools for services, each through the user's connection for it:
//! GitHub (read, write), Slack (read, post) and Telegram (send). Requests go
//! through the egress client to the service's address (the operator's
//! `ENCLAVE_*_API_URL`); answers become short text, and failures plain
//! sentences built from status codes and the service's own error codes,
//! never its raw body.

use std::sync::Arc;

use futures::future::BoxFuture;
use reqwest::{
    Method, StatusCode,
    header::{CONTENT_TYPE, HeaderMap, HeaderValue},
};
use serde_json::{Value, json};

use super::server::{Tool, ToolCtx, ToolError, ToolOutput};
use crate::{
    connections::{
        ConnectionKind,
        server::{
            Credential, github_headers, slack_error, slack_headers, telegram_error, telegram_url,
        },
    },
    llm::ToolDecl,
    platform::egress::Fetched,
    ui::encode_component,
};

/// The service tool called `name`, ready to call.
pub fn service_tool(name: &str) -> Option<Arc<dyn Tool>> {
    let tool: Arc<dyn Tool> = match name {
        "github_read" => Arc::new(GithubRead),
        "github_write" => Arc::new(GithubWrite),
        "slack_read" => Arc::new(SlackRead),
        "slack_post" => Arc::new(SlackPost),
        "telegram_send" => Arc::new(TelegramSend),
        _ => return None,
    };
    Some(tool)
}

fn decl(name: &str, parameters: Value) -> ToolDecl {
    ToolDecl {
        name: name.to_owned(),
        description: super::builtin(name)
            .map(|t| t.description)
            .unwrap_or_default()
            .to_owned(),
        parameters,
    }
}

/// The user's connection for `kind` (the one chosen for the agent, else
/// their newest), or a sentence saying what to add.
pub async fn connection(ctx: &ToolCtx, kind: ConnectionKind) -> Result<Credential, ToolError> {
    let chosen = ctx
        .config
        .connections
        .get(kind.as_str())
        .and_then(|id| uuid::Uuid::parse_str(id).ok());
    // A team's agent uses the team's connections, never the person
    // chatting's own.
    crate::connections::server::credential(&ctx.state, ctx.owner, &ctx.key, kind, chosen, ctx.team)
        .await
        .map_err(|_| ToolError::Failed("Enclave could not read the connection.".into()))?
        .ok_or_else(|| {
            ToolError::Failed(if ctx.team.is_some() {
                format!(
                    "This team has no {} connection: a team admin adds one under Settings → Connections.",
                    kind.label()
                )
            } else {
                format!(
                    "There is no {} connection: add one under Settings → Connections.",
                    kind.label()
                )
            })
        })
}

fn text_arg<'a>(arguments: &'a Value, name: &str, what: &str) -> Result<&'a str, ToolError> {
    arguments[name]
        .as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ToolError::Invalid(format!("Give {what} ({name}).")))
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(max).collect::<String>())
    }
}

/// Sends one request to a service through egress, for a tool.
async fn request(
    ctx: &ToolCtx,
    method: Method,
    url: &str,
    headers: HeaderMap,
    body: Option<Value>,
) -> Result<(Fetched, u64), ToolError> {
    let mut headers = headers;
    let body = body.map(|b| {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        b.to_string().into_bytes()
    });
    let sent = url.len() as u64 + body.as_ref().map_or(0, |b| b.len() as u64);
    let fetched = ctx
        .state
        .egress
        .send_body(method, url, headers, body)
        .await
        .map_err(|e| ToolError::Failed(e.to_string()))?;
    Ok((fetched, sent))
}

fn host_of(url: &str) -> Option<String> {
    url::Url::parse(url).ok()?.host_str().map(str::to_owned)
}

fn json_of(fetched: &Fetched) -> Value {
    serde_json::from_slice(&fetched.body).unwrap_or_default()
}

// ---- GitHub ------------------------------------------------------------------

/// `owner/name`, checked (each part becomes one path segment).
fn repo(arguments: &Value) -> Result<String, ToolError> {
    let repo = text_arg(arguments, "repo", "the repository, like owner/name")?;
    let ok = repo.split('/').count() == 2
        && repo.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if !ok {
        return Err(ToolError::Invalid(format!(
            "“{repo}” is not a repository name like owner/name."
        )));
    }
    Ok(repo.to_owned())
}

fn number(arguments: &Value) -> Result<u64, ToolError> {
    arguments["number"]
        .as_u64()
        .or_else(|| arguments["number"].as_str().and_then(|n| n.parse().ok()))
        .filter(|n| *n > 0)
        .ok_or_else(|| ToolError::Invalid("Give the issue or pull request number.".into()))
}

fn github_failure(status: StatusCode, fetched: &Fetched) -> ToolError {
    let remaining = fetched
        .headers
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok());
    ToolError::Failed(match status.as_u16() {
        401 => "GitHub rejected the token: it is invalid or expired.".into(),
        403 | 429 if remaining == Some("0") || status.as_u16() == 429 => {
            "GitHub's rate limit for this token is reached: try again later.".into()
        }
        403 => "GitHub refused: the token lacks permission for this.".into(),
        404 => "GitHub has no such repository, issue or file (or the token cannot see it).".into(),
        422 => "GitHub refused the input: check the title, body or query.".into(),
        status => format!("GitHub answered with status {status}."),
    })
}

async fn github(
    ctx: &ToolCtx,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Result<(Value, ToolOutput), ToolError> {
    let credential = connection(ctx, ConnectionKind::Github).await?;
    let headers = github_headers(credential.expose()).map_err(ToolError::Failed)?;
    let url = format!(
        "{}/{}",
        ctx.state.settings.service_urls.github.trim_end_matches('/'),
        path
    );
    let (fetched, sent) = request(ctx, method, &url, headers, body).await?;
    if !fetched.status.is_success() {
        return Err(github_failure(fetched.status, &fetched));
    }
    let output = ToolOutput {
        content: String::new(),
        target: host_of(&url),
        bytes_sent: sent,
        bytes_received: fetched.body.len() as u64,
    };
    Ok((json_of(&fetched), output))
}

pub struct GithubRead;

impl Tool for GithubRead {
    fn decl(&self) -> ToolDecl {
        decl(
            "github_read",
            json!({"type": "object", "properties": {
                "action": {"type": "string", "enum": ["search", "issue", "file"],
                    "description": "search: issues and pull requests; issue: one issue or pull request; file: a file's text."},
                "query": {"type": "string", "description": "For search: GitHub search syntax, e.g. repo:owner/name is:open bug."},
                "repo": {"type": "string", "description": "For issue and file: owner/name."},
                "number": {"type": "integer", "description": "For issue: its number."},
                "path": {"type": "string", "description": "For file: its path in the repository."},
                "ref": {"type": "string", "description": "For file: a branch, tag or commit (default: the default branch)."}
            }, "required": ["action"]}),
        )
    }

    fn side_effects(&self) -> bool {
        false
    }

    fn call<'a>(
        &'a self,
        ctx: &'a ToolCtx,
        arguments: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            match arguments["action"].as_str().unwrap_or_default() {
                "search" => {
                    let query = text_arg(&arguments, "query", "what to search for")?;
                    let path = format!("search/issues?per_page=10&q={}", encode_component(query));
                    let (body, mut output) = github(ctx, Method::GET, &path, None).await?;
                    let items = body["items"].as_array().cloned().unwrap_or_default();
                    let lines: Vec<String> = items
                        .iter()
                        .map(|i| {
                            format!(
                                "#{} {} ({}) {}",
                                i["number"],
                                i["title"].as_str().unwrap_or_default(),
                                i["state"].as_str().unwrap_or_default(),
                                i["html_url"].as_str().unwrap_or_default()
                            )
                        })
                        .collect();
                    output.content = format!(
                        "{} found{}{}",
                        body["total_count"].as_u64().unwrap_or(items.len() as u64),
                        if lines.is_empty() { "." } else { ":\n" },
                        lines.join("\n")
                    );
                    Ok(output)
                }
                "issue" => {
                    let repo = repo(&arguments)?;
                    let path = format!("repos/{repo}/issues/{}", number(&arguments)?);
                    let (i, mut output) = github(ctx, Method::GET, &path, None).await?;
                    let kind = if i.get("pull_request").is_some() {
                        "Pull request"
                    } else {
                        "Issue"
                    };
                    output.content = format!(
                        "{kind} #{} “{}” ({}), by {}: {}\n\n{}",
                        i["number"],
                        i["title"].as_str().unwrap_or_default(),
                        i["state"].as_str().unwrap_or_default(),
                        i["user"]["login"].as_str().unwrap_or_default(),
                        i["html_url"].as_str().unwrap_or_default(),
                        cut(i["body"].as_str().unwrap_or_default(), 8_000)
                    );
                    Ok(output)
                }
                "file" => {
                    let repo = repo(&arguments)?;
                    let file = text_arg(&arguments, "path", "the file's path")?;
                    if file
                        .split('/')
                        .any(|p| p.is_empty() || p == "." || p == "..")
                    {
                        return Err(ToolError::Invalid(format!("“{file}” is not a file path.")));
                    }
                    let segments: Vec<String> = file.split('/').map(encode_component).collect();
                    let mut path = format!("repos/{repo}/contents/{}", segments.join("/"));
                    if let Some(reference) = arguments["ref"].as_str().filter(|r| !r.is_empty()) {
                        path.push_str(&format!("?ref={}", encode_component(reference)));
                    }
                    let (f, mut output) = github(ctx, Method::GET, &path, None).await?;
                    if f["type"] != "file" {
                        return Err(ToolError::Failed(format!("“{file}” is not a file.")));
                    }
                    use base64::Engine as _;
                    let raw: String = f["content"]
                        .as_str()
                        .unwrap_or_default()
                        .chars()
                        .filter(|c| !c.is_whitespace())
                        .collect();
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(raw)
                        .map_err(|_| {
                            ToolError::Failed("GitHub sent a file Enclave could not read.".into())
                        })?;
                    output.content = String::from_utf8(bytes)
                        .map_err(|_| ToolError::Failed(format!("“{file}” is not a text file.")))?;
                    Ok(output)
                }
                other => Err(ToolError::Invalid(format!(
                    "The action is search, issue or file, not “{other}”."
                ))),
            }
        })
    }
}

pub struct GithubWrite;

impl Tool for GithubWrite {
    fn decl(&self) -> ToolDecl {
        decl(
            "github_write",
            json!({"type": "object", "properties": {
                "action": {"type": "string", "enum": ["create_issue", "comment"]},
                "repo": {"type": "string", "description": "owner/name"},
                "title": {"type": "string", "description": "For create_issue: the title."},
                "body": {"type": "string", "description": "The issue's text, or the comment."},
                "number": {"type": "integer", "description": "For comment: the issue or pull request number."}
            }, "required": ["action", "repo", "body"]}),
        )
    }

    fn side_effects(&self) -> bool {
        true
    }

    fn call<'a>(
        &'a self,
        ctx: &'a ToolCtx,
        arguments: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let repo = repo(&arguments)?;
            let body = text_arg(&arguments, "body", "the text")?;
            match arguments["action"].as_str().unwrap_or_default() {
                "create_issue" => {
                    let title = text_arg(&arguments, "title", "the issue's title")?;
                    let (issue, mut output) = github(
                        ctx,
                        Method::POST,
                        &format!("repos/{repo}/issues"),
                        Some(json!({"title": title, "body": body})),
                    )
                    .await?;
                    output.content = format!(
                        "Created issue #{}: {}",
                        issue["number"],
                        issue["html_url"].as_str().unwrap_or_default()
                    );
                    Ok(output)
                }
                "comment" => {
                    let path = format!("repos/{repo}/issues/{}/comments", number(&arguments)?);
                    let (comment, mut output) =
                        github(ctx, Method::POST, &path, Some(json!({"body": body}))).await?;
                    output.content = format!(
                        "Commented: {}",
                        comment["html_url"].as_str().unwrap_or_default()
                    );
                    Ok(output)
                }
                other => Err(ToolError::Invalid(format!(
                    "The action is create_issue or comment, not “{other}”."
                ))),
            }
        })
    }
}

// ---- Slack -------------------------------------------------------------------

async fn slack(
    ctx: &ToolCtx,
    method: Method,
    api_method: &str,
    body: Option<Value>,
) -> Result<(Value, ToolOutput), ToolError> {
    let credential = connection(ctx, ConnectionKind::Slack).await?;
    let headers = slack_headers(credential.expose()).map_err(ToolError::Failed)?;
    let url = format!(
        "{}/{}",
        ctx.state.settings.service_urls.slack.trim_end_matches('/'),
        api_method
    );
    let (fetched, sent) = request(ctx, method, &url, headers, body).await?;
    let json = json_of(&fetched);
    if json["ok"] != true {
        return Err(ToolError::Failed(slack_error(
            fetched.status.as_u16(),
            &json,
        )));
    }
    let output = ToolOutput {
        content: String::new(),
        target: host_of(&url),
        bytes_sent: sent,
        bytes_received: fetched.body.len() as u64,
    };
    Ok((json, output))
}

/// A Slack channel id (C…, G…) or `#name`, checked.
fn channel(arguments: &Value) -> Result<String, ToolError> {
    let channel = text_arg(arguments, "channel", "the channel id, like C0123ABCD")?;
    let bare = channel.trim_start_matches('#');
    if bare.is_empty()
        || bare.len() > 80
        || !bare
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
    {
        return Err(ToolError::Invalid(format!("“{channel}” is not a channel.")));
    }
    Ok(channel.to_owned())
}

pub struct SlackRead;

impl Tool for SlackRead {
    fn decl(&self) -> ToolDecl {
        decl(
            "slack_read",
            json!({"type": "object", "properties": {
                "action": {"type": "string", "enum": ["channels", "history"],
                    "description": "channels: list the channels; history: a channel's recent messages."},
                "channel": {"type": "string", "description": "For history: the channel id."},
                "limit": {"type": "integer", "description": "For history: how many messages (default 20, at most 100)."}
            }, "required": ["action"]}),
        )
    }

    fn side_effects(&self) -> bool {
        false
    }

    fn call<'a>(
        &'a self,
        ctx: &'a ToolCtx,
        arguments: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            match arguments["action"].as_str().unwrap_or_default() {
                "channels" => {
                    let (body, mut output) = slack(
                        ctx,
                        Method::GET,
                        "conversations.list?limit=200&exclude_archived=true",
                        None,
                    )
                    .await?;
                    let lines: Vec<String> = body["channels"]
                        .as_array()
                        .map(|c| {
                            c.iter()
                                .map(|c| {
                                    format!(
                                        "#{} ({})",
                                        c["name"].as_str().unwrap_or_default(),
                                        c["id"].as_str().unwrap_or_default()
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    output.content = if lines.is_empty() {
                        "No channels.".into()
                    } else {
                        lines.join("\n")
                    };
                    Ok(output)
                }
                "history" => {
                    let channel = channel(&arguments)?;
                    let limit = arguments["limit"].as_u64().unwrap_or(20).clamp(1, 100);
                    let (body, mut output) = slack(
                        ctx,
                        Method::GET,
                        &format!(
                            "conversations.history?channel={}&limit={limit}",
                            encode_component(&channel)
                        ),
                        None,
                    )
                    .await?;
                    let mut lines: Vec<String> = body["messages"]
                        .as_array()
                        .map(|m| {
                            m.iter()
                                .map(|m| {
                                    format!(
                                        "{}: {}",
                                        m["user"].as_str().unwrap_or("?"),
                                        cut(m["text"].as_str().unwrap_or_default(), 2_000)
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    // Slack sends the newest first; read them in order.
                    lines.reverse();
                    output.content = if lines.is_empty() {
                        "No messages.".into()
                    } else {
                        lines.join("\n")
                    };
                    Ok(output)
                }
                other => Err(ToolError::Invalid(format!(
                    "The action is channels or history, not “{other}”."
                ))),
            }
        })
    }
}

pub struct SlackPost;

impl Tool for SlackPost {
    fn decl(&self) -> ToolDecl {
        decl(
            "slack_post",
            json!({"type": "object", "properties": {
                "channel": {"type": "string", "description": "The channel id, like C0123ABCD."},
                "text": {"type": "string", "description": "The message (Slack mrkdwn)."}
            }, "required": ["channel", "text"]}),
        )
    }

    fn side_effects(&self) -> bool {
        true
    }

    fn call<'a>(
        &'a self,
        ctx: &'a ToolCtx,
        arguments: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let channel = channel(&arguments)?;
            let text = text_arg(&arguments, "text", "the message")?;
            if text.chars().count() > 40_000 {
                return Err(ToolError::Invalid(
                    "The message is too long for Slack.".into(),
                ));
            }
            let (body, mut output) = slack(
                ctx,
                Method::POST,
                "chat.postMessage",
                Some(json!({"channel": channel, "text": text})),
            )
            .await?;
            output.content = format!(
                "Posted to {} (message {}).",
                body["channel"].as_str().unwrap_or(&channel),
                body["ts"].as_str().unwrap_or("?")
            );
            Ok(output)
        })
    }
}

// ---- Telegram ----------------------------------------------------------------

pub struct TelegramSend;

impl Tool for TelegramSend {
    fn decl(&self) -> ToolDecl {
        decl(
            "telegram_send",
            json!({"type": "object", "properties": {
                "chat_id": {"type": "string", "description": "The chat's id (a number), or @channelname."},
                "text": {"type": "string", "description": "The message."}
            }, "required": ["chat_id", "text"]}),
        )
    }

    fn side_effects(&self) -> bool {
        true
    }

    fn call<'a>(
        &'a self,
        ctx: &'a ToolCtx,
        arguments: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let chat = match &arguments["chat_id"] {
                Value::Number(n) => n.to_string(),
                other => other.as_str().unwrap_or_default().trim().to_owned(),
            };
            let valid = chat.parse::<i64>().is_ok()
                || (chat.starts_with('@')
                    && chat.len() > 1
                    && chat[1..]
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_'));
            if !valid {
                return Err(ToolError::Invalid(
                    "Give the chat id (a number) or @channelname.".into(),
                ));
            }
            let text = text_arg(&arguments, "text", "the message")?;
            if text.chars().count() > 4096 {
                return Err(ToolError::Invalid(
                    "A Telegram message has at most 4096 characters.".into(),
                ));
            }
            let credential = connection(ctx, ConnectionKind::Telegram).await?;
            let url = telegram_url(
                &ctx.state.settings.service_urls.telegram,
                credential.expose(),
                "sendMessage",
            );
            let (fetched, sent) = request(
                ctx,
                Method::POST,
                &url,
                HeaderMap::new(),
                Some(json!({"chat_id": chat, "text": text})),
            )
            .await?;
            let body = json_of(&fetched);
            if body["ok"] != true {
                return Err(ToolError::Failed(telegram_error(&body)));
            }
            Ok(ToolOutput {
                content: format!("Sent to {chat} (message {}).", body["result"]["message_id"]),
                target: host_of(&url),
                bytes_sent: sent,
                bytes_received: fetched.body.len() as u64,
            })
        })
    }
}
