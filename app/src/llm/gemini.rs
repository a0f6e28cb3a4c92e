//! Google Gemini `streamGenerateContent?alt=sse`.
//!
//! Request: `POST {base}/models/{model}:streamGenerateContent?alt=sse` with
//! `x-goog-api-key` (never a `key=` query parameter: URLs end up in logs).
//! Reply: `data: {GenerateContentResponse}` chunks with
//! `candidates[].content.parts[]` (text, or a whole `functionCall`) and
//! `usageMetadata`; the stream simply ends, with no terminator.

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

use super::{Adapter, ChatRequest, LlmError, Part, Role, StreamEvent, ToolCallDelta, Usage, join};

#[derive(Default)]
pub struct Gemini {
    calls: u32,
}

pub fn body(req: &ChatRequest) -> Value {
    let contents: Vec<Value> = req
        .turns
        .iter()
        .map(|t| {
            let role = match t.role {
                Role::User => "user",
                Role::Assistant => "model",
            };
            let parts: Vec<Value> = t
                .parts
                .iter()
                .filter_map(|part| match part {
                    Part::Text(text) if text.is_empty() => None,
                    Part::Text(text) => Some(json!({"text": text})),
                    Part::ToolCall {
                        id,
                        name,
                        arguments,
                    } => Some(json!({"functionCall": {"id": id, "name": name, "args": arguments}})),
                    // Gemini wants an object; a tool's text answer is wrapped.
                    Part::ToolResult {
                        id,
                        name,
                        content,
                        is_error,
                    } => {
                        let key = if *is_error { "error" } else { "result" };
                        Some(json!({"functionResponse": {"id": id, "name": name,
                                    "response": {key: content}}}))
                    }
                })
                .collect();
            json!({"role": role, "parts": parts})
        })
        .collect();
    let mut body = json!({ "contents": contents });
    if !req.tools.is_empty() {
        // `parametersJsonSchema` takes a whole JSON Schema; `parameters`
        // only Gemini's OpenAPI subset, which an MCP server's schema may
        // not keep to.
        let declarations: Vec<Value> = req
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "parametersJsonSchema": t.parameters}))
            .collect();
        body["tools"] = json!([{ "functionDeclarations": declarations }]);
    }
    if !req.system_prompt.is_empty() {
        body["systemInstruction"] = json!({"parts": [{"text": req.system_prompt}]});
    }
    let mut config = serde_json::Map::new();
    if let Some(t) = req.temperature {
        config.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        config.insert("topP".into(), json!(p));
    }
    if let Some(n) = req.max_output_tokens {
        config.insert("maxOutputTokens".into(), json!(n));
    }
    if !config.is_empty() {
        body["generationConfig"] = Value::Object(config);
    }
    body
}

impl Adapter for Gemini {
    fn request(&self, req: &ChatRequest) -> (String, HeaderMap, Value) {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Ok(key) = HeaderValue::from_str(&req.api_key) {
            headers.insert(HeaderName::from_static("x-goog-api-key"), key);
        }
        // The model is one path segment: percent-encoded, so no `/`, `?` or
        // `#` in a name can reach another path (names are validated too).
        let path = format!(
            "models/{}:streamGenerateContent?alt=sse",
            crate::ui::encode_component(&req.model)
        );
        (join(&req.base_url, &path), headers, body(req))
    }

