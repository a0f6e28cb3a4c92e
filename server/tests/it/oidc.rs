//! Sign-in with an OpenID Connect provider, against the fake provider (a
//! real HTTP server that signs real ID tokens): sign-up, sign-in, the
//! refusals (bad signature, wrong audience, issuer or nonce, expired,
//! replayed or foreign state, unverified address), no account takeover,
//! connecting and disconnecting in settings, and a second factor after it.

use crate::common::{
    PASSWORD, TestApp, enrol_totp, keyring,
    oidc::{fake_provider, location, provider_sign_in, to_callback},
    relaxed_settings, totp_code, with_fake_provider,
};
use serde_json::Value;
use sqlx::PgPool;

async fn spawn(db: PgPool) -> TestApp {
    let fake = server::fake_provider::start().await.unwrap();
    let settings = app::platform::Settings {
        oidc_providers: vec![fake_provider(fake)],
        ..with_fake_provider(relaxed_settings(), fake)
    };
    TestApp::spawn_full(db, settings, keyring(1, &[])).await
}

const GRACE: &[(&str, &str)] = &[
    ("sub", "grace-1"),
    ("email", "grace@example.com"),
    ("email_verified", "true"),
    ("given_name", "Grace"),
    ("family_name", "Hopper"),
];

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn signing_up_and_in_with_a_provider(db: PgPool) {
    let app = spawn(db).await;
    // The buttons are on both pages.
    let page = crate::common::page(&app.client(), app.url("/sign-in")).await;
    assert!(page.contains("Sign in with Fake ID"), "{page}");
    let page = crate::common::page(&app.client(), app.url("/sign-up")).await;
    assert!(page.contains("Sign up with Fake ID"), "{page}");

    // Signing in with no account: told to sign up.
    let client = app.client();
    assert_eq!(
        provider_sign_in(&app, &client, "sign-in", GRACE).await,
        "/sign-in?problem=no-account"
    );
    assert_eq!(app.current_user(&client).await, Value::Null);

    // Signing up: a confirmed account, named by the provider, no password.
    assert_eq!(
        provider_sign_in(&app, &client, "sign-up", GRACE).await,
        "/agents"
    );
    let me = app.current_user(&client).await;
    assert_eq!(me["email"], "grace@example.com");
    assert_eq!(me["first_name"], "Grace");
    assert_eq!(me["last_name"], "Hopper");
    assert_eq!(me["email_verified"], true);
    assert_eq!(
        app.sign_in(&app.client(), "grace@example.com", PASSWORD)
            .await
            .status(),
        401
    );
    let ids: Vec<Value> = app
        .call(&client, "list_identities", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0]["provider"], "Fake ID");
    // The only way in: not disconnected.
    let res = app
        .call(
            &client,
            "disconnect_identity",
            &[("id", ids[0]["id"].as_str().unwrap())],
        )
        .await;
    assert_eq!(res.status(), 422);

    // Later, from another browser, the same provider account signs in, even
    // with another address at the provider.
    let other = app.client();
    let who = [
        ("sub", "grace-1"),
        ("email", "grace@elsewhere.example"),
        ("email_verified", "true"),
    ];
    assert_eq!(
        provider_sign_in(&app, &other, "sign-in", &who).await,
        "/agents"
    );
    assert_eq!(app.current_user(&other).await["email"], "grace@example.com");
    assert_eq!(app.count("SELECT count(*) FROM users").await, 1);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn every_bad_answer_is_refused_with_a_plain_message(db: PgPool) {
    let app = spawn(db).await;
    for flaw in [
        "bad-signature",
        "wrong-audience",
        "wrong-issuer",
        "wrong-nonce",
        "expired",
    ] {
        let client = app.client();
        let who = [GRACE, &[("flaw", flaw)]].concat();
        assert_eq!(
            provider_sign_in(&app, &client, "sign-up", &who).await,
            "/sign-in?problem=failed",
            "{flaw}"
        );
        assert_eq!(app.current_user(&client).await, Value::Null, "{flaw}");
    }
    // An address the provider has not confirmed makes no account.
    let client = app.client();
    let who = [
        ("sub", "u-2"),
        ("email", "new@example.com"),
        ("email_verified", "false"),
    ];
    assert_eq!(
        provider_sign_in(&app, &client, "sign-up", &who).await,
        "/sign-in?problem=unverified"
    );
    assert_eq!(app.count("SELECT count(*) FROM users").await, 0);
    // The sign-in page turns the word into a sentence.
    let page = crate::common::page(&client, app.url("/sign-in?problem=failed")).await;
    assert!(page.contains("its answer could not be verified"), "{page}");

    // A replayed callback, one finished in another browser, and one with
    // no state are refused.
    let client = app.client();
    let callback = to_callback(&app, &client, "sign-up", GRACE).await;
    let stranger = app.client();
    let res = stranger.get(&callback).send().await.unwrap();
    assert_eq!(
        location(&res),
        "/sign-in?problem=expired",
        "another browser"
    );
    let client = app.client();
    let callback = to_callback(&app, &client, "sign-up", GRACE).await;
    assert_eq!(
        location(&client.get(&callback).send().await.unwrap()),
        "/agents"
    );
    let again = app.client();
    assert_eq!(
        location(&again.get(&callback).send().await.unwrap()),
        "/sign-in?problem=expired",
        "replayed"
    );
    let res = app
        .client()
        .get(app.url("/auth/oidc/fake/callback?code=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(location(&res), "/sign-in?problem=expired");
    // Signing up asks for the age confirmation first.
    let res = app
        .client()
        .post(app.url("/auth/oidc/fake"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("intent", "sign-up")])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&res), "/sign-up?problem=age");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_provider_account_never_takes_over_an_unconfirmed_one(db: PgPool) {
    let app = spawn(db).await;
    let owner = app.signed_up("grace@example.com").await;
    // The Enclave address is not confirmed: no joining by address.
    let client = app.client();
    assert_eq!(
        provider_sign_in(&app, &client, "sign-in", GRACE).await,
        "/sign-in?problem=account-exists"
    );
    assert_eq!(
        provider_sign_in(&app, &client, "sign-up", GRACE).await,
        "/sign-in?problem=account-exists"
    );
    assert_eq!(app.current_user(&client).await, Value::Null);
    // Confirmed, but the provider has not confirmed it: still no.
    sqlx::query("UPDATE users SET email_verified_at = now()")
        .execute(&app.db)
        .await
        .unwrap();
    let unverified = [
        ("sub", "grace-1"),
        ("email", "grace@example.com"),
        ("email_verified", "false"),
    ];
    assert_eq!(
        provider_sign_in(&app, &client, "sign-in", &unverified).await,
        "/sign-in?problem=account-exists"
    );
    // Both confirmed: the provider account joins it.
    assert_eq!(
        provider_sign_in(&app, &client, "sign-in", GRACE).await,
        "/agents"
    );
    assert_eq!(
        app.current_user(&client).await["email"],
        "grace@example.com"
    );
    let ids: Vec<Value> = app
        .call(&owner, "list_identities", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    // With a password as well, it may be disconnected.
    let res = app
        .call(
            &owner,
            "disconnect_identity",
            &[("id", ids[0]["id"].as_str().unwrap())],
        )
        .await;
    assert_eq!(res.status(), 200);
    // Another user's identity id is not found.
    let eve = app.signed_up("eve@example.com").await;
    let res = app
        .call(
            &eve,
            "disconnect_identity",
            &[("id", ids[0]["id"].as_str().unwrap())],
        )
        .await;
    assert_eq!(res.status(), 404);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn connecting_from_settings_and_a_second_factor_after_the_provider(db: PgPool) {
    let app = spawn(db).await;
    let ada = app.signed_up("ada@example.com").await;
    let who = [
        ("sub", "ada-at-provider"),
        ("email", "ada.private@example.net"),
        ("email_verified", "true"),
    ];
    let back = provider_sign_in(&app, &ada, "link", &who).await;
    assert_eq!(back, "/settings/sign-in-methods");
    let ids: Vec<Value> = app
        .call(&ada, "list_identities", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids.len(), 1);
    assert_eq!(ids[0]["email"], "ada.private@example.net");
    // The same provider account cannot join a second Enclave account.
    let eve = app.signed_up("eve@example.com").await;
    assert_eq!(
        provider_sign_in(&app, &eve, "link", &who).await,
        "/settings/sign-in-methods?problem=linked-elsewhere"
    );
    // Connecting needs a signed-in session.
    let res = app
        .client()
        .post(app.url("/auth/oidc/fake"))
        .header("sec-fetch-site", "same-origin")
        .form(&[("intent", "link")])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&res), "/sign-in");

    // With two-factor sign-in on, the provider is the first step only.
    let (secret, _) = enrol_totp(&app, &ada).await;
    let client = app.client();
    let back = provider_sign_in(&app, &client, "sign-in", &who).await;
    assert_eq!(back, "/two-factor?next=%2Fagents");
    assert_eq!(app.current_user(&client).await, Value::Null);
    let res = app
        .call(
            &client,
            "complete_sign_in",
            &[("code", &totp_code(&secret, 1))],
        )
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.current_user(&client).await["email"], "ada@example.com");
}
