//! Sign-up, sign-in, sessions and their limits, through the real HTTP stack
//! against a fresh PostgreSQL database per test.

use std::time::{Duration, Instant};

use crate::common::{PASSWORD, TestApp, plain_post, relaxed_settings, session_token, set_cookie};
use app::platform::settings::Limit;
use reqwest::header;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn sign_up_creates_the_account_and_sign_in_opens_it(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let client = app.client();
    let res = app.sign_up(&client, "  Ada@Example.COM ", PASSWORD).await;
    assert_eq!(res.status(), 200);
    // No session from sign-up itself: a registered address answers the same
    // way, and there is no session to give then.
    assert!(set_cookie(&res, "enclave_session").is_none());
    assert_eq!(app.current_user(&client).await, Value::Null);
    let res = app.sign_in(&client, "ada@example.com", PASSWORD).await;
    let cookie = set_cookie(&res, "enclave_session").unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert_eq!(
        app.current_user(&client).await,
        json!({
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "ada@example.com",
            "email_verified": false,
            // The first account administers the server.
            "is_admin": true
        })
    );
    // Stored sealed with the user's key: the hash opens to argon2id at the
    // OWASP parameters, and the age confirmation is recorded.
    let (id, sealed_hash, age): (uuid::Uuid, Vec<u8>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT id, password_hash, age_confirmed_at FROM users")
            .fetch_one(&app.db)
            .await
            .unwrap();
    let key = app::platform::keystore::user_key(
        &app.db,
        &app.keyring,
        id,
        app::platform::keystore::KeyUse::Operator,
    )
    .await
    .unwrap();
    let hash = key
        .open_string(
            app::platform::crypto::Place::new("users", "password_hash", id, id),
            &app::platform::crypto::Sealed::from_stored(sealed_hash),
        )
        .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(age.is_some());
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn sign_up_validation_names_each_bad_field(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let client = app.client();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("first_name", ""),
                ("last_name", "L"),
                ("email", "a@example.com"),
                ("password", PASSWORD),
                ("age_confirmed", "yes"),
            ],
            "first_name",
        ),
        (
            &[
                ("first_name", "A"),
                ("last_name", " "),
                ("email", "a@example.com"),
                ("password", PASSWORD),
                ("age_confirmed", "yes"),
            ],
            "last_name",
        ),
        (
            &[
                ("first_name", "A"),
                ("last_name", "L"),
                ("email", "not-an-email"),
                ("password", PASSWORD),
                ("age_confirmed", "yes"),
            ],
            "email",
        ),
        (
            &[
                ("first_name", "A"),
                ("last_name", "L"),
                ("email", "a@example.com"),
                ("password", "short"),
                ("age_confirmed", "yes"),
            ],
            "password",
        ),
        (
            &[
                ("first_name", "A"),
                ("last_name", "L"),
                ("email", "a@example.com"),
                ("password", PASSWORD),
            ],
            "age_confirmed",
        ),
    ];
    for (form, field) in cases {
        let res = app.call(&client, "sign_up", form).await;
        assert_eq!(res.status(), 422, "{field}");
        let body: Value = res.json().await.unwrap();
        let errors = body["Invalid"].as_array().expect("an Invalid error");
        assert!(
            errors.iter().any(|e| e["field"] == *field),
            "{field} not named in {body}"
        );
    }
    // A 64-character password is accepted (ASVS), as are multi-byte ones.
    let long = "p".repeat(64);
    let res = app
        .call(
            &client,
            "sign_up",
            &[
                ("first_name", "A"),
                ("last_name", "L"),
                ("email", "long@example.com"),
                ("password", &long),
                ("age_confirmed", "yes"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM users").await, 1);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_missing_form_field_is_a_clear_error_not_a_500(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let res = app
        .call(&app.client(), "sign_up", &[("first_name", "Ada")])
        .await;
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, json!("BadRequest"));
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn sign_in_succeeds_with_the_right_password_only(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.signed_up("alan@example.com").await;

    let client = app.client();
    let res = app.sign_in(&client, "Alan@Example.com", PASSWORD).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.current_user(&client).await["email"], "alan@example.com");

    let wrong = app.client();
    let res = app
        .sign_in(&wrong, "alan@example.com", "wrong password")
        .await;
    assert_eq!(res.status(), 401);
    assert!(set_cookie(&res, "enclave_session").is_none());
    assert_eq!(app.current_user(&wrong).await, Value::Null);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn every_sign_in_failure_gets_the_same_answer(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.signed_up("known@example.com").await;
    let mut bodies = Vec::new();
    for (email, password) in [
        ("known@example.com", "wrong password"),
        ("unknown@example.com", "wrong password"),
        ("unknown@example.com", PASSWORD),
        ("not an email", PASSWORD),
        ("known@example.com", &"x".repeat(500)),
    ] {
        let res = app.sign_in(&app.client(), email, password).await;
        assert_eq!(res.status(), 401, "{email}");
        bodies.push(res.text().await.unwrap());
    }
    assert!(bodies.iter().all(|b| b == &bodies[0]), "{bodies:?}");
    assert_eq!(bodies[0], "\"InvalidCredentials\"");
}

/// How long one failed sign-in for `email` takes.
async fn time_sign_in(app: &TestApp, email: &str) -> Duration {
    let start = Instant::now();
    let res = app.sign_in(&app.client(), email, "wrong password").await;
    let elapsed = start.elapsed();
    assert_eq!(res.status(), 401);
    elapsed
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn unknown_emails_cost_a_full_password_check(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let mut known = Vec::new();
    for i in 0..8 {
        let email = format!("timing{i}@example.com");
        app.signed_up(&email).await;
        known.push(email);
    }
    // Known and unknown attempts alternate, so load from other tests running
    // at the same time falls on both alike; each account is tried once so the
    // per-account limit never answers first. The minimum of each is its cost:
    // contention only ever adds time.
    let (mut known_min, mut unknown_min) = (Duration::MAX, Duration::MAX);
    for (i, email) in known.iter().enumerate() {
        known_min = known_min.min(time_sign_in(&app, email).await);
        unknown_min = unknown_min.min(time_sign_in(&app, &format!("nobody{i}@example.com")).await);
    }
    // Without the dummy hash an unknown email answers in about a millisecond,
    // against the full argon2 cost for a known one; the bound leaves margin.
    assert!(
        unknown_min * 2 >= known_min,
        "unknown {unknown_min:?} vs known {known_min:?}"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn sessions_are_stored_hashed_and_new_at_every_sign_in(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.signed_up("hash@example.com").await;
    let first = app
        .sign_in(&app.client(), "hash@example.com", PASSWORD)
        .await;
    let first_token = session_token(&first);
    let second = app
        .sign_in(&app.client(), "hash@example.com", PASSWORD)
        .await;
    let second_token = session_token(&second);
    assert_ne!(first_token, second_token);
    // At least 128 bits of randomness: 32 bytes, base64url.
    assert!(first_token.len() >= 43, "{first_token}");

    let hashes: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM sessions")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(hashes.len(), 3);
    for token in [&first_token, &second_token] {
        let digest = Sha256::digest(token.as_bytes()).to_vec();
        assert!(hashes.contains(&digest));
        assert!(!hashes.contains(&token.as_bytes().to_vec()));
    }
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn sign_out_ends_the_session_on_the_server(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.sign_up(&app.client(), "out@example.com", PASSWORD)
        .await;
    let res = app
        .sign_in(&app.client(), "out@example.com", PASSWORD)
        .await;
    let token = session_token(&res);

    // A second client replaying the same token sees what the server sees.
    let replay = || {
        app.client()
            .post(app.url("/api/current_user"))
            .header(header::COOKIE, format!("enclave_session={token}"))
            .header(header::ACCEPT, "application/json")
            .send()
    };
    assert_eq!(
        replay().await.unwrap().json::<Value>().await.unwrap()["email"],
        "out@example.com"
    );

    let client = app.client();
    let res = client
        .post(app.url("/api/sign_out"))
        .header(header::COOKIE, format!("enclave_session={token}"))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let cleared = set_cookie(&res, "enclave_session").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    assert_eq!(
        replay().await.unwrap().json::<Value>().await.unwrap(),
        Value::Null
    );
    assert_eq!(app.count("SELECT count(*) FROM sessions").await, 0);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn sign_out_everywhere_ends_every_session_of_that_user_only(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let laptop = app.signed_up("many@example.com").await;
    let phone = app.client();
    assert_eq!(
        app.sign_in(&phone, "many@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    let someone_else = app.signed_up("other@example.com").await;

    let res = app.call(&laptop, "sign_out_everywhere", &[]).await;
    assert_eq!(res.status(), 200);

    assert_eq!(app.current_user(&laptop).await, Value::Null);
    assert_eq!(app.current_user(&phone).await, Value::Null);
    assert_eq!(
        app.current_user(&someone_else).await["email"],
        "other@example.com"
    );

    // Signed out, it asks for a session.
    let res = app.call(&app.client(), "sign_out_everywhere", &[]).await;
    assert_eq!(res.status(), 401);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn an_expired_session_is_signed_out(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let client = app.signed_up("expiry@example.com").await;
    assert_eq!(
        app.current_user(&client).await["email"],
        "expiry@example.com"
    );

    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second'")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(app.current_user(&client).await, Value::Null);
    let res = client.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(res.status(), 303);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn session_cookie_lives_as_long_as_the_configured_ttl(db: PgPool) {
    let settings = app::platform::Settings {
        session_ttl: Duration::from_secs(2 * 3600),
        ..relaxed_settings()
    };
    let app = TestApp::spawn_with(db, settings).await;
    app.signed_up("ttl@example.com").await;
    sqlx::query("DELETE FROM sessions")
        .execute(&app.db)
        .await
        .unwrap();
    let res = app
        .sign_in(&app.client(), "ttl@example.com", PASSWORD)
        .await;
    assert!(
        set_cookie(&res, "enclave_session")
            .unwrap()
            .contains("Max-Age=7200")
    );
    let seconds: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM expires_at - created_at)::float8 FROM sessions",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!((seconds - 7200.0).abs() < 5.0, "{seconds}");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn failed_sign_ins_are_limited_per_account(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.signed_up("target@example.com").await;
    let limit = app.settings.sign_in_per_account.max;
    for _ in 0..limit {
        let res = app
            .sign_in(&app.client(), "target@example.com", "guess")
            .await;
        assert_eq!(res.status(), 401);
    }
    // Now even the right password waits, and the answer says for how long.
    let res = app
        .sign_in(&app.client(), "target@example.com", PASSWORD)
        .await;
    assert_eq!(res.status(), 429);
    let retry_after: u64 = res.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 0 && retry_after <= 15 * 60, "{retry_after}");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["RateLimited"]["retry_after_secs"], retry_after);

    // Another account is not affected.
    app.signed_up("bystander@example.com").await;
    assert_eq!(
        app.sign_in(&app.client(), "bystander@example.com", PASSWORD)
            .await
            .status(),
        200
    );

    // Once the window has passed, the right password works and resets the count.
    sqlx::query("UPDATE rate_limits SET window_start = now() - interval '1 hour'")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(
        app.sign_in(&app.client(), "target@example.com", PASSWORD)
            .await
            .status(),
        200
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn sign_ins_are_limited_per_client_address(db: PgPool) {
    let settings = app::platform::Settings {
        sign_in_per_ip: Limit::new(3, 600),
        proxy_hops: 1,
        ..relaxed_settings()
    };
    let app = TestApp::spawn_with(db, settings).await;
    let attempt = |forwarded: String, email: String| {
        let client = app.client();
        let url = app.url("/api/sign_in");
        async move {
            client
                .post(url)
                .header("x-forwarded-for", forwarded)
                .header(header::ACCEPT, "application/json")
                .form(&[("email", email.as_str()), ("password", "guess")])
                .send()
                .await
                .unwrap()
        }
    };
    // The client writes what it likes on the left; the proxy appends the
    // address it saw. Changing the left part does not make a new client.
    for i in 0..3 {
        let forwarded = format!("192.0.2.{i}, 203.0.113.7");
        assert_eq!(
            attempt(forwarded, format!("u{i}@example.com"))
                .await
                .status(),
            401
        );
    }
    let res = attempt("192.0.2.99, 203.0.113.7".into(), "u9@example.com".into()).await;
    assert_eq!(res.status(), 429);
    let body: Value = res.json().await.unwrap();
    assert!(body["RateLimited"]["retry_after_secs"].as_u64().unwrap() <= 600);
    // Another address still gets an answer on the merits.
    assert_eq!(
        attempt("203.0.113.7, 198.51.100.1".into(), "u9@example.com".into())
            .await
            .status(),
        401
    );
    // An IPv6 client has one bucket for its /64, not one per address.
    for i in 1..=3 {
        let forwarded = format!("2001:db8:5:6::{i}");
        assert_eq!(
            attempt(forwarded, format!("v{i}@example.com"))
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        attempt("2001:db8:5:6:ffff::9".into(), "v9@example.com".into())
            .await
            .status(),
        429
    );
    // The buckets do not hold the addresses themselves.
    let buckets: Vec<String> = sqlx::query_scalar("SELECT bucket FROM rate_limits")
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert!(!buckets.is_empty());
    for bucket in &buckets {
        assert!(
            !bucket.contains("203.0.113") && !bucket.contains("2001:db8"),
            "{bucket}"
        );
    }
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn parallel_guesses_at_one_account_get_only_the_allowed_number_of_checks(db: PgPool) {
    let settings = app::platform::Settings {
        sign_in_per_account: Limit::new(5, 900),
        ..relaxed_settings()
    };
    let app = TestApp::spawn_with(db, settings).await;
    app.signed_up("parallel@example.com").await;
    let guesses = (0..20).map(|i| {
        let client = app.client();
        let password = format!("wrong guess {i}");
        let app = &app;
        async move {
            app.sign_in(&client, "parallel@example.com", &password)
                .await
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(
        (checked, refused),
        (5, 15),
        "all at once, still only five guesses were checked: {statuses:?}"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn sign_ups_are_limited_per_client_address(db: PgPool) {
    let settings = app::platform::Settings {
        sign_up_per_ip: Limit::new(2, 3600),
        ..relaxed_settings()
    };
    let app = TestApp::spawn_with(db, settings).await;
    for i in 0..2 {
        let res = app
            .sign_up(&app.client(), &format!("s{i}@example.com"), PASSWORD)
            .await;
        assert_eq!(res.status(), 200);
    }
    let res = app.sign_up(&app.client(), "s3@example.com", PASSWORD).await;
    assert_eq!(res.status(), 429);
    assert_eq!(app.count("SELECT count(*) FROM users").await, 2);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn cross_origin_state_changes_are_refused(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let form = [
        ("first_name", "Eve"),
        ("last_name", "Mallory"),
        ("email", "eve@example.com"),
        ("password", PASSWORD),
        ("age_confirmed", "yes"),
    ];
    let client = app.client();
    let from_evil = client
        .post(app.url("/api/sign_up"))
        .header(header::ORIGIN, "https://evil.example")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(from_evil.status(), 403);
    assert!(
        from_evil
            .text()
            .await
            .unwrap()
            .contains("Cross-origin request refused")
    );

    let fetch_metadata = client
        .post(app.url("/api/sign_up"))
        .header("sec-fetch-site", "cross-site")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(fetch_metadata.status(), 403);
    assert_eq!(app.count("SELECT count(*) FROM users").await, 0);

    // The same request from our own origin goes through.
    let own = client
        .post(app.url("/api/sign_up"))
        .header(header::ORIGIN, app.url(""))
        .header(header::ACCEPT, "application/json")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM users").await, 1);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn protected_pages_send_signed_out_visitors_to_sign_in_and_back(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let res = app
        .client()
        .get(app.url("/settings?tab=security"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()[header::LOCATION],
        "/sign-in?next=%2Fsettings%3Ftab%3Dsecurity"
    );

    // A plain form post (no JavaScript) signs in and goes where `next` says.
    app.signed_up("back@example.com").await;
    let client = app.client();
    let res = client
        .post(app.url("/api/sign_in"))
        .header(header::ACCEPT, "text/html")
        .header(header::REFERER, app.url("/sign-in?next=%2Fsettings"))
        .form(&[
            ("email", "back@example.com"),
            ("password", PASSWORD),
            ("next", "/settings"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    assert_eq!(res.headers()[header::LOCATION], "/settings");
    let page = client.get(app.url("/settings")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("back@example.com"));

    // Signed in, the sign-in page sends you to the dashboard.
    let res = client.get(app.url("/sign-in")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()[header::LOCATION], "/dashboard");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn next_cannot_redirect_off_site(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.signed_up("safe@example.com").await;
    for hostile in ["https://evil.example/", "//evil.example", "/\\evil.example"] {
        let res = app
            .client()
            .post(app.url("/api/sign_in"))
            .header(header::ACCEPT, "text/html")
            .header(header::REFERER, app.url("/sign-in"))
            .form(&[
                ("email", "safe@example.com"),
                ("password", PASSWORD),
                ("next", hostile),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 302, "{hostile}");
        assert_eq!(res.headers()[header::LOCATION], "/dashboard", "{hostile}");
    }
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_failed_form_post_returns_to_the_form_with_the_error(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let client = app.client();
    let res = client
        .post(app.url("/api/sign_in"))
        .header(header::ACCEPT, "text/html")
        .header(header::REFERER, app.url("/sign-in"))
        .form(&[
            ("email", "nobody@example.com"),
            ("password", "wrong password"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 302);
    let location = res.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.contains("/sign-in") && location.contains("__err="),
        "{location}"
    );
    assert!(
        !location.contains("wrong"),
        "the password must not travel in the URL"
    );

    let page = client
        .get(app.url(&location.replace(&app.url(""), "")))
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    assert!(
        html.contains("The email or password is incorrect."),
        "{html}"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn pages_carry_security_headers_and_a_nonce_csp(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let res = app.client().get(app.url("/sign-in")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let headers = res.headers().clone();
    let csp = headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("object-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::REFERRER_POLICY], "same-origin");
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");

    // Every inline script of `html` carries the nonce `csp` allows; the nonce.
    let scripts_carry_nonce = |csp: &str, html: &str| {
        let nonce = csp
            .split("'nonce-")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .unwrap()
            .to_owned();
        let scripts = html.matches("<script").count();
        assert!(scripts > 0);
        assert_eq!(
            html.matches(&format!("nonce=\"{nonce}\"")).count(),
            scripts,
            "every inline script must carry this response's nonce"
        );
        nonce
    };
    let html = res.text().await.unwrap();
    let nonce = scripts_carry_nonce(&csp, &html);
    // "Not found" is rendered by the fallback: its scripts need it too, or
    // the page never comes alive.
    let res = app
        .client()
        .get(app.url("/no-such-page"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let csp = res.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    let html = res.text().await.unwrap();
    assert!(html.contains("Not found"), "{html}");
    scripts_carry_nonce(&csp, &html);

    // A fresh nonce per response.
    let again = app.client().get(app.url("/sign-in")).send().await.unwrap();
    assert!(
        !again.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains(&nonce)
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn theme_is_a_persistent_cookie_rendered_on_the_server(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let client = app.client();
    let res = app.call(&client, "set_theme", &[("theme", "dark")]).await;
    assert_eq!(res.status(), 200);
    let cookie = set_cookie(&res, "theme").unwrap();
    assert!(cookie.contains("Max-Age=31536000"), "{cookie}");

    let html = client
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<html lang=\"en\" data-theme=\"dark\""),
        "{}",
        &html[..200]
    );

    let res = app.call(&client, "set_theme", &[("theme", "purple")]).await;
    assert_eq!(res.status(), 422);
    let html = app
        .client()
        .get(app.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("data-theme=\"system\""));

    // Without JavaScript the switcher is a plain form: it returns to the
    // page it was on, as that page's address was (an earlier failure's
    // error taken out of it).
    for (from, back) in [
        ("/dashboard", "/dashboard"),
        ("/dashboard?__path=%2Fapi%2Fset_theme&__err=x", "/dashboard"),
        ("/chat?agent=7", "/chat?agent=7"),
    ] {
        let res = client
            .post(app.url("/api/set_theme"))
            .header(header::ACCEPT, "text/html")
            .header(header::REFERER, app.url(from))
            .form(&[("theme", "light")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 302, "{from}");
        assert_eq!(
            res.headers()[header::LOCATION],
            app.url(back).as_str(),
            "{from}"
        );
    }
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn unknown_pages_are_404_and_health_answers(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let res = app
        .client()
        .get(app.url("/no-such-page"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let res = app.client().get(app.url("/health")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

/// A page's render leaves its owner as the thread's current one (Leptos'
/// `Owner::new_root` sets it and nothing unsets it), and Leptos' static-file
/// handler answers under `Owner::new()`: a child of that page, reading the
/// page's response options. A file served on that thread while a "Not
/// found" page was still being sent took the page's 404 (in the browser
/// tests a split WASM chunk answered 404, or 302 after a redirect, and the
/// page died). Both requests run here on one thread, the page's body unread.
#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_file_is_served_as_itself_while_another_page_is_being_sent(db: PgPool) {
    use axum::body::Body;
    use tower::ServiceExt;
    let app = TestApp::spawn(db).await;
    let site = std::env::temp_dir().join(format!("enclave-site-{}", app.addr.port()));
    std::fs::create_dir_all(site.join("pkg")).unwrap();
    std::fs::write(site.join("pkg/chunk_1.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let mut state = app.state.clone();
    state.leptos_options.site_root = site.to_string_lossy().into();
    let router = server::router(state, &app.settings.public_url);
    let get = |path: &str| http::Request::get(path).body(Body::empty()).unwrap();

    let page = router.clone().oneshot(get("/no-such-page")).await.unwrap();
    assert_eq!(page.status(), 404);
    let file = router
        .clone()
        .oneshot(get("/pkg/chunk_1.wasm"))
        .await
        .unwrap();
    assert_eq!(file.status(), 200, "{:?}", file.headers());
    assert_eq!(file.headers()[header::CONTENT_TYPE], "application/wasm");
    let missing = router
        .clone()
        .oneshot(get("/pkg/chunk_2.wasm"))
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    drop(page);
    std::fs::remove_dir_all(site).unwrap();
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn oversized_request_bodies_are_refused(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let huge = "x".repeat(server::MAX_REQUEST_BODY + 1);
    let res = app
        .client()
        .post(app.url("/api/sign_in"))
        .header(header::ACCEPT, "application/json")
        .form(&[("email", "a@example.com"), ("password", huge.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(
        app.count("SELECT count(*) FROM rate_limits").await,
        0,
        "never reached sign-in"
    );
}

/// A plain form post, as a browser without JavaScript sends it.
#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_failed_sign_up_without_javascript_keeps_what_was_typed(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let client = app.client();
    let form = [
        ("first_name", "Grace"),
        ("last_name", "Hopper-Lastname"),
        ("email", "grace@example.com"),
        ("password", "short"),
        ("age_confirmed", "yes"),
        ("next", "/agents"),
    ];
    let res = plain_post(&app, &client, "/sign-up", &form).await;
    assert_eq!(res.status(), 422);
    let page = res.text().await.unwrap();
    assert!(page.contains(r#"value="Grace""#), "the first name is kept");
    assert!(page.contains(r#"value="Hopper-Lastname""#));
    assert!(page.contains(r#"value="grace@example.com""#));
    assert!(
        page.contains(r#"value="/agents""#),
        "so is where to go next"
    );
    assert!(
        page.contains("at least 8 characters"),
        "and the reason is shown"
    );
    assert!(
        !page.contains(r#"value="short""#),
        "the password is not sent back"
    );
    assert_eq!(app.count("SELECT count(*) FROM users").await, 0);

    // Corrected, it signs up and says to check the inbox, passing on where
    // to go after signing in.
    let form = [
        ("first_name", "Grace"),
        ("last_name", "Hopper"),
        ("email", "grace@example.com"),
        ("password", PASSWORD),
        ("age_confirmed", "yes"),
        ("next", "/agents"),
    ];
    let res = plain_post(&app, &client, "/sign-up", &form).await;
    assert_eq!(res.status(), 303);
    assert_eq!(
        res.headers()[header::LOCATION],
        "/check-email?next=%2Fagents"
    );
    assert!(set_cookie(&res, "enclave_session").is_none());
    let page = crate::common::page(&client, app.url("/check-email?next=%2Fagents")).await;
    assert!(page.contains("Check your inbox"), "{page}");
    assert!(page.contains(r#"href="/sign-in?next=%2Fagents""#), "{page}");
    assert_eq!(app.count("SELECT count(*) FROM users").await, 1);
}

/// Building a router lists the app's routes by rendering it with resource
/// loads suppressed through a process-wide flag; a page rendering meanwhile
/// in another server of the same process got resources that never loaded
/// and hung for good (it failed one test run in three). Pages rendered while
/// other routers are built all complete.
#[sqlx::test(migrations = "../migrations")]
async fn pages_render_while_other_servers_start_in_the_same_process(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let client = app.signed_up("routes@example.com").await;
    let state = app.state.clone();
    // Another test's server, on a thread and runtime of its own.
    let building = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        for _ in 0..100 {
            let _ = server::router(state.clone(), "http://127.0.0.1:1");
        }
    });
    let mut rendered = 0;
    while !building.is_finished() || rendered < 20 {
        let page = tokio::time::timeout(Duration::from_secs(10), async {
            client
                .get(app.url("/dashboard"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
        .await
        .expect("the page rendered (no resource was left waiting)");
        assert!(page.contains("signed-in-as"), "the header knows the user");
        rendered += 1;
    }
    building.join().unwrap();
}
