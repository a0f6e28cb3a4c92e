//! `TestApp`: the real router on a real port, over a fresh database per test
//! (`#[sqlx::test]`), driven with a real HTTP client.
#![allow(dead_code)]

pub mod cluster;
pub mod oidc;
pub mod peers;
pub mod smtp;

use std::{net::SocketAddr, time::Duration};

use app::{
    platform::{
        Settings,
        crypto::{Kek, Keyring},
        keystore::Crypto,
        settings::Limit,
    },
    state::AppState,
};
use reqwest::{Client, Response, header};
use sqlx::PgPool;

/// What a client reaches: one server, or a load balancer in front of
/// several (`cluster`). Helpers that only speak HTTP take this, so they
/// work through either; a `TestApp` derefs to its own.
pub struct Http {
    base: String,
}

pub struct TestApp {
    pub addr: SocketAddr,
    http: Http,
    pub db: PgPool,
    pub settings: Settings,
    pub keyring: Keyring,
    /// The server's state, for tests that start runs directly.
    pub state: AppState,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Close the server's connections now, so that sqlx can drop the
        // test's database at once (PostgreSQL waits 5 s for open sessions).
        let db = self.db.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { db.close().await });
        }
    }
}

/// Limits high enough that only the rate-limit tests meet them.
pub fn relaxed_settings() -> Settings {
    Settings {
        sign_in_per_ip: Limit::new(1_000, 900),
        sign_up_per_ip: Limit::new(1_000, 3_600),
        chat_sends_per_user: Limit::new(10_000, 60),
        key_tests_per_user: Limit::new(1_000, 60),
        ..Settings::default()
    }
}

pub const PASSWORD: &str = "correct horse battery staple";

/// Settings whose provider URLs and egress allowlist point at a fake provider.
pub fn with_fake_provider(settings: Settings, fake: SocketAddr) -> Settings {
    Settings {
        egress_allow: vec![app::platform::egress::AllowEntry::parse(&fake.to_string()).unwrap()],
        provider_urls: app::platform::settings::ProviderUrls {
            openai: format!("http://{fake}/openai/v1"),
            anthropic: format!("http://{fake}/anthropic/v1"),
            google: format!("http://{fake}/google/v1beta"),
        },
        service_urls: app::platform::settings::ServiceUrls {
            github: format!("http://{fake}/github"),
            slack: format!("http://{fake}/slack"),
            telegram: format!("http://{fake}/telegram"),
            telegram_webhook: None,
        },
        ..settings
    }
}

/// A master key made of one repeated byte: tests name keys by that byte.
pub fn kek(byte: u8) -> Kek {
    Kek::from_bytes(&[byte; 32]).unwrap()
}

pub fn keyring(current: u8, previous: &[u8]) -> Keyring {
    Keyring::new(kek(current), previous.iter().map(|b| kek(*b)).collect())
}

impl TestApp {
    pub async fn spawn(db: PgPool) -> Self {
        Self::spawn_with(db, relaxed_settings()).await
    }

    pub async fn spawn_with(db: PgPool, settings: Settings) -> Self {
        Self::spawn_full(db, settings, keyring(1, &[])).await
    }

    pub async fn spawn_with_keys(db: PgPool, keyring: Keyring) -> Self {
        Self::spawn_full(db, relaxed_settings(), keyring).await
    }

    pub async fn spawn_full(db: PgPool, settings: Settings, keyring: Keyring) -> Self {
        Self::spawn_serving(db, settings, keyring, &Default::default()).await
    }

