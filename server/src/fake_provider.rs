//! A fake model provider that is a real HTTP server: OpenAI Chat Completions,
//! Anthropic Messages and Gemini `streamGenerateContent` over server-sent
//! events, in each provider's documented wire format, plus their model
//! listings. Used by the Rust tests (and, next, the browser tests, the
//! benchmarks and the offline demo model).
//!
//! Behaviour is scripted by the model name, so each request chooses its own:
//! `fake` alone streams `Hello from the fake model.`; options follow a `:`,
//! comma-separated, e.g. `fake:tokens=20,delay_ms=5,error_after=3`:
//!
//! | option | effect |
//! |---|---|
//! | `reply=word_word` | reply text (underscores become spaces) |
//! | `tokens=N` | reply with N numbered tokens instead |
//! | `delay_ms=N` | pause between tokens |
//! | `first_delay_ms=N` | pause before the first token |
//! | `error_after=N` | after N tokens, the provider's in-stream error |
//! | `drop_after=N` | after N tokens, cut the connection |
//! | `garbage_after=N` | after N tokens, an event that is not JSON, then cut |
//! | `stall_after=N` | after N tokens, send nothing more (for two minutes) |
//! | `status=N` | answer with HTTP status N and the provider's error body |
//! | `fail_first=N` | with `status`, fail only the first N requests for this model name |
//! | `retry_after=N` | add `Retry-After: N` to an error answer |
//! | `tool=name` | call tool `name` (`a+b`: two calls at once), with the user's message as arguments when it is a JSON object (else `{"city":"Paris"}`); once the results come back, reply `The tools said: …` |
//! | `loop` | with `tool`, call again even after the results |
//! | `echo` | reply `You said: ` and the last user message |
//! | `offered` | reply `Offered: ` and the names of the tools offered, comma-separated |
//! | `ping_ms=N` | fill every pause with a keep-alive ping each N ms |
//! | `endless_error` | with `status`, an error body that never ends |
//!
//! Where the model name cannot carry a script (Gemini allows only letters,
//! digits, `.`, `-` and `_`), a system prompt that starts with `fake:` does.
//!
//! Numbers are bounded (at most `MAX_TOKENS` tokens, `MAX_DELAY_MS` pauses).
//! `GET /requests/{model}` says how many completions were asked of a model
//! name (tests use it to prove a request was not retried). The
//! OpenAI-compatible routes (`/compat/v1`) also answer without a key, as
//! Ollama does, and report whether one was sent (`/compat/v1/last-auth`).
//!
//! Keys: one containing `bad` is rejected (each provider's 401/400 body,
//! echoing the key as OpenAI does); for the model listings, `quota-…` is out
//! of quota and `down-…` gets a 503.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

#[derive(Debug, Clone, Default)]
struct Script {
    reply: Option<String>,
    tokens: Option<usize>,
    delay: Duration,
    first_delay: Duration,
    error_after: Option<usize>,
    drop_after: Option<usize>,
    garbage_after: Option<usize>,
    stall_after: Option<usize>,
    status: Option<u16>,
    fail_first: Option<u32>,
    retry_after: Option<u64>,
    /// Tools to call (several: in parallel), with `args`.
    tools: Vec<String>,
    args: Value,
    /// Call the tools again even after their results came back.
    looping: bool,
    echo: bool,
    offered: bool,
    ping: Option<Duration>,
    endless_error: bool,
}

/// The most tokens a scripted reply has.
pub const MAX_TOKENS: u64 = 100_000;
/// The longest scripted pause.
pub const MAX_DELAY_MS: u64 = 120_000;

/// The offline demo model's answer (model names starting with `demo`).
pub const DEMO_INTRO: &str = "This is Enclave's offline demo model: it streams a canned reply so you \
can try chat without an API key. Create an agent on a real provider for real answers. Ask it the \
time, or to work out 6*7, and it calls a tool. You said: ";

