//! Keys in the database: per-user data keys and system keys, always wrapped
//! by a master key from the server's configuration. Also the operator's key
//! tasks: `rotate` (re-wrap everything under the current master key) and
//! `verify` (open every sealed value), and crypto-shredding.

use std::collections::HashMap;

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::crypto::{BlindIndexKey, CryptoError, DataKey, Keyring, Place, Sealed, WrappedKey};
use crate::error::AppError;

/// Name of the system key that keys the email blind index.
const BLIND_INDEX_KEY: &str = "blind-index";

/// One sealed column, for `verify`. Each slice lists its own (`SEALED` in
/// its `server.rs`); the crate root's `sealed_columns()` gathers them, and a test checks
/// the list against every column of the `sealed` domain in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedColumn {
    pub table: &'static str,
    pub column: &'static str,
    /// The row id column (part of the associated data).
    pub id: &'static str,
    /// The owner's id column: whose key seals the value (a user's, or a
    /// team's for what a team shares; then an expression such as
    /// `coalesce(team_id, owner_id)`).
    pub owner: &'static str,
}

impl SealedColumn {
    /// A column of a table whose rows have `id` and `owner_id`.
    pub const fn owned(table: &'static str, column: &'static str) -> Self {
        SealedColumn {
            table,
            column,
            id: "id",
            owner: "owner_id",
        }
    }
}

/// What a team shares sits in a table whose rows belong to a user unless
/// `team_id` names a team: sealed with the team's key then.
pub const TEAM_OR_OWNER: &str = "coalesce(team_id, owner_id)";

impl SealedColumn {
    /// A column of a table whose rows are a user's own or a team's.
    pub const fn shareable(table: &'static str, column: &'static str) -> Self {
        SealedColumn {
            table,
            column,
            id: "id",
            owner: TEAM_OR_OWNER,
        }
    }
}

/// Why the keys could not be loaded at startup (for the operator).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("could not read the system keys: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "the system keys cannot be opened with the configured master key(s) ({0}). \
         Is ENCLAVE_MASTER_KEY the key this database was created with? During a \
         rotation, the old key goes in ENCLAVE_PREVIOUS_MASTER_KEYS."
    )]
    WrongKey(CryptoError),
}

/// The stored blind-index key opened with `keyring`: `None` when there is
/// none yet, the error when the keyring does not open it.
async fn stored_blind_index(
    db: &PgPool,
    keyring: &Keyring,
) -> Result<Option<Result<BlindIndexKey, CryptoError>>, sqlx::Error> {
    let row: Option<(String, Vec<u8>)> =
        sqlx::query_as("SELECT kek_id, wrapped_key FROM system_keys WHERE name = $1")
            .bind(BLIND_INDEX_KEY)
            .fetch_optional(db)
            .await?;
    Ok(row.map(|(kek_id, bytes)| {
        keyring.unwrap_system_key(&WrappedKey { kek_id, bytes }, BLIND_INDEX_KEY)
    }))
}

/// The platform's keys, loaded once at startup.
#[derive(Clone, Debug)]
pub struct Crypto {
    pub keyring: Keyring,
    blind_index: BlindIndexKey,
}

