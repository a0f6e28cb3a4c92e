//! Each provider adapter against the fake provider over real HTTP: text,
//! usage, tool-call frames, an error mid-stream, a dropped connection, 429
//! with Retry-After, a slow first token, and unknown events ignored.

use std::time::{Duration, Instant};

use app::{
    agents::domain::Provider,
    llm::{self, ChatRequest, LlmError, Role, StreamEvent, StreamLimits, Turn, Usage},
    platform::egress::{AllowEntry, Egress},
};

struct Reply {
    text: String,
    usage: Option<Usage>,
    finish: Option<String>,
    tool_name: Option<String>,
    tool_args: String,
    error: Option<LlmError>,
    /// Text pieces seen before the error, if any.
    pieces: usize,
}

async fn fake() -> (Egress, std::net::SocketAddr) {
    let addr = server::fake_provider::start().await.unwrap();
    (
        Egress::new(vec![AllowEntry::parse(&addr.to_string()).unwrap()]),
        addr,
    )
}

fn request(provider: Provider, addr: std::net::SocketAddr, model: &str) -> ChatRequest {
    let base = match provider {
        Provider::Openai | Provider::OpenaiCompatible | Provider::Demo => {
            format!("http://{addr}/openai/v1")
        }
        Provider::Anthropic => format!("http://{addr}/anthropic/v1"),
        Provider::Google => format!("http://{addr}/google/v1beta"),
    };
    ChatRequest {
        provider,
        base_url: base,
        api_key: "test-key".into(),
        model: model.into(),
        system_prompt: "Be brief.".into(),
        turns: vec![Turn::text(Role::User, "Hi")],
        tools: vec![],
        temperature: Some(0.5),
        top_p: None,
        max_output_tokens: Some(200),
    }
}

async fn collect(egress: &Egress, req: ChatRequest, limits: StreamLimits) -> Reply {
    let mut rx = llm::stream(egress.clone(), req, limits);
    let mut reply = Reply {
        text: String::new(),
        usage: None,
        finish: None,
        tool_name: None,
        tool_args: String::new(),
        error: None,
        pieces: 0,
    };
    while let Some(item) = rx.recv().await {
        match item {
            Ok(StreamEvent::Text(t)) => {
                reply.pieces += 1;
                reply.text.push_str(&t);
            }
            Ok(StreamEvent::Usage(u)) => reply.usage = Some(u),
            Ok(StreamEvent::Finish(f)) => reply.finish = Some(f),
            Ok(StreamEvent::ToolCall(c)) => {
                if c.name.is_some() {
                    reply.tool_name = c.name;
                }
                reply.tool_args.push_str(&c.arguments);
            }
            Err(e) => reply.error = Some(e),
        }
    }
    reply
}

const ALL: [Provider; 4] = [
    Provider::Openai,
    Provider::OpenaiCompatible,
    Provider::Anthropic,
    Provider::Google,
];

fn quick() -> StreamLimits {
    StreamLimits {
        first_token: Duration::from_secs(10),
        idle_gap: Duration::from_secs(10),
        max_attempts: 3,
        backoff: Duration::from_millis(50),
        ..StreamLimits::default()
    }
}

/// How many completions the fake was asked for with `model`.
async fn requests_for(addr: std::net::SocketAddr, model: &str) -> u64 {
    let url = format!(
        "http://{addr}/requests/{}",
        app::ui::encode_component(model)
    );
    let body: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    body["requests"].as_u64().unwrap()
}

#[tokio::test]
async fn a_timeout_after_the_request_went_out_is_not_retried() {
    let (egress, addr) = fake().await;
    let limits = StreamLimits {
        first_token: Duration::from_millis(300),
        max_attempts: 3,
        ..quick()
    };
    let model = "fake:first_delay_ms=3000,reply=slow";
    let reply = collect(&egress, request(Provider::Openai, addr, model), limits).await;
    assert_eq!(reply.error, Some(LlmError::Timeout));
    assert_eq!(
        requests_for(addr, model).await,
        1,
        "a slow model is called (and billed) once"
    );
    // A refusal with a status (the provider did not start) is retried.
    let model = "fake:status=503,reply=refused";
    let reply = collect(&egress, request(Provider::Openai, addr, model), quick()).await;
    assert_eq!(reply.error, Some(LlmError::Overloaded));
    assert_eq!(requests_for(addr, model).await, 3);
}