impl Script {
    fn parse(model: &str) -> Script {
        if model.starts_with("demo") {
            return Script {
                delay: Duration::from_millis(40),
                ..Script::default()
            };
        }
        let mut script = Script::default();
        let options = model.split_once(':').map(|(_, o)| o).unwrap_or("");
        for option in options.split(',').filter(|o| !o.is_empty()) {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            // Every number is bounded: the demo model is reachable by any
            // user of a development server, and `tokens=99999999999` must
            // not become a reply that fills the memory.
            let number = |max: u64| value.parse::<u64>().unwrap_or(0).min(max);
            let millis = || Duration::from_millis(number(MAX_DELAY_MS));
            match key {
                "reply" => script.reply = Some(value.replace('_', " ")),
                "tokens" => script.tokens = Some(number(MAX_TOKENS) as usize),
                "delay_ms" => script.delay = millis(),
                "first_delay_ms" => script.first_delay = millis(),
                "error_after" => script.error_after = Some(number(MAX_TOKENS) as usize),
                "drop_after" => script.drop_after = Some(number(MAX_TOKENS) as usize),
                "garbage_after" => script.garbage_after = Some(number(MAX_TOKENS) as usize),
                "stall_after" => script.stall_after = Some(number(MAX_TOKENS) as usize),
                "status" => script.status = Some(number(599) as u16),
                "fail_first" => script.fail_first = Some(number(100) as u32),
                "retry_after" => script.retry_after = Some(number(300)),
                "tool" => {
                    script.tools = value
                        .split('+')
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect()
                }
                "loop" => script.looping = true,
                "echo" => script.echo = true,
                "offered" => script.offered = true,
                "ping_ms" => script.ping = Some(millis()).filter(|p| !p.is_zero()),
                "endless_error" => script.endless_error = true,
                _ => {}
            }
        }
        script
    }

    fn tokens(&self) -> Vec<String> {
        if let Some(n) = self.tokens {
            return (0..n).map(|i| format!("t{i} ")).collect();
        }
        let reply = self
            .reply
            .clone()
            .unwrap_or_else(|| "Hello from the fake model.".into());
        // Words with their following space, as providers tend to split.
        let mut tokens = Vec::new();
        let mut current = String::new();
        for c in reply.chars() {
            current.push(c);
            if c == ' ' {
                tokens.push(std::mem::take(&mut current));
            }
        }
        if !current.is_empty() {
            tokens.push(current);
        }
        tokens
    }
}

#[derive(Clone, Default)]
struct Fake {
    /// Error answers given per model name (for `fail_first`).
    seen: Arc<Mutex<HashMap<String, u32>>>,
    /// Completions asked per model name.
    requests: Arc<Mutex<HashMap<String, u32>>>,
    /// The `Authorization` header of the last compatible-server request.
    last_compat_auth: Arc<Mutex<Option<String>>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    OpenAi,
    Anthropic,
    Gemini,
}

impl Wire {
    fn error_body(self, status: u16) -> Value {
        match self {
            Wire::OpenAi => {
                let (kind, code) = match status {
                    401 => ("invalid_request_error", "invalid_api_key"),
                    404 => ("invalid_request_error", "model_not_found"),
                    429 => ("requests", "rate_limit_exceeded"),
                    _ => ("server_error", "server_error"),
                };
                json!({"error": {"message": "Scripted error from the fake.", "type": kind, "param": null, "code": code}})
            }
            Wire::Anthropic => {
                let kind = match status {
                    401 => "authentication_error",
                    404 => "not_found_error",
                    429 => "rate_limit_error",
                    529 => "overloaded_error",
                    _ => "api_error",
                };
                json!({"type": "error", "error": {"type": kind, "message": "Scripted error from the fake."}})
            }
            Wire::Gemini => {
                let state = match status {
                    401 | 403 => "PERMISSION_DENIED",
                    404 => "NOT_FOUND",
                    429 => "RESOURCE_EXHAUSTED",
                    _ => "UNAVAILABLE",
                };
                json!({"error": {"code": status, "message": "Scripted error from the fake.", "status": state}})
            }
        }
    }
}

fn sse(event: Option<&str>, data: &Value) -> Bytes {
    match event {
        Some(name) => Bytes::from(format!("event: {name}\ndata: {data}\n\n")),
        None => Bytes::from(format!("data: {data}\n\n")),
    }
}

