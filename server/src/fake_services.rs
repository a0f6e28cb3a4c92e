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
//
// A stateful Bot API: per token, a webhook (url and secret) or a queue of
// updates for getUpdates (long polling, offsets confirming the earlier ones,
// 409 while a webhook is set), and every chat's messages with their edits.
// Texts over 4,096 characters, an unchanged edit and MarkdownV2 with an
// unescaped reserved character are refused as Telegram refuses them. The
// test controls: `POST /fakes/telegram/{token}/updates` (a user writes:
// posted to the webhook with its secret header, `repeat` times, or queued)
// and `GET /fakes/telegram/{token}/chats/{chat}` (what the chat shows).

#[derive(Default)]
struct BotState {
    webhook: Option<(String, String)>,
    queued: Vec<Value>,
    next_update: i64,
    next_message: i64,
    chats: std::collections::HashMap<i64, Vec<Value>>,
}

#[derive(Clone, Default)]
struct TelegramFake {
    bots: Arc<Mutex<std::collections::HashMap<String, BotState>>>,
    arrived: Arc<tokio::sync::Notify>,
}

#[derive(Clone, Default)]
struct Fakes {
    sent: Sent,
    telegram: TelegramFake,
}

impl axum::extract::FromRef<Fakes> for Sent {
    fn from_ref(fakes: &Fakes) -> Sent {
        fakes.sent.clone()
    }
}

impl axum::extract::FromRef<Fakes> for TelegramFake {
    fn from_ref(fakes: &Fakes) -> TelegramFake {
        fakes.telegram.clone()
    }
}

fn tg_error(status: StatusCode, description: &str) -> Response {
    (
        status,
        Json(json!({"ok": false, "error_code": status.as_u16(), "description": description})),
    )
        .into_response()
}

fn tg_ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

/// Telegram's MarkdownV2 rules, as far as Enclave's formatting uses them:
/// the reserved characters escaped outside entities, entities closed, only
/// the backtick and backslash escaped in code, `)` in a link's address.
fn markdown_v2_error(text: &str) -> Option<String> {
    const RESERVED: &str = "_*[]()~`>#+-=|{}.!";
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut open) = (0, Vec::<char>::new());
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            i += 2;
            continue;
        }
        if c == '`' {
            let fence = chars[i..].starts_with(&['`', '`', '`']);
            let step = if fence { 3 } else { 1 };
            let mut j = i + step;
            loop {
                if j >= chars.len() {
                    return Some("can't find end of code entity".into());
                }
                if chars[j] == '\\' {
                    j += 2;
                    continue;
                }
                if chars[j] == '`' && (!fence || chars[j..].starts_with(&['`', '`', '`'])) {
                    break;
                }
                j += 1;
            }
            i = j + step;
            continue;
        }
        match c {
            '*' | '_' | '~' => {
                if open.last() == Some(&c) {
                    open.pop();
                } else {
                    open.push(c);
                }
            }
            '[' => open.push('['),
            ']' if open.last() == Some(&'[') => {
                open.pop();
                if chars.get(i + 1) == Some(&'(') {
                    let mut j = i + 2;
                    while j < chars.len() && chars[j] != ')' {
                        j += if chars[j] == '\\' { 2 } else { 1 };
                    }
                    if j >= chars.len() {
                        return Some("can't find end of URL".into());
                    }
                    i = j;
                }
            }
            c if RESERVED.contains(c) => {
                return Some(format!(
                    "Character '{c}' is reserved and must be escaped with the preceding '\\'"
                ));
            }
            _ => {}
        }
        i += 1;
    }
    open.last()
        .map(|c| format!("can't find end of the entity starting with '{c}'"))
}

/// What a text may not be, as Telegram says it.
fn text_error(body: &Value) -> Option<String> {
    let text = body["text"].as_str().unwrap_or("");
    if text.trim().is_empty() {
        return Some("Bad Request: message text is empty".into());
    }
    if text.chars().count() > 4096 {
        return Some("Bad Request: message is too long".into());
    }
    if body["parse_mode"] == "MarkdownV2" {
        return markdown_v2_error(text).map(|e| format!("Bad Request: can't parse entities: {e}"));
    }
    None
}

