//! Accounts and sessions (server only). Business rules live here, callable
//! without HTTP; the server functions in `api.rs` only adapt them to requests.
//!
//! Sessions are opaque 256-bit random tokens. The browser holds the token in an
//! HttpOnly cookie; the database holds only its SHA-256, so a database leak does
//! not leak live sessions. Revoking a session deletes its row.
//!
//! Account fields (email, names, password hash) are sealed with the user's data
//! key; the email is found through its blind index.

use std::net::IpAddr;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use cookie::{Cookie, SameSite};
use sqlx::PgPool;
use uuid::Uuid;

use super::{
    SessionView, UserView,
    domain::{Email, NewAccount},
};

use crate::{
    error::AppError,
    platform::{
        Settings,
        crypto::{DataKey, Place, Sealed, random_token, token_hash},
        jobs::{self, Kind, NewJob},
        keystore::{self, Crypto, KeyUse, SealedColumn},
        mail::{Outgoing, escape_html},
        rate_limit,
        request::ClientInfo,
        settings::Limit,
    },
    state::AppState,
};

/// The sealed columns of this slice (`keys verify` opens them all). A user
/// row is its own owner.
pub const SEALED: &[SealedColumn] = &[
    users_column("email"),
    users_column("first_name"),
    users_column("last_name"),
    users_column("password_hash"),
    sessions_column("user_agent"),
    sessions_column("ip"),
];

const fn sessions_column(column: &'static str) -> SealedColumn {
    SealedColumn {
        table: "sessions",
        column,
        id: "id",
        owner: "user_id",
    }
}

fn sessions_place(column: &'static str, session: Uuid, user: Uuid) -> Place {
    Place::new("sessions", column, session, user)
}

const fn users_column(column: &'static str) -> SealedColumn {
    SealedColumn {
        table: "users",
        column,
        id: "id",
        owner: "id",
    }
}

pub(crate) fn users_place(column: &'static str, user_id: Uuid) -> Place {
    Place::new("users", column, user_id, user_id)
}

/// A valid session, resolved by the middleware on every request.
#[derive(Debug, Clone)]
pub struct AuthSession {
    pub session_id: Uuid,
    pub user_id: Uuid,
    pub user: UserView,
    /// The user's data key, unwrapped once when the session was resolved, so
    /// a request never reads it from the database again. `Debug` is redacted.
    pub key: DataKey,
}

impl AuthSession {
    /// Whether this server lets the user use agents and chat: with
    /// `ENCLAVE_REQUIRE_VERIFIED_EMAIL`, only once their address is confirmed.
    pub fn require_verified(&self, settings: &Settings) -> Result<(), AppError> {
        if settings.require_verified_email && !self.user.email_verified {
            return Err(AppError::EmailNotVerified);
        }
        Ok(())
    }
}

/// A freshly issued session token. Only its hash is stored; `Debug` is redacted.
pub struct SessionToken(String);

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

impl SessionToken {
    fn generate() -> Self {
        SessionToken(random_token())
    }

    /// A provider sign-in's browser binding, carried in the session cookie
    /// until the sign-in finishes (it matches no session).
    pub fn from_binding(binding: String) -> Self {
        SessionToken(binding)
    }

    /// The value for the cookie, and nothing else.
    pub fn expose_for_cookie(&self) -> &str {
        &self.0
    }
}

// ---- cookies ---------------------------------------------------------------

pub fn session_cookie_name(settings: &Settings) -> &'static str {
    if settings.secure_cookies {
        "__Host-enclave_session"
    } else {
        "enclave_session"
    }
}