/// The frames of one reply, in order; `None` marks where the script cuts
/// the connection.
fn frames(wire: Wire, model: &str, script: &Script) -> Vec<Option<Bytes>> {
    let tokens = script.tokens();
    let count = tokens.len() as u64;
    let mut out = Vec::new();
    let cut = |i: usize| {
        [
            script.drop_after,
            script.error_after,
            script.garbage_after,
            script.stall_after,
        ]
        .contains(&Some(i))
    };
    match wire {
        Wire::OpenAi => {
            let chunk = |delta: Value, finish: Value| {
                json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1_700_000_000,
                       "model": model, "system_fingerprint": null,
                       "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
            };
            out.push(Some(sse(
                None,
                &chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            )));
            for (i, token) in tokens.iter().enumerate() {
                if cut(i) {
                    return with_cut(wire, out, script);
                }
                out.push(Some(sse(
                    None,
                    &chunk(json!({"content": token}), Value::Null),
                )));
            }
            let mut finish = "stop";
            for (i, tool) in script.tools.iter().enumerate() {
                finish = "tool_calls";
                out.push(Some(sse(
                    None,
                    &chunk(
                        json!({"tool_calls": [{"index": i, "id": format!("call_fake{i}"), "type": "function",
                                           "function": {"name": tool, "arguments": ""}}]}),
                        Value::Null,
                    ),
                )));
                // The arguments arrive in two pieces, as they do from OpenAI.
                let arguments = script.args.to_string();
                let (head, tail) = arguments.split_at(arguments.len() / 2);
                for piece in [head, tail] {
                    out.push(Some(sse(
                        None,
                        &chunk(
                            json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                            Value::Null,
                        ),
                    )));
                }
            }
            out.push(Some(sse(None, &chunk(json!({}), json!(finish)))));
            out.push(Some(sse(None, &json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                "created": 1_700_000_000, "model": model, "choices": [],
                "usage": {"prompt_tokens": 11, "completion_tokens": count, "total_tokens": 11 + count}}))));
            out.push(Some(Bytes::from_static(b"data: [DONE]\n\n")));
        }
        Wire::Anthropic => {
            out.push(Some(sse(Some("message_start"), &json!({"type": "message_start", "message": {
                "id": "msg_fake", "type": "message", "role": "assistant", "content": [], "model": model,
                "stop_reason": null, "stop_sequence": null, "usage": {"input_tokens": 11, "output_tokens": 1}}}))));
            out.push(Some(sse(
                Some("content_block_start"),
                &json!({"type": "content_block_start", "index": 0,
                "content_block": {"type": "text", "text": ""}}),
            )));
            out.push(Some(sse(Some("ping"), &json!({"type": "ping"}))));
            for (i, token) in tokens.iter().enumerate() {
                if cut(i) {
                    return with_cut(wire, out, script);
                }
                if i == 1 {
                    // Clients must ignore event types they do not know.
                    out.push(Some(sse(
                        Some("future_event"),
                        &json!({"type": "future_event", "x": 1}),
                    )));
                }
                out.push(Some(sse(
                    Some("content_block_delta"),
                    &json!({"type": "content_block_delta", "index": 0,
                    "delta": {"type": "text_delta", "text": token}}),
                )));
            }
            out.push(Some(sse(
                Some("content_block_stop"),
                &json!({"type": "content_block_stop", "index": 0}),
            )));
            let mut stop = "end_turn";
            for (i, tool) in script.tools.iter().enumerate() {
                stop = "tool_use";
                let index = i + 1;
                out.push(Some(sse(Some("content_block_start"), &json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "tool_use", "id": format!("toolu_fake{i}"), "name": tool, "input": {}}}))));
                let arguments = script.args.to_string();
                let (head, tail) = arguments.split_at(arguments.len() / 2);
                for piece in [head, tail] {
                    out.push(Some(sse(
                        Some("content_block_delta"),
                        &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": piece}}),
                    )));
                }
                out.push(Some(sse(
                    Some("content_block_stop"),
                    &json!({"type": "content_block_stop", "index": index}),
                )));
            }
            out.push(Some(sse(Some("message_delta"), &json!({"type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": count}}))));
            out.push(Some(sse(
                Some("message_stop"),
                &json!({"type": "message_stop"}),
            )));
        }
        Wire::Gemini => {
            for (i, token) in tokens.iter().enumerate() {
                if cut(i) {
                    return with_cut(wire, out, script);
                }
                out.push(Some(sse(None, &json!({"candidates": [{"content": {"parts": [{"text": token}], "role": "model"}, "index": 0}],
                    "usageMetadata": {"promptTokenCount": 11, "candidatesTokenCount": i + 1, "totalTokenCount": 12 + i},
                    "modelVersion": model}))));
            }
            let parts: Vec<Value> = script
                .tools
                .iter()
                .map(|tool| json!({"functionCall": {"name": tool, "args": script.args}}))
                .collect();
            out.push(Some(sse(None, &json!({"candidates": [{"content": {"parts": parts, "role": "model"},
                "finishReason": "STOP", "index": 0}],
                "usageMetadata": {"promptTokenCount": 11, "candidatesTokenCount": count, "totalTokenCount": 11 + count},
                "modelVersion": model}))));
        }
    }
    out
}

/// Ends a reply early: the provider's in-stream error, an event that is
/// not JSON and a cut, a cut connection, or (a stall) nothing at all.
fn with_cut(wire: Wire, mut out: Vec<Option<Bytes>>, script: &Script) -> Vec<Option<Bytes>> {
    if script.error_after.is_some() {
        let frame = match wire {
            Wire::Anthropic => sse(Some("error"), &wire.error_body(529)),
            _ => sse(None, &wire.error_body(500)),
        };
        out.push(Some(frame));
    } else if script.garbage_after.is_some() {
        let frame: &'static [u8] = match wire {
            Wire::Anthropic => b"event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"delta\": \n\n",
            _ => b"data: {\"choices\": [{\"delta\": <html>\n\n",
        };
        out.push(Some(Bytes::from_static(frame)));
        out.push(None);
    } else if script.stall_after.is_none() {
        out.push(None);
    }
    out
}

