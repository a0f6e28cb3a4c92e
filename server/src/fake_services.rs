//! Fakes of the services the built-in tools use, as real HTTP servers
//! speaking their real APIs (paths, headers, JSON shapes and error shapes):
//! GitHub REST v3 under `/github`, the Slack Web API under `/slack`, the
//! Telegram Bot API under `/telegram`. Served with the fake model provider
//! (`fake_provider::router` merges this), for the tests and `make dev`.
//!
//! Tokens script the answers: one containing `bad` is rejected as each
//! service rejects it, one starting with `limited` hits the rate limit.
//! Repository `octo/missing`, Slack channel `C404` and Telegram chat `404`
//! do not exist. `GET /fakes/sent` lists what was created or sent.

use std::sync::{Arc, Mutex};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Sent(Arc<Mutex<Vec<Value>>>);

impl Sent {
    fn record(&self, what: Value) {
        if let Ok(mut sent) = self.0.lock() {
            sent.push(what);
        }
    }
}

fn bearer(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned()
}

// ---- GitHub ------------------------------------------------------------------

/// The refusal, if the request's token is not accepted.
fn github_auth(headers: &HeaderMap) -> Option<Response> {
    let token = bearer(headers);
    if headers.get(header::USER_AGENT).is_none() {
        // GitHub refuses requests without a User-Agent.
        return Some((
            StatusCode::FORBIDDEN,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header",
        )
            .into_response());
    }
    if token.is_empty() || token.contains("bad") {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"message": "Bad credentials",
                        "documentation_url": "https://docs.github.com/rest", "status": "401"})),
            )
                .into_response(),
        );
    }
    if token.starts_with("limited") {
        let mut res = (
            StatusCode::FORBIDDEN,
            Json(json!({"message": "API rate limit exceeded for user ID 1.",
                        "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"})),
        )
            .into_response();
        res.headers_mut()
            .insert("x-ratelimit-remaining", "0".parse().unwrap());
        return Some(res);
    }
    None
}

fn github_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(
            json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest",
                    "status": "404"}),
        ),
    )
        .into_response()
}

fn issue_json(owner: &str, repo: &str, number: u64, title: &str, body: &str) -> Value {
    json!({
        "number": number, "title": title, "state": "open", "body": body,
        "user": {"login": "octocat"},
        "html_url": format!("https://github.com/{owner}/{repo}/issues/{number}"),
    })
}

async fn github_user(headers: HeaderMap) -> Response {
    match github_auth(&headers) {
        Some(res) => res,
        None => Json(json!({"login": "octocat", "id": 1, "type": "User"})).into_response(),
    }
}

async fn github_search(headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    if let Some(res) = github_auth(&headers) {
        return res;
    }
    let query = q
        .iter()
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    Json(
        json!({"total_count": 1, "incomplete_results": false, "items": [
            issue_json("octo", "demo", 7, &format!("Found by: {query}"), "Body")
        ]}),
    )
    .into_response()
}

async fn github_issue(
    headers: HeaderMap,
    Path((owner, repo, number)): Path<(String, String, u64)>,
) -> Response {
    if let Some(res) = github_auth(&headers) {
        return res;
    }
    if repo == "missing" {
        return github_not_found();
    }
    Json(issue_json(
        &owner,
        &repo,
        number,
        "Crash on start",
        "It crashes when started.",
    ))
    .into_response()
}

async fn github_file(
    headers: HeaderMap,
    Path((_owner, repo, path)): Path<(String, String, String)>,
) -> Response {
    use base64::Engine as _;
    if let Some(res) = github_auth(&headers) {
        return res;
    }
    if repo == "missing" || path.contains("missing") {
        return github_not_found();
    }
    let content = format!("# {path}\n\nHello from the fake repository.\n");
    let encoded = base64::engine::general_purpose::STANDARD.encode(content);
    // GitHub wraps the base64 at 60 characters.
    let wrapped: Vec<String> = encoded
        .as_bytes()
        .chunks(60)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    Json(json!({"type": "file", "encoding": "base64", "path": path,
                "content": wrapped.join("\n")}))
    .into_response()
}

async fn github_create_issue(
    State(sent): State<Sent>,
    headers: HeaderMap,
    Path((owner, repo)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(res) = github_auth(&headers) {
        return res;
    }
    if repo == "missing" {
        return github_not_found();
    }
    let Some(title) = body["title"].as_str().filter(|t| !t.is_empty()) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": "Validation Failed",
                        "errors": [{"resource": "Issue", "code": "missing_field", "field": "title"}]})),
        )
            .into_response();
    };
    sent.record(json!({"service": "github", "action": "create_issue",
                       "repo": format!("{owner}/{repo}"), "title": title, "body": body["body"]}));
    (
        StatusCode::CREATED,
        Json(issue_json(
            &owner,
            &repo,
            42,
            title,
            body["body"].as_str().unwrap_or_default(),
        )),
    )
        .into_response()
}

async fn github_comment(
    State(sent): State<Sent>,
    headers: HeaderMap,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    Json(body): Json<Value>,
) -> Response {
    if let Some(res) = github_auth(&headers) {
        return res;
    }
    if repo == "missing" {
        return github_not_found();
    }
    sent.record(json!({"service": "github", "action": "comment",
                       "repo": format!("{owner}/{repo}"), "number": number, "body": body["body"]}));
    (
        StatusCode::CREATED,
        Json(json!({"id": 1, "body": body["body"],
                    "html_url": format!("https://github.com/{owner}/{repo}/issues/{number}#issuecomment-1")})),
    )
        .into_response()
}

