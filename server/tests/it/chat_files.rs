//! Files attached to a message: read to text when attached, given to the
//! model with the message (and again with every later reply), kept with
//! edits, erased with the conversation, refused plainly when unusable, and
//! never another user's to send.

use reqwest::{Client, header};
use serde_json::Value;
use sqlx::PgPool;

use crate::common::{TestApp, chat_settings, keyring, reply_when, scripted_agent};

async fn app(db: PgPool) -> (TestApp, std::net::SocketAddr) {
    let fake = server::fake_provider::start().await.unwrap();
    (
        TestApp::spawn_full(db, chat_settings(fake), keyring(1, &[])).await,
        fake,
    )
}

/// Attaches `files` for the next message to `agent` (JSON, as the page's
/// script asks); the response.
pub async fn attach(
    app: &TestApp,
    client: &Client,
    agent: &str,
    already: &[&str],
    files: Vec<(&str, Vec<u8>)>,
) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new()
        .text("agent_id", agent.to_owned())
        .text("conversation_id", "");
    for id in already {
        form = form.text("files[]", id.to_string());
    }
    for (name, bytes) in files {
        form = form.part(
            "upload",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
        );
    }
    client
        .post(app.url("/chat/files"))
        .header(header::ACCEPT, "application/json")
        .header("sec-fetch-site", "same-origin")
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn ids(res: reqwest::Response) -> Vec<String> {
    let status = res.status();
    let text = res.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    let files: Value = serde_json::from_str(&text).unwrap();
    files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The files among `ids` (`a,b`) attached and not sent yet.
async fn unsent_of(app: &TestApp, client: &Client, ids: &str) -> Value {
    app.call(client, "unsent_files", &[("ids", ids)])
        .await
        .json()
        .await
        .unwrap()
}

async fn send(
    app: &TestApp,
    client: &Client,
    agent: &str,
    text: &str,
    files: &[&str],
) -> reqwest::Response {
    let mut form = vec![("agent_id", agent), ("message", text)];
    form.extend(files.iter().map(|f| ("files[]", *f)));
    app.call(client, "send_message", &form).await
}

const NOTES: &str =
    "# Trip notes\n\nThe ferry leaves Harwich at 23:00 on Fridays.\n\nBring the blue tickets.";

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn an_attached_file_reaches_the_model_with_its_message_and_goes_with_the_conversation(
    db: PgPool,
) {
    let (app, fake) = app(db).await;
    let client = app.signed_up("files@example.com").await;
    let agent = scripted_agent(&app, &client, fake, "openai", "fake:echo", &[], &[], "").await;
    let pdf = crate::knowledge::ingestion::pdf(&["Page one says hello.", "Page two says goodbye."]);
    let attached = ids(attach(
        &app,
        &client,
        &agent,
        &[],
        vec![("notes.md", NOTES.as_bytes().to_vec()), ("slides.pdf", pdf)],
    )
    .await)
    .await;
    assert_eq!(attached.len(), 2);
    // Listed for the composer until sent.
    let unsent = unsent_of(&app, &client, &attached.join(",")).await;
    assert_eq!(unsent[0]["name"], "notes.md");
    assert_eq!(unsent[1]["kind"], "pdf");

    let refs: Vec<&str> = attached.iter().map(String::as_str).collect();
    let res = send(&app, &client, &agent, "When does the ferry leave?", &refs).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let sent: Value = res.json().await.unwrap();
    let conversation = sent["conversation_id"].as_str().unwrap().to_owned();
    let reply = reply_when(&app, &client, &conversation, "complete").await;
    let said = reply["body"].as_str().unwrap();
    assert!(
        said.contains("When does the ferry leave?")
            && said.contains("<attached-file name=\"notes.md\" kind=\"Markdown\">")
            && said.contains("The ferry leaves Harwich at 23:00 on Fridays.")
            && said.contains("[page 2]\nPage two says goodbye."),
        "the model got the message and both files' text: {said}"
    );
    let c: Value = app
        .call(
            &client,
            "get_conversation",
            &[("id", conversation.as_str())],
        )
        .await
        .json()
        .await
        .unwrap();
    let shown = &c["messages"][0]["files"];
    assert_eq!(shown.as_array().unwrap().len(), 2, "{c:#}");
    assert_eq!(shown[0]["name"], "notes.md");
    // Sent: no longer waiting, and not to be sent twice.
    let unsent = unsent_of(&app, &client, &attached.join(",")).await;
    assert_eq!(unsent, serde_json::json!([]));
    let mut form = vec![
        ("agent_id", agent.as_str()),
        ("conversation_id", conversation.as_str()),
        ("message", "Again"),
    ];
    form.push(("files[]", attached[0].as_str()));
    let res = app.call(&client, "send_message", &form).await;
    assert!(res.status().is_client_error());
    assert!(res.text().await.unwrap().contains("no longer there"));

    // An edited message keeps its files: the model gets them again.
    let first = c["messages"][0]["id"].as_str().unwrap().to_owned();
    let res = app
        .call(
            &client,
            "edit_message",
            &[
                ("message_id", first.as_str()),
                ("message", "Which tickets?"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let reply = reply_when(&app, &client, &conversation, "complete").await;
    let said = reply["body"].as_str().unwrap();
    assert!(
        said.contains("Which tickets?") && said.contains("Bring the blue tickets."),
        "{said}"
    );
    assert_eq!(app.count("SELECT count(*) FROM chat_files").await, 2);

    // Deleting the conversation erases the files.
    let res = app
        .call(
            &client,
            "delete_conversation",
            &[("id", conversation.as_str())],
        )
        .await;
    assert!(res.status().is_success() || res.status().is_redirection());
    assert_eq!(app.count("SELECT count(*) FROM chat_files").await, 0);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn unusable_files_are_refused_with_the_reason_and_nothing_is_kept(db: PgPool) {
    let (app, fake) = app(db).await;
    let client = app.signed_up("refused@example.com").await;
    let agent = scripted_agent(&app, &client, fake, "openai", "fake:echo", &[], &[], "").await;
    let long = "word ".repeat(30_000);
    for (files, reason) in [
        (
            vec![
                ("fine.txt", b"Fine.".to_vec()),
                ("image.png", b"\x89PNG\r\n\x1a\n\0\0\0".to_vec()),
            ],
            "image.png: Only text, Markdown, PDF",
        ),
        (
            vec![("broken.pdf", b"%PDF-1.4 not really".to_vec())],
            "broken.pdf: This PDF could not be read",
        ),
        (
            vec![("long.txt", long.into_bytes())],
            "Put long documents in a knowledge base",
        ),
        (
            (0..6)
                .map(|i| {
                    (
                        ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "f.txt"][i],
                        b"x".to_vec(),
                    )
                })
                .collect(),
            "at most 5 files",
        ),
    ] {
        let res = attach(&app, &client, &agent, &[], files).await;
        assert_eq!(res.status(), 422);
        let text = res.text().await.unwrap();
        assert!(text.contains(reason), "{reason:?} in {text}");
    }
    assert_eq!(
        app.count("SELECT count(*) FROM chat_files").await,
        0,
        "a refused batch keeps none of its files"
    );

    // Unsent files wait a day, then the retention job erases them.
    let kept = ids(attach(
        &app,
        &client,
        &agent,
        &[],
        vec![("late.txt", b"Late.".to_vec())],
    )
    .await)
    .await;
    sqlx::query("UPDATE chat_files SET created_at = now() - interval '25 hours'")
        .execute(&app.db)
        .await
        .unwrap();
    let report = app::data::retention::server::run(&app.db, &app.state.settings.retention)
        .await
        .unwrap();
    assert_eq!(report.unsent_files, 1);
    let res = send(&app, &client, &agent, "Here it is", &[&kept[0]]).await;
    assert!(res.status().is_client_error());
    assert_eq!(
        app.count("SELECT count(*) FROM conversations").await,
        0,
        "a refused message stores nothing"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn another_users_files_cannot_be_seen_sent_or_removed(db: PgPool) {
    let (app, fake) = app(db).await;
    let owner = app.signed_up("file-owner@example.com").await;
    let agent = scripted_agent(&app, &owner, fake, "openai", "fake:echo", &[], &[], "").await;
    let mine = ids(attach(
        &app,
        &owner,
        &agent,
        &[],
        vec![("secret.txt", b"Owner only.".to_vec())],
    )
    .await)
    .await;

    let other = app.signed_up("file-other@example.com").await;
    let theirs = scripted_agent(&app, &other, fake, "openai", "fake:echo", &[], &[], "").await;
    let unsent = unsent_of(&app, &other, &mine[0]).await;
    assert_eq!(unsent, serde_json::json!([]));
    assert_eq!(
        app.call(&other, "remove_unsent_file", &[("id", mine[0].as_str())])
            .await
            .status(),
        404
    );
    let res = send(&app, &other, &theirs, "Read this", &[&mine[0]]).await;
    assert!(res.status().is_client_error());
    // Naming it among one's own files does not bring it along either.
    let res = attach(
        &app,
        &other,
        &theirs,
        &[&mine[0]],
        vec![("own.txt", b"Own.".to_vec())],
    )
    .await;
    let listed = ids(res).await;
    assert_eq!(listed.len(), 1);
    assert_ne!(listed[0], mine[0]);

    // Still the owner's, and theirs to take back.
    assert_eq!(
        app.call(&owner, "remove_unsent_file", &[("id", mine[0].as_str())])
            .await
            .status(),
        200
    );
    assert_eq!(
        app.count("SELECT count(*) FROM chat_files WHERE message_id IS NULL")
            .await,
        1
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn without_javascript_the_attach_form_goes_back_to_the_chat_with_its_files(db: PgPool) {
    let (app, fake) = app(db).await;
    let client = app.signed_up("plain-files@example.com").await;
    let agent = scripted_agent(&app, &client, fake, "openai", "demo", &[], &[], "").await;
    let form = reqwest::multipart::Form::new()
        .text("agent_id", agent.clone())
        .text("conversation_id", "")
        .part(
            "upload",
            reqwest::multipart::Part::bytes(NOTES.as_bytes().to_vec()).file_name("notes.md"),
        );
    let res = client
        .post(app.url("/chat/files"))
        .header("sec-fetch-site", "same-origin")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let to = res.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert!(
        to.starts_with(&format!("/agents/{agent}/chat?files=")),
        "{to}"
    );
    let page = crate::common::page(&client, app.url(&to)).await;
    assert!(
        page.contains("notes.md") && page.contains("name=\"files[]\""),
        "the composer carries it"
    );

    // The demo model says what it read.
    let id = to.split("files=").nth(1).unwrap().to_owned();
    let res = send(&app, &client, &agent, "What is this?", &[&id]).await;
    let sent: Value = res.json().await.unwrap();
    let reply = reply_when(
        &app,
        &client,
        sent["conversation_id"].as_str().unwrap(),
        "complete",
    )
    .await;
    let said = reply["body"].as_str().unwrap();
    assert!(
        said.contains("You attached notes.md")
            && said.contains("The ferry leaves Harwich at 23:00 on Fridays."),
        "{said}"
    );
}