    /// A server with Prometheus metrics as `metrics` asks (as `serve` does).
    pub async fn spawn_serving(
        db: PgPool,
        settings: Settings,
        keyring: Keyring,
        metrics: &server::metrics::MetricsConfig,
    ) -> Self {
        // The server gets a pool of its own on the test's database, sized
        // like production's: sqlx's test pool allows five connections and
        // borrows them from one pool of twenty shared by every test running
        // at once, and a request waiting for one sat there for 30 s.
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&database_url(&db).await)
            .await
            .unwrap();
        let crypto = Crypto::load(&db, keyring.clone()).await.unwrap();
        let options = leptos::config::LeptosOptions::builder()
            .output_name("enclave")
            .site_root("target/site")
            .site_pkg_dir("pkg")
            .build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut settings = Settings {
            public_url: format!("http://{addr}"),
            ..settings
        };
        // Each server its own name, as in production (host and port).
        if settings.instance == "local" {
            settings.instance = format!("test-{addr}");
        }
        // A test that wants Telegram webhooks names `self`: this server.
        if settings.service_urls.telegram_webhook.as_deref() == Some("self") {
            settings.service_urls.telegram_webhook = Some(format!("http://{addr}"));
        }
        let state = AppState::new(options, db.clone(), settings.clone(), crypto);
        let router = server::router(state.clone(), &format!("http://{addr}"));
        let router = server::metrics::attach(router, &state, metrics);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        server::start_jobs(&state).await;
        let serving = state.clone();
        let served = tokio::spawn(async move {
            server::serve(listener, router, serving, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        TestApp {
            addr,
            http: Http::new(&format!("http://{addr}")),
            db,
            settings,
            keyring,
            state,
            shutdown: Some(tx),
            served: Some(served),
        }
    }

    /// Shuts the server down as SIGTERM does, and waits until it has.
    pub async fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.unwrap();
        }
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.db).await.unwrap()
    }
}

impl std::ops::Deref for TestApp {
    type Target = Http;
    fn deref(&self) -> &Http {
        &self.http
    }
}

