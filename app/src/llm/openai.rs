//! OpenAI Chat Completions streaming, and OpenAI-compatible servers.
//!
//! Request: `POST {base}/chat/completions` with `stream: true`,
//! `stream_options.include_usage: true`, and for OpenAI itself `store: false`
//! (do not keep the exchange). Reply: `data: {chunk}` events, a final chunk
//! with empty `choices` carrying `usage`, then `data: [DONE]`.
//!
//! Compatible servers are read leniently: `choices: null`, usage on the
//! finish chunk, changing ids, and a stream that ends after the finish
//! chunk without `[DONE]`.

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::{Adapter, ChatRequest, LlmError, Part, Role, StreamEvent, ToolCallDelta, Usage, join};

pub struct OpenAi {
    compatible: bool,
    done: bool,
    finished_reason: bool,
}

impl OpenAi {
    pub fn new(compatible: bool) -> Self {
        OpenAi {
            compatible,
            done: false,
            finished_reason: false,
        }
    }
}

pub fn body(req: &ChatRequest, compatible: bool) -> Value {
    let mut messages = Vec::with_capacity(req.turns.len() + 1);
    if !req.system_prompt.is_empty() {
        messages.push(json!({"role": "system", "content": req.system_prompt}));
    }
    for turn in &req.turns {
        match turn.role {
            Role::User => {
                // Tool results are `tool` messages of their own; text is a
                // user message.
                for part in &turn.parts {
                    if let Part::ToolResult { id, content, .. } = part {
                        messages
                            .push(json!({"role": "tool", "tool_call_id": id, "content": content}));
                    }
                }
                let text = turn.text_content();
                if !text.is_empty() {
                    messages.push(json!({"role": "user", "content": text}));
                }
            }
            Role::Assistant => {
                let calls: Vec<Value> = turn
                    .parts
                    .iter()
                    .filter_map(|part| match part {
                        Part::ToolCall {
                            id,
                            name,
                            arguments,
                        } => Some(json!({
                            "id": id, "type": "function",
                            "function": {"name": name, "arguments": arguments.to_string()},
                        })),
                        _ => None,
                    })
                    .collect();
                let text = turn.text_content();
                let mut message = json!({"role": "assistant", "content": text});
                if !calls.is_empty() {
                    message["tool_calls"] = Value::Array(calls);
                    if text.is_empty() {
                        message["content"] = Value::Null;
                    }
                }
                messages.push(message);
            }
        }
    }
    let mut body = json!({
        "model": req.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if !req.tools.is_empty() {
        body["tools"] = req
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.parameters}})
            })
            .collect();
    }
    if !compatible {
        // Chat Completions' own "do not store" switch.
        body["store"] = json!(false);
    }
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    if let Some(p) = req.top_p {
        body["top_p"] = json!(p);
    }
    if let Some(n) = req.max_output_tokens {
        // OpenAI replaced max_tokens; compatible servers still read the old name.
        body[if compatible {
            "max_tokens"
        } else {
            "max_completion_tokens"
        }] = json!(n);
    }
    body
}

impl Adapter for OpenAi {
    fn request(&self, req: &ChatRequest) -> (String, HeaderMap, Value) {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if !req.api_key.is_empty()
            && let Ok(value) = HeaderValue::from_str(&format!("Bearer {}", req.api_key))
        {
            headers.insert(AUTHORIZATION, value);
        }
        (
            join(&req.base_url, "chat/completions"),
            headers,
            body(req, self.compatible),
        )
    }