impl Crypto {
    /// Loads the system keys, creating them on first start. Two replicas
    /// starting at once agree: the first insert wins and both read it back.
    pub async fn load(db: &PgPool, keyring: Keyring) -> Result<Self, LoadError> {
        let fresh = keyring.wrap_system_key(&BlindIndexKey::generate(), BLIND_INDEX_KEY);
        sqlx::query(
            "INSERT INTO system_keys (name, kek_id, wrapped_key) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(BLIND_INDEX_KEY)
        .bind(&fresh.kek_id)
        .bind(&fresh.bytes)
        .execute(db)
        .await?;
        let blind_index = stored_blind_index(db, &keyring)
            .await?
            .ok_or(LoadError::Database(sqlx::Error::RowNotFound))?
            .map_err(LoadError::WrongKey)?;
        Ok(Crypto {
            keyring,
            blind_index,
        })
    }

    /// Whether the master key still opens this database's system key (the
    /// database may have been restored from another deployment's dump
    /// since this process started). For `/ready`.
    pub async fn still_opens(&self, db: &PgPool) -> Result<bool, sqlx::Error> {
        Ok(matches!(
            stored_blind_index(db, &self.keyring).await?,
            Some(Ok(_))
        ))
    }

    /// The blind index of a normalised email address.
    pub fn email_index(&self, email: &str) -> Vec<u8> {
        self.blind_index.index("email", email)
    }

    /// The lookup key of a sign-in provider's account: a keyed hash of the
    /// provider and its subject, never the subject.
    pub fn identity_index(&self, provider: &str, subject: &str) -> Vec<u8> {
        self.blind_index
            .index("oidc-subject", &format!("{provider}\n{subject}"))
    }

    /// A keyed hash of `value` for `purpose`: finds or compares a value
    /// (a browser an account used, say) without storing it.
    pub fn keyed_index(&self, purpose: &str, value: &str) -> Vec<u8> {
        self.blind_index.index(purpose, value)
    }

    /// A secret derived from `input` (base64url, 43 characters): the same on
    /// every replica, unguessable without the master key. For what a flow
    /// needs again but must not store: an OpenID Connect sign-in's PKCE
    /// verifier and nonce, derived from its `state`.
    pub fn derived_secret(&self, purpose: &str, input: &str) -> String {
        use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
        URL_SAFE_NO_PAD.encode(self.blind_index.index(purpose, input))
    }

    /// A rate-limit bucket name for `subject` (an address, say) that does
    /// not hold the subject itself: `kind:` and a keyed hash of it.
    pub fn rate_bucket(&self, kind: &str, subject: &str) -> String {
        use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
        let digest = self.blind_index.index("rate-limit", subject);
        format!("{kind}:{}", URL_SAFE_NO_PAD.encode(&digest[..16]))
    }
}

/// Stores a new user's data key (wrapped), in the sign-up transaction.
pub async fn store_user_key(
    conn: &mut PgConnection,
    keyring: &Keyring,
    user_id: Uuid,
    key: &DataKey,
) -> Result<(), AppError> {
    let wrapped = keyring.wrap_data_key(key, user_id);
    sqlx::query("INSERT INTO user_keys (user_id, kek_id, wrapped_key) VALUES ($1, $2, $3)")
        .bind(user_id)
        .bind(&wrapped.kek_id)
        .bind(&wrapped.bytes)
        .execute(conn)
        .await?;
    Ok(())
}

/// Unwraps a data key read from `user_keys`.
pub fn open_user_key(
    keyring: &Keyring,
    user_id: Uuid,
    kek_id: String,
    bytes: Vec<u8>,
) -> Result<DataKey, AppError> {
    keyring
        .unwrap_data_key(&WrappedKey { kek_id, bytes }, user_id)
        .map_err(|e| AppError::internal(format!("cannot open data key of user {user_id}: {e}")))
}

/// Who opens a user's data key without that user's session, and why. Every
/// such use is named here, so that the opt-in vault (a key the user wraps
/// with a secret of their own) has one list of what stops working while
/// they are away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUse {
    /// A program called one of the user's agents served as an MCP server,
    /// with the token the user made for it.
    AgentMcpServer,
    /// A background job whose payload is sealed with the user's key (a
    /// mail to them, say).
    BackgroundJob,
    /// Someone proving they own the account's mailbox: a password reset
    /// being asked for or completed.
    AccountRecovery,
    /// The operator's command line (`server keys ...`) and the tests.
    Operator,
    /// The second step of signing in: the password was right, and the
    /// account's second factor is being checked (no session exists yet).
    SignIn,
    /// A program called the API with one of the user's API keys.
    ApiKey,
    /// A message to one of the user's Telegram bots arrived: it is queued
    /// (sealed) and answered, with the user away.
    Telegram,
    /// One of the user's schedules came due: its next time is worked out
    /// from its sealed expression, and its run starts, with the user away.
    Schedule,
    /// A platform administrator listed the accounts: each one's address
    /// and name are opened (account metadata, never content), and an
    /// administrator's action is written to the account's activity.
    Admin,
    /// Someone in a team listed its people (each one's name and address
    /// are opened), an invitation showed who sent it, or a team change
    /// (removed from a team, say) is written to the account's activity.
    Team,
}

