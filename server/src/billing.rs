//! The usage slice's routes that are not pages: the CSV download, "Add
//! credits" (a plain form that sends the browser to Stripe), and Stripe's
//! webhook (raw body: the signature covers its exact bytes).

use app::{auth::server::AuthSession, state::AppState, usage};
use axum::{
    Extension,
    body::Bytes,
    extract::{Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
};
use serde::Deserialize;

#[derive(Deserialize)]
pub struct UsageQuery {
    team: Option<String>,
    days: Option<u32>,
}

/// `GET /usage.csv?days=30&team=…`: one row per day, agent and model.
pub async fn csv(
    State(state): State<AppState>,
    session: Option<Extension<AuthSession>>,
    Query(query): Query<UsageQuery>,
) -> Response {
    let Some(Extension(session)) = session else {
        return Redirect::to("/sign-in?next=/usage").into_response();
    };
    let result = async {
        let team = query
            .team
            .filter(|t| !t.is_empty())
            .map(|t| app::ctx::parse_id(&t))
            .transpose()?;
        let (report, counted) = usage::server::report(
            &state,
            session.user_id,
            &session.key,
            team,
            query.days.unwrap_or(30),
        )
        .await?;
        Ok::<_, app::error::AppError>((report, counted))
    }
    .await;
    match result {
        Ok((report, counted)) => {
            let name = format!(
                "enclave-usage-{}-days-{}.csv",
                report.days,
                chrono::Utc::now().format("%Y-%m-%d")
            );
            (
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                    (header::CACHE_CONTROL, "no-store".to_owned()),
                ],
                usage::csv_rows(&counted, &report.currency),
            )
                .into_response()
        }
        Err(err) => crate::plain_error(&err),
    }
}

#[derive(Deserialize)]
pub struct TopUpForm {
    #[serde(default)]
    amount: String,
}

/// `POST /usage/credits`: starts a Stripe Checkout for the chosen amount
/// and sends the browser there (303). A refusal shows as a plain page
/// with the reason and a way back.
pub async fn top_up(
    State(state): State<AppState>,
    session: Option<Extension<AuthSession>>,
    axum::Form(form): axum::Form<TopUpForm>,
) -> Response {
    let Some(Extension(session)) = session else {
        return Redirect::to("/sign-in?next=/usage").into_response();
    };
    let result = async {
        let amount: i64 = form
            .amount
            .trim()
            .parse()
            .map_err(|_| app::error::AppError::invalid("amount", "Choose how much to add."))?;
        usage::stripe::start_checkout(&state, &session, amount).await
    }
    .await;
    match result {
        Ok(url) => Redirect::to(&url).into_response(),
        Err(err) => {
            let status =
                StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let page = format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
                 <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
                 <title>Add credits</title></head><body><main>\
                 <h1>Could not start the payment</h1><p role=\"alert\">{}</p>\
                 <p><a href=\"/usage\">Back to Usage</a></p></main></body></html>",
                app::platform::mail::escape_html(&err.to_string())
            );
            (
                status,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                page,
            )
                .into_response()
        }
    }
}

/// `POST /stripe/webhook`: a signed event from Stripe. 200 when handled
/// (or seen before); 400 for a bad, old or missing signature, with nothing
/// changed; 503 when the database could not record it (Stripe retries).
pub async fn webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    match usage::stripe::webhook(&state, signature, &body).await {
        Ok(handled) => {
            tracing::info!(handled = ?handled, "stripe webhook");
            (StatusCode::OK, "ok").into_response()
        }
        Err(err) => {
            tracing::warn!(reason = %err, "stripe webhook refused");
            (
                StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST),
                err.to_string(),
            )
                .into_response()
        }
    }
}
