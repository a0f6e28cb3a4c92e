//! Usage, budgets and credits: the ledger matches the provider's reported
//! tokens at the price in force (a later price does not rewrite it);
//! quotas and credits refuse a reply before the provider is called; two
//! replies at once never overdraw credits; a reply that crosses the budget
//! finishes and the balance stops at zero; Stripe top-ups are credited
//! once, only by a validly signed, fresh webhook; a team's usage is for
//! its admins and owners (404 for anyone else).

use std::net::SocketAddr;

use app::{
    platform::settings::{Billing, BillingMode, QuotaPeriod, QuotaUnit, Quotas, Settings, Stripe},
    provider::Provider,
    usage::server as usage,
};
use reqwest::Client;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::common::{
    TestApp, account_key, chat_settings, keyring, mail_with_subject, ok_json, reply_when,
    scripted_agent, send_new, with_mail_catcher,
};

fn billing(mode: BillingMode) -> Billing {
    Billing {
        mode,
        ..Settings::default().billing
    }
}

async fn app_with(db: PgPool, billing: Billing) -> (TestApp, SocketAddr) {
    let fake = server::fake_provider::start().await.unwrap();
    let settings = Settings {
        billing,
        ..with_mail_catcher(chat_settings(fake))
    };
    (
        TestApp::spawn_full(db, settings, keyring(1, &[])).await,
        fake,
    )
}

/// An agent on the operator's OpenAI key (charged) whose fake model is `script`.
async fn platform_agent(app: &TestApp, client: &Client, fake: SocketAddr, script: &str) -> String {
    scripted_agent(app, client, fake, "openai", script, &[], &[], "").await
}