// ---- Slack -------------------------------------------------------------------

/// The refusal, if the request's token is not accepted.
fn slack_auth(headers: &HeaderMap) -> Option<Response> {
    let token = bearer(headers);
    if token.is_empty() {
        return Some(Json(json!({"ok": false, "error": "not_authed"})).into_response());
    }
    if token.contains("bad") {
        // Slack answers 200 with ok: false.
        return Some(Json(json!({"ok": false, "error": "invalid_auth"})).into_response());
    }
    if token.starts_with("limited") {
        let mut res = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"ok": false, "error": "ratelimited"})),
        )
            .into_response();
        res.headers_mut()
            .insert(header::RETRY_AFTER, "30".parse().unwrap());
        return Some(res);
    }
    None
}

async fn slack_auth_test(headers: HeaderMap) -> Response {
    match slack_auth(&headers) {
        Some(res) => res,
        None => Json(
            json!({"ok": true, "url": "https://fake.slack.com/", "team": "Fake Team",
                              "user": "enclave-bot", "team_id": "T1", "user_id": "U1"}),
        )
        .into_response(),
    }
}

async fn slack_channels(headers: HeaderMap) -> Response {
    match slack_auth(&headers) {
        Some(res) => res,
        None => Json(json!({"ok": true, "channels": [
            {"id": "C0GENERAL", "name": "general", "is_channel": true},
            {"id": "C0RANDOM", "name": "random", "is_channel": true}
        ], "response_metadata": {"next_cursor": ""}}))
        .into_response(),
    }
}

async fn slack_history(headers: HeaderMap, Query(q): Query<Vec<(String, String)>>) -> Response {
    if let Some(res) = slack_auth(&headers) {
        return res;
    }
    let channel = q
        .iter()
        .find(|(k, _)| k == "channel")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    if channel == "C404" {
        return Json(json!({"ok": false, "error": "channel_not_found"})).into_response();
    }
    // Newest first, as Slack sends them.
    Json(json!({"ok": true, "messages": [
        {"type": "message", "user": "U2", "text": "Second message", "ts": "1700000002.000200"},
        {"type": "message", "user": "U1", "text": "First message", "ts": "1700000001.000100"}
    ], "has_more": false}))
    .into_response()
}

async fn slack_post(
    State(sent): State<Sent>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(res) = slack_auth(&headers) {
        return res;
    }
    let channel = body["channel"].as_str().unwrap_or_default().to_owned();
    if channel == "C404" {
        return Json(json!({"ok": false, "error": "channel_not_found"})).into_response();
    }
    sent.record(json!({"service": "slack", "channel": channel, "text": body["text"]}));
    Json(
        json!({"ok": true, "channel": channel, "ts": "1700000003.000300",
                "message": {"text": body["text"], "user": "U1"}}),
    )
    .into_response()
}

// ---- Telegram ----------------------------------------------------------------

async fn telegram(
    State(sent): State<Sent>,
    Path((bot, method)): Path<(String, String)>,
    body: Option<Json<Value>>,
) -> Response {
    let Some(token) = bot.strip_prefix("bot") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if token.is_empty() || token.contains("bad") {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"ok": false, "error_code": 401, "description": "Unauthorized"})),
        )
            .into_response();
    }
    match method.as_str() {
        "getMe" => Json(json!({"ok": true, "result": {"id": 1, "is_bot": true,
            "first_name": "Fake", "username": "fake_enclave_bot"}}))
        .into_response(),
        "sendMessage" => {
            let body = body.map(|Json(b)| b).unwrap_or_default();
            let chat = match &body["chat_id"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if chat == "404" {
                return (
                    StatusCode::BAD_REQUEST,
                    Json(json!({"ok": false, "error_code": 400,
                                "description": "Bad Request: chat not found"})),
                )
                    .into_response();
            }
            sent.record(json!({"service": "telegram", "chat_id": chat, "text": body["text"]}));
            Json(
                json!({"ok": true, "result": {"message_id": 7, "date": 1700000000,
                "chat": {"id": chat, "type": "private"}, "text": body["text"]}}),
            )
            .into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            Json(json!({"ok": false, "error_code": 404, "description": "Not Found"})),
        )
            .into_response(),
    }
}

async fn list_sent(State(sent): State<Sent>) -> Json<Value> {
    Json(Value::Array(
        sent.0.lock().map(|s| s.clone()).unwrap_or_default(),
    ))
}

pub fn router() -> Router {
    Router::new()
        .route("/github/user", get(github_user))
        .route("/github/search/issues", get(github_search))
        .route(
            "/github/repos/{owner}/{repo}/issues",
            post(github_create_issue),
        )
        .route(
            "/github/repos/{owner}/{repo}/issues/{number}",
            get(github_issue),
        )
        .route(
            "/github/repos/{owner}/{repo}/issues/{number}/comments",
            post(github_comment),
        )
        .route(
            "/github/repos/{owner}/{repo}/contents/{*path}",
            get(github_file),
        )
        .route("/slack/auth.test", post(slack_auth_test))
        .route("/slack/conversations.list", get(slack_channels))
        .route("/slack/conversations.history", get(slack_history))
        .route("/slack/chat.postMessage", post(slack_post))
        .route("/telegram/{bot}/{method}", get(telegram).post(telegram))
        .route("/fakes/sent", get(list_sent))
        .with_state(Sent::default())
}
