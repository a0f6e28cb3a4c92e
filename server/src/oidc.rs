//! The two HTTP ends of signing in with a provider (`app::auth::oidc` holds
//! the rules): `POST /auth/oidc/{provider}` (a plain form: "Sign in with …",
//! "Sign up with …" with the age box, or "Connect …" in settings) sends the
//! browser to the provider; `GET /auth/oidc/{provider}/callback` is where it
//! comes back. Failures land on the sign-in page (or settings) with a fixed
//! `problem` word that the page turns into a sentence.

use app::{
    auth::{
        domain::safe_next,
        oidc::{self, Callback, Finished, Intent, Problem, StartError},
        server::{self as auth, AuthSession},
    },
    platform::request::{ClientInfo, ClientIp},
    state::AppState,
    ui::encode_component,
};
use axum::{
    Extension, Form,
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    intent: String,
    #[serde(default)]
    next: String,
    age_confirmed: Option<String>,
}

fn client(ip: Option<Extension<ClientIp>>, headers: &HeaderMap) -> ClientInfo {
    let ip = ip.map_or(std::net::IpAddr::from([0, 0, 0, 0]), |Extension(ip)| ip.0);
    ClientInfo::from_parts(ip, headers)
}

fn problem_page(problem: Problem, linking: bool) -> Response {
    let place = if linking {
        "/settings/sign-in-methods"
    } else {
        "/sign-in"
    };
    Redirect::to(&format!("{place}?problem={}", problem.as_str())).into_response()
}

fn with_cookie(mut res: Response, cookie: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        res.headers_mut().append(header::SET_COOKIE, value);
    }
    res
}

/// `POST /auth/oidc/{provider}`: off to the provider.
pub async fn start(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    session: Option<Extension<AuthSession>>,
    ip: Option<Extension<ClientIp>>,
    headers: HeaderMap,
    Form(form): Form<StartForm>,
) -> Response {
    let intent = match (form.intent.as_str(), session) {
        ("link", Some(Extension(session))) => Intent::Link(session),
        ("link", None) => return Redirect::to("/sign-in").into_response(),
        ("sign-up", _) if form.age_confirmed.is_none() => {
            return Redirect::to("/sign-up?problem=age").into_response();
        }
        ("sign-up", _) => Intent::SignUp,
        _ => Intent::SignIn,
    };
    let linking = matches!(intent, Intent::Link(_));
    match oidc::start(&state, &provider, intent, &form.next, &client(ip, &headers)).await {
        Ok(started) => {
            let res = Redirect::to(&started.authorize_url).into_response();
            match started.binding {
                // The flow is bound to this browser by its session cookie
                // (no third cookie): a value no session has.
                Some(binding) => with_cookie(
                    res,
                    &auth::session_cookie(
                        &state.settings,
                        &auth::SessionToken::from_binding(binding),
                    ),
                ),
                None => res,
            }
        }
        Err(StartError::Problem(problem)) => problem_page(problem, linking),
        Err(StartError::App(err)) => crate::plain_error(&err),
    }
}

/// `GET /auth/oidc/{provider}/callback`: back from the provider.
pub async fn callback(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    session: Option<Extension<AuthSession>>,
    ip: Option<Extension<ClientIp>>,
    headers: HeaderMap,
) -> Response {
    let Some(csrf) = query
        .get("state")
        .filter(|s| !s.is_empty() && s.len() <= 512)
    else {
        return problem_page(Problem::Expired, false);
    };
    let callback = Callback {
        code: query.get("code").cloned(),
        state: csrf.clone(),
        error: query.get("error").cloned(),
    };
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| auth::read_cookie(h, auth::session_cookie_name(&state.settings)));
    let session = session.map(|Extension(s)| s);
    let client = client(ip, &headers);
    match oidc::finish(
        &state,
        &provider,
        &callback,
        cookie.as_deref(),
        session.as_ref(),
        &client,
    )
    .await
    {
        Ok(Finished::SignedIn { token, next }) => with_cookie(
            Redirect::to(&safe_next(Some(&next))).into_response(),
            &auth::session_cookie(&state.settings, &token),
        ),
        Ok(Finished::NeedsSecondFactor { token, next }) => with_cookie(
            Redirect::to(&format!(
                "/two-factor?next={}",
                encode_component(&safe_next(Some(&next)))
            ))
            .into_response(),
            &auth::session_cookie(&state.settings, &token),
        ),
        Ok(Finished::Linked) => Redirect::to("/settings/sign-in-methods").into_response(),
        Err((problem, linking)) => problem_page(problem, linking),
    }
}