    fn feed(&mut self, _event: &str, data: &str) -> Result<Vec<StreamEvent>, LlmError> {
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(vec![]);
        }
        if data.is_empty() {
            return Ok(vec![]);
        }
        let chunk: Value = serde_json::from_str(data).map_err(|_| LlmError::Protocol)?;
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            let status = chunk["error"]["code"].as_u64().unwrap_or(500) as u16;
            return Err(super::classify(
                status.max(400),
                &HeaderMap::new(),
                data.as_bytes(),
            ));
        }
        let mut out = Vec::new();
        for choice in chunk["choices"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            let delta = &choice["delta"];
            if let Some(text) = delta["content"].as_str()
                && !text.is_empty()
            {
                out.push(StreamEvent::Text(text.to_owned()));
            }
            for call in delta["tool_calls"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
            {
                out.push(StreamEvent::ToolCall(ToolCallDelta {
                    index: call["index"].as_u64().unwrap_or(0) as u32,
                    id: call["id"].as_str().map(str::to_owned),
                    name: call["function"]["name"].as_str().map(str::to_owned),
                    arguments: call["function"]["arguments"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                }));
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.finished_reason = true;
                out.push(StreamEvent::Finish(reason.to_owned()));
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|u| u.is_object()) {
            out.push(StreamEvent::Usage(Usage {
                input_tokens: usage["prompt_tokens"].as_u64().unwrap_or(0),
                output_tokens: usage["completion_tokens"].as_u64().unwrap_or(0),
            }));
        }
        Ok(out)
    }

    fn finished(&self) -> bool {
        self.done
    }

    fn ends_at_eof(&self) -> bool {
        self.compatible && self.finished_reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{llm::Turn, provider::Provider};

    fn request() -> ChatRequest {
        ChatRequest {
            provider: Provider::Openai,
            base_url: "https://api.openai.com/v1".into(),
            api_key: "sk-test".into(),
            model: "gpt-4o-mini".into(),
            system_prompt: "Be brief.".into(),
            turns: vec![Turn::text(Role::User, "Hi")],
            tools: vec![],
            temperature: Some(0.2),
            top_p: None,
            max_output_tokens: Some(100),
        }
    }

    fn feed_all(adapter: &mut OpenAi, chunks: &[&str]) -> Vec<StreamEvent> {
        chunks
            .iter()
            .flat_map(|c| adapter.feed("", c).unwrap())
            .collect()
    }

    #[test]
    fn the_request_asks_for_usage_and_no_storage() {
        let (url, headers, body) = OpenAi::new(false).request(&request());
        assert_eq!(url, "https://api.openai.com/v1/chat/completions");
        assert_eq!(headers[AUTHORIZATION], "Bearer sk-test");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["store"], false);
        assert_eq!(body["max_completion_tokens"], 100);
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "Be brief."})
        );
        assert_eq!(
            body["messages"][1],
            json!({"role": "user", "content": "Hi"})
        );
        let (_, _, compat) = OpenAi::new(true).request(&request());
        assert!(compat.get("store").is_none());
        assert_eq!(compat["max_tokens"], 100);
    }

    #[test]
    fn text_usage_and_done_are_read() {
        let mut a = OpenAi::new(false);
        let events = feed_all(
            &mut a,
            &[
                r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
                r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hel"},"logprobs":null,"finish_reason":null}]}"#,
                r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"lo"},"logprobs":null,"finish_reason":null}]}"#,
                r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}"#,
                r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
            ],
        );
        assert_eq!(
            events,
            vec![
                StreamEvent::Text("Hel".into()),
                StreamEvent::Text("lo".into()),
                StreamEvent::Finish("stop".into()),
                StreamEvent::Usage(Usage {
                    input_tokens: 9,
                    output_tokens: 2
                }),
            ]
        );
        assert!(!a.finished());
        assert!(a.feed("", "[DONE]").unwrap().is_empty());
        assert!(a.finished());
    }

    #[test]
    fn tool_call_frames_are_read() {
        let mut a = OpenAi::new(false);
        let events = feed_all(
            &mut a,
            &[
                r#"{"id":"c2","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}"#,
                r#"{"id":"c2","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]},"finish_reason":null}]}"#,
                r#"{"id":"c2","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]},"finish_reason":null}]}"#,
                r#"{"id":"c2","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            ],
        );
        let calls: Vec<&ToolCallDelta> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCall(c) => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(calls[0].id.as_deref(), Some("call_abc"));
        assert_eq!(calls[0].name.as_deref(), Some("get_weather"));
        let args: String = calls.iter().map(|c| c.arguments.as_str()).collect();
        assert_eq!(args, r#"{"city":"Paris"}"#);
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Finish("tool_calls".into()))
        );
    }

    #[test]
    fn compatible_servers_deviations_are_tolerated() {
        let mut a = OpenAi::new(true);
        let events = feed_all(
            &mut a,
            &[
                r#"{"id":"a","choices":null}"#,
                r#"{"id":"b","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}"#,
                r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
            ],
        );
        assert_eq!(
            events,
            vec![
                StreamEvent::Text("Hi".into()),
                StreamEvent::Finish("stop".into()),
                StreamEvent::Usage(Usage {
                    input_tokens: 3,
                    output_tokens: 1
                }),
            ]
        );
        assert!(
            a.ends_at_eof(),
            "a finish chunk may be the end for a compatible server"
        );
        assert!(!OpenAi::new(false).ends_at_eof());
    }

    #[test]
    fn an_error_chunk_mid_stream_is_an_error_and_garbage_is_a_protocol_error() {
        let mut a = OpenAi::new(false);
        let err = a
            .feed("", r#"{"error":{"message":"The server had an error","type":"server_error","code":null}}"#)
            .unwrap_err();
        assert_eq!(err, LlmError::Overloaded);
        assert_eq!(a.feed("", "{not json").unwrap_err(), LlmError::Protocol);
    }
}
