//! Anthropic Messages streaming.
//!
//! Request: `POST {base}/messages` with `x-api-key`, `anthropic-version` and
//! `stream: true` (`max_tokens` is required by the API). Reply events:
//! `message_start` (input usage), `content_block_start` / `_delta` / `_stop`
//! (text, or `tool_use` with `input_json_delta` pieces), `message_delta`
//! (stop reason and cumulative output usage), `message_stop`, `ping`
//! anywhere, and `error` mid-stream. Unknown events are ignored, as the API
//! documentation asks.

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::{Adapter, ChatRequest, LlmError, Part, Role, StreamEvent, ToolCallDelta, Usage, join};
use crate::llm::models::ANTHROPIC_VERSION;

/// What Anthropic's required `max_tokens` is when the agent sets none.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

#[derive(Default)]
pub struct Anthropic {
    usage: Usage,
    done: bool,
}

pub fn body(req: &ChatRequest) -> Value {
    let messages: Vec<Value> = req
        .turns
        .iter()
        .map(|t| {
            let role = match t.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            let blocks: Vec<Value> = t
                .parts
                .iter()
                .filter_map(|part| match part {
                    Part::Text(text) if text.is_empty() => None,
                    Part::Text(text) => Some(json!({"type": "text", "text": text})),
                    Part::ToolCall {
                        id,
                        name,
                        arguments,
                    } => Some(
                        json!({"type": "tool_use", "id": id, "name": name, "input": arguments}),
                    ),
                    Part::ToolResult {
                        id,
                        content,
                        is_error,
                        ..
                    } => Some(json!({"type": "tool_result", "tool_use_id": id,
                                     "content": content, "is_error": is_error})),
                })
                .collect();
            json!({"role": role, "content": blocks})
        })
        .collect();
    let mut body = json!({
        "model": req.model,
        "max_tokens": req.max_output_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "messages": messages,
        "stream": true,
    });
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}))
            .collect();
    }
    if !req.system_prompt.is_empty() {
        body["system"] = json!(req.system_prompt);
    }
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(p) = req.top_p {
        body["top_p"] = json!(p);
    }
    body
}

impl Adapter for Anthropic {
    fn request(&self, req: &ChatRequest) -> (String, HeaderMap, Value) {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        if let Ok(key) = HeaderValue::from_str(&req.api_key) {
            headers.insert(HeaderName::from_static("x-api-key"), key);
        }
        (join(&req.base_url, "messages"), headers, body(req))
    }

