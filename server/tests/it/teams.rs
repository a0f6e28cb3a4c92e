//! Teams: owners, admins and members share agents through a team, sealed
//! with the team's own key; invitations are single-use links for one
//! address; every action is allowed or 404 by role (the role matrix); a
//! removed member loses access at once, a live reply included; each
//! person's conversations stay their own.

use reqwest::Client;
use serde_json::Value;
use sqlx::PgPool;

use crate::common::{
    PASSWORD, TestApp, chat_settings, keyring, link_in, mail_with_subject, ok_json, send_new,
    with_mail_catcher,
};

const INVITED: &str = "Ada Lovelace invited you to a team on Enclave";

async fn app(db: PgPool) -> (TestApp, std::net::SocketAddr) {
    let fake = server::fake_provider::start().await.unwrap();
    (
        TestApp::spawn_full(db, with_mail_catcher(chat_settings(fake)), keyring(1, &[])).await,
        fake,
    )
}

async fn create_team(app: &TestApp, owner: &Client, name: &str) -> String {
    ok_json(app.call(owner, "create_team", &[("name", name)]).await)
        .await
        .as_str()
        .unwrap()
        .to_owned()
}

/// The token of the newest invitation mailed, once `count` were sent.
async fn invitation_token(app: &TestApp, count: usize) -> String {
    let link = link_in(&mail_with_subject(app, INVITED, count).await);
    link.split("token=").nth(1).unwrap().to_owned()
}