/// `Set-Cookie` for a new session: HttpOnly, SameSite=Lax, whole site, and
/// `Secure` (with the `__Host-` prefix) when served over HTTPS.
pub fn session_cookie(settings: &Settings, token: &SessionToken) -> String {
    Cookie::build((
        session_cookie_name(settings),
        token.expose_for_cookie().to_owned(),
    ))
    .http_only(true)
    .same_site(SameSite::Lax)
    .secure(settings.secure_cookies)
    .path("/")
    .max_age(cookie::time::Duration::seconds(
        settings.session_ttl.as_secs() as i64,
    ))
    .build()
    .to_string()
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_session_cookie(settings: &Settings) -> String {
    Cookie::build((session_cookie_name(settings), ""))
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(settings.secure_cookies)
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build()
        .to_string()
}

/// The value of cookie `name` in a `Cookie` request header.
pub fn read_cookie(header: &str, name: &str) -> Option<String> {
    Cookie::split_parse(header)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

// ---- sessions ----------------------------------------------------------------

/// Starts a session for `user_id`, recording (sealed with the user's key)
/// the browser and address it was opened from, for Settings → Sessions.
pub async fn create_session(
    state: &AppState,
    user_id: Uuid,
    key: &DataKey,
    client: &ClientInfo,
) -> Result<SessionToken, AppError> {
    create_session_with(state, user_id, key, client, false).await
}

/// `create_session`, or (`pending`) a session that waits ten minutes for
/// the account's second factor and signs nobody in until then. Every way of
/// signing in ends here, so this is where a sign-in is written to the
/// activity log (and a new browser told about).
pub async fn create_session_with(
    state: &AppState,
    user_id: Uuid,
    key: &DataKey,
    client: &ClientInfo,
    pending: bool,
) -> Result<SessionToken, AppError> {
    let (db, settings) = (&state.db, &state.settings);
    // A disabled account signs in no way at all (this runs only once the
    // password, provider or passkey was right, so it tells a stranger
    // nothing).
    let disabled: bool =
        sqlx::query_scalar("SELECT disabled_at IS NOT NULL FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_one(db)
            .await?;
    if disabled {
        return Err(AppError::invalid("email", crate::admin::DISABLED_SENTENCE));
    }
    let token = SessionToken::generate();
    let id = Uuid::new_v4();
    // Expired sessions of this user go when a new one starts.
    sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND expires_at <= now()")
        .bind(user_id)
        .execute(db)
        .await?;
    let user_agent = client
        .user_agent
        .as_deref()
        .map(|ua| key.seal_str(sessions_place("user_agent", id, user_id), ua));
    let ip = key.seal_str(sessions_place("ip", id, user_id), &client.ip.to_string());
    let ttl = if pending {
        super::two_factor::PENDING_TTL
    } else {
        settings.session_ttl
    };
    sqlx::query(
        "INSERT INTO sessions
           (id, user_id, token_hash, expires_at, user_agent, ip, second_factor_pending)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $6, $7)",
    )
    .bind(id)
    .bind(user_id)
    .bind(token_hash(token.expose_for_cookie()))
    .bind(ttl.as_secs_f64())
    .bind(user_agent)
    .bind(ip)
    .bind(pending)
    .execute(db)
    .await?;
    if !pending {
        crate::data::activity::server::signed_in(state, user_id, key, client).await?;
        crate::data::deletion::server::restore(state, user_id, key, client).await?;
    }
    Ok(token)
}

/// A session known by its cookie, not read yet. The session middleware
/// leaves a send's session to the statement that reads everything the send
/// needs (`chat::server::send_signed_in`), so that a send makes one round
/// trip before its provider is asked, not two. Holds the token's hash,
/// never the token; `Debug` is redacted all the same.
#[derive(Clone)]
pub struct UnreadSession(Vec<u8>);

impl std::fmt::Debug for UnreadSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnreadSession(<redacted>)")
    }
}

impl UnreadSession {
    pub fn of(token: &str) -> Self {
        UnreadSession(token_hash(token))
    }

    /// The hash, to bind as `session_ctes`' parameter.
    pub(crate) fn hash(&self) -> &[u8] {
        &self.0
    }

    /// The session, read on its own (`resolve_session`).
    pub async fn read(
        &self,
        db: &PgPool,
        crypto: &Crypto,
    ) -> Result<Option<AuthSession>, AppError> {
        resolve_hashed(db, crypto, &self.0).await
    }
}

/// The common table expressions that find the live session whose token
/// hashes to the SQL expression `hash`: `me`, its `SessionColumns` (no row:
/// no live session), and `seen`, which writes "last seen" for Settings →
/// Sessions at most once a minute per session, in the same round trip as
/// the read. `resolve_session` selects `me` alone; a send reads it with
/// everything else it needs.
pub(crate) fn session_ctes(hash: &str) -> String {
    format!(
        "seen AS (
             UPDATE sessions SET last_seen_at = now()
             WHERE token_hash = {hash} AND expires_at > now() AND NOT second_factor_pending
               AND last_seen_at < now() - interval '1 minute'
         ),
         me AS (
             SELECT s.id AS session_id, u.id AS user_id, u.first_name AS user_first_name,
                    u.last_name AS user_last_name, u.email AS user_email,
                    u.email_verified_at IS NOT NULL AS user_verified, u.is_admin AS user_is_admin,
                    k.kek_id AS user_kek_id, k.wrapped_key AS user_wrapped_key
             FROM sessions s
             JOIN users u ON u.id = s.user_id
             JOIN user_keys k ON k.user_id = u.id
             WHERE s.token_hash = {hash} AND s.expires_at > now() AND NOT s.second_factor_pending
               AND u.deleted_at IS NULL AND u.disabled_at IS NULL
         )"
    )
}