impl Http {
    /// `base`: scheme, host and port, without a trailing slash.
    pub fn new(base: &str) -> Self {
        Http {
            base: base.to_owned(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A browser-like client with its own cookie jar that does not follow redirects.
    pub fn client(&self) -> Client {
        app::platform::tls::init();
        Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            // Sessions record it (sealed): every test session has one.
            .user_agent("enclave-tests/1.0")
            .build()
            .unwrap()
    }

    /// Calls server function `name` the way the hydrated app does.
    pub async fn call(&self, client: &Client, name: &str, form: &[(&str, &str)]) -> Response {
        client
            .post(self.url(&format!("/api/{name}")))
            .header(header::ACCEPT, "application/json")
            .header("sec-fetch-site", "same-origin")
            .form(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn sign_up(&self, client: &Client, email: &str, password: &str) -> Response {
        self.call(
            client,
            "sign_up",
            &[
                ("first_name", "Ada"),
                ("last_name", "Lovelace"),
                ("email", email),
                ("password", password),
                ("age_confirmed", "yes"),
            ],
        )
        .await
    }

    pub async fn sign_in(&self, client: &Client, email: &str, password: &str) -> Response {
        self.call(
            client,
            "sign_in",
            &[("email", email), ("password", password)],
        )
        .await
    }

    /// A new client signed in as a new account with `email` (sign-up starts
    /// no session: it answers alike for new and registered addresses).
    pub async fn signed_up(&self, email: &str) -> Client {
        let client = self.client();
        let res = self.sign_up(&client, email, PASSWORD).await;
        assert_eq!(
            res.status(),
            200,
            "sign-up failed: {}",
            res.text().await.unwrap()
        );
        let res = self.sign_in(&client, email, PASSWORD).await;
        assert_eq!(res.status(), 200, "sign-in after sign-up failed");
        client
    }

    /// The signed-in user as the server sees it (`null` when signed out).
    pub async fn current_user(&self, client: &Client) -> serde_json::Value {
        let res = self.call(client, "current_user", &[]).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }
}

/// The value of the `Set-Cookie` for `name`, if the response sets it.
pub fn set_cookie(res: &Response, name: &str) -> Option<String> {
    res.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

/// The session token a response set.
pub fn session_token(res: &Response) -> String {
    let cookie = set_cookie(res, "enclave_session").expect("a session cookie");
    cookie["enclave_session=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// The URL of the test's own database (sqlx::test makes one per test).
pub async fn database_url(db: &PgPool) -> String {
    let name: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(db)
        .await
        .unwrap();
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let (server, _) = base
        .rsplit_once('/')
        .expect("DATABASE_URL has a database name");
    format!("{server}/{name}")
}

/// An agent whose fake model is scripted (in the model name, or for Gemini,
/// whose names cannot hold a script, in the system prompt), with `tools`
/// enabled and `ask_first` of them asking first. Returns its id.
#[allow(clippy::too_many_arguments)]
pub async fn scripted_agent(
    app: &Http,
    client: &Client,
    fake: SocketAddr,
    provider: &str,
    script: &str,
    tools: &[&str],
    ask_first: &[&str],
    step_limit: &str,
) -> String {
    let base_url = format!("http://{fake}/compat/v1");
    let (model, prompt) = if provider == "google" {
        ("gemini-fake".to_owned(), script.to_owned())
    } else {
        (script.to_owned(), String::new())
    };
    let name: String = format!("{} {provider} {script}", uuid::Uuid::new_v4())
        .chars()
        .take(80)
        .collect();
    let compat = provider == "openai_compatible";
    let mut form: Vec<(&str, &str)> = vec![
        ("name", name.as_str()),
        ("description", ""),
        ("system_prompt", prompt.as_str()),
        ("provider", provider),
        ("model", model.as_str()),
        ("base_url", if compat { base_url.as_str() } else { "" }),
        ("temperature", ""),
        ("top_p", ""),
        ("max_output_tokens", ""),
        ("avatar", ""),
        ("step_limit", step_limit),
    ];
    form.extend(tools.iter().map(|t| ("tools[]", *t)));
    form.extend(ask_first.iter().map(|t| ("ask_first[]", *t)));
    let res = app.call(client, "create_agent", &form).await;
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let list: serde_json::Value = app
        .call(client, "list_agents", &[])
        .await
        .json()
        .await
        .unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Sends `text` to `agent` in a new conversation; returns what was started.
pub async fn send_new(app: &Http, client: &Client, agent: &str, text: &str) -> serde_json::Value {
    let res = send_message(app, client, agent, text).await;
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Asks to send `text` to `agent` in a new conversation: the answer as it is.
pub async fn send_message(app: &Http, client: &Client, agent: &str, text: &str) -> Response {
    app.call(
        client,
        "send_message",
        &[("agent_id", agent), ("message", text)],
    )
    .await
}

/// The conversation's second message (the reply) once its status is
/// `until` (any but `streaming` when `until` is empty), within 10 s.
pub async fn reply_when(
    app: &Http,
    client: &Client,
    conversation: &str,
    until: &str,
) -> serde_json::Value {
    reply_within(app, client, conversation, until, Duration::from_secs(10)).await
}

/// `reply_when` with its own patience (a long reply, a loaded machine).
pub async fn reply_within(
    app: &Http,
    client: &Client,
    conversation: &str,
    until: &str,
    patience: Duration,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let c: serde_json::Value = app
            .call(client, "get_conversation", &[("id", conversation)])
            .await
            .json()
            .await
            .unwrap();
        let status = &c["messages"][1]["status"];
        if (until.is_empty() && status.is_string() && status != "streaming") || status == until {
            return c["messages"][1].clone();
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("the reply never became {until:?} within {patience:?}: {status}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The status of the only reply in the database once it is no longer
/// `streaming` (waiting up to 5 s).
pub async fn settled_reply_status(db: &PgPool) -> String {
    let mut status = String::new();
    for _ in 0..200 {
        status = sqlx::query_scalar("SELECT status FROM messages WHERE role = 'assistant'")
            .fetch_one(db)
            .await
            .unwrap();
        if status != "streaming" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    status
}

/// `settings` with Enclave's mail going to the in-memory catcher (read it
/// with `state.settings.mailer.caught()`).
pub fn with_mail_catcher(settings: Settings) -> Settings {
    Settings {
        mailer: app::platform::mail::Mailer::catcher("Enclave <enclave@localhost>").unwrap(),
        ..settings
    }
}

/// A test app whose mail goes to the in-memory catcher.
pub async fn with_catcher(db: PgPool) -> TestApp {
    TestApp::spawn_full(db, with_mail_catcher(relaxed_settings()), keyring(1, &[])).await
}

/// Settings for chatting with the fake provider at `fake` on a platform
/// OpenAI key.
pub fn chat_settings(fake: SocketAddr) -> Settings {
    let settings = Settings {
        platform_keys: app::platform::settings::PlatformKeys::new(
            [(
                app::agents::domain::Provider::Openai,
                "platform-key".to_owned(),
            )]
            .into(),
        ),
        ..relaxed_settings()
    };
    with_fake_provider(settings, fake)
}

/// A browser-like client (cookies, no redirects) sending `user_agent`.
pub fn browser(user_agent: &str) -> Client {
    Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .user_agent(user_agent)
        .build()
        .unwrap()
}

/// The newest caught mail whose subject is `subject` once at least `count`
/// such mails were caught (waiting up to 10 s for them): its text.
pub async fn mail_with_subject(app: &TestApp, subject: &str, count: usize) -> String {
    for _ in 0..400 {
        let caught: Vec<_> = app
            .state
            .settings
            .mailer
            .caught()
            .into_iter()
            .filter(|c| c.mail.subject == subject)
            .collect();
        if caught.len() >= count {
            return caught[0].mail.text.clone();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no mail {subject:?}");
}

/// How many caught mails have `subject`.
pub fn mails_with_subject(app: &TestApp, subject: &str) -> usize {
    app.state
        .settings
        .mailer
        .caught()
        .iter()
        .filter(|c| c.mail.subject == subject)
        .count()
}

/// The first `http://` link in a mail's text or raw message (with
/// quoted-printable soft breaks and `=3D` undone).
pub fn link_in(mail: &str) -> String {
    let unfolded = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let start = unfolded.find("http://").expect("a link in the mail");
    unfolded[start..]
        .split(|c: char| c.is_whitespace() || c == '"' || c == '<')
        .next()
        .unwrap()
        .to_owned()
}

/// A successful response's JSON body (the status and body in the panic
/// otherwise).
/// The `Authorization` header the fake OpenAI-compatible server at `fake`
/// received with its last request (null when there was none).
pub async fn compat_last_authorization(fake: SocketAddr) -> serde_json::Value {
    let seen: serde_json::Value = reqwest::get(format!("http://{fake}/compat/v1/last-auth"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    seen["authorization"].clone()
}

pub async fn ok_json(res: Response) -> serde_json::Value {
    let status = res.status();
    let text = res.text().await.unwrap();
    assert!(status.is_success(), "{status}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The body of a GET of `url` by `client`.
/// A form posted as a browser without JavaScript posts it.
pub async fn plain_post(
    app: &TestApp,
    client: &Client,
    path: &str,
    form: &[(&str, &str)],
) -> Response {
    client
        .post(app.url(path))
        .header(reqwest::header::ACCEPT, "text/html,application/xhtml+xml")
        .header("sec-fetch-site", "same-origin")
        .form(form)
        .send()
        .await
        .unwrap()
}

pub async fn page(client: &Client, url: impl reqwest::IntoUrl) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// The code an authenticator app shows for `secret` (base32), `steps`
/// 30-second steps from now (the server accepts one step either side).
pub fn totp_code(secret: &str, steps: i64) -> String {
    let secret = totp_rs::Secret::try_from_base32(secret).unwrap();
    let totp = totp_rs::Builder::new().with_secret(secret).build().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    totp.generate((now + steps * 30) as u64).to_string()
}

/// Turns two-factor sign-in on for the signed-in `client`: its secret and
/// recovery codes.
pub async fn enrol_totp(app: &TestApp, client: &Client) -> (String, Vec<String>) {
    let setup: serde_json::Value = app
        .call(client, "start_totp", &[])
        .await
        .json()
        .await
        .unwrap();
    let secret = setup["secret"].as_str().unwrap().to_owned();
    let res = app
        .call(client, "confirm_totp", &[("code", &totp_code(&secret, 0))])
        .await;
    assert_eq!(res.status(), 200);
    let codes: Vec<String> = res.json().await.unwrap();
    (secret, codes)
}

/// The id and data key of `email`'s account.
pub async fn account_key(
    app: &TestApp,
    email: &str,
) -> (uuid::Uuid, app::platform::crypto::DataKey) {
    let user: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email_index = $1")
        .bind(app.state.crypto.email_index(email))
        .fetch_one(&app.db)
        .await
        .unwrap();
    let key = app::platform::keystore::user_key(
        &app.db,
        &app.keyring,
        user,
        app::platform::keystore::KeyUse::Operator,
    )
    .await
    .unwrap();
    (user, key)
}

/// A passkey row for `email`'s account, sealed with its key as the app
/// stores it (the browser tests make real ones).
pub async fn stored_passkey(app: &TestApp, email: &str, name: &str) -> uuid::Uuid {
    let (user, key) = account_key(app, email).await;
    let id = uuid::Uuid::new_v4();
    let place = |column| app::platform::crypto::Place::new("passkeys", column, id, user);
    sqlx::query(
        "INSERT INTO passkeys (id, user_id, credential_index, name, credential)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(user)
    .bind(id.as_bytes().to_vec())
    .bind(key.seal_str(place("name"), name))
    .bind(key.seal_str(place("credential"), "{}"))
    .execute(&app.db)
    .await
    .unwrap();
    // And a passkey being added, its ceremony state sealed the same way.
    let ceremony = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO webauthn_ceremonies (id, user_id, kind, sealed_state, expires_at)
         VALUES ($1, $2, 'register', $3, now() + interval '5 minutes')",
    )
    .bind(ceremony)
    .bind(user)
    .bind(key.seal_str(
        app::platform::crypto::Place::new("webauthn_ceremonies", "sealed_state", ceremony, user),
        "{}",
    ))
    .execute(&app.db)
    .await
    .unwrap();
    id
}

/// Points the fake Stripe at `app`'s webhook, signing with
/// `webhook_secret` and expecting `secret_key`.
pub async fn configure_fake_stripe(
    fake: SocketAddr,
    app: &TestApp,
    webhook_secret: &str,
    secret_key: &str,
) {
    let res = Client::new()
        .post(format!("http://{fake}/fakes/stripe/config"))
        .json(&serde_json::json!({
            "webhook_url": app.url("/stripe/webhook"),
            "webhook_secret": webhook_secret,
            "secret_key": secret_key,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
}

/// A PostgreSQL client program (`pg_dump`, `psql`): on the PATH, or
/// Debian's under /usr/lib/postgresql.
fn pg_program(name: &str) -> std::path::PathBuf {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| {
        std::env::split_paths(&p)
            .map(|dir| dir.join(name))
            .collect::<Vec<_>>()
    });
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|dir| dir.path().join("bin").join(name));
    on_path
        .chain(debian)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} not found: install postgresql-client"))
}

/// A plain SQL dump of the database at `url` (without owners or grants,
/// so it restores as any role).
pub fn pg_dump(url: &str) -> String {
    let out = std::process::Command::new(pg_program("pg_dump"))
        .args(["--no-owner", "--no-privileges", "--dbname"])
        .arg(url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Restores a plain SQL `dump` into the (empty) database at `url`, stopping
/// at the first error.
pub fn psql_restore(url: &str, dump: &str) {
    let mut psql = std::process::Command::new(pg_program("psql"));
    psql.args(["-q", "-v", "ON_ERROR_STOP=1", "--dbname", url]);
    run_with_input(psql, dump.as_bytes(), "psql");
}

/// Runs `command` with `input` on its standard input; its standard output,
/// or a panic naming `what` with what it said on standard error.
pub fn run_with_input(mut command: std::process::Command, input: &[u8], what: &str) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Reads a reply's SSE stream: (event name, payload) pairs, up to `limit`
/// or `done`.
pub async fn read_stream(
    app: &Http,
    client: &Client,
    reply: &str,
    limit: usize,
) -> Vec<(String, serde_json::Value)> {
    use eventsource_stream::Eventsource as _;
    use futures::StreamExt as _;
    let res = client
        .get(app.url(&format!("/api/chat/stream/{reply}")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let mut events = res.bytes_stream().eventsource();
    let mut out = Vec::new();
    while let Some(Ok(event)) = events.next().await {
        let done = event.event == "done";
        out.push((event.event, serde_json::from_str(&event.data).unwrap()));
        if done || out.len() >= limit {
            break;
        }
    }
    out
}

/// A reply's SSE stream until `done`, within 30 s.
pub async fn read_to_done(
    app: &Http,
    client: &reqwest::Client,
    reply: &str,
) -> Vec<(String, serde_json::Value)> {
    tokio::time::timeout(
        std::time::Duration::from_secs(30),
        read_stream(app, client, reply, usize::MAX),
    )
    .await
    .expect("the stream ended with done within 30 s")
}

/// The text a reader of `events` shows: the last snapshot and the deltas after it.
pub fn text_of(events: &[(String, serde_json::Value)]) -> String {
    let mut text = String::new();
    for (name, data) in events {
        match name.as_str() {
            "snapshot" => text = data["text"].as_str().unwrap().to_owned(),
            "delta" => text.push_str(data["text"].as_str().unwrap()),
            _ => {}
        }
    }
    text
}

/// A reply to `text` in a new conversation with an OpenAI agent scripted
/// `script` on the fake at `fake`, once it is being written:
/// (conversation id, reply id).
pub async fn streaming_reply(
    app: &Http,
    client: &Client,
    fake: SocketAddr,
    script: &str,
    text: &str,
) -> (String, String) {
    let agent = scripted_agent(app, client, fake, "openai", script, &[], &[], "").await;
    let started = send_new(app, client, &agent, text).await;
    let conversation = started["conversation_id"].as_str().unwrap().to_owned();
    let reply = started["reply_id"].as_str().unwrap().to_owned();
    reply_when(app, client, &conversation, "streaming").await;
    (conversation, reply)
}
