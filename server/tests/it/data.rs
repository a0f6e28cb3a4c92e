//! Your data: the activity log (security events with address and browser,
//! paged, the owner's only; notice mails for failed sign-ins and new
//! browsers).

use std::time::Duration;

use crate::common::{
    PASSWORD, TestApp, account_key, keyring, mail_with_subject, mails_with_subject,
    relaxed_settings, with_mail_catcher,
};
use app::data::activity::{Event, PAGE_SIZE};
use reqwest::Client;
use serde_json::Value;
use sqlx::PgPool;

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) \
     AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const NEW_BROWSER: &str = "A new sign-in to your account";
const FAILED: &str = "A failed sign-in to your account";

async fn with_catcher(db: PgPool) -> TestApp {
    TestApp::spawn_full(db, with_mail_catcher(relaxed_settings()), keyring(1, &[])).await
}

fn browser(user_agent: &str) -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .user_agent(user_agent)
        .build()
        .unwrap()
}

async fn activity(app: &TestApp, client: &Client, after: Option<&str>) -> Value {
    let form: Vec<(&str, &str)> = after.map(|a| ("after", a)).into_iter().collect();
    let res = app.call(client, "list_activity", &form).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

fn kinds(page: &Value) -> Vec<String> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn security_events_are_logged_with_address_and_browser_for_the_owner_only(db: PgPool) {
    let app = with_catcher(db).await;
    app.signed_up("ada@example.com").await;
    let laptop = browser(FIREFOX);
    // A wrong password, then the right one, from Firefox on Linux.
    let res = app
        .sign_in(&laptop, "ada@example.com", "not the password")
        .await;
    assert_eq!(res.status(), 401);
    let res = app.sign_in(&laptop, "ada@example.com", PASSWORD).await;
    assert_eq!(res.status(), 200);
    let res = app
        .call(
            &laptop,
            "add_provider_key",
            &[
                ("provider", "openai"),
                ("label", "Work key"),
                ("secret", "sk-test-1234567890"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .call(
            &laptop,
            "change_password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "another long password"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);

    let page = activity(&app, &laptop, None).await;
    assert_eq!(
        kinds(&page),
        [
            "password_changed",
            "provider_key_added",
            "signed_in",
            "sign_in_failed",
            "signed_in"
        ],
        "newest first: {page:#}"
    );
    let key_added = &page["entries"][1];
    assert_eq!(key_added["label"], "Added a provider key");
    assert_eq!(key_added["detail"], "Work key");
    assert_eq!(key_added["address"], "127.0.0.1");
    assert_eq!(key_added["browser"], "Firefox 133 on Linux");
    let failed = &page["entries"][3];
    assert_eq!(failed["warning"], true);
    assert_eq!(failed["label"], "Failed sign-in");
    assert_eq!(page["next"], Value::Null);

    // The address, browser and detail are sealed; the kind is not.
    let plain: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM activity
         WHERE position('127.0.0.1' in encode(ip, 'escape')) > 0
            OR position('Firefox' in encode(user_agent, 'escape')) > 0
            OR position('Work key' in encode(detail, 'escape')) > 0",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(plain, 0);

    // Another user sees only their own log, and Ada's entry ids are not found.
    let eve = app.signed_up("eve@example.com").await;
    let eve_page = activity(&app, &eve, None).await;
    assert_eq!(kinds(&eve_page), ["signed_in"]);
    let ada_entry = key_added["id"].as_str().unwrap();
    let res = app
        .call(&eve, "list_activity", &[("after", ada_entry)])
        .await;
    assert_eq!(res.status(), 404);
    let res = app
        .call(&eve, "list_activity", &[("after", "not-an-id")])
        .await;
    assert_eq!(res.status(), 404);
    // Signed out: no log at all.
    let res = app.call(&app.client(), "list_activity", &[]).await;
    assert_eq!(res.status(), 401);

    // The page itself, server-rendered for the owner.
    let html = laptop
        .get(app.url("/settings/account-activity"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Failed sign-in") && html.contains("Work key"),
        "{html}"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_log_pages_newest_first_without_gaps_or_repeats(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let client = app.signed_up("ada@example.com").await;
    let (user, key) = account_key(&app, "ada@example.com").await;
    for i in 0..(PAGE_SIZE + 7) {
        app::data::activity::server::record(
            &app.db,
            &app.state.crypto,
            user,
            &key,
            Event::ProviderKeyTested,
            None,
            Some(&format!("key {i}")),
        )
        .await
        .unwrap();
    }
    let first = activity(&app, &client, None).await;
    assert_eq!(first["entries"].as_array().unwrap().len(), PAGE_SIZE);
    let next = first["next"].as_str().expect("a second page").to_owned();
    let second = activity(&app, &client, Some(&next)).await;
    // 57 tests and the sign-in: 58 entries, 50 + 8.
    assert_eq!(second["entries"].as_array().unwrap().len(), 8);
    assert_eq!(second["next"], Value::Null);
    let mut ids: Vec<String> = [&first, &second]
        .iter()
        .flat_map(|p| p["entries"].as_array().unwrap().clone())
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), total, "no entry on two pages");
    assert_eq!(kinds(&second).last().unwrap(), "signed_in", "oldest last");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn failed_sign_ins_and_new_browsers_are_mailed_to_the_owner(db: PgPool) {
    let app = with_catcher(db).await;
    app.signed_up("ada@example.com").await;
    // The first sign-in of an account is not "a new browser".
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mails_with_subject(&app, NEW_BROWSER), 0);

    let phone = browser(SAFARI_IPHONE);
    let res = app.sign_in(&phone, "ada@example.com", PASSWORD).await;
    assert_eq!(res.status(), 200);
    let text = mail_with_subject(&app, NEW_BROWSER, 1).await;
    assert!(text.contains("Safari 17 on iPhone (iOS 17.5)"), "{text}");
    assert!(
        text.contains("127.0.0.1") && text.contains("/settings/sessions"),
        "{text}"
    );
    // The same browser again is known.
    let again = browser(SAFARI_IPHONE);
    let res = app.sign_in(&again, "ada@example.com", PASSWORD).await;
    assert_eq!(res.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mails_with_subject(&app, NEW_BROWSER), 1);

    // Three failures in a row: one mail this hour, three entries.
    for _ in 0..3 {
        let res = app
            .sign_in(&app.client(), "ada@example.com", "wrong guess 123")
            .await;
        assert_eq!(res.status(), 401);
    }
    let text = mail_with_subject(&app, FAILED, 1).await;
    assert!(text.contains("/settings/account-activity"), "{text}");
    assert!(
        !text.contains("wrong guess"),
        "never the password tried: {text}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(mails_with_subject(&app, FAILED), 1);
    assert_eq!(
        app.count("SELECT count(*) FROM activity WHERE kind = 'sign_in_failed'")
            .await,
        3
    );
    // An address with no account: nothing logged, nothing mailed.
    let res = app
        .sign_in(&app.client(), "nobody@example.com", "wrong guess 123")
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        app.count("SELECT count(*) FROM activity WHERE kind = 'sign_in_failed'")
            .await,
        3
    );
}
