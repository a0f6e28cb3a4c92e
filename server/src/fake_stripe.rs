//! A fake of the parts of Stripe that Enclave uses, over real HTTP
//! (no fake of Checkout exists on npm or PyPI; DEPENDENCIES.md):
//! - `POST /stripe/v1/checkout/sessions`: form-encoded, bearer secret key,
//!   `Idempotency-Key` (the same key answers the same session), answering
//!   a Checkout Session object as Stripe does;
//! - `GET /stripe/pay/{id}`: the hosted payment page (a form);
//! - `POST /stripe/pay/{id}`: "pays", then delivers `checkout.session.completed`
//!   to the configured webhook signed as Stripe signs (`Stripe-Signature:
//!   t=…,v1=HMAC-SHA256("{t}.{body}")`), retrying a failed delivery and
//!   delivering a success once more (Stripe delivers at least once), and
//!   sends the browser to the session's `success_url`.
//!
//! Test controls under `/fakes/stripe`: `config` (webhook URL, signing
//! secret, expected secret key), `deliveries` (what the webhook answered),
//! `resend/{event}` (deliver an event again, signed now).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Form, Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{Html, IntoResponse, Redirect, Response},
    routing::{get, post},
};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;

#[derive(Clone, Default, Deserialize)]
pub struct Config {
    pub webhook_url: String,
    pub webhook_secret: String,
    /// Requests must carry this key (any `sk_` key when empty).
    #[serde(default)]
    pub secret_key: String,
}

#[derive(Default)]
struct Inner {
    config: Config,
    sessions: HashMap<String, Value>,
    by_idempotency: HashMap<String, String>,
    events: HashMap<String, Value>,
    deliveries: Vec<Value>,
}

#[derive(Clone, Default)]
pub struct FakeStripe(Arc<Mutex<Inner>>);

fn stripe_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"type": "invalid_request_error", "message": message}})),
    )
        .into_response()
}

/// Signs `payload` at `t` the way Stripe does.
pub fn signature_header(secret: &str, t: i64, payload: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(payload);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

async fn create_session(
    State(fake): State<FakeStripe>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let form: HashMap<String, String> = form.into_iter().collect();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let expected = fake.0.lock().unwrap().config.secret_key.clone();
    if !bearer.starts_with("sk_") || (!expected.is_empty() && bearer != expected) {
        return stripe_error(StatusCode::UNAUTHORIZED, "Invalid API Key provided.");
    }
    let idempotency = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(key) = &idempotency {
        let inner = fake.0.lock().unwrap();
        if let Some(session) = inner
            .by_idempotency
            .get(key)
            .and_then(|id| inner.sessions.get(id))
        {
            return Json(session.clone()).into_response();
        }
    }
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    if get("mode") != "payment" {
        return stripe_error(StatusCode::BAD_REQUEST, "Missing required param: mode.");
    }
    let Ok(unit_amount) = get("line_items[0][price_data][unit_amount]").parse::<i64>() else {
        return stripe_error(StatusCode::BAD_REQUEST, "Invalid integer: unit_amount.");
    };
    let quantity = get("line_items[0][quantity]").parse::<i64>().unwrap_or(0);
    let currency = get("line_items[0][price_data][currency]");
    if unit_amount < 50 || quantity < 1 || currency.len() != 3 || get("success_url").is_empty() {
        return stripe_error(StatusCode::BAD_REQUEST, "Invalid line items or URLs.");
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let id = format!("cs_test_{}", uuid::Uuid::new_v4().simple());
    let metadata: serde_json::Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|k| k.strip_suffix(']'))
                .map(|k| (k.to_owned(), json!(v)))
        })
        .collect();
    let session = json!({
        "id": id,
        "object": "checkout.session",
        "amount_subtotal": unit_amount * quantity,
        "amount_total": unit_amount * quantity,
        "currency": currency,
        "client_reference_id": form.get("client_reference_id"),
        "customer_details": null,
        "livemode": false,
        "metadata": metadata,
        "mode": "payment",
        "payment_intent": null,
        "payment_status": "unpaid",
        "status": "open",
        "success_url": get("success_url"),
        "cancel_url": form.get("cancel_url"),
        "url": format!("http://{host}/stripe/pay/{id}"),
    });
    let mut inner = fake.0.lock().unwrap();
    inner.sessions.insert(id.clone(), session.clone());
    if let Some(key) = idempotency {
        inner.by_idempotency.insert(key, id);
    }
    Json(session).into_response()
}