#[tokio::test]
async fn keep_alive_pings_do_not_keep_a_silent_reply_open() {
    let (egress, addr) = fake().await;
    let limits = StreamLimits {
        first_token: Duration::from_millis(500),
        idle_gap: Duration::from_millis(500),
        max_attempts: 1,
        ..quick()
    };
    // Every pause (20 s) is filled with pings every 100 ms.
    let model = "fake:tokens=2,delay_ms=20000,ping_ms=100";
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        collect(&egress, request(Provider::Anthropic, addr, model), limits),
    )
    .await
    .expect("the idle limit ended the reply");
    assert_eq!(reply.error, Some(LlmError::Timeout));
}

#[tokio::test]
async fn an_error_body_that_never_ends_is_not_waited_for() {
    let (egress, addr) = fake().await;
    let limits = StreamLimits {
        max_attempts: 1,
        ..quick()
    };
    let reply = tokio::time::timeout(
        Duration::from_secs(10),
        collect(
            &egress,
            request(Provider::Openai, addr, "fake:status=500,endless_error"),
            limits,
        ),
    )
    .await
    .expect("the error body was capped");
    assert_eq!(reply.error, Some(LlmError::Overloaded));
}

#[tokio::test]
async fn a_reply_has_a_length_limit_and_a_deadline() {
    let (egress, addr) = fake().await;
    let limits = StreamLimits {
        max_reply_bytes: 50,
        ..quick()
    };
    let reply = collect(
        &egress,
        request(Provider::Openai, addr, "fake:tokens=100"),
        limits,
    )
    .await;
    assert_eq!(reply.error, Some(LlmError::TooLong { limit_kib: 0 }));
    assert_eq!(reply.text.len(), 50, "kept up to the limit: {}", reply.text);
    assert!(reply.text.starts_with("t0 t1 "));

    let limits = StreamLimits {
        deadline: Duration::from_millis(500),
        ..quick()
    };
    let reply = collect(
        &egress,
        request(Provider::Google, addr, "fake:tokens=100,delay_ms=50"),
        limits,
    )
    .await;
    assert!(
        matches!(reply.error, Some(LlmError::Deadline { .. })),
        "{:?}",
        reply.error
    );
    assert!(reply.text.starts_with("t0 ") && !reply.text.contains("t99"));
}

#[tokio::test]
async fn every_adapter_streams_text_usage_and_finish() {
    let (egress, addr) = fake().await;
    for provider in ALL {
        let reply = collect(&egress, request(provider, addr, "fake:delay_ms=2"), quick()).await;
        assert_eq!(reply.error, None, "{provider:?}");
        assert_eq!(reply.text, "Hello from the fake model.", "{provider:?}");
        assert!(
            reply.pieces >= 5,
            "{provider:?} streamed in pieces: {}",
            reply.pieces
        );
        let usage = reply
            .usage
            .unwrap_or_else(|| panic!("{provider:?} gave no usage"));
        assert_eq!(
            usage,
            Usage {
                input_tokens: 11,
                output_tokens: 5
            },
            "{provider:?}"
        );
        assert!(reply.finish.is_some(), "{provider:?}");
    }
}

#[tokio::test]
async fn tool_call_frames_are_assembled_for_every_provider() {
    let (egress, addr) = fake().await;
    for provider in ALL {
        let reply = collect(
            &egress,
            request(provider, addr, "fake:tool=get_weather"),
            quick(),
        )
        .await;
        assert_eq!(reply.error, None, "{provider:?}");
        assert_eq!(
            reply.tool_name.as_deref(),
            Some("get_weather"),
            "{provider:?}"
        );
        let args: serde_json::Value = serde_json::from_str(&reply.tool_args).unwrap();
        assert_eq!(args, serde_json::json!({"city": "Paris"}), "{provider:?}");
    }
}

#[tokio::test]
async fn an_error_mid_stream_keeps_what_came_and_is_not_retried() {
    let (egress, addr) = fake().await;
    for provider in ALL {
        let reply = collect(
            &egress,
            request(provider, addr, "fake:tokens=6,error_after=3"),
            quick(),
        )
        .await;
        assert_eq!(
            reply.text, "t0 t1 t2 ",
            "{provider:?}: no repeat from a retry"
        );
        assert_eq!(reply.error, Some(LlmError::Overloaded), "{provider:?}");
    }
}