impl KeyUse {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyUse::AgentMcpServer => "agent_mcp_server",
            KeyUse::BackgroundJob => "background_job",
            KeyUse::AccountRecovery => "account_recovery",
            KeyUse::Operator => "operator",
            KeyUse::SignIn => "sign_in",
            KeyUse::Schedule => "schedule",
            KeyUse::Telegram => "telegram",
            KeyUse::ApiKey => "api_key",
            KeyUse::Admin => "admin",
            KeyUse::Team => "team",
        }
    }
}

/// The user's data key, read from the database, for work without a session
/// (a request has it already in its `AuthSession`: the session middleware
/// unwraps it). `why` names the work. `NotFound` once it has been shredded.
pub async fn user_key(
    db: &PgPool,
    keyring: &Keyring,
    user_id: Uuid,
    why: KeyUse,
) -> Result<DataKey, AppError> {
    tracing::debug!(user_id = %user_id, why = why.as_str(), "data key opened without a session");
    let row: Option<(String, Vec<u8>)> =
        sqlx::query_as("SELECT kek_id, wrapped_key FROM user_keys WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(db)
            .await?;
    let (kek_id, bytes) = row.ok_or(AppError::NotFound)?;
    open_user_key(keyring, user_id, kek_id, bytes)
}

/// Crypto-shredding: destroys the user's data key, after which nothing the
/// user stored can be opened, wherever a copy of it lives. Backups taken
/// earlier still hold the key wrapped under the master key of their day;
/// they become unreadable when that master key is retired after rotation.
pub async fn shred_user_key(db: &PgPool, user_id: Uuid) -> Result<bool, AppError> {
    let done = sqlx::query("DELETE FROM user_keys WHERE user_id = $1")
        .bind(user_id)
        .execute(db)
        .await?;
    if done.rows_affected() > 0 {
        tracing::info!(%user_id, "data key destroyed");
    }
    Ok(done.rows_affected() > 0)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RotateReport {
    pub rewrapped: u64,
    pub remaining: u64,
}

/// Re-wraps every key not yet under the current master key, in batches, each
/// in its own transaction. Interrupted, it resumes where it stopped; run
/// again, it finds nothing to do. `progress` hears after each batch.
pub async fn rotate(
    db: &PgPool,
    keyring: &Keyring,
    batch: i64,
    mut progress: impl FnMut(RotateReport),
) -> Result<RotateReport, AppError> {
    let current = keyring.current_id().to_owned();
    // System keys first: few, and the server needs them at every start.
    let systems: Vec<(String, String, Vec<u8>)> =
        sqlx::query_as("SELECT name, kek_id, wrapped_key FROM system_keys WHERE kek_id <> $1")
            .bind(&current)
            .fetch_all(db)
            .await?;
    let mut report = RotateReport::default();
    for (name, kek_id, bytes) in systems {
        let rewrapped = keyring
            .rewrap_system_key(&WrappedKey { kek_id, bytes }, &name)
            .map_err(|e| AppError::internal(format!("system key {name}: {e}")))?;
        sqlx::query(
            "UPDATE system_keys SET kek_id = $2, wrapped_key = $3, rotated_at = now() WHERE name = $1",
        )
        .bind(&name)
        .bind(&rewrapped.kek_id)
        .bind(&rewrapped.bytes)
        .execute(db)
        .await?;
        report.rewrapped += 1;
    }
    // Team keys next, one statement each: resumable the same way (only
    // keys under another master key are read).
    let teams: Vec<(Uuid, String, Vec<u8>)> =
        sqlx::query_as("SELECT team_id, kek_id, wrapped_key FROM team_keys WHERE kek_id <> $1")
            .bind(&current)
            .fetch_all(db)
            .await?;
    for (team, kek_id, bytes) in teams {
        let rewrapped = keyring
            .rewrap_team_key(&WrappedKey { kek_id, bytes }, team)
            .map_err(|e| AppError::internal(format!("data key of team {team}: {e}")))?;
        sqlx::query(
            "UPDATE team_keys SET kek_id = $2, wrapped_key = $3, rotated_at = now() WHERE team_id = $1",
        )
        .bind(team)
        .bind(&rewrapped.kek_id)
        .bind(&rewrapped.bytes)
        .execute(db)
        .await?;
        report.rewrapped += 1;
    }

    loop {
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM user_keys WHERE kek_id <> $1")
            .bind(&current)
            .fetch_one(db)
            .await?;
        report.remaining = total as u64;
        if total == 0 {
            progress(report);
            return Ok(report);
        }
        let mut tx = db.begin().await?;
        // SKIP LOCKED: two rotations at once share the work instead of waiting.
        let rows: Vec<(Uuid, String, Vec<u8>)> = sqlx::query_as(
            "SELECT user_id, kek_id, wrapped_key FROM user_keys WHERE kek_id <> $1
             ORDER BY user_id LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(&current)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            // Everything left is locked by another rotation; it will finish it.
            tx.commit().await?;
            progress(report);
            return Ok(report);
        }
        for (user_id, kek_id, bytes) in &rows {
            let rewrapped = keyring
                .rewrap_data_key(
                    &WrappedKey {
                        kek_id: kek_id.clone(),
                        bytes: bytes.clone(),
                    },
                    *user_id,
                )
                .map_err(|e| AppError::internal(format!("data key of user {user_id}: {e}")))?;
            sqlx::query(
                "UPDATE user_keys SET kek_id = $2, wrapped_key = $3, rotated_at = now() WHERE user_id = $1",
            )
            .bind(user_id)
            .bind(&rewrapped.kek_id)
            .bind(&rewrapped.bytes)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        report.rewrapped += rows.len() as u64;
        report.remaining = (total as u64).saturating_sub(rows.len() as u64);
        progress(report);
    }
}

/// One value `verify` could not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure {
    pub what: String,
    pub row: Option<Uuid>,
    pub owner: Option<Uuid>,
    pub error: String,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub keys: u64,
    pub values: u64,
    pub failures: Vec<VerifyFailure>,
}

/// Opens every wrapped key and every sealed value, and checks every email's
/// blind index. Reports each failure through `on_failure` and carries on.
pub async fn verify(
    db: &PgPool,
    keyring: &Keyring,
    columns: &[SealedColumn],
    mut on_failure: impl FnMut(&VerifyFailure),
) -> Result<VerifyReport, AppError> {
    let mut report = VerifyReport::default();
    let mut fail = |report: &mut VerifyReport, failure: VerifyFailure| {
        on_failure(&failure);
        report.failures.push(failure);
    };

    let systems: Vec<(String, String, Vec<u8>)> =
        sqlx::query_as("SELECT name, kek_id, wrapped_key FROM system_keys ORDER BY name")
            .fetch_all(db)
            .await?;
    let mut blind_index = None;
    for (name, kek_id, bytes) in systems {
        report.keys += 1;
        match keyring.unwrap_system_key(&WrappedKey { kek_id, bytes }, &name) {
            Ok(key) if name == BLIND_INDEX_KEY => blind_index = Some(key),
            Ok(_) => {}
            Err(e) => fail(
                &mut report,
                VerifyFailure {
                    what: format!("system key {name}"),
                    row: None,
                    owner: None,
                    error: e.to_string(),
                },
            ),
        }
    }

    let mut keys: HashMap<Uuid, Result<DataKey, CryptoError>> = HashMap::new();
    let users: Vec<(Uuid, String, Vec<u8>)> =
        sqlx::query_as("SELECT user_id, kek_id, wrapped_key FROM user_keys ORDER BY user_id")
            .fetch_all(db)
            .await?;
    for (user_id, kek_id, bytes) in users {
        report.keys += 1;
        let key = keyring.unwrap_data_key(&WrappedKey { kek_id, bytes }, user_id);
        if let Err(e) = &key {
            fail(
                &mut report,
                VerifyFailure {
                    what: "data key".into(),
                    row: None,
                    owner: Some(user_id),
                    error: e.to_string(),
                },
            );
        }
        keys.insert(user_id, key);
    }
    // A team's values name the team as their owner (its id is the place's
    // owner), so team keys join the same map.
    let teams: Vec<(Uuid, String, Vec<u8>)> =
        sqlx::query_as("SELECT team_id, kek_id, wrapped_key FROM team_keys ORDER BY team_id")
            .fetch_all(db)
            .await?;
    for (team, kek_id, bytes) in teams {
        report.keys += 1;
        let key = keyring.unwrap_team_key(&WrappedKey { kek_id, bytes }, team);
        if let Err(e) = &key {
            fail(
                &mut report,
                VerifyFailure {
                    what: "team data key".into(),
                    row: None,
                    owner: Some(team),
                    error: e.to_string(),
                },
            );
        }
        keys.insert(team, key);
    }

    for col in columns {
        // Identifiers come from the constant list above, never from input.
        let sql = format!(
            "SELECT {id}, {owner}, {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY {id}",
            id = col.id,
            owner = col.owner,
            column = col.column,
            table = col.table
        );
        let rows: Vec<(Uuid, Uuid, Vec<u8>)> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(db)
            .await?;
        for (row, owner, bytes) in rows {
            report.values += 1;
            let what = format!("{}.{}", col.table, col.column);
            let opened = match keys.get(&owner) {
                None => Err("the owner's data key is missing (shredded?)".to_owned()),
                Some(Err(_)) => Err("the owner's data key cannot be opened".to_owned()),
                Some(Ok(key)) => key
                    .open(
                        Place::new(col.table, col.column, row, owner),
                        &Sealed::from_stored(bytes),
                    )
                    .map_err(|e| e.to_string()),
            };
            match opened {
                Err(error) => fail(
                    &mut report,
                    VerifyFailure {
                        what,
                        row: Some(row),
                        owner: Some(owner),
                        error,
                    },
                ),
                Ok(plaintext) if col.table == "users" && col.column == "email" => {
                    let index: Option<Vec<u8>> =
                        sqlx::query_scalar("SELECT email_index FROM users WHERE id = $1")
                            .bind(row)
                            .fetch_optional(db)
                            .await?;
                    let expected = blind_index
                        .as_ref()
                        .map(|k| k.index("email", &String::from_utf8_lossy(&plaintext)));
                    if expected.is_none() || index != expected {
                        fail(
                            &mut report,
                            VerifyFailure {
                                what: "users.email_index".into(),
                                row: Some(row),
                                owner: Some(owner),
                                error: "the blind index does not match the email".into(),
                            },
                        );
                    }
                }
                Ok(_) => {}
            }
        }
    }
    Ok(report)
}

/// Stores a new team's data key (wrapped), in the transaction that makes
/// the team.
pub async fn store_team_key(
    conn: &mut PgConnection,
    keyring: &Keyring,
    team: Uuid,
    key: &DataKey,
) -> Result<(), AppError> {
    let wrapped = keyring.wrap_team_key(key, team);
    sqlx::query("INSERT INTO team_keys (team_id, kek_id, wrapped_key) VALUES ($1, $2, $3)")
        .bind(team)
        .bind(&wrapped.kek_id)
        .bind(&wrapped.bytes)
        .execute(conn)
        .await?;
    Ok(())
}

/// A team's data key, opened for one of its members: `NotFound` for
/// anyone else (membership is checked in the same statement), so a
/// removed member's next request opens nothing of the team's.
pub async fn team_key_for_member(
    db: &PgPool,
    keyring: &Keyring,
    team: Uuid,
    user: Uuid,
) -> Result<DataKey, AppError> {
    let row: Option<(String, Vec<u8>)> = sqlx::query_as(
        "SELECT k.kek_id, k.wrapped_key FROM team_keys k
         JOIN team_members m ON m.team_id = k.team_id AND m.user_id = $2
         WHERE k.team_id = $1",
    )
    .bind(team)
    .bind(user)
    .fetch_optional(db)
    .await?;
    let (kek_id, bytes) = row.ok_or(AppError::NotFound)?;
    open_team_key(keyring, team, kek_id, bytes)
}

/// Unwraps a team's data key read from `team_keys`.
pub fn open_team_key(
    keyring: &Keyring,
    team: Uuid,
    kek_id: String,
    bytes: Vec<u8>,
) -> Result<DataKey, AppError> {
    keyring
        .unwrap_team_key(&WrappedKey { kek_id, bytes }, team)
        .map_err(|e| AppError::internal(format!("cannot open data key of team {team}: {e}")))
}