async fn pay_page(State(fake): State<FakeStripe>, Path(id): Path<String>) -> Response {
    let Some(session) = fake.0.lock().unwrap().sessions.get(&id).cloned() else {
        return (StatusCode::NOT_FOUND, "No such checkout session.").into_response();
    };
    let amount = session["amount_total"].as_i64().unwrap_or(0);
    let currency = session["currency"].as_str().unwrap_or("usd").to_uppercase();
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Fake Stripe Checkout</title></head>\
         <body><main><h1>Fake Stripe Checkout</h1>\
         <p>Pay <strong data-testid=\"stripe-amount\">{}.{:02} {currency}</strong> to Enclave credits.</p>\
         <form method=\"post\"><label>Card number <input name=\"card\" value=\"4242 4242 4242 4242\"></label>\
         <button type=\"submit\">Pay</button></form>\
         <p><a href=\"{}\">Cancel</a></p></main></body></html>",
        amount / 100,
        amount % 100,
        html_escape::encode_double_quoted_attribute(session["cancel_url"].as_str().unwrap_or("/")),
    ))
    .into_response()
}

/// Delivers `event` to the webhook, signed now; returns the status.
async fn deliver(fake: &FakeStripe, event: &Value) -> u16 {
    let config = fake.0.lock().unwrap().config.clone();
    if config.webhook_url.is_empty() {
        return 0;
    }
    let body = serde_json::to_vec(event).unwrap_or_default();
    let signature = signature_header(
        &config.webhook_secret,
        chrono::Utc::now().timestamp(),
        &body,
    );
    let status = match reqwest::Client::new()
        .post(&config.webhook_url)
        .header("content-type", "application/json; charset=utf-8")
        .header("stripe-signature", signature)
        .header(
            "user-agent",
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        )
        .body(body)
        .send()
        .await
    {
        Ok(res) => res.status().as_u16(),
        Err(_) => 0,
    };
    fake.0.lock().unwrap().deliveries.push(json!({
        "event": event["id"],
        "status": status,
    }));
    status
}

async fn pay(State(fake): State<FakeStripe>, Path(id): Path<String>) -> Response {
    let session = {
        let mut inner = fake.0.lock().unwrap();
        let Some(session) = inner.sessions.get_mut(&id) else {
            return (StatusCode::NOT_FOUND, "No such checkout session.").into_response();
        };
        session["payment_status"] = json!("paid");
        session["status"] = json!("complete");
        session["payment_intent"] = json!(format!("pi_test_{}", uuid::Uuid::new_v4().simple()));
        session.clone()
    };
    let event = json!({
        "id": format!("evt_test_{}", uuid::Uuid::new_v4().simple()),
        "object": "event",
        "api_version": "2025-10-29.clover",
        "created": chrono::Utc::now().timestamp(),
        "livemode": false,
        "pending_webhooks": 1,
        "type": "checkout.session.completed",
        "data": {"object": session},
    });
    fake.0.lock().unwrap().events.insert(
        event["id"].as_str().unwrap_or_default().to_owned(),
        event.clone(),
    );
    // Retried until it is accepted (a few times), then delivered once more:
    // Stripe may deliver an event more than once.
    for _ in 0..3 {
        if (200..300).contains(&deliver(&fake, &event).await) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    deliver(&fake, &event).await;
    Redirect::to(session["success_url"].as_str().unwrap_or("/")).into_response()
}

async fn configure(State(fake): State<FakeStripe>, Json(config): Json<Config>) -> StatusCode {
    fake.0.lock().unwrap().config = config;
    StatusCode::NO_CONTENT
}

async fn deliveries(State(fake): State<FakeStripe>) -> Json<Value> {
    Json(Value::Array(fake.0.lock().unwrap().deliveries.clone()))
}

async fn resend(State(fake): State<FakeStripe>, Path(event): Path<String>) -> Response {
    let Some(event) = fake.0.lock().unwrap().events.get(&event).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let status = deliver(&fake, &event).await;
    Json(json!({"status": status})).into_response()
}

pub fn router() -> Router {
    Router::new()
        .route("/stripe/v1/checkout/sessions", post(create_session))
        .route("/stripe/pay/{id}", get(pay_page).post(pay))
        .route("/fakes/stripe/config", post(configure))
        .route("/fakes/stripe/deliveries", get(deliveries))
        .route("/fakes/stripe/resend/{event}", post(resend))
        .with_state(FakeStripe::default())
}