/// The text of a message's content: a string, or the text of its blocks
/// (Anthropic) or parts (Gemini).
fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(|item| item["text"].as_str())
            .collect(),
        _ => String::new(),
    }
}

/// The text of the last user message in a request, in any of the three
/// formats.
fn last_message(wire: Wire, body: &Value) -> String {
    match wire {
        Wire::OpenAi | Wire::Anthropic => body["messages"]
            .as_array()
            .and_then(|m| {
                m.iter()
                    .rev()
                    .find(|m| m["role"] == "user" && !text_of(&m["content"]).is_empty())
            })
            .map(|m| text_of(&m["content"])),
        Wire::Gemini => body["contents"]
            .as_array()
            .and_then(|c| {
                c.iter()
                    .rev()
                    .find(|c| c["role"] == "user" && !text_of(&c["parts"]).is_empty())
            })
            .map(|c| text_of(&c["parts"])),
    }
    .unwrap_or_default()
}

/// The tool results that end a request (what the tools answered the
/// model's last calls), in any of the three formats.
fn tool_results(wire: Wire, body: &Value) -> Vec<String> {
    let none = Vec::new();
    match wire {
        Wire::OpenAi => {
            let messages = body["messages"].as_array().unwrap_or(&none);
            let mut results: Vec<String> = messages
                .iter()
                .rev()
                .take_while(|m| m["role"] == "tool")
                .map(|m| text_of(&m["content"]))
                .collect();
            results.reverse();
            results
        }
        Wire::Anthropic => body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_array())
            .map(|blocks| {
                blocks
                    .iter()
                    .filter(|b| b["type"] == "tool_result")
                    .map(|b| text_of(&b["content"]))
                    .collect()
            })
            .unwrap_or_default(),
        Wire::Gemini => body["contents"]
            .as_array()
            .and_then(|c| c.last())
            .and_then(|c| c["parts"].as_array())
            .map(|parts| {
                parts
                    .iter()
                    .filter_map(|p| p.get("functionResponse"))
                    .map(|r| {
                        let response = &r["response"];
                        response["result"]
                            .as_str()
                            .or_else(|| response["error"].as_str())
                            .unwrap_or_default()
                            .to_owned()
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

/// The names of the tools a request offers, in any of the three formats.
fn offered_tools(wire: Wire, body: &Value) -> Vec<String> {
    let names = |list: &Value, pointer: &str| -> Vec<String> {
        list.as_array()
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t.pointer(pointer).and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    match wire {
        Wire::OpenAi => names(&body["tools"], "/function/name"),
        Wire::Anthropic => names(&body["tools"], "/name"),
        Wire::Gemini => names(&body["tools"][0]["functionDeclarations"], "/name"),
    }
}

/// What the offline demo model says when it was given passages of the
/// user's documents (numbered `[1] name · place` then the text, as Enclave
/// sends them): the start of the first passage, cited.
fn demo_cited(system: &str) -> Option<String> {
    let start = system.find("\n\n[1] ")? + 2;
    let rest = &system[start..];
    let body = rest.split_once('\n')?.1;
    let body = body.split("\n\n[2] ").next().unwrap_or(body);
    let text: String = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join(" ");
    let mut excerpt: String = text.chars().take(280).collect();
    if let Some(end) = excerpt.find(". ") {
        excerpt.truncate(end + 1);
    }
    (!excerpt.is_empty()).then(|| {
        format!("From your documents: {excerpt} [1] (This is the offline demo model quoting the best passage; a real model would answer in its own words.)")
    })
}

/// What the offline demo model says of files attached to the message (each
/// between `<attached-file name="…" …>` and `</attached-file>`): their names,
/// lengths, and the first sentence of each, so a user sees that it read them.
fn demo_files(message: &str) -> Option<String> {
    let mut said = Vec::new();
    let mut rest = message;
    use app::chat::files::{FILE_CLOSES, FILE_OPENS};
    while let Some(start) = rest.find(FILE_OPENS) {
        let after = &rest[start + FILE_OPENS.len()..];
        let (name, after) = after.split_once('"')?;
        let body = after.split_once(">\n")?.1;
        let (text, next) = body.split_once(FILE_CLOSES)?;
        let first: String = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("[page"))
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(200)
            .collect();
        let first = match first.find(". ") {
            Some(end) => first[..=end].to_owned(),
            None => first,
        };
        said.push(format!(
            "{name} ({} characters), which begins: \"{first}\"",
            text.chars().count()
        ));
        rest = next;
    }
    (!said.is_empty()).then(|| {
        format!(
            "You attached {}. (This is the offline demo model: a real model would answer your question about it.)",
            said.join("; and ")
        )
    })
}

/// What the offline demo model does with tools: asked about the time, it
/// calls `current_time`; given arithmetic, `calculator`; told the name of
/// an MCP tool it was offered (`shout`, for `mcp_1a2b3c4d_shout`), that
/// tool, with the JSON object in the message (if any) as its arguments.
fn demo_tool(message: &str, offered: &[String]) -> Option<(String, Value)> {
    let lower = message.to_lowercase();
    let offers = |name: &str| offered.iter().any(|t| t == name);
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '-'))
        .collect();
    let mcp = offered.iter().find(|t| {
        t.strip_prefix("mcp_")
            .and_then(|rest| rest.split_once('_'))
            .is_some_and(|(_, tool)| words.contains(&tool.to_lowercase().as_str()))
    });
    if let Some(tool) = mcp {
        let args = message
            .find('{')
            .zip(message.rfind('}'))
            .and_then(|(start, end)| serde_json::from_str::<Value>(message.get(start..=end)?).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        return Some((tool.clone(), args));
    }
    if offers("current_time") && (lower.contains("time") || lower.contains("date")) {
        return Some(("current_time".into(), json!({})));
    }
    let expression: String = message
        .chars()
        .filter(|c| c.is_ascii_digit() || " .+-*/^()".contains(*c))
        .collect();
    let expression = expression.trim();
    if offers("calculator")
        && expression.chars().any(|c| c.is_ascii_digit())
        && expression.chars().any(|c| "+-*/^".contains(c))
    {
        return Some(("calculator".into(), json!({ "expression": expression })));
    }
    None
}

async fn reply(fake: Fake, wire: Wire, model: String, body: Value) -> Response {
    if let Ok(mut requests) = fake.requests.lock() {
        *requests.entry(model.clone()).or_insert(0) += 1;
    }
    // The script is in the model name; where a provider limits names (Gemini
    // takes letters, digits, '.', '-' and '_'), a system prompt starting
    // with `fake:` carries it instead.
    let system = match wire {
        Wire::OpenAi => body["messages"][0]
            .as_object()
            .filter(|m| m["role"] == "system")
            .map(|m| text_of(&m["content"])),
        Wire::Anthropic => Some(text_of(&body["system"])),
        Wire::Gemini => Some(text_of(&body["systemInstruction"]["parts"])),
    }
    .unwrap_or_default();
    let mut script = if !model.starts_with("fake") && system.starts_with("fake:") {
        Script::parse(&system)
    } else {
        Script::parse(&model)
    };
    let message = last_message(wire, &body);
    let results = tool_results(wire, &body);
    if model.starts_with("demo") {
        let offered = offered_tools(wire, &body);
        if !results.is_empty() {
            script.reply = Some(format!("The tool answered: {}", results.join(" / ")));
        } else if let Some((tool, args)) = demo_tool(
            // What the user wrote, not the files attached to it.
            message
                .split(app::chat::files::FILE_OPENS)
                .next()
                .unwrap_or(""),
            &offered,
        ) {
            script.reply = Some(format!("Let me use the {tool} tool. "));
            script.tools = vec![tool];
            script.args = args;
        } else if let Some(answer) = demo_cited(&system) {
            script.reply = Some(answer);
        } else if let Some(answer) = demo_files(&message) {
            script.reply = Some(answer);
        } else {
            script.reply = Some(format!("{DEMO_INTRO}{message}"));
        }
    } else {
        if script.echo {
            script.reply = Some(format!("You said: {message}"));
        }
        if script.offered {
            script.reply = Some(format!("Offered: {}", offered_tools(wire, &body).join(",")));
        }
        if !script.tools.is_empty() {
            // Arguments: the user's message when it is a JSON object.
            script.args = serde_json::from_str::<Value>(&message)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| json!({"city": "Paris"}));
            if !results.is_empty() && !script.looping {
                // The tools answered: say what they said, call nothing more.
                script.tools.clear();
                script.reply = Some(format!("The tools said: {}", results.join(" / ")));
                script.tokens = None;
            }
        }
    }
    if let Some(status) = script.status {
        let seen = {
            let mut seen = fake.seen.lock().unwrap();
            let n = seen.entry(model.clone()).or_insert(0);
            *n += 1;
            *n
        };
        if script.fail_first.is_none_or(|first| seen <= first) {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut res = if script.endless_error {
                // An error body that never ends: a client must not wait for it.
                let chunk = Bytes::from(vec![b' '; 1024]);
                let endless = futures::stream::unfold(chunk, |chunk| async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Some((Ok::<_, std::io::Error>(chunk.clone()), chunk))
                });
                (status, Body::from_stream(endless)).into_response()
            } else {
                (status, Json(wire.error_body(status.as_u16()))).into_response()
            };
            if let Some(after) = script.retry_after {
                res.headers_mut().insert(header::RETRY_AFTER, after.into());
            }
            return res;
        }
    }
    let frames = frames(wire, &model, &script);
    let ping = match wire {
        Wire::Anthropic => sse(Some("ping"), &json!({"type": "ping"})),
        _ => Bytes::from_static(b": ping\n\n"),
    };
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        use futures::SinkExt as _;
        for (i, frame) in frames.into_iter().enumerate() {
            let mut wait = if i == 0 {
                script.first_delay
            } else {
                script.delay
            };
            // With `ping_ms`, a wait is filled with keep-alive pings.
            while let Some(every) = script.ping.filter(|every| wait > *every) {
                tokio::time::sleep(every).await;
                wait -= every;
                if tx.send(Ok(ping.clone())).await.is_err() {
                    return;
                }
            }
            // A zero sleep would still wait for the timer's next tick (1 ms).
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let item = match frame {
                Some(bytes) => Ok(bytes),
                // An error in the body stream makes hyper cut the connection,
                // which can take with it what the client has not read yet:
                // a provider's cut comes after a pause, not in the same breath.
                None => {
                    if wait.is_zero() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "scripted drop",
                    ))
                }
            };
            if tx.send(item).await.is_err() {
                return;
            }
        }
        if script.stall_after.is_some() {
            // The connection stays open, and silent.
            tokio::time::sleep(Duration::from_millis(MAX_DELAY_MS)).await;
            drop(tx);
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(rx))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn key_ok(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !v.trim().is_empty() && !v.contains("bad"))
}