async fn telegram(
    State(sent): State<Sent>,
    State(fake): State<TelegramFake>,
    Path((bot, method)): Path<(String, String)>,
    body: Option<Json<Value>>,
) -> Response {
    let Some(token) = bot.strip_prefix("bot").map(str::to_owned) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if token.is_empty() || token.contains("bad") {
        return tg_error(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let body = body.map(|Json(b)| b).unwrap_or_default();
    if method == "getUpdates" {
        return get_updates(&fake, &token, &body).await;
    }
    let mut bots = fake.bots.lock().unwrap();
    let bot = bots.entry(token).or_default();
    match method.as_str() {
        "getMe" => tg_ok(json!({"id": 1, "is_bot": true, "first_name": "Fake",
            "username": "fake_enclave_bot"})),
        "setWebhook" => {
            let url = body["url"].as_str().unwrap_or("");
            if !url.starts_with("http") {
                return tg_error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request: bad webhook: invalid URL",
                );
            }
            let secret = body["secret_token"].as_str().unwrap_or("").to_owned();
            bot.webhook = Some((url.to_owned(), secret));
            tg_ok(json!(true))
        }
        "deleteWebhook" => {
            bot.webhook = None;
            tg_ok(json!(true))
        }
        "getWebhookInfo" => tg_ok(json!({
            "url": bot.webhook.as_ref().map(|(u, _)| u.clone()).unwrap_or_default(),
            "pending_update_count": bot.queued.len(),
        })),
        "sendMessage" => {
            let chat = match &body["chat_id"] {
                // A channel's @name: one made-up chat for all of them.
                Value::String(s) if s.starts_with('@') => -100,
                Value::String(s) => s.parse().unwrap_or(i64::MIN),
                other => other.as_i64().unwrap_or(i64::MIN),
            };
            if chat == 404 || chat == i64::MIN {
                return tg_error(StatusCode::BAD_REQUEST, "Bad Request: chat not found");
            }
            if let Some(why) = text_error(&body) {
                return tg_error(StatusCode::BAD_REQUEST, &why);
            }
            sent.record(json!({"service": "telegram", "chat_id": body["chat_id"].to_string().trim_matches('"'), "text": body["text"]}));
            bot.next_message += 1;
            let message = json!({"message_id": bot.next_message, "date": 1700000000,
                "chat": {"id": chat, "type": "private"}, "text": body["text"],
                "parse_mode": body["parse_mode"], "edits": 0});
            bot.chats.entry(chat).or_default().push(message.clone());
            tg_ok(message)
        }
        "editMessageText" => {
            let chat = body["chat_id"].as_i64().unwrap_or_default();
            let id = body["message_id"].as_i64().unwrap_or_default();
            let Some(message) = bot
                .chats
                .get_mut(&chat)
                .and_then(|m| m.iter_mut().find(|m| m["message_id"] == id))
            else {
                return tg_error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request: message to edit not found",
                );
            };
            if message["text"] == body["text"] && message["parse_mode"] == body["parse_mode"] {
                return tg_error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message",
                );
            }
            if let Some(why) = text_error(&body) {
                return tg_error(StatusCode::BAD_REQUEST, &why);
            }
            message["text"] = body["text"].clone();
            message["parse_mode"] = body["parse_mode"].clone();
            message["edits"] = json!(message["edits"].as_i64().unwrap_or(0) + 1);
            tg_ok(message.clone())
        }
        _ => tg_error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// Updates from `offset` on (confirming the earlier ones), waiting up to
/// `timeout` seconds for one.
async fn get_updates(fake: &TelegramFake, token: &str, body: &Value) -> Response {
    let offset = body["offset"].as_i64().unwrap_or(0);
    let timeout = body["timeout"].as_u64().unwrap_or(0).min(50);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(timeout);
    loop {
        let arrived = fake.arrived.notified();
        {
            let mut bots = fake.bots.lock().unwrap();
            let bot = bots.entry(token.to_owned()).or_default();
            if bot.webhook.is_some() {
                return tg_error(
                    StatusCode::CONFLICT,
                    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
                );
            }
            bot.queued
                .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
            if !bot.queued.is_empty() || tokio::time::Instant::now() >= deadline {
                return tg_ok(Value::Array(bot.queued.clone()));
            }
        }
        let _ = tokio::time::timeout_at(deadline, arrived).await;
    }
}

/// A user writes to a bot: the update goes to its webhook (with the secret
/// header, `repeat` times, as Telegram retries) or waits for getUpdates.
async fn telegram_user_writes(
    State(fake): State<TelegramFake>,
    Path(token): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let (update, webhook) = {
        let mut bots = fake.bots.lock().unwrap();
        let bot = bots.entry(token).or_default();
        bot.next_update += 1;
        bot.next_message += 1;
        let from = body["from"].as_i64().unwrap_or(1);
        let chat = body["chat"].as_i64().unwrap_or(from);
        let mut message = json!({"message_id": bot.next_message, "date": 1700000000,
            "from": {"id": from, "is_bot": false, "first_name": "Tester"},
            "chat": {"id": chat, "type": "private"}});
        if let Some(text) = body["text"].as_str() {
            message["text"] = json!(text);
        }
        let update = json!({"update_id": 1000 + bot.next_update, "message": message});
        if bot.webhook.is_none() {
            bot.queued.push(update.clone());
        }
        (update, bot.webhook.clone())
    };
    let Some((url, secret)) = webhook else {
        fake.arrived.notify_waiters();
        return Json(json!({"queued": update["update_id"]})).into_response();
    };
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..body["repeat"].as_u64().unwrap_or(1).clamp(1, 5) {
        let status = client
            .post(&url)
            .header("x-telegram-bot-api-secret-token", &secret)
            .json(&update)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        statuses.push(status);
    }
    Json(json!({"delivered": statuses, "update_id": update["update_id"]})).into_response()
}

/// What a chat shows: its messages, each with its text and edit count.
async fn telegram_chat(
    State(fake): State<TelegramFake>,
    Path((token, chat)): Path<(String, i64)>,
) -> Json<Value> {
    let bots = fake.bots.lock().unwrap();
    let messages = bots
        .get(&token)
        .and_then(|b| b.chats.get(&chat))
        .cloned()
        .unwrap_or_default();
    Json(json!({"messages": messages}))
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
        .route(
            "/fakes/telegram/{token}/updates",
            post(telegram_user_writes),
        )
        .route("/fakes/telegram/{token}/chats/{chat}", get(telegram_chat))
        .route("/fakes/sent", get(list_sent))
        .with_state(Fakes::default())
}