    fn feed(&mut self, event: &str, data: &str) -> Result<Vec<StreamEvent>, LlmError> {
        let value: Value = serde_json::from_str(data).map_err(|_| LlmError::Protocol)?;
        let kind = if event.is_empty() {
            value["type"].as_str().unwrap_or_default()
        } else {
            event
        };
        let mut out = Vec::new();
        match kind {
            "message_start" => {
                let usage = &value["message"]["usage"];
                self.usage.input_tokens = usage["input_tokens"].as_u64().unwrap_or(0);
                self.usage.output_tokens = usage["output_tokens"].as_u64().unwrap_or(0);
            }
            "content_block_start" => {
                let block = &value["content_block"];
                let index = value["index"].as_u64().unwrap_or(0) as u32;
                match block["type"].as_str() {
                    Some("tool_use") => out.push(StreamEvent::ToolCall(ToolCallDelta {
                        index,
                        id: block["id"].as_str().map(str::to_owned),
                        name: block["name"].as_str().map(str::to_owned),
                        arguments: String::new(),
                    })),
                    Some("text") => {
                        if let Some(text) = block["text"].as_str().filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::Text(text.to_owned()));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = &value["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        if let Some(text) = delta["text"].as_str().filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::Text(text.to_owned()));
                        }
                    }
                    Some("input_json_delta") => out.push(StreamEvent::ToolCall(ToolCallDelta {
                        index: value["index"].as_u64().unwrap_or(0) as u32,
                        id: None,
                        name: None,
                        arguments: delta["partial_json"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    })),
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(output) = value["usage"]["output_tokens"].as_u64() {
                    // Cumulative, not an increment.
                    self.usage.output_tokens = output;
                }
                if let Some(input) = value["usage"]["input_tokens"].as_u64() {
                    self.usage.input_tokens = input;
                }
                if let Some(reason) = value["delta"]["stop_reason"].as_str() {
                    out.push(StreamEvent::Finish(reason.to_owned()));
                }
                out.push(StreamEvent::Usage(self.usage));
            }
            "message_stop" => self.done = true,
            "error" => {
                let status = match value["error"]["type"].as_str() {
                    Some("overloaded_error") => 529,
                    Some("rate_limit_error") => 429,
                    Some("authentication_error") => 401,
                    Some("not_found_error") => 404,
                    Some("api_error") => 500,
                    _ => 400,
                };
                return Err(super::classify(status, &HeaderMap::new(), data.as_bytes()));
            }
            // "ping", "content_block_stop" and anything new.
            _ => {}
        }
        Ok(out)
    }

    fn finished(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{llm::Turn, provider::Provider};

    fn feed_all(a: &mut Anthropic, events: &[(&str, &str)]) -> Result<Vec<StreamEvent>, LlmError> {
        let mut out = Vec::new();
        for (event, data) in events {
            out.extend(a.feed(event, data)?);
        }
        Ok(out)
    }

    #[test]
    fn the_request_carries_version_key_and_required_max_tokens() {
        let req = ChatRequest {
            provider: Provider::Anthropic,
            base_url: "https://api.anthropic.com/v1".into(),
            api_key: "sk-ant-test".into(),
            model: "claude-sonnet-4-5".into(),
            system_prompt: "Be brief.".into(),
            turns: vec![Turn::text(Role::User, "Hi")],
            tools: vec![],
            temperature: None,
            top_p: None,
            max_output_tokens: None,
        };
        let (url, headers, body) = Anthropic::default().request(&req);
        assert_eq!(url, "https://api.anthropic.com/v1/messages");
        assert_eq!(headers["x-api-key"], "sk-ant-test");
        assert_eq!(headers["anthropic-version"], ANTHROPIC_VERSION);
        assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(body["system"], "Be brief.");
        assert_eq!(body["stream"], true);
    }

    #[test]
    fn a_full_stream_with_pings_and_unknown_events() {
        let mut a = Anthropic::default();
        let events = feed_all(&mut a, &[
            ("message_start", r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#),
            ("content_block_start", r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#),
            ("ping", r#"{"type": "ping"}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#),
            ("brand_new_event", r#"{"type":"brand_new_event","whatever":1}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there"}}"#),
            ("content_block_stop", r#"{"type":"content_block_stop","index":0}"#),
            ("message_delta", r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ])
        .unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::Text("Hello".into()),
                StreamEvent::Text(" there".into()),
                StreamEvent::Finish("end_turn".into()),
                StreamEvent::Usage(Usage {
                    input_tokens: 25,
                    output_tokens: 15
                }),
            ]
        );
        assert!(a.finished());
    }

    #[test]
    fn tool_use_blocks_stream_their_json() {
        let mut a = Anthropic::default();
        let events = feed_all(&mut a, &[
            ("content_block_start", r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": "}}"#),
            ("content_block_delta", r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"Paris\"}"}}"#),
        ])
        .unwrap();
        let StreamEvent::ToolCall(first) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(
            (first.id.as_deref(), first.name.as_deref(), first.index),
            (Some("toolu_01"), Some("get_weather"), 1)
        );
        let args: String = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCall(c) => Some(c.arguments.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(args, r#"{"city": "Paris"}"#);
    }

    #[test]
    fn an_error_event_mid_stream_is_an_error() {
        let mut a = Anthropic::default();
        a.feed(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        )
        .unwrap();
        let err = a
            .feed(
                "error",
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            )
            .unwrap_err();
        assert_eq!(err, LlmError::Overloaded);
    }
}