/// `email` signs up, is invited as `role` by `inviter`, and joins.
async fn join(
    app: &TestApp,
    inviter: &Client,
    team: &str,
    email: &str,
    role: &str,
    sent_before: usize,
) -> Client {
    let person = app.signed_up(email).await;
    let res = app
        .call(
            inviter,
            "invite_to_team",
            &[("id", team), ("email", email), ("role", role)],
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let token = invitation_token(app, sent_before + 1).await;
    let preview = ok_json(
        app.call(&person, "preview_invitation", &[("token", &token)])
            .await,
    )
    .await;
    assert_eq!(preview["for_you"], true);
    assert_eq!(preview["role"], role);
    let res = app
        .call(&person, "accept_invitation", &[("token", &token)])
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    person
}

/// An agent made in `team` by `client` on the fake provider's `script`.
async fn team_agent(
    app: &TestApp,
    client: &Client,
    fake: std::net::SocketAddr,
    team: &str,
    name: &str,
    script: &str,
) -> reqwest::Response {
    let _ = fake;
    app.call(
        client,
        "create_agent",
        &[
            ("name", name),
            ("description", "Shared"),
            ("system_prompt", "Team prompt"),
            ("provider", "openai"),
            ("model", script),
            ("temperature", ""),
            ("top_p", ""),
            ("max_output_tokens", ""),
            ("avatar", ""),
            ("team", team),
        ],
    )
    .await
}

/// The owner removes the team's (one) member.
async fn remove_the_member(app: &TestApp, owner: &Client, team: &str) {
    let member = ok_json(app.call(owner, "get_team", &[("id", team)]).await).await["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "member")
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .call(
            owner,
            "remove_team_member",
            &[("id", team), ("member", &member)],
        )
        .await;
    assert_eq!(res.status(), 200);
}

async fn agent_named(app: &TestApp, client: &Client, name: &str) -> Option<Value> {
    ok_json(app.call(client, "list_agents", &[]).await)
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .cloned()
}

fn update_form<'a>(id: &'a str, name: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("id", id),
        ("name", name),
        ("description", "Shared"),
        ("system_prompt", "Team prompt"),
        ("provider", "openai"),
        ("model", "fake:echo"),
        ("temperature", ""),
        ("top_p", ""),
        ("max_output_tokens", ""),
        ("avatar", ""),
    ]
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn every_action_is_allowed_or_404_by_role(db: PgPool) {
    let (app, fake) = app(db).await;
    let owner = app.signed_up("owner@example.com").await;
    let team = create_team(&app, &owner, "Research").await;
    let admin = join(&app, &owner, &team, "admin@example.com", "admin", 0).await;
    let member = join(&app, &owner, &team, "member@example.com", "member", 1).await;
    let outsider = app.signed_up("outsider@example.com").await;
    let people = [
        ("owner", &owner),
        ("admin", &admin),
        ("member", &member),
        ("outsider", &outsider),
    ];
    let member_id = ok_json(app.call(&owner, "get_team", &[("id", &team)]).await).await["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["email"] == "member@example.com")
        .unwrap()["user_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Reading the team.
    for (who, client, want) in [
        ("owner", &owner, 200),
        ("admin", &admin, 200),
        ("member", &member, 200),
        ("outsider", &outsider, 404),
    ] {
        let res = app.call(client, "get_team", &[("id", &team)]).await;
        assert_eq!(res.status(), want, "get_team as {who}");
        if want == 200 {
            let detail: Value = res.json().await.unwrap();
            assert_eq!(detail["members"].as_array().unwrap().len(), 3);
            assert_eq!(detail["role"], who);
            // Only admins and owners see open invitations.
            assert!(detail["invitations"].is_array(), "invitations as {who}");
        }
    }

    // Making a team agent: admins and owners.
    for (who, client, want) in [
        ("owner", &owner, 200),
        ("admin", &admin, 200),
        ("member", &member, 404),
        ("outsider", &outsider, 404),
    ] {
        let name = format!("Made by {who}");
        let res = team_agent(&app, client, fake, &team, &name, "fake:echo").await;
        assert_eq!(res.status(), want, "create_agent in the team as {who}");
    }
    let shared = agent_named(&app, &owner, "Made by owner").await.unwrap();
    let shared_id = shared["id"].as_str().unwrap().to_owned();
    assert_eq!(shared["team"], "Research");
    assert_eq!(shared["can_edit"], true);
    let by_admin = agent_named(&app, &owner, "Made by admin").await.unwrap();
    let by_admin_id = by_admin["id"].as_str().unwrap().to_owned();

    // Seeing and reading it: the team's people, no one else.
    for (who, client) in people {
        let listed = agent_named(&app, client, "Made by owner").await;
        let res = app.call(client, "get_agent", &[("id", &shared_id)]).await;
        if who == "outsider" {
            assert!(listed.is_none(), "listed for the outsider");
            assert_eq!(res.status(), 404);
        } else {
            let listed = listed.expect("listed");
            assert_eq!(listed["can_edit"], who != "member", "can_edit as {who}");
            let detail: Value = res.json().await.unwrap();
            assert_eq!(detail["spec"]["system_prompt"], "Team prompt");
            assert_eq!(detail["team"], "Research");
            assert_eq!(detail["can_edit"], who != "member");
        }
    }

    // Changing it: admins and owners; a member is told, an outsider 404.
    for (who, client, want) in [
        ("owner", &owner, 200),
        ("admin", &admin, 200),
        ("member", &member, 404),
        ("outsider", &outsider, 404),
    ] {
        let name = format!("Renamed by {who}");
        let res = app
            .call(client, "update_agent", &update_form(&shared_id, &name))
            .await;
        assert_eq!(res.status(), want, "update_agent as {who}");
    }
    let current = ok_json(app.call(&member, "get_agent", &[("id", &shared_id)]).await).await;
    assert_eq!(current["spec"]["name"], "Renamed by admin");

    // Chatting with it: the team's people, each in their own conversation.
    let mut conversations = Vec::new();
    for (who, client) in people {
        let res = app
            .call(
                client,
                "send_message",
                &[
                    ("agent_id", &shared_id),
                    ("message", &format!("Hello from {who}")),
                ],
            )
            .await;
        if who == "outsider" {
            assert_eq!(res.status(), 404, "send_message as the outsider");
        } else {
            assert_eq!(res.status(), 200, "send_message as {who}");
            let sent: Value = res.json().await.unwrap();
            let id = sent["conversation_id"].as_str().unwrap().to_owned();
            crate::common::reply_when(&app, client, &id, "complete").await;
            conversations.push((who, id));
        }
    }
    for (who, client) in people {
        let listed = app
            .call(client, "list_conversations", &[("agent_id", &shared_id)])
            .await;
        if who == "outsider" {
            assert_eq!(listed.status(), 404);
            continue;
        }
        let listed: Value = listed.json().await.unwrap();
        assert_eq!(
            listed.as_array().unwrap().len(),
            1,
            "{who} sees only their own conversation"
        );
        for (whose, id) in &conversations {
            let res = app.call(client, "get_conversation", &[("id", id)]).await;
            let want = if whose == &who { 200 } else { 404 };
            assert_eq!(res.status(), want, "{who} reading {whose}'s conversation");
        }
    }

    // Inviting: admins and owners.
    for (who, client, want) in [
        ("owner", &owner, 200),
        ("admin", &admin, 200),
        ("member", &member, 404),
        ("outsider", &outsider, 404),
    ] {
        let email = format!("guest-{who}@example.com");
        let res = app
            .call(
                client,
                "invite_to_team",
                &[("id", &team), ("email", &email), ("role", "member")],
            )
            .await;
        assert_eq!(res.status(), want, "invite_to_team as {who}");
    }
    let invitations =
        ok_json(app.call(&owner, "get_team", &[("id", &team)]).await).await["invitations"]
            .as_array()
            .unwrap()
            .clone();
    assert_eq!(invitations.len(), 2);
    let member_view = ok_json(app.call(&member, "get_team", &[("id", &team)]).await).await;
    assert_eq!(member_view["invitations"], serde_json::json!([]));
    // Withdrawing: admins and owners.
    let first = invitations[0]["id"].as_str().unwrap();
    let second = invitations[1]["id"].as_str().unwrap();
    for (who, client, invitation, want) in [
        ("member", &member, first, 404),
        ("outsider", &outsider, first, 404),
        ("admin", &admin, first, 200),
        ("owner", &owner, second, 200),
    ] {
        let res = app
            .call(
                client,
                "withdraw_invitation",
                &[("id", &team), ("invitation", invitation)],
            )
            .await;
        assert_eq!(res.status(), want, "withdraw_invitation as {who}");
    }

    // Roles and the name: owners only.
    for (who, client, want) in [
        ("admin", &admin, 404),
        ("member", &member, 404),
        ("outsider", &outsider, 404),
        ("owner", &owner, 200),
    ] {
        let res = app
            .call(
                client,
                "set_team_role",
                &[("id", &team), ("member", &member_id), ("role", "member")],
            )
            .await;
        assert_eq!(res.status(), want, "set_team_role as {who}");
        let res = app
            .call(client, "rename_team", &[("id", &team), ("name", "Lab")])
            .await;
        assert_eq!(res.status(), want, "rename_team as {who}");
    }

    // Deleting an agent of the team: admins and owners.
    for (who, client, want) in [
        ("member", &member, 404),
        ("outsider", &outsider, 404),
        ("admin", &admin, 200),
    ] {
        let res = app
            .call(
                client,
                "delete_agent",
                &[("id", &by_admin_id), ("confirm", "yes")],
            )
            .await;
        assert_eq!(res.status(), want, "delete_agent as {who}");
    }

    // A member's duplicate is their own agent.
    let res = app
        .call(&member, "duplicate_agent", &[("id", &shared_id)])
        .await;
    assert_eq!(res.status(), 200);
    let copy = agent_named(&app, &member, "Copy of Renamed by admin")
        .await
        .unwrap();
    assert_eq!(copy["team_id"], Value::Null);
    assert!(
        agent_named(&app, &owner, "Copy of Renamed by admin")
            .await
            .is_none()
    );

    // Deleting the team: owners; its agents and their conversations go.
    for (who, client, want) in [
        ("admin", &admin, 404),
        ("member", &member, 404),
        ("outsider", &outsider, 404),
        ("owner", &owner, 200),
    ] {
        let res = app
            .call(client, "delete_team", &[("id", &team), ("confirm", "yes")])
            .await;
        assert_eq!(res.status(), want, "delete_team as {who}");
    }
    assert_eq!(
        app.call(&member, "get_agent", &[("id", &shared_id)])
            .await
            .status(),
        404
    );
    assert_eq!(
        app.count("SELECT count(*) FROM team_keys").await,
        0,
        "the team's key is gone"
    );
    assert!(
        agent_named(&app, &member, "Copy of Renamed by admin")
            .await
            .is_some()
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_removed_member_loses_access_at_once_live_reply_included(db: PgPool) {
    let (app, fake) = app(db).await;
    let owner = app.signed_up("owner@example.com").await;
    let team = create_team(&app, &owner, "Support").await;
    let member = join(&app, &owner, &team, "member@example.com", "member", 0).await;
    let res = team_agent(
        &app,
        &owner,
        fake,
        &team,
        "Slow helper",
        "fake:tokens=2000,delay_ms=20",
    )
    .await;
    assert_eq!(res.status(), 200);
    let agent = agent_named(&app, &member, "Slow helper").await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = send_new(&app, &member, &agent, "Talk for a while").await;
    let conversation = sent["conversation_id"].as_str().unwrap().to_owned();
    // Streaming: some text has been written.
    for _ in 0..400 {
        let c = ok_json(
            app.call(&member, "get_conversation", &[("id", &conversation)])
                .await,
        )
        .await;
        if c["messages"][1]["body"]
            .as_str()
            .is_some_and(|b| b.len() > 10)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }

    remove_the_member(&app, &owner, &team).await;

    assert_eq!(
        crate::common::settled_reply_status(&app.db).await,
        "stopped",
        "the live reply stopped, keeping its text"
    );
    let reply = crate::common::reply_when(&app, &member, &conversation, "stopped").await;
    assert!(!reply["body"].as_str().unwrap().is_empty());
    assert_eq!(
        app.call(&member, "get_agent", &[("id", &agent)])
            .await
            .status(),
        404
    );
    assert!(agent_named(&app, &member, "Slow helper").await.is_none());
    assert_eq!(
        app.call(
            &member,
            "send_message",
            &[("agent_id", &agent), ("message", "Still there?")]
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        app.call(&member, "get_team", &[("id", &team)])
            .await
            .status(),
        404
    );
    assert_eq!(
        ok_json(app.call(&member, "list_teams", &[]).await).await,
        serde_json::json!([])
    );
    let activity = ok_json(app.call(&member, "list_activity", &[]).await)
        .await
        .to_string();
    assert!(activity.contains("Was removed from a team"), "{activity}");
    let activity = ok_json(app.call(&owner, "list_activity", &[]).await)
        .await
        .to_string();
    assert!(
        activity.contains("Removed someone from a team"),
        "{activity}"
    );
    assert!(activity.contains("Created a team"), "{activity}");
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn invitations_are_single_use_links_for_one_address(db: PgPool) {
    let (app, _) = app(db).await;
    let owner = app.signed_up("owner@example.com").await;
    let team = create_team(&app, &owner, "Ops").await;
    let invited = app.signed_up("invited@example.com").await;
    let stranger = app.signed_up("stranger@example.com").await;

    // Bad input: a clear message, nothing sent.
    for (email, role, field) in [
        ("not an address", "member", "email"),
        ("x@example.com", "owner", "role"),
        ("x@example.com", "root", "role"),
        ("owner@example.com", "member", "email"),
    ] {
        let res = app
            .call(
                &owner,
                "invite_to_team",
                &[("id", &team), ("email", email), ("role", role)],
            )
            .await;
        assert_eq!(res.status(), 422, "{email} as {role}");
        assert!(res.text().await.unwrap().contains(field), "{email}");
    }
    assert_eq!(crate::common::mails_with_subject(&app, INVITED), 0);

    let res = app
        .call(
            &owner,
            "invite_to_team",
            &[
                ("id", &team),
                ("email", "Invited@Example.com"),
                ("role", "admin"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let token = invitation_token(&app, 1).await;
    let mail = mail_with_subject(&app, INVITED, 1).await;
    assert!(mail.contains("\"Ops\""), "{mail}");
    assert!(mail.contains("as an admin"), "{mail}");

    // Someone else holding the link: told it is for another address.
    let preview = ok_json(
        app.call(&stranger, "preview_invitation", &[("token", &token)])
            .await,
    )
    .await;
    assert_eq!(preview["for_you"], false);
    assert_eq!(preview["team"], "Ops");
    assert_eq!(preview["invited_by"], "Ada Lovelace");
    let res = app
        .call(&stranger, "accept_invitation", &[("token", &token)])
        .await;
    assert_eq!(res.status(), 422);
    assert!(res.text().await.unwrap().contains("another address"));

    // A newer invitation replaces the older: the first link stops working.
    let res = app
        .call(
            &owner,
            "invite_to_team",
            &[
                ("id", &team),
                ("email", "invited@example.com"),
                ("role", "member"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let newer = invitation_token(&app, 2).await;
    assert_ne!(newer, token);
    let res = app
        .call(&invited, "accept_invitation", &[("token", &token)])
        .await;
    assert_eq!(res.status(), 422);
    assert!(res.text().await.unwrap().contains("not valid any more"));

    // The right account joins once; the link is then used up.
    let res = app
        .call(&invited, "accept_invitation", &[("token", &newer)])
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .call(&invited, "accept_invitation", &[("token", &newer)])
        .await;
    assert_eq!(res.status(), 422);
    let teams = ok_json(app.call(&invited, "list_teams", &[]).await).await;
    assert_eq!(teams[0]["name"], "Ops");
    assert_eq!(teams[0]["role"], "member");

    // An expired link says so.
    let res = app
        .call(
            &owner,
            "invite_to_team",
            &[
                ("id", &team),
                ("email", "late@example.com"),
                ("role", "member"),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
    let late = invitation_token(&app, 3).await;
    sqlx::query("UPDATE team_invitations SET expires_at = now() - interval '1 minute'")
        .execute(&app.db)
        .await
        .unwrap();
    let late_client = app.signed_up("late@example.com").await;
    let res = app
        .call(&late_client, "accept_invitation", &[("token", &late)])
        .await;
    assert_eq!(res.status(), 422);
    assert!(res.text().await.unwrap().contains("expired"));

    // Only the token's hash is stored, the address only sealed.
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM team_invitations
         WHERE position(convert_to($1, 'UTF8') in token_hash) > 0
            OR position(convert_to('late@example.com', 'UTF8') in email) > 0",
    )
    .bind(&late)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(stored, 0);
    // Retention deletes the expired invitation (and its sealed address).
    let report =
        app::data::retention::server::run(&app.db, &app::platform::settings::Retention::default())
            .await
            .unwrap();
    assert_eq!(report.team_invitations, 1);
    assert_eq!(app.count("SELECT count(*) FROM team_invitations").await, 0);

    // A team keeps an owner: the last one can neither leave nor step down.
    let owner_id = ok_json(app.call(&owner, "get_team", &[("id", &team)]).await).await["members"]
        [0]["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app.call(&owner, "leave_team", &[("id", &team)]).await;
    assert_eq!(res.status(), 422);
    let res = app
        .call(
            &owner,
            "set_team_role",
            &[("id", &team), ("member", &owner_id), ("role", "admin")],
        )
        .await;
    assert_eq!(res.status(), 422);
    // A member leaves.
    let res = app.call(&invited, "leave_team", &[("id", &team)]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        app.call(&invited, "get_team", &[("id", &team)])
            .await
            .status(),
        404
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn team_data_is_sealed_with_the_team_key_and_outlives_its_maker(db: PgPool) {
    let (app, fake) = app(db).await;
    let owner = app.signed_up("owner@example.com").await;
    let team = create_team(&app, &owner, "Zanzibar team").await;
    let admin = join(&app, &owner, &team, "admin@example.com", "admin", 0).await;
    let res = team_agent(&app, &admin, fake, &team, "Zanzibar agent", "fake:echo").await;
    assert_eq!(res.status(), 200);
    github_connection(&app, &admin, "Zanzibar GitHub", "ghp_good_z", &team).await;
    let agent = agent_named(&app, &owner, "Zanzibar agent").await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Nothing of it in the clear; its values open only with the team key.
    let clear: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM teams WHERE position('Zanzibar' in encode(name, 'escape')) > 0)
              + (SELECT count(*) FROM agents WHERE position('Zanzibar' in encode(name, 'escape')) > 0)",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(clear, 0);
    let report = app::platform::keystore::verify(
        &app.db,
        &app.state.crypto.keyring,
        app::sealed_columns(),
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(report.failures, vec![]);
    let (agent_owner, agent_team): (uuid::Uuid, Option<uuid::Uuid>) =
        sqlx::query_as("SELECT owner_id, team_id FROM agents WHERE id = $1::uuid")
            .bind(&agent)
            .fetch_one(&app.db)
            .await
            .unwrap();
    let maker_key = app::platform::keystore::user_key(
        &app.db,
        &app.state.crypto.keyring,
        agent_owner,
        app::platform::keystore::KeyUse::Operator,
    )
    .await
    .unwrap();
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT name FROM agents WHERE id = $1::uuid")
        .bind(&agent)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let sealed = app::platform::crypto::Sealed::from_stored(sealed);
    let agent_id = uuid::Uuid::parse_str(&agent).unwrap();
    assert!(
        maker_key
            .open(
                app::platform::crypto::Place::new("agents", "name", agent_id, agent_owner),
                &sealed
            )
            .is_err(),
        "the maker's own key does not open the team's agent"
    );
    let team_id = agent_team.unwrap();
    let team_key = app::platform::keystore::team_key_for_member(
        &app.db,
        &app.state.crypto.keyring,
        team_id,
        agent_owner,
    )
    .await
    .unwrap();
    assert_eq!(
        team_key
            .open_string(
                app::platform::crypto::Place::new("agents", "name", agent_id, team_id),
                &sealed
            )
            .unwrap(),
        "Zanzibar agent"
    );

    // Rotation re-wraps the team's key too.
    let rotated = app::platform::keystore::rotate(&app.db, &keyring(2, &[1]), 10, |_| {})
        .await
        .unwrap();
    assert_eq!(rotated.remaining, 0);
    let old: i64 = app
        .count("SELECT count(*) FROM team_keys WHERE kek_id <> (SELECT min(kek_id) FROM user_keys)")
        .await;
    assert_eq!(old, 0);
    let report =
        app::platform::keystore::verify(&app.db, &keyring(2, &[]), app::sealed_columns(), |_| {})
            .await
            .unwrap();
    assert_eq!(report.failures, vec![]);
    // And back, for the server that runs on master key 1.
    app::platform::keystore::rotate(&app.db, &keyring(1, &[2]), 10, |_| {})
        .await
        .unwrap();

    // The admin who made it is erased: the team keeps the agent.
    let res = app
        .call(&admin, "delete_account", &[("password", PASSWORD)])
        .await;
    assert_eq!(res.status(), 200);
    sqlx::query("UPDATE users SET deleted_at = now() - interval '40 days' WHERE id = $1")
        .bind(agent_owner)
        .execute(&app.db)
        .await
        .unwrap();
    let erased = app::data::deletion::server::erase_due(&app.db, 30, 10)
        .await
        .unwrap();
    assert_eq!(erased, 1);
    let still = agent_named(&app, &owner, "Zanzibar agent").await.unwrap();
    assert_eq!(still["can_edit"], true);
    let new_owner: uuid::Uuid =
        sqlx::query_scalar("SELECT owner_id FROM agents WHERE id = $1::uuid")
            .bind(&agent)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_ne!(new_owner, agent_owner);
    let listed = ok_json(app.call(&owner, "list_connections", &[]).await).await;
    assert!(
        listed.to_string().contains("Zanzibar GitHub"),
        "the team keeps its connection"
    );

    // The owner is erased too: nobody is left, the team and its key go.
    let res = app
        .call(&owner, "delete_account", &[("password", PASSWORD)])
        .await;
    assert_eq!(res.status(), 200);
    sqlx::query("UPDATE users SET deleted_at = now() - interval '40 days'")
        .execute(&app.db)
        .await
        .unwrap();
    app::data::deletion::server::erase_due(&app.db, 30, 10)
        .await
        .unwrap();
    assert_eq!(app.count("SELECT count(*) FROM teams").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM agents").await, 0);
}

/// Adds a GitHub connection (for `team` when given); its id.
async fn github_connection(
    app: &TestApp,
    client: &Client,
    label: &str,
    secret: &str,
    team: &str,
) -> String {
    let res = app
        .call(
            client,
            "add_connection",
            &[
                ("kind", "github"),
                ("label", label),
                ("secret", secret),
                ("team", team),
            ],
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    ok_json(app.call(client, "list_connections", &[]).await)
        .await
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == label)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_team_agent_uses_the_teams_connections_and_nobody_elses(db: PgPool) {
    let (app, fake) = app(db).await;
    let owner = app.signed_up("owner@example.com").await;
    let team = create_team(&app, &owner, "Builders").await;
    let member = join(&app, &owner, &team, "member@example.com", "member", 0).await;
    let outsider = app.signed_up("outsider@example.com").await;
    let mine = github_connection(&app, &member, "Member's own", "ghp_good_member", "").await;
    let owners_own = github_connection(&app, &owner, "Owner's own", "ghp_good_owner", "").await;

    // The team's agent calls the GitHub tool for whoever chats.
    let res = app
        .call(
            &owner,
            "create_agent",
            &[
                ("name", "Issue finder"),
                ("description", ""),
                ("system_prompt", ""),
                ("provider", "openai"),
                ("model", "fake:tool=github_read"),
                ("temperature", ""),
                ("top_p", ""),
                ("max_output_tokens", ""),
                ("avatar", ""),
                ("tools[]", "github_read"),
                ("team", &team),
            ],
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let agent = agent_named(&app, &member, "Issue finder").await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ask = |client: Client| {
        let (app, agent) = (&app, agent.clone());
        async move {
            let sent = send_new(
                app,
                &client,
                &agent,
                &serde_json::json!({"action": "search", "query": "is:open bug"}).to_string(),
            )
            .await;
            let reply = crate::common::reply_when(
                app,
                &client,
                sent["conversation_id"].as_str().unwrap(),
                "",
            )
            .await;
            reply["parts"][1].clone()
        }
    };
    // No team connection yet: the member's own is not used.
    let call = ask(member.clone()).await;
    assert_eq!(call["status"], "failed", "{call}");
    assert!(
        call["error"]
            .as_str()
            .unwrap()
            .contains("This team has no GitHub"),
        "{call}"
    );

    // The owner adds the team's: the member's run uses it.
    let shared = github_connection(&app, &owner, "Team GitHub", "ghp_good_team", &team).await;
    let call = ask(member.clone()).await;
    assert_eq!(call["status"], "done", "{call}");
    assert!(
        call["result"]
            .as_str()
            .unwrap()
            .contains("#7 Found by: is:open bug")
    );

    // Listed for the team's people (marked, managed by admins only).
    let listed = ok_json(app.call(&member, "list_connections", &[]).await).await;
    let team_row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == shared.as_str())
        .unwrap()
        .clone();
    assert_eq!(team_row["team"], "Builders");
    assert_eq!(team_row["can_edit"], false);
    assert!(
        !listed.to_string().contains("ghp_good_team"),
        "never the secret"
    );
    assert!(
        !ok_json(app.call(&outsider, "list_connections", &[]).await)
            .await
            .to_string()
            .contains("Team GitHub")
    );
    for (who, client, want) in [("member", &member, 404), ("outsider", &outsider, 404)] {
        for (name, form) in [
            ("test_connection", vec![("id", shared.as_str())]),
            (
                "replace_connection",
                vec![("id", shared.as_str()), ("secret", "ghp_good_x")],
            ),
            ("delete_connection", vec![("id", shared.as_str())]),
        ] {
            assert_eq!(
                app.call(client, name, &form).await.status(),
                want,
                "{name} as {who}"
            );
        }
    }
    let tested = ok_json(
        app.call(&owner, "test_connection", &[("id", &shared)])
            .await,
    )
    .await;
    assert_eq!(tested["ok"], true, "{tested}");
    // A member cannot add one for the team.
    let res = app
        .call(
            &member,
            "add_connection",
            &[
                ("kind", "github"),
                ("label", "Sneaky"),
                ("secret", "ghp_good_s"),
                ("team", &team),
            ],
        )
        .await;
    assert_eq!(res.status(), 404);

    // Each agent takes connections only from where it is.
    let agent_form = |name: &'static str, connection: String, team: String| {
        vec![
            ("name", name.to_owned()),
            ("description", String::new()),
            ("system_prompt", String::new()),
            ("provider", "openai".to_owned()),
            ("model", "fake:echo".to_owned()),
            ("temperature", String::new()),
            ("top_p", String::new()),
            ("max_output_tokens", String::new()),
            ("avatar", String::new()),
            ("tools[]", "github_read".to_owned()),
            ("connections[github]", connection),
            ("team", team),
        ]
    };
    for (form, want) in [
        (
            agent_form("Own using team's", shared.clone(), String::new()),
            422,
        ),
        (
            agent_form("Team using own", owners_own.clone(), team.clone()),
            422,
        ),
        (
            agent_form("Team using a stranger's", mine.clone(), team.clone()),
            404,
        ),
        (
            agent_form("Team using team's", shared.clone(), team.clone()),
            200,
        ),
    ] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = app.call(&owner, "create_agent", &form).await;
        assert_eq!(res.status(), want, "{:?}", form[0]);
    }

    // Removed from the team, the member's runs of it stop there; the
    // team's connection is no longer theirs to see.
    remove_the_member(&app, &owner, &team).await;
    let listed = ok_json(app.call(&member, "list_connections", &[]).await).await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let _ = fake;
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_team_knowledge_base_answers_the_teams_agents_and_nobody_elses(db: PgPool) {
    use crate::knowledge::ingestion::{HANDBOOK, settled, upload};
    let (app, _) = app(db).await;
    let owner = app.signed_up("owner@example.com").await;
    let team = create_team(&app, &owner, "Finance").await;
    let member = join(&app, &owner, &team, "member@example.com", "member", 0).await;
    let outsider = app.signed_up("outsider@example.com").await;
    let new_base = |name: &'static str, team: String| {
        vec![
            ("name", name.to_owned()),
            ("description", "What finance knows".to_owned()),
            ("provider", "openai".to_owned()),
            ("model", "text-embedding-3-small".to_owned()),
            ("team", team),
        ]
    };
    let create = |client: Client, form: Vec<(&'static str, String)>| {
        let app = &app;
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            app.call(&client, "create_knowledge_base", &form).await
        }
    };
    // Admins and owners make a team's base; a member cannot.
    let res = create(member.clone(), new_base("Sneaky base", team.clone())).await;
    assert_eq!(res.status(), 404);
    let base: String = ok_json(create(owner.clone(), new_base("Ledger", team.clone())).await)
        .await
        .as_str()
        .unwrap()
        .to_owned();
    let own_base: String =
        ok_json(create(owner.clone(), new_base("Owner's notes", String::new())).await)
            .await
            .as_str()
            .unwrap()
            .to_owned();
    let res = upload(
        &app,
        &owner,
        &base,
        vec![("handbook.md", HANDBOOK.as_bytes().to_vec())],
    )
    .await;
    assert_eq!(res.status(), 200);
    settled(&app, &owner, &base).await;
    let chunks: i64 =
        sqlx::query_scalar("SELECT count(*) FROM knowledge_chunks WHERE team_id = $1::uuid")
            .bind(&team)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert!(chunks > 0, "its passages are the team's");

    // The member reads and searches it, and changes nothing.
    let listed = ok_json(app.call(&member, "list_knowledge_bases", &[]).await).await;
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == base.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["team"], "Finance");
    assert_eq!(row["can_edit"], false);
    assert!(!listed.to_string().contains("Owner's notes"));
    let page = settled(&app, &member, &base).await;
    assert_eq!(page["documents"][0]["state"], "ready");
    let found = ok_json(
        app.call(
            &member,
            "search_knowledge_base",
            &[("id", &base), ("query", "When are invoices paid?")],
        )
        .await,
    )
    .await;
    assert!(found.to_string().contains("thirty days"), "{found}");
    let doc = page["documents"][0]["id"].as_str().unwrap().to_owned();
    for (who, client, want) in [("member", &member, 404), ("outsider", &outsider, 404)] {
        let res = upload(
            &app,
            client,
            &base,
            vec![("more.md", b"# More\nText.".to_vec())],
        )
        .await;
        assert_eq!(res.status(), want, "upload as {who}");
        let res = app
            .call(
                client,
                "delete_knowledge_document",
                &[("base", &base), ("id", &doc)],
            )
            .await;
        assert_eq!(res.status(), want, "delete_knowledge_document as {who}");
        let res = app
            .call(client, "delete_knowledge_base", &[("id", &base)])
            .await;
        assert_eq!(res.status(), want, "delete_knowledge_base as {who}");
    }
    for name in ["knowledge_base", "search_knowledge_base"] {
        let res = app
            .call(&outsider, name, &[("id", &base), ("query", "invoices")])
            .await;
        assert_eq!(res.status(), 404, "{name} as the outsider");
    }

    // Agents answer from bases where they are: the team's from the team's.
    let agent_form = |name: &'static str, base: String, team: String| {
        vec![
            ("name", name.to_owned()),
            ("description", String::new()),
            ("system_prompt", String::new()),
            ("provider", "openai".to_owned()),
            ("model", "demo".to_owned()),
            ("temperature", String::new()),
            ("top_p", String::new()),
            ("max_output_tokens", String::new()),
            ("avatar", String::new()),
            ("knowledge[]", base),
            ("team", team),
        ]
    };
    for (form, want) in [
        (
            agent_form("Own from team's", base.clone(), String::new()),
            422,
        ),
        (
            agent_form("Team from own", own_base.clone(), team.clone()),
            422,
        ),
        (agent_form("Bookkeeper", base.clone(), team.clone()), 200),
    ] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let res = app.call(&owner, "create_agent", &form).await;
        assert_eq!(res.status(), want, "{:?}", form[0]);
    }
    let agent = agent_named(&app, &member, "Bookkeeper").await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let detail = ok_json(app.call(&member, "get_agent", &[("id", &agent)]).await).await;
    assert_eq!(detail["knowledge"][0]["name"], "Ledger");
    let sent = send_new(&app, &member, &agent, "When are invoices paid?").await;
    let reply = crate::common::reply_when(
        &app,
        &member,
        sent["conversation_id"].as_str().unwrap(),
        "complete",
    )
    .await;
    let body = reply["body"].as_str().unwrap();
    assert!(
        body.contains("thirty days") && body.contains("[1]"),
        "{body}"
    );
    let sources = reply["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["type"] == "sources")
        .unwrap()["sources"]
        .clone();
    let chunk = sources[0]["chunk_id"].as_str().unwrap().to_owned();
    let passage = ok_json(
        app.call(&member, "knowledge_passage", &[("id", &chunk)])
            .await,
    )
    .await;
    assert!(passage["text"].as_str().unwrap().contains("thirty days"));
    assert_eq!(
        app.call(&outsider, "knowledge_passage", &[("id", &chunk)])
            .await
            .status(),
        404
    );

    // Removed, the member reaches none of it.
    remove_the_member(&app, &owner, &team).await;
    for (name, form) in [
        ("knowledge_base", vec![("id", base.as_str())]),
        (
            "search_knowledge_base",
            vec![("id", base.as_str()), ("query", "invoices")],
        ),
        ("knowledge_passage", vec![("id", chunk.as_str())]),
    ] {
        assert_eq!(app.call(&member, name, &form).await.status(), 404, "{name}");
    }
    assert_eq!(
        ok_json(app.call(&member, "list_knowledge_bases", &[]).await).await,
        serde_json::json!([])
    );
}

/// The key a send uses is always the sender's own (`chat::server::SEND_READS`
/// picks it in the statement that reads the agent): a team agent runs on
/// its maker's newest key for the maker, and never on it for a member.
#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_team_agents_replies_use_the_senders_own_key_never_its_makers(db: PgPool) {
    let (app, fake) = app(db).await;
    let maker = app.signed_up("maker@example.com").await;
    let team = create_team(&app, &maker, "Ops").await;
    let member = join(&app, &maker, &team, "member@example.com", "member", 0).await;
    let base_url = format!("http://{fake}/compat/v1");
    let add_key = |client: &Client, label: &'static str, secret: &'static str| {
        let (app, client, base_url) = (&app, client.clone(), base_url.clone());
        async move {
            let form = [
                ("provider", "openai_compatible"),
                ("label", label),
                ("secret", secret),
                ("base_url", base_url.as_str()),
            ];
            ok_json(app.call(&client, "add_provider_key", &form).await).await;
        }
    };
    add_key(&maker, "Maker", "maker-key-1111").await;
    add_key(&maker, "Maker newer", "maker-key-2222").await;
    let res = app
        .call(
            &maker,
            "create_agent",
            &[
                ("name", "Shared local"),
                ("description", ""),
                ("system_prompt", ""),
                ("provider", "openai_compatible"),
                ("model", "fake:echo"),
                ("base_url", base_url.as_str()),
                ("temperature", ""),
                ("top_p", ""),
                ("max_output_tokens", ""),
                ("avatar", ""),
                ("team", team.as_str()),
                ("provider_key_id", ""),
            ],
        )
        .await;
    ok_json(res).await;
    let agent = agent_named(&app, &maker, "Shared local").await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The authorization the fake provider saw on the reply to `client`'s `text`.
    let sent_with = |client: &Client, text: &'static str| {
        let (app, client, agent) = (&app, client.clone(), agent.clone());
        async move {
            let sent = send_new(app, &client, &agent, text).await;
            let conversation = sent["conversation_id"].as_str().unwrap();
            crate::common::reply_when(app, &client, conversation, "complete").await;
            crate::common::compat_last_authorization(fake).await
        }
    };
    // The maker's sends use their newest key.
    assert_eq!(
        sent_with(&maker, "from the maker").await,
        "Bearer maker-key-2222"
    );
    // A member without a key of their own sends none (this provider takes
    // replies without one): never the maker's.
    assert_eq!(sent_with(&member, "from the member").await, Value::Null);
    // With a key of their own, the member's replies use it.
    add_key(&member, "Mine", "member-key-3333").await;
    assert_eq!(sent_with(&member, "again").await, "Bearer member-key-3333");
}
