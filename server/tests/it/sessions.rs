//! Settings → Sessions: every live session with its browser, system and
//! address; end one (never another user's), or all the others; an ended
//! session is signed out on its next request.

use crate::common::{PASSWORD, TestApp, browser};
use reqwest::Client;
use serde_json::Value;
use sqlx::PgPool;

const FIREFOX_WINDOWS: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) \
     AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

async fn sessions(app: &TestApp, client: &Client) -> Vec<Value> {
    let res = app.call(client, "list_sessions", &[]).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn sessions_are_listed_and_ended_one_by_one_or_all_but_this_one(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.signed_up("ada@example.com").await;
    sqlx::query("DELETE FROM sessions")
        .execute(&app.db)
        .await
        .unwrap();
    let laptop = browser(FIREFOX_WINDOWS);
    let phone = browser(SAFARI_IPHONE);
    let tablet = browser("");
    for client in [&laptop, &phone, &tablet] {
        let res = app.sign_in(client, "ada@example.com", PASSWORD).await;
        assert_eq!(res.status(), 200);
    }

    let listed = sessions(&app, &laptop).await;
    assert_eq!(listed.len(), 3, "{listed:#?}");
    assert_eq!(listed[0]["current"], true, "this browser first");
    assert_eq!(listed[0]["browser"], "Firefox 133");
    assert_eq!(listed[0]["system"], "Windows 10");
    assert_eq!(listed[0]["address"], "127.0.0.1");
    assert!(listed[1..].iter().all(|s| s["current"] == false));
    let iphone = listed
        .iter()
        .find(|s| s["system"].as_str().unwrap().contains("iPhone"))
        .unwrap_or_else(|| panic!("{listed:#?}"));
    assert_eq!(iphone["browser"], "Safari 17");
    assert_eq!(iphone["system"], "iPhone (iOS 17.5)");
    assert!(
        listed.iter().any(|s| s["browser"] == "Unknown browser"),
        "a client without a User-Agent is listed all the same"
    );

    // Ending the phone's session signs the phone out on its next request.
    let phone_id = iphone["id"].as_str().unwrap();
    let res = app.call(&laptop, "end_session", &[("id", phone_id)]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.current_user(&phone).await, Value::Null);
    assert_eq!(sessions(&app, &laptop).await.len(), 2);
    // Again: it is gone.
    let res = app.call(&laptop, "end_session", &[("id", phone_id)]).await;
    assert_eq!(res.status(), 404);

    // "All others" keeps this one.
    let res = app.call(&laptop, "end_other_sessions", &[]).await;
    assert_eq!(res.json::<Value>().await.unwrap(), 1);
    assert_eq!(app.current_user(&tablet).await, Value::Null);
    assert_eq!(app.current_user(&laptop).await["email"], "ada@example.com");
    let left = sessions(&app, &laptop).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["current"], true);

    // Ending this browser's own session signs it out.
    let own = left[0]["id"].as_str().unwrap().to_owned();
    let res = app.call(&laptop, "end_session", &[("id", &own)]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(app.current_user(&laptop).await, Value::Null);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn another_users_session_cannot_be_seen_or_ended(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let ada = app.signed_up("ada@example.com").await;
    let eve = app.signed_up("eve@example.com").await;
    let adas = sessions(&app, &ada).await;
    let ada_id = adas[0]["id"].as_str().unwrap();
    let eves = sessions(&app, &eve).await;
    assert!(eves.iter().all(|s| s["id"] != adas[0]["id"]));

    for id in [ada_id, "not-a-uuid", "00000000-0000-0000-0000-000000000000"] {
        let res = app.call(&eve, "end_session", &[("id", id)]).await;
        assert_eq!(res.status(), 404, "{id}");
    }
    assert_eq!(app.current_user(&ada).await["email"], "ada@example.com");
    // Eve's "all others" ends none of Ada's.
    app.call(&eve, "end_other_sessions", &[]).await;
    assert_eq!(app.current_user(&ada).await["email"], "ada@example.com");

    // Signed out: nothing to list or end.
    let res = app.call(&app.client(), "list_sessions", &[]).await;
    assert_eq!(res.status(), 401);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn last_seen_moves_with_use_at_most_once_a_minute(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let client = app.signed_up("ada@example.com").await;
    sqlx::query("UPDATE sessions SET last_seen_at = now() - interval '2 hours'")
        .execute(&app.db)
        .await
        .unwrap();
    app.current_user(&client).await;
    let recent: bool = sqlx::query_scalar(
        "SELECT bool_and(last_seen_at > now() - interval '1 minute') FROM sessions",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(recent);
    let page = crate::common::page(&client, app.url("/settings/sessions")).await;
    assert!(page.contains("This browser"), "{page}");
    assert!(page.contains("Sign out here"), "{page}");
}
