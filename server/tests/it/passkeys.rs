//! Passkeys around the browser (whose half the browser tests drive with
//! Chromium's virtual authenticator): ceremonies need their own user and
//! time, bad answers are plain messages, and another user's passkey is not
//! found.

use crate::common::TestApp;
use serde_json::Value;
use sqlx::PgPool;

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn ceremonies_and_bad_answers_are_refused_plainly(db: PgPool) {
    let app = TestApp::spawn(db).await;
    // Signed out: nothing to add to.
    let res = app.call(&app.client(), "passkey_register_start", &[]).await;
    assert_eq!(res.status(), 401);
    let ada = app.signed_up("ada@example.com").await;

    // The test server's public URL is an IP address: passkeys say why not.
    let res = app.call(&ada, "passkey_register_start", &[]).await;
    assert_eq!(res.status(), 422);
    let body: Value = res.json().await.unwrap();
    assert!(body.to_string().contains("IP address"), "{body}");

    // A sign-in answer with no ceremony, or garbage: refused, not a 500.
    for (ceremony, credential) in [
        ("not-an-id", "{}"),
        ("00000000-0000-0000-0000-000000000000", "{}"),
    ] {
        let res = app
            .call(
                &app.client(),
                "passkey_sign_in_finish",
                &[("ceremony", ceremony), ("credential", credential)],
            )
            .await;
        assert_eq!(res.status(), 422, "{ceremony}");
    }
    let res = app
        .call(
            &ada,
            "passkey_register_finish",
            &[
                ("ceremony", "00000000-0000-0000-0000-000000000000"),
                ("name", "x"),
                ("credential", "{}"),
            ],
        )
        .await;
    assert_eq!(res.status(), 422);

    // Another user's passkey (or none) is not found.
    let res = app
        .call(
            &ada,
            "delete_passkey",
            &[("id", "00000000-0000-0000-0000-000000000000")],
        )
        .await;
    assert_eq!(res.status(), 404);
    let listed: Vec<Value> = app
        .call(&ada, "list_passkeys", &[])
        .await
        .json()
        .await
        .unwrap();
    assert!(listed.is_empty());
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn another_users_passkey_is_not_found(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let ada = app.signed_up("ada@example.com").await;
    let eve = app.signed_up("eve@example.com").await;
    let id = crate::common::stored_passkey(&app, "ada@example.com", "Ada's phone").await;
    let res = app
        .call(&eve, "delete_passkey", &[("id", &id.to_string())])
        .await;
    assert_eq!(res.status(), 404);
    let eves: Vec<Value> = app
        .call(&eve, "list_passkeys", &[])
        .await
        .json()
        .await
        .unwrap();
    assert!(eves.is_empty());
    let adas: Vec<Value> = app
        .call(&ada, "list_passkeys", &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(adas.len(), 1);
    assert_eq!(adas[0]["name"], "Ada's phone");
    let res = app
        .call(&ada, "delete_passkey", &[("id", &id.to_string())])
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.count("SELECT count(*) FROM passkeys").await, 0);
}