#[tokio::test]
async fn a_dropped_connection_keeps_what_came_and_says_so() {
    let (egress, addr) = fake().await;
    for provider in ALL {
        let reply = collect(
            &egress,
            request(provider, addr, "fake:tokens=6,drop_after=2"),
            quick(),
        )
        .await;
        assert_eq!(reply.text, "t0 t1 ", "{provider:?}");
        assert_eq!(reply.error, Some(LlmError::Network), "{provider:?}");
    }
}

#[tokio::test]
async fn garbage_or_a_stall_mid_stream_keeps_what_came_and_says_so() {
    let (egress, addr) = fake().await;
    let limits = StreamLimits {
        idle_gap: Duration::from_millis(300),
        ..quick()
    };
    for provider in ALL {
        let reply = collect(
            &egress,
            request(provider, addr, "fake:tokens=6,garbage_after=2"),
            quick(),
        )
        .await;
        assert_eq!(reply.text, "t0 t1 ", "{provider:?}");
        assert_eq!(reply.error, Some(LlmError::Protocol), "{provider:?}");

        let reply = collect(
            &egress,
            request(provider, addr, "fake:tokens=6,stall_after=2"),
            limits,
        )
        .await;
        assert_eq!(reply.text, "t0 t1 ", "{provider:?}");
        assert_eq!(reply.error, Some(LlmError::Timeout), "{provider:?}");
    }
}

#[tokio::test]
async fn a_429_before_the_first_token_is_retried_after_retry_after() {
    let (egress, addr) = fake().await;
    for provider in ALL {
        // A distinct model name per provider: the fake counts failures per name.
        let model = format!(
            "fake:status=429,fail_first=1,retry_after=1,reply={}",
            provider.as_str()
        );
        let start = Instant::now();
        let reply = collect(&egress, request(provider, addr, &model), quick()).await;
        assert_eq!(reply.error, None, "{provider:?}");
        assert_eq!(reply.text, provider.as_str().replace('_', " "));
        assert!(
            start.elapsed() >= Duration::from_secs(1),
            "{provider:?} waited Retry-After"
        );
    }
}

#[tokio::test]
async fn errors_before_the_first_token_become_plain_sentences() {
    let (egress, addr) = fake().await;
    for provider in ALL {
        let reply = collect(&egress, request(provider, addr, "fake:status=404"), quick()).await;
        assert_eq!(reply.error, Some(LlmError::ModelNotFound), "{provider:?}");
        let mut bad_key = request(provider, addr, "fake");
        bad_key.api_key = "bad-key".into();
        let reply = collect(&egress, bad_key, quick()).await;
        assert_eq!(reply.error, Some(LlmError::InvalidKey), "{provider:?}");
        assert_eq!(reply.text, "");
    }
    // Retries give up after the limit, and say why.
    let limits = StreamLimits {
        max_attempts: 2,
        ..quick()
    };
    let reply = collect(
        &egress,
        request(Provider::Anthropic, addr, "fake:status=529"),
        limits,
    )
    .await;
    assert_eq!(reply.error, Some(LlmError::Overloaded));
}

#[tokio::test]
async fn a_slow_first_token_times_out() {
    let (egress, addr) = fake().await;
    let limits = StreamLimits {
        first_token: Duration::from_millis(200),
        max_attempts: 1,
        ..quick()
    };
    let reply = collect(
        &egress,
        request(Provider::Openai, addr, "fake:first_delay_ms=2000"),
        limits,
    )
    .await;
    assert_eq!(reply.error, Some(LlmError::Timeout));
    // An idle gap after the first token times out too, keeping what came.
    let limits = StreamLimits {
        idle_gap: Duration::from_millis(200),
        max_attempts: 1,
        ..quick()
    };
    let reply = collect(
        &egress,
        request(Provider::Anthropic, addr, "fake:tokens=3,delay_ms=1000"),
        limits,
    )
    .await;
    assert_eq!(reply.error, Some(LlmError::Timeout));
}

#[tokio::test]
async fn provider_addresses_go_through_the_egress_policy() {
    let (_, addr) = fake().await;
    let closed = Egress::new(vec![]);
    let reply = collect(
        &closed,
        request(Provider::OpenaiCompatible, addr, "fake"),
        quick(),
    )
    .await;
    assert!(
        matches!(reply.error, Some(LlmError::Egress(_))),
        "{:?}",
        reply.error
    );
}