/// A live session as `session_ctes`' `me` reads it.
#[derive(sqlx::FromRow)]
pub(crate) struct SessionColumns {
    session_id: Uuid,
    user_id: Uuid,
    user_first_name: Sealed,
    user_last_name: Sealed,
    user_email: Sealed,
    user_verified: bool,
    user_is_admin: bool,
    user_kek_id: String,
    user_wrapped_key: Vec<u8>,
}

impl SessionColumns {
    /// Unwraps the user's data key and opens their name and address.
    pub(crate) fn open(self, crypto: &Crypto) -> Result<AuthSession, AppError> {
        let user_id = self.user_id;
        let key = keystore::open_user_key(
            &crypto.keyring,
            user_id,
            self.user_kek_id,
            self.user_wrapped_key,
        )?;
        let open = |column, sealed: &Sealed| {
            key.open_string(users_place(column, user_id), sealed)
                .map_err(|e| AppError::internal(format!("users.{column} of {user_id}: {e}")))
        };
        Ok(AuthSession {
            session_id: self.session_id,
            user_id,
            user: UserView {
                first_name: open("first_name", &self.user_first_name)?,
                last_name: open("last_name", &self.user_last_name)?,
                email: open("email", &self.user_email)?,
                email_verified: self.user_verified,
                is_admin: self.user_is_admin,
            },
            key,
        })
    }
}

/// The live session for `token`, if there is one.
pub async fn resolve_session(
    db: &PgPool,
    crypto: &Crypto,
    token: &str,
) -> Result<Option<AuthSession>, AppError> {
    resolve_hashed(db, crypto, &token_hash(token)).await
}

async fn resolve_hashed(
    db: &PgPool,
    crypto: &Crypto,
    hash: &[u8],
) -> Result<Option<AuthSession>, AppError> {
    static SQL: std::sync::LazyLock<String> =
        std::sync::LazyLock::new(|| format!("WITH {} SELECT * FROM me", session_ctes("$1")));
    let row: Option<SessionColumns> = sqlx::query_as(sqlx::AssertSqlSafe(SQL.as_str()))
        .bind(hash)
        .fetch_optional(db)
        .await?;
    row.map(|row| row.open(crypto)).transpose()
}

pub async fn end_session(db: &PgPool, session: &AuthSession) -> Result<(), AppError> {
    sqlx::query("DELETE FROM sessions WHERE id = $1 AND user_id = $2")
        .bind(session.session_id)
        .bind(session.user_id)
        .execute(db)
        .await?;
    Ok(())
}

/// Ends one of the user's sessions, by id: another user's is not found.
pub async fn end_session_by_id(db: &PgPool, user_id: Uuid, id: Uuid) -> Result<(), AppError> {
    let done = sqlx::query("DELETE FROM sessions WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(AppError::NotFound);
    }
    tracing::info!(%user_id, session_id = %id, "session ended from the sessions page");
    Ok(())
}

