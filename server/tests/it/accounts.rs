//! Account recovery: "forgot your password?" never says whether an address
//! has an account; the mailed link sets a new password once, ends every
//! session and confirms the address.

use std::time::Duration;

use crate::common::{
    PASSWORD, TestApp, keyring, link_in, page, relaxed_settings, with_mail_catcher,
};
use sqlx::PgPool;

use crate::common::with_catcher;

use crate::common::mail_with_subject as mail;

const RESET: &str = "Reset your Enclave password";

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn asking_for_a_reset_answers_the_same_for_every_address(db: PgPool) {
    let app = with_catcher(db).await;
    app.signed_up("known@example.com").await;
    let visitor = app.client();
    let ask = |email: &'static str| {
        let (app, visitor) = (&app, &visitor);
        async move {
            let res = app
                .call(visitor, "request_password_reset", &[("email", email)])
                .await;
            (
                res.status(),
                res.headers().get("location").cloned(),
                res.text().await.unwrap(),
            )
        }
    };
    let known = ask("known@example.com").await;
    let unknown = ask("nobody-here@example.com").await;
    assert_eq!(known.0, 200);
    assert_eq!(known, unknown, "the same answer for both");
    let text = mail(&app, RESET, 1).await;
    assert!(text.contains("/reset-password?token="), "{text}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resets: Vec<_> = app
        .state
        .settings
        .mailer
        .caught()
        .into_iter()
        .filter(|c| c.mail.subject == RESET)
        .collect();
    assert_eq!(resets.len(), 1, "no mail for an address without an account");
    assert_eq!(resets[0].mail.to, "known@example.com");
    // A malformed address is a plain field error.
    let res = app
        .call(
            &visitor,
            "request_password_reset",
            &[("email", "not-an-address")],
        )
        .await;
    assert_eq!(res.status(), 422);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_reset_link_sets_a_new_password_once_and_ends_every_session(db: PgPool) {
    let app = with_catcher(db.clone()).await;
    let signed_in = app.signed_up("reset@example.com").await;
    let visitor = app.client();
    let res = app
        .call(
            &visitor,
            "request_password_reset",
            &[("email", "reset@example.com")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let link = link_in(&mail(&app, RESET, 1).await);
    let token = link.rsplit('=').next().unwrap().to_owned();
    let page = page(&visitor, &link).await;
    assert!(page.contains("Choose a new password"));

    // Too short: refused, and the link still works.
    let res = app
        .call(
            &visitor,
            "reset_password",
            &[("token", &token), ("password", "short")],
        )
        .await;
    assert_eq!(res.status(), 422);
    let new_password = "a brand new passphrase";
    let res = app
        .call(
            &visitor,
            "reset_password",
            &[("token", &token), ("password", new_password)],
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    // Every session ended; the old password no longer works; the new one does.
    assert_eq!(app.current_user(&signed_in).await, serde_json::Value::Null);
    let res = app
        .sign_in(&app.client(), "reset@example.com", PASSWORD)
        .await;
    assert_eq!(res.status(), 401);
    let fresh = app.client();
    let res = app.sign_in(&fresh, "reset@example.com", new_password).await;
    assert_eq!(res.status(), 200);
    // Opening the link proved the mailbox.
    assert_eq!(app.current_user(&fresh).await["email_verified"], true);
    // Single use.
    let res = app
        .call(
            &visitor,
            "reset_password",
            &[("token", &token), ("password", "another passphrase")],
        )
        .await;
    assert_eq!(res.status(), 422);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("not valid or was used already")
    );

    // An expired link says so and changes nothing.
    app.call(
        &visitor,
        "request_password_reset",
        &[("email", "reset@example.com")],
    )
    .await;
    let link = link_in(&mail(&app, RESET, 2).await);
    let token = link.rsplit('=').next().unwrap().to_owned();
    sqlx::query("UPDATE email_tokens SET expires_at = now() - interval '1 second'")
        .execute(&db)
        .await
        .unwrap();
    let res = app
        .call(
            &visitor,
            "reset_password",
            &[("token", &token), ("password", "yet another passphrase")],
        )
        .await;
    assert_eq!(res.status(), 422);
    assert!(res.text().await.unwrap().contains("This link has expired"));
    let res = app
        .sign_in(&app.client(), "reset@example.com", new_password)
        .await;
    assert_eq!(res.status(), 200);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_password_change_needs_the_current_one_and_signs_out_the_other_sessions(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let here = app.signed_up("change@example.com").await;
    let elsewhere = app.client();
    let res = app
        .sign_in(&elsewhere, "change@example.com", PASSWORD)
        .await;
    assert_eq!(res.status(), 200);
    let change = |current: &'static str, new: &'static str| {
        let (app, here) = (&app, &here);
        async move {
            app.call(
                here,
                "change_password",
                &[("current_password", current), ("new_password", new)],
            )
            .await
        }
    };
    let res = change("not my password", "a new passphrase").await;
    assert_eq!(res.status(), 422);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("That is not your current password.")
    );
    let res = change(PASSWORD, "short").await;
    assert_eq!(res.status(), 422);
    // Nothing changed so far: both sessions live, the old password works.
    assert!(app.current_user(&elsewhere).await.is_object());
    let res = change(PASSWORD, "a new passphrase").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "1", "one other session ended");
    assert!(
        app.current_user(&here).await.is_object(),
        "this session stays"
    );
    assert_eq!(app.current_user(&elsewhere).await, serde_json::Value::Null);
    assert_eq!(
        app.sign_in(&app.client(), "change@example.com", PASSWORD)
            .await
            .status(),
        401
    );
    assert_eq!(
        app.sign_in(&app.client(), "change@example.com", "a new passphrase")
            .await
            .status(),
        200
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_user_changes_their_name_and_bad_names_are_explained(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let client = app.signed_up("rename@example.com").await;
    let res = app
        .call(
            &client,
            "rename",
            &[("first_name", " Grace "), ("last_name", "Hopper")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let user = app.current_user(&client).await;
    assert_eq!(
        (user["first_name"].as_str(), user["last_name"].as_str()),
        (Some("Grace"), Some("Hopper"))
    );
    let res = app
        .call(&client, "rename", &[("first_name", ""), ("last_name", "")])
        .await;
    assert_eq!(res.status(), 422);
    let body = res.text().await.unwrap();
    assert!(
        body.contains("Enter your first name.") && body.contains("Enter your last name."),
        "{body}"
    );
    assert_eq!(app.current_user(&client).await["first_name"], "Grace");
    // Signed out: nothing.
    let res = app
        .call(
            &app.client(),
            "rename",
            &[("first_name", "X"), ("last_name", "Y")],
        )
        .await;
    assert_eq!(res.status(), 401);
}

const SIGN_UP_NOTICE: &str = "Someone tried to sign up with your address";

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn sign_up_never_tells_whether_an_address_is_registered(db: PgPool) {
    let app = with_catcher(db).await;
    app.signed_up("taken@example.com").await;
    let visitor = app.client();
    let sign_up = |email: String| {
        let (app, visitor) = (&app, &visitor);
        async move {
            let started = std::time::Instant::now();
            let res = app.sign_up(visitor, &email, "another password 1").await;
            let took = started.elapsed();
            let cookie = res.headers().get("set-cookie").cloned();
            (res.status(), cookie, res.text().await.unwrap(), took)
        }
    };
    let mut new_times = Vec::new();
    let mut taken_times = Vec::new();
    for i in 0..3 {
        let new = sign_up(format!("fresh{i}@example.com")).await;
        // Any case of the registered address is the same address.
        let taken = sign_up(
            if i == 0 {
                "TAKEN@example.com"
            } else {
                "taken@example.com"
            }
            .into(),
        )
        .await;
        assert_eq!(new.0, 200);
        assert_eq!(
            (new.0, &new.1, &new.2),
            (taken.0, &taken.1, &taken.2),
            "the same answer"
        );
        assert!(new.1.is_none(), "no session from sign-up");
        new_times.push(new.3);
        taken_times.push(taken.3);
    }
    // The registered address costs the same slow password hash: no quick
    // refusal to time. (Generous bounds: this proves the hash is not
    // skipped, not a benchmark.)
    new_times.sort();
    taken_times.sort();
    assert!(
        taken_times[1] * 3 >= new_times[1],
        "registered {taken_times:?} vs new {new_times:?}"
    );

    // The owner hears of it; nothing about the account changed.
    let notice = mail(&app, SIGN_UP_NOTICE, 3).await;
    assert!(notice.contains("Hello Ada"), "{notice}");
    assert!(notice.contains("/sign-in"), "{notice}");
    assert!(notice.contains("/forgot-password"), "{notice}");
    let notices = app.state.settings.mailer.caught();
    assert!(
        notices
            .iter()
            .filter(|c| c.mail.subject == SIGN_UP_NOTICE)
            .all(|c| c.mail.to == "taken@example.com")
    );
    assert_eq!(app.count("SELECT count(*) FROM users").await, 4);
    assert_eq!(
        app.sign_in(&app.client(), "taken@example.com", PASSWORD)
            .await
            .status(),
        200,
        "the old password still works"
    );
    assert_eq!(
        app.sign_in(&app.client(), "taken@example.com", "another password 1")
            .await
            .status(),
        401
    );

    // A fourth try the same day answers alike and mails nobody: the owner's
    // inbox is not a target.
    let again = sign_up("taken@example.com".into()).await;
    assert_eq!(again.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let count = app
        .state
        .settings
        .mailer
        .caught()
        .iter()
        .filter(|c| c.mail.subject == SIGN_UP_NOTICE)
        .count();
    assert_eq!(count, 3);
}

const CHANGE_LINK: &str = "Confirm your new email address for Enclave";
const CHANGED: &str = "The email address of your Enclave account was changed";

fn mails_to(app: &TestApp, subject: &str, to: &str) -> usize {
    app.state
        .settings
        .mailer
        .caught()
        .iter()
        .filter(|c| c.mail.subject == subject && c.mail.to == to)
        .count()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_email_address_changes_by_a_link_to_the_new_one_and_the_old_one_is_told(db: PgPool) {
    let app = with_catcher(db).await;
    let client = app.signed_up("old@example.com").await;
    app.signed_up("taken@example.com").await;
    let ask = |new: &'static str, password: &'static str| {
        let (app, client) = (&app, &client);
        async move {
            app.call(
                client,
                "change_email",
                &[("new_email", new), ("password", password)],
            )
            .await
        }
    };
    for (new, password, field) in [
        ("not an address", PASSWORD, "new_email"),
        ("OLD@example.com", PASSWORD, "new_email"),
        ("new@example.com", "not my password", "password"),
    ] {
        let res = ask(new, password).await;
        assert_eq!(res.status(), 422, "{new}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body["Invalid"][0]["field"], field, "{body}");
    }
    // A registered address answers the same, and gets nothing.
    assert_eq!(ask("taken@example.com", PASSWORD).await.status(), 200);
    assert_eq!(ask("new@example.com", PASSWORD).await.status(), 200);
    let link = link_in(&mail(&app, CHANGE_LINK, 1).await);
    assert!(link.contains("/confirm-email?token="), "{link}");
    assert_eq!(mails_to(&app, CHANGE_LINK, "new@example.com"), 1);
    assert_eq!(mails_to(&app, CHANGE_LINK, "taken@example.com"), 0);
    // Nothing changed yet.
    assert_eq!(app.current_user(&client).await["email"], "old@example.com");

    // Opening the link (in any browser) moves the account.
    let done = page(&app.client(), &link).await;
    assert!(
        done.contains("your account uses this address now"),
        "{done}"
    );
    let me = app.current_user(&client).await;
    assert_eq!(me["email"], "new@example.com");
    assert_eq!(me["email_verified"], true);
    let told = mail(&app, CHANGED, 1).await;
    assert!(
        told.contains("from old@example.com to new@example.com"),
        "{told}"
    );
    assert_eq!(mails_to(&app, CHANGED, "old@example.com"), 1);
    assert_eq!(
        app.sign_in(&app.client(), "new@example.com", PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.sign_in(&app.client(), "old@example.com", PASSWORD)
            .await
            .status(),
        401
    );
    // Used once.
    let again = page(&app.client(), &link).await;
    assert!(again.contains("not valid or was used already"), "{again}");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_change_link_fails_cleanly_when_the_address_was_taken_meanwhile(db: PgPool) {
    let app = with_catcher(db).await;
    let client = app.signed_up("first@example.com").await;
    let res = app
        .call(
            &client,
            "change_email",
            &[("new_email", "later@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(res.status(), 200);
    let link = link_in(&mail(&app, CHANGE_LINK, 1).await);
    app.signed_up("later@example.com").await;
    let token = link.rsplit('=').next().unwrap();
    let res = app
        .call(&app.client(), "confirm_email_change", &[("token", token)])
        .await;
    assert_eq!(res.status(), 422);
    let body: serde_json::Value = res.json().await.unwrap();
    assert!(
        body.to_string().contains("has an account of its own"),
        "{body}"
    );
    assert_eq!(
        app.current_user(&client).await["email"],
        "first@example.com"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn with_verification_required_agents_and_chat_wait_for_the_confirmed_address(db: PgPool) {
    let settings = app::platform::Settings {
        require_verified_email: true,
        ..with_mail_catcher(relaxed_settings())
    };
    let app = TestApp::spawn_full(db, settings, keyring(1, &[])).await;
    let client = app.signed_up("wait@example.com").await;
    for (name, form) in [
        ("list_agents", vec![]),
        (
            "create_agent",
            vec![
                ("name", "Helper"),
                ("description", ""),
                ("system_prompt", ""),
                ("provider", "openai"),
                ("model", "gpt-4o-mini"),
                ("temperature", ""),
                ("top_p", ""),
                ("max_output_tokens", ""),
                ("avatar", ""),
            ],
        ),
        (
            "send_message",
            vec![
                ("agent_id", "00000000-0000-0000-0000-000000000000"),
                ("message", "hi"),
            ],
        ),
    ] {
        let res = app.call(&client, name, &form).await;
        assert_eq!(res.status(), 403, "{name}");
        let body: serde_json::Value = res.json().await.unwrap();
        assert_eq!(body, "EmailNotVerified", "{name}");
    }
    assert_eq!(app.count("SELECT count(*) FROM agents").await, 0);
    // Settings stay open: the banner's "send a new link" works.
    assert_eq!(
        app.call(&client, "resend_verification", &[]).await.status(),
        200
    );
    let link = link_in(&mail(&app, "Confirm your email address for Enclave", 2).await);
    page(&client, &link).await;
    let res = app.call(&client, "list_agents", &[]).await;
    assert_eq!(res.status(), 200);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn opening_links_is_limited_per_client_address(db: PgPool) {
    let app = with_catcher(db).await;
    let visitor = app.client();
    for endpoint in ["verify_email", "confirm_email_change"] {
        for i in 0..30 {
            let res = app
                .call(&visitor, endpoint, &[("token", &format!("guess-{i}"))])
                .await;
            assert_eq!(res.status(), 422, "{endpoint} {i}: a plain 'not valid'");
        }
        let res = app.call(&visitor, endpoint, &[("token", "guess-31")]).await;
        assert_eq!(res.status(), 429, "{endpoint}");
    }
}
