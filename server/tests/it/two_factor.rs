//! Two-factor sign-in (TOTP): enrolment confirmed by a first code, recovery
//! codes, the second step of signing in (a pending session signs nobody
//! in), replayed and wrong codes, limits, and turning it off.

use crate::common::{PASSWORD, TestApp, enrol_totp, set_cookie, totp_code};
use reqwest::Client;
use serde_json::Value;
use sqlx::PgPool;

async fn complete(app: &TestApp, client: &Client, code: &str) -> reqwest::Response {
    app.call(
        client,
        "complete_sign_in",
        &[("code", code), ("next", "/agents")],
    )
    .await
}

fn field_error(body: &Value) -> String {
    body["Invalid"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn enrolment_needs_a_right_first_code_and_gives_ten_recovery_codes(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let client = app.signed_up("ada@example.com").await;
    let status: Value = app
        .call(&client, "two_factor_status", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["on"], false);

    let setup: Value = app
        .call(&client, "start_totp", &[])
        .await
        .json()
        .await
        .unwrap();
    let secret = setup["secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32, "160 bits in base32: {secret}");
    assert!(
        setup["qr_svg"].as_str().unwrap().starts_with("<?xml"),
        "an SVG drawn here"
    );
    // Until confirmed, nothing changes for signing in.
    let res = app
        .call(&client, "confirm_totp", &[("code", "12345")])
        .await;
    assert_eq!(res.status(), 422);
    let wrong = if totp_code(secret, 0) == "123456" {
        "654321"
    } else {
        "123456"
    };
    let res = app.call(&client, "confirm_totp", &[("code", wrong)]).await;
    assert_eq!(res.status(), 422);
    assert!(field_error(&res.json().await.unwrap()).contains("not right"));
    assert_eq!(
        app.sign_in(&app.client(), "ada@example.com", PASSWORD)
            .await
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_owned())
            .as_deref(),
        Some("/dashboard"),
        "no second step yet"
    );

    let res = app
        .call(&client, "confirm_totp", &[("code", &totp_code(secret, 0))])
        .await;
    assert_eq!(res.status(), 200);
    let codes: Vec<String> = res.json().await.unwrap();
    assert_eq!(codes.len(), 10);
    assert!(
        codes
            .iter()
            .all(|c| c.len() == 19 && c.matches('-').count() == 3)
    );
    let status: Value = app
        .call(&client, "two_factor_status", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        status,
        serde_json::json!({"on": true, "recovery_codes_left": 10})
    );
    // Stored sealed and hashed: neither the secret nor a code is in its column.
    let stored: Vec<u8> = sqlx::query_scalar("SELECT secret FROM totp_factors")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert!(!String::from_utf8_lossy(&stored).contains(secret));
    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT code_hash FROM recovery_codes")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(hashes.len(), 10);
    assert!(
        hashes
            .iter()
            .all(|h| h.len() == 32 && *h != codes[0].as_bytes())
    );

    // A second enrolment is refused while one is on.
    let res = app.call(&client, "start_totp", &[]).await;
    assert_eq!(res.status(), 422);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn signing_in_asks_for_the_second_factor_and_refuses_replays(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let owner = app.signed_up("ada@example.com").await;
    let (secret, codes) = enrol_totp(&app, &owner).await;

    // The password alone opens a pending session that signs nobody in.
    let client = app.client();
    let res = app
        .call(
            &client,
            "sign_in",
            &[
                ("email", "ada@example.com"),
                ("password", PASSWORD),
                ("next", "/agents"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    assert!(set_cookie(&res, "enclave_session").is_some());
    assert_eq!(res.headers()["location"], "/two-factor?next=%2Fagents");
    assert_eq!(app.current_user(&client).await, Value::Null);
    assert_eq!(app.call(&client, "list_sessions", &[]).await.status(), 401);
    let page = client.get(app.url("/settings")).send().await.unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/sign-in?next=%2Fsettings");
    // Nor is it listed among the owner's sessions.
    let listed: Vec<Value> = app
        .call(&owner, "list_sessions", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);

    // The code used at enrolment is spent: its step is not newer.
    let res = complete(&app, &client, &totp_code(&secret, 0)).await;
    assert_eq!(res.status(), 422);
    assert_eq!(app.current_user(&client).await, Value::Null);
    // The next step's code (the server allows one step of drift) works once.
    let next = totp_code(&secret, 1);
    let res = complete(&app, &client, &format!(" {} {} ", &next[..3], &next[3..])).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.current_user(&client).await["email"], "ada@example.com");
    // A new token: the pending one is not promoted.
    let pending_left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sessions WHERE second_factor_pending")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(pending_left, 0);

    // The same code again, from another browser: refused.
    let other = app.client();
    app.sign_in(&other, "ada@example.com", PASSWORD).await;
    let res = complete(&app, &other, &next).await;
    assert_eq!(res.status(), 422);
    assert_eq!(app.current_user(&other).await, Value::Null);

    // A recovery code works once, typed in any case.
    let res = complete(&app, &other, &codes[3].to_uppercase()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.current_user(&other).await["email"], "ada@example.com");
    let third = app.client();
    app.sign_in(&third, "ada@example.com", PASSWORD).await;
    let res = complete(&app, &third, &codes[3]).await;
    assert_eq!(res.status(), 422);
    let status: Value = app
        .call(&owner, "two_factor_status", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["recovery_codes_left"], 9);

    // A pending session ends after ten minutes.
    sqlx::query(
        "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE second_factor_pending",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let res = complete(&app, &third, &codes[4]).await;
    assert_eq!(res.status(), 422);
    assert!(field_error(&res.json().await.unwrap()).contains("expired"));
    // And without any pending session there is nothing to complete.
    let res = complete(&app, &app.client(), &codes[4]).await;
    assert_eq!(res.status(), 422);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn wrong_codes_are_limited_per_account(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let owner = app.signed_up("ada@example.com").await;
    let (_, codes) = enrol_totp(&app, &owner).await;
    let client = app.client();
    app.sign_in(&client, "ada@example.com", PASSWORD).await;
    for _ in 0..5 {
        let res = complete(&app, &client, "aaaa-bbbb-cccc-dddd").await;
        assert_eq!(res.status(), 422);
    }
    // Even the right code waits now.
    let res = complete(&app, &client, &codes[0]).await;
    assert_eq!(res.status(), 429);
    let body: Value = res.json().await.unwrap();
    assert!(
        body["RateLimited"]["retry_after_secs"].as_u64().unwrap() > 0,
        "{body}"
    );
    assert_eq!(app.current_user(&client).await, Value::Null);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn turning_it_off_needs_a_current_code(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let owner = app.signed_up("ada@example.com").await;
    let (secret, _) = enrol_totp(&app, &owner).await;
    let res = app.call(&owner, "disable_totp", &[("code", "aaaa")]).await;
    assert_eq!(res.status(), 422);
    let res = app
        .call(&owner, "disable_totp", &[("code", &totp_code(&secret, 1))])
        .await;
    assert_eq!(res.status(), 200);
    let status: Value = app
        .call(&owner, "two_factor_status", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        status,
        serde_json::json!({"on": false, "recovery_codes_left": 0})
    );
    // Signing in is one step again.
    let client = app.client();
    app.sign_in(&client, "ada@example.com", PASSWORD).await;
    assert_eq!(app.current_user(&client).await["email"], "ada@example.com");
    // Another user's session cannot turn anyone's off: it acts on its own.
    let eve = app.signed_up("eve@example.com").await;
    let res = app
        .call(&eve, "disable_totp", &[("code", &totp_code(&secret, 1))])
        .await;
    assert_eq!(res.status(), 422);
}
