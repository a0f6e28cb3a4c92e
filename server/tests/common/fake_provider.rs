//! A fake of the providers' model-listing endpoints: a real HTTP server on
//! 127.0.0.1 answering with each provider's documented JSON, success and
//! error bodies alike. Keys: `good-…` works, `quota-…` is out of quota,
//! `down-…` gets a 503, anything else is rejected.

use std::net::SocketAddr;

use axum::{
    Json, Router,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

fn kind(key: &str) -> &'static str {
    if key.starts_with("good-") {
        "good"
    } else if key.starts_with("quota-") {
        "quota"
    } else if key.starts_with("down-") {
        "down"
    } else {
        "bad"
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn openai(headers: HeaderMap) -> Response {
    let key = header(&headers, "authorization")
        .strip_prefix("Bearer ")
        .unwrap_or("");
    match kind(key) {
        "good" => Json(json!({
            "object": "list",
            "data": [
                {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
                {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"}
            ]
        }))
        .into_response(),
        "quota" => (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"error": {
                "message": "You exceeded your current quota, please check your plan and billing details.",
                "type": "insufficient_quota", "param": null, "code": "insufficient_quota"
            }})),
        )
            .into_response(),
        "down" => (StatusCode::SERVICE_UNAVAILABLE, "upstream unavailable").into_response(),
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {
                // The real API echoes part of the key; Enclave must not repeat it.
                "message": format!("Incorrect API key provided: {key}. You can find your API key at https://platform.openai.com/account/api-keys."),
                "type": "invalid_request_error", "param": null, "code": "invalid_api_key"
            }})),
        )
            .into_response(),
    }
}

async fn anthropic(headers: HeaderMap) -> Response {
    if header(&headers, "anthropic-version").is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"type": "error", "error": {"type": "invalid_request_error", "message": "anthropic-version: header is required"}})),
        )
            .into_response();
    }
    match kind(header(&headers, "x-api-key")) {
        "good" => Json(json!({
            "data": [{"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5", "created_at": "2025-09-29T00:00:00Z"}],
            "has_more": false, "first_id": "claude-sonnet-4-5", "last_id": "claude-sonnet-4-5"
        }))
        .into_response(),
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(json!({"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}})),
        )
            .into_response(),
    }
}

async fn google(headers: HeaderMap) -> Response {
    match kind(header(&headers, "x-goog-api-key")) {
        "good" => Json(json!({"models": [
            {"name": "models/gemini-2.5-flash", "displayName": "Gemini 2.5 Flash", "supportedGenerationMethods": ["generateContent"]}
        ]}))
        .into_response(),
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {
                "code": 400, "message": "API key not valid. Please pass a valid API key.", "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]
            }})),
        )
            .into_response(),
    }
}

/// Starts the fake; its base URLs are `http://ADDR/openai/v1`, `/anthropic/v1`,
/// `/google/v1beta` and `/compat/v1`.
pub async fn start() -> SocketAddr {
    let app = Router::new()
        .route("/openai/v1/models", get(openai))
        .route("/compat/v1/models", get(openai))
        .route("/anthropic/v1/models", get(anthropic))
        .route("/google/v1beta/models", get(google));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}