/// An agent named `name` on the operator's OpenAI key, with at most
/// `max_output` tokens (empty: no limit), belonging to `team` (empty: its
/// maker's own). Its id.
async fn agent_on_openai(
    app: &TestApp,
    client: &Client,
    name: &str,
    model: &str,
    max_output: &str,
    team: &str,
) -> String {
    let res = app
        .call(
            client,
            "create_agent",
            &[
                ("name", name),
                ("description", ""),
                ("system_prompt", ""),
                ("provider", "openai"),
                ("model", model),
                ("base_url", ""),
                ("temperature", ""),
                ("top_p", ""),
                ("max_output_tokens", max_output),
                ("avatar", ""),
                ("step_limit", ""),
                ("team", team),
            ],
        )
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let agents = ok_json(app.call(client, "list_agents", &[]).await).await;
    agents
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn requests(fake: SocketAddr, model: &str) -> u64 {
    let url = format!("http://{fake}/requests/{}", percent_encode(model));
    reqwest::get(url)
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["requests"]
        .as_u64()
        .unwrap()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends `text` to `agent` and expects the budget to refuse it (422):
/// the sentence the user reads.
async fn refused(app: &TestApp, client: &Client, agent: &str, text: &str) -> String {
    let res = crate::common::send_message(app, client, agent, text).await;
    assert_eq!(res.status(), 422);
    res.text().await.unwrap()
}

/// Sends and waits for the reply to end; the reply.
async fn chat(app: &TestApp, client: &Client, agent: &str, text: &str) -> Value {
    let sent = send_new(app, client, agent, text).await;
    reply_when(app, client, sent["conversation_id"].as_str().unwrap(), "").await
}

#[derive(Debug, PartialEq, Eq, sqlx::FromRow)]
struct Row {
    input_tokens: i64,
    output_tokens: i64,
    cost: i64,
    charged: bool,
}

async fn ledger(db: &PgPool) -> Vec<Row> {
    sqlx::query_as(
        "SELECT input_tokens, output_tokens, cost, charged FROM usage_entries ORDER BY created_at, id",
    )
    .fetch_all(db)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_ledger_has_the_providers_tokens_at_the_price_of_the_day(db: PgPool) {
    let (app, fake) = app_with(db, billing(BillingMode::Unlimited)).await;
    let client = app.signed_up("ada@example.com").await;
    let agent = platform_agent(&app, &client, fake, "fake:tokens=5").await;
    let reply = chat(&app, &client, &agent, "Hello").await;
    assert_eq!(reply["status"], "complete");
    // The fake reports 11 prompt tokens and one completion token per piece.
    assert_eq!(
        (
            reply["input_tokens"].as_i64(),
            reply["output_tokens"].as_i64()
        ),
        (Some(11), Some(5))
    );
    // openai's default price: 2.50 in and 10.00 out per million tokens,
    // in micro-units: 11 × 2.5 + 5 × 10 = 77.5, rounded up.
    assert_eq!(
        ledger(&app.db).await,
        vec![Row {
            input_tokens: 11,
            output_tokens: 5,
            cost: 78,
            charged: true
        }]
    );
    // A new price applies from now on; the first entry keeps its own.
    usage::set_price(
        &app.db,
        Provider::Openai,
        "fake:tokens=5",
        100_000_000,
        200_000_000,
    )
    .await
    .unwrap();
    chat(&app, &client, &agent, "Again").await;
    let rows = ledger(&app.db).await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].cost, 78, "history is not rewritten");
    assert_eq!(rows[1].cost, 11 * 100 + 5 * 200);
    // The sealed details name the price version applied to each.
    let report = ok_json(app.call(&client, "get_usage", &[("days", "7")]).await).await;
    assert_eq!(report["total"]["calls"], 2);
    assert_eq!(report["total"]["input_tokens"], 22);
    assert_eq!(report["total"]["output_tokens"], 10);
    assert_eq!(report["total"]["cost"], 78 + 2_100);
    assert_eq!(report["by_agent"].as_array().unwrap().len(), 1);
    assert_eq!(report["by_model"][0]["label"], "openai fake:tokens=5");
    assert_eq!(report["by_day"].as_array().unwrap().len(), 7);
    let (user, key) = account_key(&app, "ada@example.com").await;
    let entries = usage::entries(
        &app.db,
        usage::Holder::User(user),
        &key,
        chrono::Utc::now() - chrono::Duration::days(1),
    )
    .await
    .unwrap();
    let prices: Vec<(i64, i64)> = entries
        .iter()
        .map(|e| {
            let d = e.details.as_ref().unwrap();
            (d.input_per_mtok, d.output_per_mtok)
        })
        .collect();
    assert_eq!(
        prices,
        vec![(2_500_000, 10_000_000), (100_000_000, 200_000_000)]
    );
    assert_ne!(
        entries[0].details.as_ref().unwrap().price_id,
        entries[1].details.as_ref().unwrap().price_id
    );
    // The CSV has one row per day, agent and model, amounts as integers.
    let csv = client
        .get(app.url("/usage.csv?days=7"))
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[1].ends_with(",openai fake:tokens=5,2,22,10,2178,0.002178"),
        "{text}"
    );
    // Nobody else's: the CSV needs a session.
    let anonymous = crate::common::browser("test");
    let res = anonymous.get(app.url("/usage.csv")).send().await.unwrap();
    assert_eq!(res.status(), 303);
}

fn quotas(per_user: Option<u64>, per_team: Option<u64>) -> Billing {
    billing(BillingMode::Quotas(Quotas {
        period: QuotaPeriod::Day,
        unit: QuotaUnit::Tokens,
        per_user,
        per_team,
    }))
}