async fn openai_chat(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !key_ok(&headers, "authorization") {
        return (StatusCode::UNAUTHORIZED, Json(Wire::OpenAi.error_body(401))).into_response();
    }
    let model = body["model"].as_str().unwrap_or("fake").to_owned();
    reply(fake, Wire::OpenAi, model, body).await
}

/// An OpenAI-compatible server: like OpenAI, but a missing key is fine
/// (Ollama wants none); a key containing `bad` is still refused.
async fn compat_chat(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Ok(mut last) = fake.last_compat_auth.lock() {
        *last = auth.clone();
    }
    if auth.is_some_and(|a| a.contains("bad")) {
        return (StatusCode::UNAUTHORIZED, Json(Wire::OpenAi.error_body(401))).into_response();
    }
    let model = body["model"].as_str().unwrap_or("fake").to_owned();
    reply(fake, Wire::OpenAi, model, body).await
}

/// The offline demo model: whatever the model is called, it answers as the
/// demo (a `fake:` script still works, bounded like every script).
async fn demo_chat(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !key_ok(&headers, "authorization") {
        return (StatusCode::UNAUTHORIZED, Json(Wire::OpenAi.error_body(401))).into_response();
    }
    let named = body["model"].as_str().unwrap_or("demo");
    let model = if named.starts_with("fake") {
        named.to_owned()
    } else {
        "demo".to_owned()
    };
    reply(fake, Wire::OpenAi, model, body).await
}

