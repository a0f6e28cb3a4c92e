//! Buying credits with Stripe Checkout (server only). No card data ever
//! reaches Enclave: the browser pays on Stripe's page.
//!
//! 1. "Add credits" stores an open `credit_checkouts` row and creates a
//!    Checkout Session (`POST /v1/checkout/sessions`, form-encoded, with
//!    that row's id as the `Idempotency-Key` and `client_reference_id`);
//!    the browser is sent to the session's `url`.
//! 2. Credits are added only by Stripe's webhook, `checkout.session.completed`
//!    with `payment_status: paid`, proven by `Stripe-Signature`: HMAC-SHA256
//!    of `"{t}.{raw body}"` with the endpoint's secret, compared in constant
//!    time against every `v1`, `t` within five minutes. The event id is
//!    stored in the transaction that adds the credits, so a repeated
//!    delivery adds nothing.
//!
//! Hand-written against the HTTP API rather than `async-stripe`, which is
//! still a release candidate and pulls OpenSSL (DEPENDENCIES.md).

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue, Method, header};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Money;
use crate::{
    auth::server::AuthSession,
    error::AppError,
    platform::{keystore, settings::BillingMode},
    state::AppState,
};

/// How old a signed webhook may be.
pub const TOLERANCE_SECS: i64 = 300;
/// The smallest and largest top-up, in micro-units.
const MIN_TOP_UP: i64 = 1_000_000;
const MAX_TOP_UP: i64 = 1_000_000_000;

/// Where Stripe's payment pages are: `https://checkout.stripe.com` for the
/// real API, else the API's own origin (a test double serves both). The
/// browser is only ever sent there, and the pages' CSP `form-action`
/// allows it (a form posts to Enclave and is redirected there).
pub fn page_origin(stripe: &crate::platform::settings::Stripe) -> Option<String> {
    let api = url::Url::parse(&stripe.api_url).ok()?;
    if api.host_str() == Some("api.stripe.com") {
        return Some("https://checkout.stripe.com".to_owned());
    }
    Some(api.origin().ascii_serialization())
}

/// Starts a top-up of `amount` micro-units for the signed-in user; returns
/// the Stripe page to send the browser to.
pub async fn start_checkout(
    state: &AppState,
    session: &AuthSession,
    amount: i64,
) -> Result<String, AppError> {
    let billing = &state.settings.billing;
    let Some(stripe) = billing
        .stripe
        .as_ref()
        .filter(|_| billing.mode == BillingMode::Credits)
    else {
        return Err(AppError::invalid(
            "amount",
            "This server does not take card payments: ask its operator for credits.",
        ));
    };
    if !(MIN_TOP_UP..=MAX_TOP_UP).contains(&amount) || amount % 10_000 != 0 {
        return Err(AppError::invalid(
            "amount",
            format!(
                "Choose an amount between {} and {}, in whole cents.",
                Money(MIN_TOP_UP).display(&billing.currency),
                Money(MAX_TOP_UP).display(&billing.currency)
            ),
        ));
    }
    crate::platform::rate_limit::hit(
        &state.db,
        &format!("checkout:user:{}", session.user_id),
        crate::platform::settings::Limit::new(10, 3600),
    )
    .await?;
    let id = Uuid::new_v4();
    sqlx::query("INSERT INTO credit_checkouts (id, owner_id, amount) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(session.user_id)
        .bind(amount)
        .execute(&state.db)
        .await?;
    let base = state.settings.public_url.trim_end_matches('/');
    let cents = (amount / 10_000).to_string();
    let form = [
        ("mode", "payment".to_owned()),
        ("client_reference_id", id.to_string()),
        ("success_url", format!("{base}/usage?paid={id}")),
        ("cancel_url", format!("{base}/usage?cancelled=1")),
        ("line_items[0][quantity]", "1".to_owned()),
        (
            "line_items[0][price_data][currency]",
            billing.currency.clone(),
        ),
        ("line_items[0][price_data][unit_amount]", cents),
        (
            "line_items[0][price_data][product_data][name]",
            "Enclave credits".to_owned(),
        ),
        ("metadata[checkout]", id.to_string()),
    ];
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    let bearer = HeaderValue::from_str(&format!("Bearer {}", stripe.secret_key))
        .map_err(|_| AppError::internal("the Stripe secret key is not a valid header"))?;
    headers.insert(header::AUTHORIZATION, bearer);
    headers.insert(
        "idempotency-key",
        HeaderValue::from_str(&id.to_string()).map_err(|_| AppError::internal("uuid header"))?,
    );
    let url = format!(
        "{}/v1/checkout/sessions",
        stripe.api_url.trim_end_matches('/')
    );
    let unavailable = || {
        AppError::invalid(
            "amount",
            "Card payments are not available right now: try again in a few minutes.",
        )
    };
    let fetched = state
        .egress
        .send_body(Method::POST, &url, headers, Some(body.into_bytes()))
        .await
        .map_err(|err| {
            tracing::warn!(error = %err, "could not reach Stripe");
            unavailable()
        })?;
    if !fetched.status.is_success() {
        tracing::warn!(
            status = fetched.status.as_u16(),
            "Stripe refused a checkout session"
        );
        return Err(unavailable());
    }
    let json: serde_json::Value =
        serde_json::from_slice(&fetched.body).map_err(|_| unavailable())?;
    let (Some(session_id), Some(page)) = (json["id"].as_str(), json["url"].as_str()) else {
        return Err(unavailable());
    };
    let expected = page_origin(stripe);
    let origin = url::Url::parse(page)
        .ok()
        .map(|u| u.origin().ascii_serialization());
    if origin.is_none() || origin != expected {
        tracing::warn!("Stripe answered a checkout page on an unexpected origin");
        return Err(unavailable());
    }
    sqlx::query("UPDATE credit_checkouts SET session_hash = $2 WHERE id = $1")
        .bind(id)
        .bind(Sha256::digest(session_id.as_bytes()).to_vec())
        .execute(&state.db)
        .await?;
    tracing::info!(user_id = %session.user_id, checkout_id = %id, "checkout started");
    Ok(page.to_owned())
}

/// Why a webhook was refused (the answer's status; nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("card payments are not set up")]
    NotConfigured,
    #[error("missing or malformed Stripe-Signature")]
    Malformed,
    #[error("the signature is older than five minutes")]
    TooOld,
    #[error("no signature matches")]
    BadSignature,
    #[error("the event could not be read")]
    BadEvent,
    #[error("the database was not reachable")]
    Unavailable,
}