/// Ends every session of the user but `keep`. Returns how many ended.
pub async fn end_other_sessions(db: &PgPool, user_id: Uuid, keep: Uuid) -> Result<u64, AppError> {
    let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
        .bind(user_id)
        .bind(keep)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// The user's live sessions, newest activity first, for Settings → Sessions.
pub async fn list_sessions(
    db: &PgPool,
    session: &AuthSession,
) -> Result<Vec<SessionView>, AppError> {
    type Row = (
        Uuid,
        Option<Sealed>,
        Option<Sealed>,
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, user_agent, ip, created_at, last_seen_at FROM sessions
         WHERE user_id = $1 AND expires_at > now() AND NOT second_factor_pending
         ORDER BY (id = $2) DESC, last_seen_at DESC",
    )
    .bind(session.user_id)
    .bind(session.session_id)
    .fetch_all(db)
    .await?;
    let user = session.user_id;
    let key = &session.key;
    rows.into_iter()
        .map(|(id, user_agent, ip, created, seen)| {
            let user_agent =
                key.open_optional(sessions_place("user_agent", id, user), user_agent.as_ref())?;
            let ip = key.open_optional(sessions_place("ip", id, user), ip.as_ref())?;
            let (browser, system) = describe_user_agent(user_agent.as_deref());
            Ok(SessionView {
                id: id.to_string(),
                browser,
                system,
                address: ip.unwrap_or_else(|| "unknown".to_owned()),
                signed_in: created.format("%Y-%m-%d %H:%M UTC").to_string(),
                last_seen: seen.format("%Y-%m-%d %H:%M UTC").to_string(),
                current: id == session.session_id,
            })
        })
        .collect()
}

/// "Firefox 133", "Windows 10" from a User-Agent header, by woothee (a
/// maintained parser sharing its test data across languages).
pub fn describe_user_agent(user_agent: Option<&str>) -> (String, String) {
    let Some(parsed) = user_agent.and_then(|ua| woothee::parser::Parser::new().parse(ua)) else {
        return ("Unknown browser".to_owned(), "unknown system".to_owned());
    };
    let known = |value: &str| !value.is_empty() && value != woothee::woothee::VALUE_UNKNOWN;
    let browser = match (known(parsed.name), known(parsed.version)) {
        (true, true) => {
            let major = parsed.version.split('.').next().unwrap_or(parsed.version);
            format!("{} {major}", parsed.name)
        }
        (true, false) => parsed.name.to_owned(),
        _ => "Unknown browser".to_owned(),
    };
    let system = if known(parsed.os) {
        // "Windows 10" already says it ("NT 10.0" would only confuse);
        // "Android" and "iPhone" gain their version.
        let numbered = parsed.os.chars().any(|c| c.is_ascii_digit());
        let version = parsed.os_version.starts_with(|c: char| c.is_ascii_digit());
        match parsed.os {
            "iPhone" | "iPad" | "iPod" if version => {
                format!("{} (iOS {})", parsed.os, parsed.os_version)
            }
            _ if !numbered && version => format!("{} {}", parsed.os, parsed.os_version),
            _ => parsed.os.to_owned(),
        }
    } else {
        "unknown system".to_owned()
    };
    (browser, system)
}

/// Ends every session of the user, on every device. Returns how many ended.
pub async fn end_all_sessions(db: &PgPool, user_id: Uuid) -> Result<u64, AppError> {
    let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

// ---- sign-up and sign-in -----------------------------------------------------

/// An address-keyed bucket: an IPv6 client's /64, and never the address in
/// plain text (a keyed hash of it).
fn ip_bucket(crypto: &Crypto, kind: &str, ip: IpAddr) -> String {
    crypto.rate_bucket(&format!("{kind}:ip"), &rate_limit::ip_subject(ip))
}

/// The per-account bucket is keyed by the email's blind index, not the address.
fn account_bucket(email_index: &[u8]) -> String {
    format!("sign-in:account:{}", URL_SAFE_NO_PAD.encode(email_index))
}

/// "Someone tried to sign up with your address" mails per account per day:
/// enough to warn the owner, too few to flood their inbox.
const SIGN_UP_NOTICES: Limit = Limit::new(3, 24 * 3600);

/// Creates the account (sealed with a fresh data key) and mails its
/// confirmation link. It starts no session, and answers the same way, in
/// about the same time, when the address already has an account: then the
/// password is hashed all the same (the slow part) and the owner is mailed
/// that someone tried to sign up with their address. So sign-up never
/// tells anyone whether an address is registered.
pub async fn sign_up(
    state: &AppState,
    client_ip: IpAddr,
    account: NewAccount,
) -> Result<(), AppError> {
    rate_limit::hit(
        &state.db,
        &ip_bucket(&state.crypto, "sign-up", client_ip),
        state.settings.sign_up_per_ip,
    )
    .await?;
    let password_hash = state
        .passwords
        .hash(account.password.expose_for_hashing())
        .await?;
    let user_id = Uuid::new_v4();
    let key = DataKey::generate();
    let seal = |column, value: &str| key.seal_str(users_place(column, user_id), value);
    let email_index = state.crypto.email_index(account.email.as_ref());

    let mut tx = state.db.begin().await?;
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO users
           (id, email_index, email, first_name, last_name, password_hash, age_confirmed_at)
         VALUES ($1, $2, $3, $4, $5, $6, now())
         ON CONFLICT (email_index) DO NOTHING
         RETURNING id",
    )
    .bind(user_id)
    .bind(&email_index)
    .bind(seal("email", account.email.as_ref()))
    .bind(seal("first_name", account.first_name.as_ref()))
    .bind(seal("last_name", account.last_name.as_ref()))
    .bind(seal("password_hash", &password_hash))
    .fetch_optional(&mut *tx)
    .await?;
    if inserted.is_none() {
        drop(tx);
        return notify_owner(state, &email_index, account.email.as_ref()).await;
    }
    keystore::store_user_key(&mut tx, &state.crypto.keyring, user_id, &key).await?;
    crate::admin::server::make_first_admin(&mut tx, user_id).await?;
    super::verify::issue(
        &mut tx,
        state,
        user_id,
        &key,
        account.email.as_ref(),
        account.first_name.as_ref(),
    )
    .await?;
    tx.commit().await?;
    state.jobs.wake();
    tracing::info!(%user_id, "account created");
    Ok(())
}

/// An account found by its address, for mail about account recovery.
pub(crate) struct Account {
    pub user: Uuid,
    pub key: DataKey,
    pub first_name: String,
}

/// The account whose email has blind index `email_index`, its data key
/// opened for account recovery (nobody is signed in).
pub(crate) async fn account_by_email(
    state: &AppState,
    email_index: &[u8],
) -> Result<Option<Account>, AppError> {
    let found: Option<(Uuid, Sealed)> =
        sqlx::query_as("SELECT id, first_name FROM users WHERE email_index = $1")
            .bind(email_index)
            .fetch_optional(&state.db)
            .await?;
    let Some((user, first_name)) = found else {
        return Ok(None);
    };
    let key = keystore::user_key(
        &state.db,
        &state.crypto.keyring,
        user,
        KeyUse::AccountRecovery,
    )
    .await?;
    let first_name = key.open_text(users_place("first_name", user), &first_name)?;
    Ok(Some(Account {
        user,
        key,
        first_name,
    }))
}

/// Sign-up with an address that has an account: mail its owner (a few times
/// a day at most; past that, silently nothing, since an error would tell).
async fn notify_owner(state: &AppState, email_index: &[u8], email: &str) -> Result<(), AppError> {
    let bucket = format!("sign-up-notice:{}", URL_SAFE_NO_PAD.encode(email_index));
    if rate_limit::hit(&state.db, &bucket, SIGN_UP_NOTICES)
        .await
        .is_err()
    {
        return Ok(());
    }
    let Some(Account {
        user,
        key,
        first_name,
    }) = account_by_email(state, email_index).await?
    else {
        return Ok(());
    };
    let mut conn = state.db.acquire().await?;
    jobs::enqueue(
        &mut conn,
        NewJob::new(Kind::Mail).for_owner(user, &key, &sign_up_notice(state, email, &first_name)),
    )
    .await?;
    state.jobs.wake();
    tracing::info!(user_id = %user, "sign-up with a registered address: owner told");
    Ok(())
}

fn sign_up_notice(state: &AppState, email: &str, first_name: &str) -> Outgoing {
    let base = state.settings.public_url.trim_end_matches('/');
    let sign_in = format!("{base}/sign-in");
    let forgot = format!("{base}/forgot-password");
    let text = format!(
        "Hello {first_name},\n\n\
         Someone just tried to create an Enclave account with this address, which \
         already has one. If it was you, sign in instead:\n\n{sign_in}\n\n\
         Forgot your password? Choose a new one here:\n\n{forgot}\n\n\
         If it was not you, ignore this mail: nothing changed, and no new account \
         was made.\n"
    );
    let html = format!(
        "<p>Hello {name},</p>\
         <p>Someone just tried to create an Enclave account with this address, which \
         already has one. If it was you, <a href=\"{sign_in_href}\">sign in</a> instead.</p>\
         <p>Forgot your password? <a href=\"{forgot_href}\">Choose a new one</a>.</p>\
         <p>If it was not you, ignore this mail: nothing changed, and no new account \
         was made.</p>",
        name = escape_html(first_name),
        sign_in_href = escape_html(&sign_in),
        forgot_href = escape_html(&forgot),
    );
    Outgoing {
        to: email.to_owned(),
        subject: "Someone tried to sign up with your address".to_owned(),
        text,
        html,
    }
}

/// What a right password leads to.
#[derive(Debug)]
pub enum SignedIn {
    /// A session: signed in.
    Session(SessionToken),
    /// A pending session: the second-factor page finishes signing in.
    NeedsSecondFactor(SessionToken),
}

impl SignedIn {
    pub fn token(&self) -> &SessionToken {
        match self {
            SignedIn::Session(t) | SignedIn::NeedsSecondFactor(t) => t,
        }
    }
}

/// Checks the credentials and starts a session. Every failure is the same
/// `InvalidCredentials`, and unknown emails cost a full password check too.
pub async fn sign_in(
    state: &AppState,
    client: &ClientInfo,
    email: &str,
    password: &str,
) -> Result<SignedIn, AppError> {
    let settings = &state.settings;
    rate_limit::hit(
        &state.db,
        &ip_bucket(&state.crypto, "sign-in", client.ip),
        settings.sign_in_per_ip,
    )
    .await?;
    let Ok(email) = Email::parse(email) else {
        return Err(AppError::InvalidCredentials);
    };
    let email_index = state.crypto.email_index(email.as_ref());
    let account_bucket = account_bucket(&email_index);
    // Counted before the password is checked, in one atomic statement: of
    // many guesses sent at once, only the allowed number get a check. A
    // success clears the count again.
    rate_limit::hit(&state.db, &account_bucket, settings.sign_in_per_account).await?;

    let user: Option<(Uuid, Option<Sealed>, String, Vec<u8>)> = sqlx::query_as(
        "SELECT u.id, u.password_hash, k.kek_id, k.wrapped_key
         FROM users u JOIN user_keys k ON k.user_id = u.id
         WHERE u.email_index = $1",
    )
    .bind(&email_index)
    .fetch_optional(&state.db)
    .await?;
    let (account, stored_hash) = match user {
        Some((id, sealed_hash, kek_id, wrapped)) => {
            let key = keystore::open_user_key(&state.crypto.keyring, id, kek_id, wrapped)?;
            // An account made with a sign-in provider may have no password:
            // then only the dummy hash is checked (and nothing matches).
            let hash = key.open_optional(users_place("password_hash", id), sealed_hash.as_ref())?;
            (Some((id, key)), hash)
        }
        None => (None, None),
    };
    // An over-long password cannot match (sign-up refuses them); it is still
    // checked against the dummy hash so that it takes the usual time.
    let candidate = if password.chars().count() > super::domain::PASSWORD_MAX_CHARS {
        None
    } else {
        stored_hash
    };
    let matches = state.passwords.verify(password, candidate).await?;
    match account {
        Some((user_id, key)) if matches => {
            rate_limit::reset(&state.db, &account_bucket).await?;
            if super::two_factor::required(&state.db, user_id).await? {
                tracing::info!(%user_id, "password accepted; second factor asked for");
                return Ok(SignedIn::NeedsSecondFactor(
                    create_session_with(state, user_id, &key, client, true).await?,
                ));
            }
            tracing::info!(%user_id, "signed in");
            Ok(SignedIn::Session(
                create_session(state, user_id, &key, client).await?,
            ))
        }
        Some((user_id, key)) => {
            tracing::info!(%user_id, "sign-in failed");
            crate::data::activity::server::sign_in_failed(state, user_id, &key, client).await?;
            Err(AppError::InvalidCredentials)
        }
        None => {
            tracing::info!("sign-in failed");
            Err(AppError::InvalidCredentials)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_tokens_are_256_bit_and_unique() {
        let a = SessionToken::generate();
        let b = SessionToken::generate();
        assert_ne!(a.expose_for_cookie(), b.expose_for_cookie());
        let bytes = URL_SAFE_NO_PAD.decode(a.expose_for_cookie()).unwrap();
        assert_eq!(bytes.len(), 32);
        assert!(!format!("{a:?}").contains(a.expose_for_cookie()));
    }

    #[test]
    fn cookies_are_http_only_lax_and_host_prefixed_over_https() {
        let token = SessionToken::generate();
        let plain = session_cookie(&Settings::default(), &token);
        assert!(plain.starts_with("enclave_session="), "{plain}");
        assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Lax"));
        assert!(!plain.contains("Secure"));

        let https = Settings {
            secure_cookies: true,
            ..Settings::default()
        };
        let secure = session_cookie(&https, &token);
        assert!(secure.starts_with("__Host-enclave_session="), "{secure}");
        assert!(secure.contains("Secure") && secure.contains("Path=/"));
        assert!(!secure.contains("Domain"));
    }

    #[test]
    fn read_cookie_finds_only_the_named_cookie() {
        let header = "theme=dark; enclave_session=abc; other=x";
        assert_eq!(
            read_cookie(header, "enclave_session").as_deref(),
            Some("abc")
        );
        assert_eq!(read_cookie(header, "missing"), None);
    }
}
