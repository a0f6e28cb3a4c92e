//! The OpenAI-compatible API under `/v1`, for programs holding a personal
//! API key (`Authorization: Bearer enc_…`). Errors have OpenAI's shape
//! (`{"error": {"message", "type", "code"}}`), so its SDKs read them.
//! So far: `GET /v1/models`, the caller's agents as models.

use app::{
    api_keys::{Scope, server::authenticate},
    platform::keystore::{self, KeyUse},
    state::AppState,
};
use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// An error as OpenAI's API answers it.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let kind = match status {
        StatusCode::UNAUTHORIZED => "invalid_request_error",
        StatusCode::FORBIDDEN => "permission_error",
        StatusCode::NOT_FOUND => "invalid_request_error",
        StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
        _ => "server_error",
    };
    (
        status,
        Json(json!({"error": {"message": message, "type": kind, "code": code, "param": null}})),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// The key's holder, or the answer for a missing, wrong, revoked or expired
/// key (all alike) or one without `scope`.
async fn holder(
    state: &AppState,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<app::api_keys::server::KeyHolder, Response> {
    let unauthorized = || {
        error(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Incorrect API key provided. Make one in Enclave under Settings -> API keys.",
        )
    };
    let Some(secret) = bearer(headers) else {
        return Err(unauthorized());
    };
    match authenticate(state, secret).await {
        Ok(Some(holder)) if holder.may(scope) => Ok(holder),
        Ok(Some(_)) => Err(error(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            &format!(
                "This API key may not do that: it needs the \"{}\" scope.",
                scope.as_str()
            ),
        )),
        Ok(None) => Err(unauthorized()),
        Err(_) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Enclave could not check the key just now; try again.",
        )),
    }
}

/// `GET /v1/models`: the key holder's agents, each a model named by its id.
pub async fn models(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let holder = match holder(&state, &headers, Scope::AgentsRead).await {
        Ok(holder) => holder,
        Err(res) => return res,
    };
    let listed = async {
        let key = keystore::user_key(
            &state.db,
            &state.crypto.keyring,
            holder.owner,
            KeyUse::ApiKey,
        )
        .await?;
        app::agents::server::list_agents(&state, holder.owner, &key, "").await
    }
    .await;
    match listed {
        Ok(agents) => Json(json!({
            "object": "list",
            "data": agents.iter().map(|a| json!({
                "id": a.id,
                "object": "model",
                "created": 0,
                "owned_by": "enclave",
                "name": a.name,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Enclave could not list the agents just now; try again.",
        ),
    }
}
