//! Forms posted without JavaScript that need more than a server function
//! gives them. A server function answers a plain form's failure by sending
//! the browser back to the page, which loses what was typed; `POST
//! /sign-up` instead renders the sign-up page again with the values (never
//! the password) and the reason, with the error's status. `POST
//! /settings/api-keys` renders the API keys page with the key just made,
//! which must be shown once and never travel in a URL.

use app::{
    api_keys::ApiKeyEcho,
    auth::{
        SignUpEcho, domain::NewAccount, domain::check_email_path, server as auth,
        server::AuthSession,
    },
    error::AppError,
    platform::request::ClientIp,
    shell,
    state::AppState,
};
use axum::{
    body::Body,
    extract::{Request, State},
    http::{Method, StatusCode},
    response::{IntoResponse, Redirect, Response},
};
use leptos::prelude::provide_context;
use serde::Deserialize;

#[derive(Deserialize)]
pub struct SignUpForm {
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    age_confirmed: Option<String>,
    next: Option<String>,
}

/// `POST /sign-up`: the sign-up form without JavaScript.
pub async fn sign_up(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, crate::MAX_REQUEST_BODY).await else {
        return (StatusCode::BAD_REQUEST, AppError::BadRequest.to_string()).into_response();
    };
    let Ok(form) = serde_urlencoded::from_bytes::<SignUpForm>(&bytes) else {
        return (StatusCode::BAD_REQUEST, AppError::BadRequest.to_string()).into_response();
    };
    let ip = parts
        .extensions
        .get::<ClientIp>()
        .map(|ip| ip.0)
        .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
    let next = form.next.clone().unwrap_or_default();
    let result = async {
        let account = NewAccount::parse(
            &form.first_name,
            &form.last_name,
            &form.email,
            form.password,
            form.age_confirmed.is_some(),
        )?;
        auth::sign_up(&state, ip, account).await
    }
    .await;
    match result {
        Ok(()) => Redirect::to(&check_email_path(Some(&next))).into_response(),
        Err(error) => {
            let status =
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let echo = SignUpEcho {
                first_name: form.first_name,
                last_name: form.last_name,
                email: form.email,
                age_confirmed: form.age_confirmed.is_some(),
                next,
                error: Some(error),
            };
            render_with(state, parts, echo, status).await
        }
    }
}

/// The page at the posted path, rendered as a GET of it would be, with
/// `echo` in its context (the outcome of the post), answered with `status`.
async fn render_with<T: Clone + Send + Sync + 'static>(
    state: AppState,
    parts: axum::http::request::Parts,
    echo: T,
    status: StatusCode,
) -> Response {
    let mut page = Request::from_parts(parts, Body::empty());
    *page.method_mut() = Method::GET;
    let options = state.leptos_options.clone();
    let render = leptos_axum::render_app_async_with_context(
        move || {
            crate::provide_page_context(&state);
            provide_context(echo.clone());
        },
        move || shell(options.clone()),
    );
    let mut res = render(page).await;
    *res.status_mut() = status;
    res
}

/// `POST /settings/api-keys`: the new-key form without JavaScript. The
/// page comes back with the key, shown this once (it is in this response
/// alone, never in a URL), or with the reason and what was chosen.
pub async fn create_api_key(State(state): State<AppState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let Some(session) = parts.extensions.get::<AuthSession>().cloned() else {
        return Redirect::to("/sign-in?next=/settings/api-keys").into_response();
    };
    let Ok(bytes) = axum::body::to_bytes(body, crate::MAX_REQUEST_BODY).await else {
        return (StatusCode::BAD_REQUEST, AppError::BadRequest.to_string()).into_response();
    };
    // Repeated fields (`scopes[]`) as pairs.
    let Ok(pairs) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes) else {
        return (StatusCode::BAD_REQUEST, AppError::BadRequest.to_string()).into_response();
    };
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (name, expires) = (field("name"), field("expires"));
    let scopes: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "scopes[]" || k == "scopes")
        .map(|(_, v)| v.clone())
        .collect();
    let result = match session.require_verified(&state.settings) {
        Err(refused) => Err(refused),
        Ok(()) => {
            let create = app::api_keys::server::create_from_form(
                &state,
                &session,
                &name,
                &scopes,
                Some(&expires),
            );
            crate::middleware::in_request(&parts, create).await
        }
    };
    let (echo, status) = match result {
        Ok(created) => (
            ApiKeyEcho {
                created: Some(created),
                ..ApiKeyEcho::default()
            },
            StatusCode::OK,
        ),
        Err(error) => {
            let status =
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (
                ApiKeyEcho {
                    created: None,
                    name,
                    scopes,
                    expires,
                    error: Some(error),
                },
                status,
            )
        }
    };
    render_with(state, parts, echo, status).await
}