/// A send reads every current price of its agent's provider beside the
/// agent, and picks one once the (sealed) model is open: the model's own,
/// else the provider's `*`; never another provider's, never an old version.
#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_reply_is_priced_by_its_own_model_else_its_providers_default(db: PgPool) {
    let (app, fake) = app_with(db, billing(BillingMode::Unlimited)).await;
    let client = app.signed_up("ada@example.com").await;
    let agent = platform_agent(&app, &client, fake, "fake:tokens=5").await;
    let set = |provider, model: &'static str, input, output| {
        let db = app.db.clone();
        async move {
            usage::set_price(&db, provider, model, input, output)
                .await
                .unwrap()
        }
    };
    // The same model name on another provider, and a new default there.
    set(Provider::Anthropic, "fake:tokens=5", 7_000_000, 7_000_000).await;
    set(Provider::Anthropic, "*", 9_000_000, 9_000_000).await;
    // A new default for the agent's provider: it applies (11 in, 5 out).
    set(Provider::Openai, "*", 1_000_000, 2_000_000).await;
    chat(&app, &client, &agent, "One").await;
    // The model's own price, then a newer version of it.
    set(Provider::Openai, "fake:tokens=5", 3_000_000, 4_000_000).await;
    set(Provider::Openai, "fake:tokens=5", 5_000_000, 6_000_000).await;
    // A default set after the model's own price does not override it.
    set(Provider::Openai, "*", 8_000_000, 8_000_000).await;
    chat(&app, &client, &agent, "Two").await;
    let costs: Vec<i64> = ledger(&app.db).await.iter().map(|r| r.cost).collect();
    assert_eq!(costs, vec![11 + 5 * 2, 11 * 5 + 5 * 6]);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_used_up_quota_refuses_before_the_provider_is_called(db: PgPool) {
    // 20 tokens a day; a reply uses 11 + 6.
    let (app, fake) = app_with(db, quotas(Some(20), None)).await;
    let client = app.signed_up("ada@example.com").await;
    let model = "fake:tokens=6,id=quota";
    let agent = platform_agent(&app, &client, fake, model).await;
    assert_eq!(
        chat(&app, &client, &agent, "One").await["status"],
        "complete"
    );
    // 17 of 20: the 80% mail.
    mail_with_subject(&app, "You have used 80% of your Enclave allowance", 1).await;
    // The second reply still starts (under the limit) and crosses it: it
    // finishes all the same.
    let second = chat(&app, &client, &agent, "Two").await;
    assert_eq!(second["status"], "complete");
    assert_eq!(second["output_tokens"], 6);
    let mail = mail_with_subject(&app, "Your Enclave usage allowance is used up", 1).await;
    assert!(mail.contains("34 tokens of 20 tokens"), "{mail}");
    let asked = requests(fake, model).await;
    assert_eq!(asked, 2);
    // The third is refused with a plain sentence; the provider never hears of it.
    let body = refused(&app, &client, &agent, "Three").await;
    assert!(
        body.contains("You have used your daily allowance (20 tokens)"),
        "{body}"
    );
    assert_eq!(requests(fake, model).await, asked);
    let conversations = ok_json(
        app.call(&client, "list_conversations", &[("agent_id", &agent)])
            .await,
    )
    .await;
    assert_eq!(
        conversations.as_array().unwrap().len(),
        2,
        "nothing was stored for the refused one"
    );
    // The alerts went out once each, and the activity log has the limit.
    let activity: i64 = app
        .count("SELECT count(*) FROM activity WHERE kind = 'budget_reached'")
        .await;
    assert_eq!(activity, 1);
    // Calls on a server of the user's own (no operator key) are not charged.
    let own = scripted_agent(
        &app,
        &client,
        fake,
        "openai_compatible",
        "fake:tokens=2",
        &[],
        &[],
        "",
    )
    .await;
    assert_eq!(
        chat(&app, &client, &own, "Mine").await["status"],
        "complete"
    );
    let uncharged: i64 = app
        .count("SELECT count(*) FROM usage_entries WHERE NOT charged")
        .await;
    assert_eq!(uncharged, 1);
    // The usage page shows the allowance.
    let report = ok_json(app.call(&client, "get_usage", &[]).await).await;
    assert_eq!(report["budgets"][0]["label"], "Your daily allowance");
    assert_eq!(report["budgets"][0]["percent"], 170);
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_team_quota_counts_the_teams_agents(db: PgPool) {
    let (app, fake) = app_with(db, quotas(None, Some(15))).await;
    let owner = app.signed_up("ada@example.com").await;
    let team = ok_json(
        app.call(&owner, "create_team", &[("name", "Analytical")])
            .await,
    )
    .await;
    let team = team.as_str().unwrap();
    let model = "fake:tokens=5,id=team";
    let agent = agent_on_openai(&app, &owner, "Team helper", model, "", team).await;
    assert_eq!(
        chat(&app, &owner, &agent, "One").await["status"],
        "complete"
    );
    assert!(
        refused(&app, &owner, &agent, "Two")
            .await
            .contains("This team has used its daily allowance")
    );
    assert_eq!(
        requests(fake, model).await,
        1,
        "the provider never heard of it"
    );
    // The team's view, for its owner: by person too.
    let report = ok_json(app.call(&owner, "get_usage", &[("team", team)]).await).await;
    assert_eq!(report["total"]["calls"], 1);
    assert_eq!(report["by_agent"][0]["label"], "Team helper");
    assert_eq!(report["by_person"].as_array().unwrap().len(), 1);
    assert_eq!(report["budgets"][0]["percent"], 106);
    // Anyone outside the team: 404, page and CSV alike.
    let stranger = app.signed_up("eve@example.com").await;
    let res = app.call(&stranger, "get_usage", &[("team", team)]).await;
    assert_eq!(res.status(), 404);
    let res = stranger
        .get(app.url(&format!("/usage.csv?team={team}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    // Deleting the team keeps each person's own entries.
    let res = app
        .call(&owner, "delete_team", &[("id", team), ("confirm", "on")])
        .await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let report = ok_json(app.call(&owner, "get_usage", &[]).await).await;
    assert_eq!(report["total"]["calls"], 1);
}

async fn grant(app: &TestApp, email: &str, amount: i64) {
    let (user, key) = account_key(app, email).await;
    let mut tx = app.db.begin().await.unwrap();
    usage::credit(&mut tx, user, &key, "grant", amount, "test grant")
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

async fn balance(app: &TestApp, email: &str) -> i64 {
    let (user, _) = account_key(app, email).await;
    usage::balance(&app.db, user).await.unwrap()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn credits_refuse_without_balance_and_two_replies_never_overdraw(db: PgPool) {
    let (app, fake) = app_with(db, billing(BillingMode::Credits)).await;
    let client = app.signed_up("ada@example.com").await;
    let model = "fake:tokens=5,delay_ms=30,id=credits";
    let agent = platform_agent(&app, &client, fake, model).await;
    assert!(
        refused(&app, &client, &agent, "Hi")
            .await
            .contains("You have no credits left")
    );
    assert_eq!(requests(fake, model).await, 0);
    // A reply reserves what it could cost (8,000 tokens in, 2,000 out at
    // 2.50 and 10.00 per million: 40,000); one and a half of that:
    let hold = 40_000;
    grant(&app, "ada@example.com", hold * 3 / 2).await;
    let send = |text: &'static str| {
        let (app, client, agent) = (&app, &client, &agent);
        async move {
            app.call(
                client,
                "send_message",
                &[("agent_id", agent), ("message", text)],
            )
            .await
        }
    };
    let (a, b) = tokio::join!(send("First"), send("Second"));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 422],
        "exactly one of two replies at once fits"
    );
    let (ok, refused) = if a.status() == 200 { (a, b) } else { (b, a) };
    let refusal = refused.text().await.unwrap();
    assert!(refusal.contains("can cost up to $0.04"), "{refusal}");
    let sent: Value = ok.json().await.unwrap();
    let reply = reply_when(&app, &client, sent["conversation_id"].as_str().unwrap(), "").await;
    assert_eq!(reply["status"], "complete");
    // Settled: the reservation back, the reply's cost (78) taken.
    for _ in 0..100 {
        if balance(&app, "ada@example.com").await == hold * 3 / 2 - 78 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(balance(&app, "ada@example.com").await, hold * 3 / 2 - 78);
    assert_eq!(app.count("SELECT count(*) FROM credit_holds").await, 0);
    let charges: Vec<i64> =
        sqlx::query_scalar("SELECT amount FROM credit_transactions WHERE kind = 'charge'")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(charges, vec![-78]);
    let report = ok_json(app.call(&client, "get_usage", &[]).await).await;
    assert_eq!(report["credits"]["balance"], "$0.059922");
    assert_eq!(
        report["credits"]["transactions"].as_array().unwrap().len(),
        2
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_reply_that_crosses_the_balance_finishes_and_the_balance_stops_at_zero(db: PgPool) {
    let (app, fake) = app_with(db, billing(BillingMode::Credits)).await;
    let client = app.signed_up("ada@example.com").await;
    let model = "fake:tokens=5,id=edge";
    // One micro-unit per output token, input free; the agent asks for at
    // most one token, so the reply reserves 1 (the fake sends five).
    usage::set_price(&app.db, Provider::Openai, model, 0, 1_000_000)
        .await
        .unwrap();
    let agent = agent_on_openai(&app, &client, "Edge", model, "1", "").await;
    grant(&app, "ada@example.com", 2).await;
    let reply = chat(&app, &client, &agent, "Go").await;
    assert_eq!(reply["status"], "complete");
    assert_eq!(reply["output_tokens"], 5, "the whole reply");
    for _ in 0..100 {
        if app.count("SELECT count(*) FROM credit_holds").await == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        balance(&app, "ada@example.com").await,
        0,
        "never below zero"
    );
    let charge: (i64,) =
        sqlx::query_as("SELECT amount FROM credit_transactions WHERE kind = 'charge'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(
        charge.0, -2,
        "what was there; the ledger has the whole cost"
    );
    assert_eq!(ledger(&app.db).await[0].cost, 5);
    mail_with_subject(&app, "Your Enclave credits are used up", 1).await;
    refused(&app, &client, &agent, "More").await;
    assert_eq!(requests(fake, model).await, 1);
}

const WEBHOOK_SECRET: &str = "whsec_test_0123456789";
const STRIPE_KEY: &str = "sk_test_enclave";

async fn stripe_app(db: PgPool) -> (TestApp, SocketAddr) {
    let fake = server::fake_provider::start().await.unwrap();
    let billing = Billing {
        mode: BillingMode::Credits,
        stripe: Some(Stripe {
            api_url: format!("http://{fake}/stripe"),
            secret_key: STRIPE_KEY.into(),
            webhook_secret: WEBHOOK_SECRET.into(),
        }),
        ..Settings::default().billing
    };
    let settings = Settings {
        billing,
        ..with_mail_catcher(chat_settings(fake))
    };
    let app = TestApp::spawn_full(db, settings, keyring(1, &[])).await;
    crate::common::configure_fake_stripe(fake, &app, WEBHOOK_SECRET, STRIPE_KEY).await;
    (app, fake)
}

async fn post_webhook(app: &TestApp, signature: &str, body: &str) -> (u16, String) {
    let res = reqwest::Client::new()
        .post(app.url("/stripe/webhook"))
        .header("stripe-signature", signature)
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn a_stripe_top_up_is_credited_once_by_the_signed_webhook_only(db: PgPool) {
    let (app, fake) = stripe_app(db).await;
    let client = app.signed_up("ada@example.com").await;
    // "Add credits": a Checkout Session, and the browser goes to Stripe.
    let res = client
        .post(app.url("/usage/credits"))
        .form(&[("amount", "5000000")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let pay_url = res.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        pay_url.starts_with(&format!("http://{fake}/stripe/pay/cs_test_")),
        "{pay_url}"
    );
    assert_eq!(
        balance(&app, "ada@example.com").await,
        0,
        "nothing before the webhook"
    );
    // An amount that is not whole cents, or out of range, is refused plainly.
    for bad in ["5000001", "0", "abc", "9000000000"] {
        let res = client
            .post(app.url("/usage/credits"))
            .form(&[("amount", bad)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 422, "{bad}");
    }
    // Paying: Stripe delivers the event (twice, as it may), then sends the
    // browser back.
    let res = client.post(&pay_url).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert!(
        res.headers()["location"]
            .to_str()
            .unwrap()
            .contains("/usage?paid=")
    );
    assert_eq!(balance(&app, "ada@example.com").await, 5_000_000);
    let deliveries: Value = reqwest::get(format!("http://{fake}/fakes/stripe/deliveries"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let deliveries = deliveries.as_array().unwrap();
    assert_eq!(deliveries.len(), 2);
    assert!(deliveries.iter().all(|d| d["status"] == 200));
    let event = deliveries[0]["event"].as_str().unwrap();
    // Resent later (signed anew): still once.
    let again: Value = reqwest::Client::new()
        .post(format!("http://{fake}/fakes/stripe/resend/{event}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["status"], 200);
    assert_eq!(balance(&app, "ada@example.com").await, 5_000_000);
    assert_eq!(
        app.count("SELECT count(*) FROM credit_transactions WHERE kind = 'top_up'")
            .await,
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM activity WHERE kind = 'credits_added'")
            .await,
        1
    );

    // A second checkout, paid by forged or stale events: nothing changes.
    let res = client
        .post(app.url("/usage/credits"))
        .form(&[("amount", "20000000")])
        .send()
        .await
        .unwrap();
    let pay_url = res.headers()["location"].to_str().unwrap().to_owned();
    let session_id = pay_url.rsplit('/').next().unwrap().to_owned();
    let checkout: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM credit_checkouts WHERE status = 'open' ORDER BY created_at DESC LIMIT 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let body = json!({
        "id": "evt_forged_1",
        "type": "checkout.session.completed",
        "data": {"object": {
            "id": session_id, "object": "checkout.session", "payment_status": "paid",
            "client_reference_id": checkout.to_string(), "amount_total": 2000, "currency": "usd"
        }}
    })
    .to_string();
    let now = chrono::Utc::now().timestamp();
    let sign =
        |secret: &str, t: i64| server::fake_stripe::signature_header(secret, t, body.as_bytes());
    for (signature, why) in [
        (sign("whsec_wrong", now), "another secret"),
        (sign(WEBHOOK_SECRET, now - 360), "older than five minutes"),
        (sign(WEBHOOK_SECRET, now + 360), "from the future"),
        ("t=1,v1=zz".to_owned(), "malformed"),
        (String::new(), "missing"),
        (
            sign(WEBHOOK_SECRET, now).replace("v1=", "v1=00"),
            "a signature that is not the one",
        ),
    ] {
        let (status, _) = post_webhook(&app, &signature, &body).await;
        assert_eq!(status, 400, "{why}");
    }
    // The signature covers the exact bytes: the same event, changed.
    let (status, _) = post_webhook(
        &app,
        &sign(WEBHOOK_SECRET, now),
        &body.replace("2000", "9999"),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(balance(&app, "ada@example.com").await, 5_000_000);
    assert_eq!(
        app.count("SELECT count(*) FROM stripe_events WHERE event_id = 'evt_forged_1'")
            .await,
        0
    );
    // Validly signed, fresh: credited; the same event again, signed anew: not.
    let (status, _) = post_webhook(&app, &sign(WEBHOOK_SECRET, now), &body).await;
    assert_eq!(status, 200);
    assert_eq!(balance(&app, "ada@example.com").await, 25_000_000);
    let (status, _) = post_webhook(&app, &sign(WEBHOOK_SECRET, now + 1), &body).await;
    assert_eq!(status, 200);
    assert_eq!(balance(&app, "ada@example.com").await, 25_000_000);
    // Another event for the same, already paid checkout: nothing more.
    let other = body.replace("evt_forged_1", "evt_forged_2");
    let signed = server::fake_stripe::signature_header(WEBHOOK_SECRET, now, other.as_bytes());
    let (status, _) = post_webhook(&app, &signed, &other).await;
    assert_eq!(status, 200);
    assert_eq!(balance(&app, "ada@example.com").await, 25_000_000);
    assert_eq!(
        app.count("SELECT count(*) FROM credit_transactions WHERE kind = 'top_up'")
            .await,
        2
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn an_hour_at_ten_times_the_usual_spend_is_logged_and_mailed(db: PgPool) {
    let (app, fake) = app_with(db, billing(BillingMode::Unlimited)).await;
    let client = app.signed_up("ada@example.com").await;
    let model = "fake:tokens=5,id=spike";
    // Each reply costs 11 + 5 × 1,000 = 5,011 micro-units.
    usage::set_price(&app.db, Provider::Openai, model, 1_000_000, 1_000_000_000)
        .await
        .unwrap();
    let agent = platform_agent(&app, &client, fake, model).await;
    // A usual week: four hours of 400 each.
    let (user, key) = account_key(&app, "ada@example.com").await;
    for hours_ago in [30, 50, 70, 90] {
        let id = uuid::Uuid::new_v4();
        sqlx::query(
            "INSERT INTO usage_entries
               (id, owner_id, input_tokens, output_tokens, cost, charged, details, created_at)
             VALUES ($1, $2, 10, 10, 400, true, $3, now() - make_interval(hours => $4))",
        )
        .bind(id)
        .bind(user)
        .bind(key.seal_str(usage::place("usage_entries", "details", id, user), "{}"))
        .bind(hours_ago)
        .execute(&app.db)
        .await
        .unwrap();
    }
    // One reply is 12 times the usual hour: noted once, mailed once.
    assert_eq!(
        chat(&app, &client, &agent, "Big one").await["status"],
        "complete"
    );
    let mail = mail_with_subject(&app, "Unusually high usage on your Enclave account", 1).await;
    assert!(
        mail.contains("$0.005011") && mail.contains("$0.0004"),
        "{mail}"
    );
    chat(&app, &client, &agent, "Another").await;
    assert_eq!(
        app.count("SELECT count(*) FROM activity WHERE kind = 'usage_spike'")
            .await,
        1,
        "once an hour"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM usage_alerts WHERE key LIKE 'usage-spike:%'")
            .await,
        1
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn embeddings_are_in_the_ledger_with_the_providers_count(db: PgPool) {
    use crate::knowledge::ingestion::{create_base, search, settled, upload};
    let (app, _fake) = app_with(db, billing(BillingMode::Unlimited)).await;
    let client = app.signed_up("ada@example.com").await;
    let base = create_base(&app, &client, "Handbook").await;
    let res = upload(
        &app,
        &client,
        &base,
        vec![("notes.txt", b"Invoices are paid in thirty days.".to_vec())],
    )
    .await;
    assert_eq!(res.status(), 200);
    settled(&app, &client, &base).await;
    search(&app, &client, &base, "when are invoices paid").await;
    // The fake counts a token per word: six for the passage, four for the
    // search; text-embedding-3-small costs 0.02 per million.
    let rows = ledger(&app.db).await;
    assert_eq!(
        rows,
        vec![
            Row {
                input_tokens: 6,
                output_tokens: 0,
                cost: 1,
                charged: true
            },
            Row {
                input_tokens: 4,
                output_tokens: 0,
                cost: 1,
                charged: true
            },
        ]
    );
    let report = ok_json(app.call(&client, "get_usage", &[]).await).await;
    assert_eq!(report["by_agent"][0]["label"], "Handbook");
    assert_eq!(
        report["by_model"][0]["label"],
        "openai text-embedding-3-small"
    );
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn the_administrator_sets_prices_and_nobody_else_does(db: PgPool) {
    let (app, _fake) = app_with(db, billing(BillingMode::Unlimited)).await;
    // The first account administers the server.
    let admin = app.signed_up("admin@example.com").await;
    let other = app.signed_up("eve@example.com").await;
    let set = [
        ("provider", "openai"),
        ("model", "gpt-new"),
        ("input", "1.25"),
        ("output", "5"),
    ];
    let res = app.call(&other, "admin_set_price", &set).await;
    assert_eq!(res.status(), 404);
    assert_eq!(app.call(&other, "admin_prices", &[]).await.status(), 404);
    let res = app.call(&admin, "admin_set_price", &set).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let bad = app
        .call(
            &admin,
            "admin_set_price",
            &[
                ("provider", "openai"),
                ("model", "x"),
                ("input", "-1"),
                ("output", "1"),
            ],
        )
        .await;
    assert_eq!(bad.status(), 422);
    let (currency, prices): (String, Vec<Value>) =
        serde_json::from_value(ok_json(app.call(&admin, "admin_prices", &[]).await).await).unwrap();
    assert_eq!(currency, "usd");
    let new = prices.iter().find(|p| p["model"] == "gpt-new").unwrap();
    assert_eq!(
        (
            new["input_per_mtok"].as_i64(),
            new["output_per_mtok"].as_i64()
        ),
        (Some(1_250_000), Some(5_000_000))
    );
    let price = usage::price_of(&app.db, Provider::Openai, "gpt-new")
        .await
        .unwrap();
    assert_eq!(price.cost(1_000_000, 1_000_000), 6_250_000);
    // An unknown model of the provider takes its default (`*`).
    let default = usage::price_of(&app.db, Provider::Openai, "gpt-unknown")
        .await
        .unwrap();
    assert_eq!(default.input_per_mtok, 2_500_000);
}

/// Runs `sdk/stripe_signature.py` (Stripe's own library); what it printed.
async fn stripe_library(mode: &str, payload: &str, header: &str) -> String {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/it/sdk/stripe_signature.py");
    let (ok, stdout, stderr) = crate::common::peers::run(
        crate::common::peers::python(),
        &[script.into(), mode.into()],
        &[
            ("PAYLOAD", payload.to_owned()),
            ("SECRET", WEBHOOK_SECRET.to_owned()),
            ("HEADER", header.to_owned()),
        ],
    )
    .await;
    assert!(ok, "the stripe library failed:\n{stderr}\n{stdout}");
    stdout.trim().to_owned()
}

#[sqlx::test(migrator = "server::MIGRATOR")]
async fn stripes_own_library_signs_what_enclave_accepts_and_accepts_what_the_fake_signs(
    db: PgPool,
) {
    let (app, _fake) = stripe_app(db).await;
    let client = app.signed_up("ada@example.com").await;
    let res = client
        .post(app.url("/usage/credits"))
        .form(&[("amount", "5000000")])
        .send()
        .await
        .unwrap();
    let pay_url = res.headers()["location"].to_str().unwrap().to_owned();
    let session_id = pay_url.rsplit('/').next().unwrap().to_owned();
    let checkout: uuid::Uuid = sqlx::query_scalar("SELECT id FROM credit_checkouts")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let body = json!({
        "id": "evt_library_1",
        "object": "event",
        "type": "checkout.session.completed",
        "data": {"object": {
            "id": session_id, "object": "checkout.session", "payment_status": "paid",
            "client_reference_id": checkout.to_string(), "amount_total": 500, "currency": "usd"
        }}
    })
    .to_string();
    // Signed by Stripe's library: Enclave accepts it and credits once.
    let header = stripe_library("sign", &body, "").await;
    assert!(
        header.starts_with("t=") && header.contains(",v1="),
        "{header}"
    );
    let (status, _) = post_webhook(&app, &header, &body).await;
    assert_eq!(status, 200);
    assert_eq!(balance(&app, "ada@example.com").await, 5_000_000);
    // Signed by the fake: Stripe's library accepts it; changed, it refuses.
    let now = chrono::Utc::now().timestamp();
    let signed = server::fake_stripe::signature_header(WEBHOOK_SECRET, now, body.as_bytes());
    assert_eq!(
        stripe_library("verify", &body, &signed).await,
        "checkout.session.completed"
    );
    let changed = body.replace("500", "900");
    assert!(
        stripe_library("verify", &changed, &signed)
            .await
            .starts_with("refused")
    );
    let old = server::fake_stripe::signature_header(WEBHOOK_SECRET, now - 400, body.as_bytes());
    assert!(
        stripe_library("verify", &body, &old)
            .await
            .starts_with("refused")
    );
}