impl WebhookError {
    pub fn status(&self) -> u16 {
        match self {
            WebhookError::NotConfigured => 404,
            WebhookError::Unavailable => 503,
            _ => 400,
        }
    }
}

/// Checks `header` (`t=...,v1=...,v1=...`) against `payload` and `secret`
/// at `now` (Unix seconds).
pub fn verify_signature(
    header: &str,
    payload: &[u8],
    secret: &str,
    now: i64,
) -> Result<(), WebhookError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in header.split(',') {
        let Some((k, v)) = item.trim().split_once('=') else {
            continue;
        };
        match k {
            "t" => timestamp = v.parse::<i64>().ok(),
            "v1" => {
                if let Ok(bytes) = hex::decode(v) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::Malformed)?;
    if signatures.is_empty() {
        return Err(WebhookError::Malformed);
    }
    if (now - timestamp).abs() > TOLERANCE_SECS {
        return Err(WebhookError::TooOld);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .map_err(|_| WebhookError::NotConfigured)?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    // Each candidate compared in constant time (`verify_slice`), and all
    // of them, so the time does not tell which one matched.
    let any = signatures.iter().fold(false, |found, candidate| {
        found | mac.clone().verify_slice(candidate).is_ok()
    });
    if any {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

/// What a webhook did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Credits added.
    Credited,
    /// Seen before: nothing changed.
    Repeated,
    /// An event Enclave does not act on (or a session not paid yet).
    Ignored,
}

/// `POST /stripe/webhook`: verifies the signature, then handles the event
/// once.
pub async fn webhook(
    state: &AppState,
    signature: Option<&str>,
    payload: &[u8],
) -> Result<Handled, WebhookError> {
    let stripe = state
        .settings
        .billing
        .stripe
        .as_ref()
        .ok_or(WebhookError::NotConfigured)?;
    verify_signature(
        signature.ok_or(WebhookError::Malformed)?,
        payload,
        &stripe.webhook_secret,
        chrono::Utc::now().timestamp(),
    )?;
    let event: serde_json::Value =
        serde_json::from_slice(payload).map_err(|_| WebhookError::BadEvent)?;
    let event_id = event["id"].as_str().ok_or(WebhookError::BadEvent)?;
    let kind = event["type"].as_str().unwrap_or_default();
    if !matches!(
        kind,
        "checkout.session.completed" | "checkout.session.async_payment_succeeded"
    ) {
        return Ok(Handled::Ignored);
    }
    let object = &event["data"]["object"];
    if object["payment_status"].as_str() != Some("paid") {
        return Ok(Handled::Ignored);
    }
    let (Some(session_id), Some(reference)) = (
        object["id"].as_str(),
        object["client_reference_id"]
            .as_str()
            .and_then(|r| Uuid::parse_str(r).ok()),
    ) else {
        return Err(WebhookError::BadEvent);
    };
    let unavailable = |err: sqlx::Error| {
        tracing::warn!(error = %err, "could not record a Stripe event");
        WebhookError::Unavailable
    };
    let mut tx = state.db.begin().await.map_err(unavailable)?;
    let first: Option<String> = sqlx::query_scalar(
        "INSERT INTO stripe_events (event_id) VALUES ($1) ON CONFLICT DO NOTHING RETURNING event_id",
    )
    .bind(event_id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(unavailable)?;
    if first.is_none() {
        return Ok(Handled::Repeated);
    }
    // The checkout it pays for: still open, and this very session.
    let paid: Option<(Uuid, i64)> = sqlx::query_as(
        "UPDATE credit_checkouts SET status = 'paid', paid_at = now()
         WHERE id = $1 AND session_hash = $2 AND status = 'open'
         RETURNING owner_id, amount",
    )
    .bind(reference)
    .bind(Sha256::digest(session_id.as_bytes()).to_vec())
    .fetch_optional(&mut *tx)
    .await
    .map_err(unavailable)?;
    let Some((owner, amount)) = paid else {
        // Another event paid it already, or it is not ours: remember the
        // event, change nothing else.
        tx.commit().await.map_err(unavailable)?;
        return Ok(Handled::Repeated);
    };
    let currency = &state.settings.billing.currency;
    let cents = object["amount_total"].as_i64();
    let same_currency = object["currency"]
        .as_str()
        .is_some_and(|c| c.eq_ignore_ascii_case(currency));
    if cents != Some(amount / 10_000) || !same_currency {
        tracing::warn!(checkout_id = %reference, "a paid session's amount differs from the checkout's");
        return Err(WebhookError::BadEvent);
    }
    let key = keystore::user_key(
        &state.db,
        &state.crypto.keyring,
        owner,
        keystore::KeyUse::BackgroundJob,
    )
    .await
    .map_err(|_| WebhookError::Unavailable)?;
    let note = format!(
        "Card payment through Stripe ({})",
        Money(amount).display(currency)
    );
    super::server::credit(&mut tx, owner, &key, "top_up", amount, &note)
        .await
        .map_err(|_| WebhookError::Unavailable)?;
    tx.commit().await.map_err(unavailable)?;
    tracing::info!(user_id = %owner, checkout_id = %reference, "credits added");
    crate::data::activity::server::note_for(
        state,
        owner,
        &key,
        crate::data::activity::Event::CreditsAdded,
        None,
        Some(&note),
    )
    .await;
    Ok(Handled::Credited)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, payload: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(payload);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signatures_are_checked_with_their_time() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_800_000_000;
        let good = sign("whsec_test", now, body);
        let header = format!("t={now},v1={good}");
        assert_eq!(verify_signature(&header, body, "whsec_test", now), Ok(()));
        // Any of several v1 signatures (Stripe sends two while a secret rolls).
        let two = format!("t={now},v1={},v1={good},v0=ignored", "ab".repeat(32));
        assert_eq!(verify_signature(&two, body, "whsec_test", now + 10), Ok(()));
        assert_eq!(
            verify_signature(&header, b"{\"id\":\"evt_2\"}", "whsec_test", now),
            Err(WebhookError::BadSignature),
            "another payload"
        );
        assert_eq!(
            verify_signature(&header, body, "whsec_other", now),
            Err(WebhookError::BadSignature),
            "another secret"
        );
        assert_eq!(
            verify_signature(&header, body, "whsec_test", now + TOLERANCE_SECS + 1),
            Err(WebhookError::TooOld)
        );
        let moved = format!("t={},v1={good}", now + 1);
        assert_eq!(
            verify_signature(&moved, body, "whsec_test", now),
            Err(WebhookError::BadSignature),
            "the time is signed too"
        );
        for bad in [
            "",
            "t=abc,v1=00",
            &format!("v1={good}"),
            &format!("t={now}"),
        ] {
            assert_eq!(
                verify_signature(bad, body, "whsec_test", now),
                Err(WebhookError::Malformed),
                "{bad}"
            );
        }
    }
}