    fn feed(&mut self, _event: &str, data: &str) -> Result<Vec<StreamEvent>, LlmError> {
        let chunk: Value = serde_json::from_str(data).map_err(|_| LlmError::Protocol)?;
        if let Some(error) = chunk.get("error") {
            let status = error["code"].as_u64().unwrap_or(500) as u16;
            return Err(super::classify(status, &HeaderMap::new(), data.as_bytes()));
        }
        let mut out = Vec::new();
        let candidate = &chunk["candidates"][0];
        for part in candidate["content"]["parts"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
        {
            if let Some(text) = part["text"].as_str().filter(|t| !t.is_empty()) {
                // Thought summaries are not part of the reply.
                if part["thought"].as_bool() != Some(true) {
                    out.push(StreamEvent::Text(text.to_owned()));
                }
            }
            if let Some(call) = part.get("functionCall") {
                // Gemini sends each call whole; it gets its own index.
                out.push(StreamEvent::ToolCall(ToolCallDelta {
                    index: self.calls,
                    id: call["id"].as_str().map(str::to_owned),
                    name: call["name"].as_str().map(str::to_owned),
                    arguments: call["args"].to_string(),
                }));
                self.calls += 1;
            }
        }
        if let Some(reason) = candidate["finishReason"].as_str() {
            out.push(StreamEvent::Finish(reason.to_owned()));
        }
        if let Some(usage) = chunk.get("usageMetadata") {
            out.push(StreamEvent::Usage(Usage {
                input_tokens: usage["promptTokenCount"].as_u64().unwrap_or(0),
                output_tokens: usage["candidatesTokenCount"].as_u64().unwrap_or(0)
                    + usage["thoughtsTokenCount"].as_u64().unwrap_or(0),
            }));
        }
        Ok(out)
    }

    fn finished(&self) -> bool {
        false
    }

    fn ends_at_eof(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{llm::Turn, provider::Provider};

    #[test]
    fn the_key_goes_in_a_header_not_the_url() {
        let req = ChatRequest {
            provider: Provider::Google,
            base_url: "https://generativelanguage.googleapis.com/v1beta".into(),
            api_key: "AIza-test".into(),
            model: "gemini-2.5-flash".into(),
            system_prompt: "Be brief.".into(),
            turns: vec![
                Turn::text(Role::User, "Hi"),
                Turn::text(Role::Assistant, "Hello"),
                Turn::text(Role::User, "Bye"),
            ],
            tools: vec![],
            temperature: Some(0.5),
            top_p: None,
            max_output_tokens: Some(64),
        };
        let (url, headers, body) = Gemini::default().request(&req);
        assert_eq!(
            url,
            "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
        );
        assert!(!url.contains("AIza"));
        assert_eq!(headers["x-goog-api-key"], "AIza-test");
        assert_eq!(body["contents"][1]["role"], "model");
        assert_eq!(body["systemInstruction"]["parts"][0]["text"], "Be brief.");
        assert_eq!(body["generationConfig"]["maxOutputTokens"], 64);
    }

    #[test]
    fn a_model_name_stays_inside_its_path_segment() {
        let req = ChatRequest {
            provider: Provider::Google,
            base_url: "https://generativelanguage.googleapis.com/v1beta".into(),
            api_key: "AIza-test".into(),
            model: "../../v1/files?x=1#frag".into(),
            system_prompt: String::new(),
            turns: vec![],
            tools: vec![],
            temperature: None,
            top_p: None,
            max_output_tokens: None,
        };
        let (url, _, _) = Gemini::default().request(&req);
        assert_eq!(
            url,
            "https://generativelanguage.googleapis.com/v1beta/models/..%2F..%2Fv1%2Ffiles%3Fx%3D1%23frag:streamGenerateContent?alt=sse"
        );
        let parsed = url::Url::parse(&url).unwrap();
        assert_eq!(parsed.query(), Some("alt=sse"));
        assert_eq!(parsed.fragment(), None);
        assert_eq!(parsed.path_segments().unwrap().count(), 3);
    }

    #[test]
    fn text_function_calls_and_usage_are_read() {
        let mut g = Gemini::default();
        let mut events = g
            .feed("", r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":1,"totalTokenCount":6},"modelVersion":"gemini-2.5-flash"}"#)
            .unwrap();
        events.extend(
            g.feed("", r#"{"candidates":[{"content":{"parts":[{"text":"lo"},{"functionCall":{"name":"get_weather","args":{"city":"Paris"}}}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":7,"totalTokenCount":12}}"#)
                .unwrap(),
        );
        assert_eq!(events[0], StreamEvent::Text("Hel".into()));
        assert_eq!(events[2], StreamEvent::Text("lo".into()));
        let StreamEvent::ToolCall(call) = &events[3] else {
            panic!("{events:?}")
        };
        assert_eq!(call.name.as_deref(), Some("get_weather"));
        assert_eq!(call.arguments, r#"{"city":"Paris"}"#);
        assert_eq!(events[4], StreamEvent::Finish("STOP".into()));
        assert_eq!(
            events[5],
            StreamEvent::Usage(Usage {
                input_tokens: 5,
                output_tokens: 7
            })
        );
        assert!(g.ends_at_eof());
    }

    #[test]
    fn an_error_chunk_is_an_error() {
        let err = Gemini::default()
            .feed("", r#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#)
            .unwrap_err();
        assert_eq!(err, LlmError::Overloaded);
    }
}