async fn compat_last_auth(State(fake): State<Fake>) -> Json<Value> {
    let last = fake.last_compat_auth.lock().ok().and_then(|l| l.clone());
    Json(json!({ "authorization": last }))
}

async fn request_count(State(fake): State<Fake>, Path(model): Path<String>) -> Json<Value> {
    let count = fake
        .requests
        .lock()
        .ok()
        .and_then(|r| r.get(&model).copied())
        .unwrap_or(0);
    Json(json!({ "model": model, "requests": count }))
}

async fn anthropic_messages(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !key_ok(&headers, "x-api-key") || headers.get("anthropic-version").is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            Json(Wire::Anthropic.error_body(401)),
        )
            .into_response();
    }
    let model = body["model"].as_str().unwrap_or("fake").to_owned();
    reply(fake, Wire::Anthropic, model, body).await
}

async fn gemini_stream(
    State(fake): State<Fake>,
    Path(target): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if !key_ok(&headers, "x-goog-api-key") {
        return (StatusCode::FORBIDDEN, Json(Wire::Gemini.error_body(403))).into_response();
    }
    if let Some(model) = target.strip_suffix(":batchEmbedContents") {
        return gemini_embeddings(&fake, model, &body);
    }
    let Some(model) = target.strip_suffix(":streamGenerateContent") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    reply(fake, Wire::Gemini, model.to_owned(), body).await
}

/// A toy embedding that works offline and means something: the words of
/// `text` (lower-cased, letters and digits) hashed into `dims` buckets with
/// a hashed sign, so texts sharing words point the same way.
pub fn toy_embedding(text: &str, dims: usize) -> Vec<f32> {
    let mut vector = vec![0f32; dims.max(1)];
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        // FNV-1a.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in word.to_lowercase().bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        let sign = if hash >> 63 == 1 { -1.0 } else { 1.0 };
        let bucket = (hash % vector.len() as u64) as usize;
        vector[bucket] += sign;
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    } else {
        vector[0] = 1.0;
    }
    vector
}

/// The dimensions a model's toy embeddings have: `dimensions` asked for,
/// else the real model's size.
fn embedding_dims(model: &str, asked: Option<u64>) -> usize {
    match asked {
        Some(d) => d.clamp(1, 4096) as usize,
        None if model.contains("large") || model.contains("gemini-embedding") => 3072,
        None if model.contains("text-embedding-004") => 768,
        None => 1536,
    }
}

/// Whether this embeddings request is answered with a scripted failure: a
/// model named `…-429x2` is rate limited twice (with `Retry-After: 0`)
/// before it answers.
fn embeddings_throttled(fake: &Fake, model: &str) -> bool {
    let Some(times) = model
        .rsplit_once("-429x")
        .and_then(|(_, n)| n.parse::<u32>().ok())
    else {
        return false;
    };
    let mut seen = fake.seen.lock().unwrap_or_else(|e| e.into_inner());
    let count = seen.entry(format!("embed:{model}")).or_insert(0);
    *count += 1;
    *count <= times
}

async fn openai_embeddings(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    if !model.starts_with("demo") && !key_ok(&headers, "authorization") {
        return (StatusCode::UNAUTHORIZED, Json(Wire::OpenAi.error_body(401))).into_response();
    }
    if embeddings_throttled(&fake, &model) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "0")],
            Json(Wire::OpenAi.error_body(429)),
        )
            .into_response();
    }
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    if inputs.is_empty() {
        return (StatusCode::BAD_REQUEST, Json(Wire::OpenAi.error_body(400))).into_response();
    }
    let dims = embedding_dims(&model, body["dimensions"].as_u64());
    let tokens: usize = inputs.iter().map(|i| i.split_whitespace().count()).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            json!({"object": "embedding", "index": index, "embedding": toy_embedding(text, dims)})
        })
        .collect();
    Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
    .into_response()
}

fn gemini_embeddings(fake: &Fake, model: &str, body: &Value) -> Response {
    if embeddings_throttled(fake, model) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "0")],
            Json(Wire::Gemini.error_body(429)),
        )
            .into_response();
    }
    let Some(requests) = body["requests"].as_array().filter(|r| !r.is_empty()) else {
        return (StatusCode::BAD_REQUEST, Json(Wire::Gemini.error_body(400))).into_response();
    };
    let embeddings: Vec<Value> = requests
        .iter()
        .map(|r| {
            let text: String = r["content"]["parts"]
                .as_array()
                .map(|parts| {
                    parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            let dims = embedding_dims(model, r["outputDimensionality"].as_u64());
            json!({"values": toy_embedding(&text, dims)})
        })
        .collect();
    Json(json!({"embeddings": embeddings})).into_response()
}

fn header_value<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// What a key does at a model listing: works, or fails in a scripted way.
fn listing_failure(key: &str) -> Option<u16> {
    if key.contains("bad") || key.is_empty() {
        Some(401)
    } else if key.starts_with("quota-") {
        Some(429)
    } else if key.starts_with("down-") {
        Some(503)
    } else {
        None
    }
}

async fn openai_models(headers: HeaderMap) -> Response {
    let key = header_value(&headers, "authorization")
        .trim_start_matches("Bearer ")
        .to_owned();
    match listing_failure(&key) {
        None => Json(json!({"object": "list", "data": [
            {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
            {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"}
        ]}))
        .into_response(),
        Some(429) => (StatusCode::TOO_MANY_REQUESTS, Json(json!({"error": {
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "type": "insufficient_quota", "param": null, "code": "insufficient_quota"}}))).into_response(),
        Some(503) => (StatusCode::SERVICE_UNAVAILABLE, "upstream unavailable").into_response(),
        Some(_) => (StatusCode::UNAUTHORIZED, Json(json!({"error": {
            // The real API echoes part of the key; Enclave must not repeat it.
            "message": format!("Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys."),
            "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}))).into_response(),
    }
}

async fn anthropic_models(headers: HeaderMap) -> Response {
    if headers.get("anthropic-version").is_none() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"type": "error", "error": {
            "type": "invalid_request_error", "message": "anthropic-version: header is required"}})),
        )
            .into_response();
    }
    match listing_failure(header_value(&headers, "x-api-key")) {
        None => Json(json!({"data": [{"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5",
            "created_at": "2025-09-29T00:00:00Z"}], "has_more": false, "first_id": "claude-sonnet-4-5",
            "last_id": "claude-sonnet-4-5"})).into_response(),
        Some(status) => (StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED),
            Json(Wire::Anthropic.error_body(status))).into_response(),
    }
}

async fn google_models(headers: HeaderMap) -> Response {
    match listing_failure(header_value(&headers, "x-goog-api-key")) {
        None => Json(json!({"models": [{"name": "models/gemini-2.5-flash", "displayName": "Gemini 2.5 Flash",
            "supportedGenerationMethods": ["generateContent"]}]})).into_response(),
        Some(_) => (StatusCode::BAD_REQUEST, Json(json!({"error": {"code": 400,
            "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                         "domain": "googleapis.com"}]}}))).into_response(),
    }
}

/// The fake's routes. Base URLs: `/openai/v1`, `/anthropic/v1`,
/// `/google/v1beta`, `/compat/v1` (an OpenAI-compatible server) and
/// `/demo/v1` (the offline demo model).
pub fn router() -> Router {
    // An OAuth-protected MCP server and its authorization server (`fake_oauth`).
    let oauth = crate::fake_oauth::Fake::default();
    Router::new()
        .route("/openai/v1/chat/completions", post(openai_chat))
        .route("/openai/v1/models", get(openai_models))
        .route("/compat/v1/chat/completions", post(compat_chat))
        .route("/compat/v1/last-auth", get(compat_last_auth))
        .route("/demo/v1/chat/completions", post(demo_chat))
        .route("/openai/v1/embeddings", post(openai_embeddings))
        .route("/compat/v1/embeddings", post(openai_embeddings))
        .route("/demo/v1/embeddings", post(openai_embeddings))
        .route("/requests/{model}", get(request_count))
        // For the web request tool: a page, and one that takes its time.
        .route(
            "/page",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    "<html><head><title>Fake page</title><script>var hidden = 1;</script></head>\
                     <body><h1>Opening hours</h1><p>Open <b>9 to 5</b>, Monday to Friday.</p></body></html>",
                )
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(20)).await;
                "finally"
            }),
        )
        .route("/compat/v1/models", get(openai_models))
        .route("/anthropic/v1/messages", post(anthropic_messages))
        .route("/anthropic/v1/models", get(anthropic_models))
        .route("/google/v1beta/models", get(google_models))
        .route("/google/v1beta/models/{target}", post(gemini_stream))
        .with_state(Fake::default())
        // The services the built-in tools use (GitHub, Slack, Telegram).
        .merge(crate::fake_services::router())
        // MCP servers, for the MCP client (`fake_mcp`).
        .nest("/mcp", crate::fake_mcp::router(&oauth))
        // The OAuth metadata and authorization server of `/mcp/oauth`.
        .merge(oauth.router())
        // An OpenID Connect provider to sign in with (`fake_oidc`).
        .merge(crate::fake_oidc::router())
        // Stripe's Checkout and webhooks (`fake_stripe`).
        .merge(crate::fake_stripe::router())
}

/// Serves the fake on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(crate::no_delay(listener), router()).await
}

/// Starts the fake on a free loopback port (for tests).
pub async fn start() -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = serve(listener).await;
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_numbers_are_bounded() {
        let script = Script::parse("fake:tokens=99999999999,delay_ms=99999999999,status=70000");
        assert_eq!(script.tokens().len(), MAX_TOKENS as usize);
        assert_eq!(script.delay, Duration::from_millis(MAX_DELAY_MS));
        assert_eq!(script.status, Some(599));
        assert_eq!(Script::parse("fake:tokens=3").tokens().len(), 3);
    }

    #[test]
    fn the_demo_model_quotes_the_first_passage_it_was_given() {
        let system = "Be brief.\n\nPassages follow.\n\n[1] handbook.md · Invoices\n## Invoices\nInvoices are paid in thirty days. By transfer.\n\n[2] other.md\nOther text.";
        let answer = demo_cited(system).unwrap();
        assert!(
            answer.starts_with("From your documents: Invoices are paid in thirty days. [1]"),
            "{answer}"
        );
        assert_eq!(demo_cited("Be brief."), None);
    }

    #[test]
    fn the_demo_model_calls_the_mcp_tool_it_is_told_to() {
        let offered = vec!["calculator".to_owned(), "mcp_1a2b3c4d_shout".to_owned()];
        assert_eq!(
            demo_tool(r#"Please shout {"text": "hi"}"#, &offered),
            Some(("mcp_1a2b3c4d_shout".to_owned(), json!({"text": "hi"})))
        );
        assert_eq!(
            demo_tool("SHOUT now", &offered),
            Some(("mcp_1a2b3c4d_shout".to_owned(), json!({})))
        );
        assert_eq!(demo_tool("shouting is rude", &offered), None);
        assert_eq!(demo_tool("shout", &["shout".to_owned()]), None);
    }
}
