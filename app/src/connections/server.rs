//! Connections (server only). Every query names the user and checks access
//! in the statement: a connection is its maker's own, or a team's (sealed
//! with the team's key), which the team's agents use and its admins and
//! owners manage. Anyone else's is `NotFound`, exactly like one that does
//! not exist.
//!
//! Sealed here: `connections.label`, `secret`, `masked`, `settings`.

use reqwest::{
    Method,
    header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, USER_AGENT},
};
use uuid::Uuid;

use super::{
    ConnectionKind, ConnectionSettings, ConnectionTest, ConnectionView, NewConnection, mask,
};
use crate::{
    error::AppError,
    platform::{
        crypto::{DataKey, Place, Sealed},
        keystore::SealedColumn,
        rate_limit,
    },
    state::AppState,
    teams::server::Keys,
};

/// The sealed columns of this slice (`keys verify` opens them all).
pub const SEALED: &[SealedColumn] = &[
    SealedColumn::shareable("connections", "label"),
    SealedColumn::shareable("connections", "secret"),
    SealedColumn::shareable("connections", "masked"),
    SealedColumn::shareable("connections", "settings"),
];

/// `connections c` with the user's (`$1`) membership of its team, keeping
/// those they may use: their own, and their teams'.
const ACCESS: &str = "connections c
     LEFT JOIN team_members tm ON tm.team_id = c.team_id AND tm.user_id = $1
     WHERE ((c.team_id IS NULL AND c.owner_id = $1) OR tm.user_id IS NOT NULL)";

/// The user (`$1`) may manage it: their own, or their team's as an admin
/// or owner (with `ACCESS`).
const EDITS: &str = "(c.team_id IS NULL OR tm.role IN ('owner', 'admin'))";

fn place(column: &'static str, id: Uuid, owner: Uuid) -> Place {
    Place::new("connections", column, id, owner)
}

fn kind_of(value: &str) -> Result<ConnectionKind, AppError> {
    ConnectionKind::parse(value)
        .ok_or_else(|| AppError::internal(format!("unknown connection kind {value:?}")))
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    kind: String,
    label: Sealed,
    masked: Sealed,
    settings: Sealed,
    team_id: Option<Uuid>,
    can_edit: bool,
}

impl Row {
    fn view(&self, key: &DataKey, sealer: Uuid) -> Result<ConnectionView, AppError> {
        let settings = key.open_text(place("settings", self.id, sealer), &self.settings)?;
        Ok(ConnectionView {
            id: self.id.to_string(),
            kind: kind_of(&self.kind)?,
            label: key.open_text(place("label", self.id, sealer), &self.label)?,
            masked: key.open_text(place("masked", self.id, sealer), &self.masked)?,
            settings: serde_json::from_str(&settings).map_err(AppError::internal)?,
            sharing: crate::teams::Sharing {
                team_id: self.team_id.map(|t| t.to_string()),
                team: None,
                can_edit: self.can_edit,
            },
        })
    }
}

/// The connections the user may use: their own, then their teams'.
pub async fn list(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
) -> Result<Vec<ConnectionView>, AppError> {
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.id, c.kind, c.label, c.masked, c.settings, c.team_id, {EDITS} AS can_edit
         FROM {ACCESS} ORDER BY c.team_id NULLS FIRST, c.kind, c.created_at"
    )))
    .bind(owner)
    .fetch_all(&state.db)
    .await?;
    let team_names =
        crate::teams::server::names(state, owner, rows.iter().any(|r| r.team_id.is_some())).await?;
    let mut keys = Keys::new(state, owner, key);
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let (key, sealer) = keys.for_row(row.team_id).await?;
        let mut view = row.view(&key, sealer)?;
        view.sharing.team = view
            .sharing
            .team_id
            .as_ref()
            .and_then(|t| team_names.get(t).cloned());
        out.push(view);
    }
    Ok(out)
}

/// Only the user's own connections (their export, their data summary).
pub async fn list_own(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
) -> Result<Vec<ConnectionView>, AppError> {
    Ok(list(state, owner, key)
        .await?
        .into_iter()
        .filter(|c| c.sharing.team_id.is_none())
        .collect())
}

/// Adds a connection: the user's own (`team` None), or a team's, where
/// the user must be an admin or owner.
pub async fn add(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    team: Option<Uuid>,
    new: &NewConnection,
) -> Result<Uuid, AppError> {
    if let Some(team) = team {
        crate::teams::server::require_editor(&state.db, team, owner).await?;
    }
    let (key, sealer) = Keys::new(state, owner, key).for_row(team).await?;
    let id = Uuid::new_v4();
    let settings = serde_json::to_string(&new.settings).map_err(AppError::internal)?;
    sqlx::query(
        "INSERT INTO connections (id, owner_id, kind, label, secret, masked, settings, team_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(id)
    .bind(owner)
    .bind(new.kind.as_str())
    .bind(key.seal_str(place("label", id, sealer), &new.label))
    .bind(key.seal_str(place("secret", id, sealer), &new.secret))
    .bind(key.seal_str(place("masked", id, sealer), &mask(&new.secret)))
    .bind(key.seal_str(place("settings", id, sealer), &settings))
    .bind(team)
    .execute(&state.db)
    .await?;
    tracing::info!(connection_id = %id, owner_id = %owner, team_id = ?team, kind = new.kind.as_str(), "connection added");
    Ok(id)
}

/// The team of connection `id` if the user may manage it; `NotFound`
/// otherwise (one they cannot use, or a team's they only use).
async fn editable(state: &AppState, user: Uuid, id: Uuid) -> Result<Option<Uuid>, AppError> {
    let row: Option<(Option<Uuid>, bool)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.team_id, {EDITS} FROM {ACCESS} AND c.id = $2"
    )))
    .bind(user)
    .bind(id)
    .fetch_optional(&state.db)
    .await?;
    match row {
        Some((team, true)) => Ok(team),
        _ => Err(AppError::NotFound),
    }
}

pub async fn replace_secret(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
    secret: &str,
) -> Result<(), AppError> {
    let team = editable(state, owner, id).await?;
    let (key, sealer) = Keys::new(state, owner, key).for_row(team).await?;
    let done = sqlx::query(
        "UPDATE connections SET secret = $3, masked = $4, updated_at = now()
         WHERE id = $1 AND team_id IS NOT DISTINCT FROM $2",
    )
    .bind(id)
    .bind(team)
    .bind(key.seal_str(place("secret", id, sealer), secret))
    .bind(key.seal_str(place("masked", id, sealer), &mask(secret)))
    .execute(&state.db)
    .await?;
    crate::error::found(done)?;
    tracing::info!(connection_id = %id, owner_id = %owner, "connection secret replaced");
    Ok(())
}

pub async fn delete(state: &AppState, owner: Uuid, id: Uuid) -> Result<(), AppError> {
    let team = editable(state, owner, id).await?;
    let done = sqlx::query(
        "DELETE FROM connections WHERE id = $1 AND team_id IS NOT DISTINCT FROM $2
           AND (team_id IS NOT NULL OR owner_id = $3)",
    )
    .bind(id)
    .bind(team)
    .bind(owner)
    .execute(&state.db)
    .await?;
    crate::error::found(done)?;
    tracing::info!(connection_id = %id, owner_id = %owner, "connection deleted");
    Ok(())
}

/// The team of connection `id` the user may use, and its kind.
pub async fn kind_and_team(
    db: &sqlx::PgPool,
    user: Uuid,
    id: Uuid,
) -> Result<(String, Option<Uuid>), AppError> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.kind, c.team_id FROM {ACCESS} AND c.id = $2"
    )))
    .bind(user)
    .bind(id)
    .fetch_optional(db)
    .await?
    .ok_or(AppError::NotFound)
}

/// A connection's secret and settings, for the tool that uses it. Only
/// ever held in memory for one call.
pub struct Credential {
    pub kind: ConnectionKind,
    secret: String,
    pub settings: ConnectionSettings,
}

impl Credential {
    /// The secret, for the request to the service only.
    pub fn expose(&self) -> &str {
        &self.secret
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// The connection of `kind` a run uses: among the user's own (`team`
/// None) or the team's (the user must be in it), the one chosen (`id`)
/// if it is there, else the newest; `None` when there is none.
pub async fn credential(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    kind: ConnectionKind,
    id: Option<Uuid>,
    team: Option<Uuid>,
) -> Result<Option<Credential>, AppError> {
    #[derive(sqlx::FromRow)]
    struct SecretRow {
        id: Uuid,
        secret: Sealed,
        settings: Sealed,
    }
    let row: Option<SecretRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT c.id, c.secret, c.settings FROM {ACCESS}
           AND c.kind = $2 AND c.team_id IS NOT DISTINCT FROM $4
         ORDER BY c.id IS NOT DISTINCT FROM $3 DESC, c.created_at DESC LIMIT 1"
    )))
    .bind(owner)
    .bind(kind.as_str())
    .bind(id)
    .bind(team)
    .fetch_optional(&state.db)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let (key, sealer) = Keys::new(state, owner, key).for_row(team).await?;
    let settings = key.open_text(place("settings", row.id, sealer), &row.settings)?;
    Ok(Some(Credential {
        kind,
        secret: key.open_text(place("secret", row.id, sealer), &row.secret)?,
        settings: serde_json::from_str(&settings).map_err(AppError::internal)?,
    }))
}

fn header(value: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(value)
        .map_err(|_| "That secret holds characters no service accepts.".to_owned())
}

/// The headers GitHub wants, with the token.
pub fn github_headers(token: &str) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, header(&format!("Bearer {token}"))?);
    headers.insert(
        ACCEPT,
        HeaderValue::from_static("application/vnd.github+json"),
    );
    headers.insert(USER_AGENT, HeaderValue::from_static("Enclave"));
    headers.insert(
        HeaderName::from_static("x-github-api-version"),
        HeaderValue::from_static("2022-11-28"),
    );
    Ok(headers)
}

/// The headers Slack wants, with the token.
pub fn slack_headers(token: &str) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, header(&format!("Bearer {token}"))?);
    Ok(headers)
}

/// A Telegram Bot API address. The token is part of the path (the API has
/// no other way); outbound URLs are never logged.
pub fn telegram_url(base: &str, token: &str, method: &str) -> String {
    format!("{}/bot{token}/{method}", base.trim_end_matches('/'))
}

/// Tests a connection with the cheapest authenticated call its service
/// has. Counts against the user's key-test limit.
pub async fn test(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    id: Uuid,
) -> Result<ConnectionTest, AppError> {
    let team = editable(state, owner, id).await?;
    let (kind, _) = kind_and_team(&state.db, owner, id).await?;
    rate_limit::hit(
        &state.db,
        &format!("key-test:user:{owner}"),
        state.settings.key_tests_per_user,
    )
    .await?;
    let credential = credential(state, owner, key, kind_of(&kind)?, Some(id), team)
        .await?
        .ok_or(AppError::NotFound)?;
    let result = check(state, &credential).await;
    tracing::info!(connection_id = %id, owner_id = %owner, ok = result.is_ok(), "connection tested");
    Ok(match result {
        Ok(message) => ConnectionTest { ok: true, message },
        Err(message) => ConnectionTest { ok: false, message },
    })
}

async fn check(state: &AppState, credential: &Credential) -> Result<String, String> {
    let urls = &state.settings.service_urls;
    let egress = &state.egress;
    let secret = credential.expose();
    let get = |url: String, headers: HeaderMap| async move {
        egress
            .send(Method::GET, &url, headers)
            .await
            .map_err(|e| e.to_string())
    };
    match credential.kind {
        ConnectionKind::Github => {
            let res = get(format!("{}/user", urls.github), github_headers(secret)?).await?;
            let body: serde_json::Value = serde_json::from_slice(&res.body).unwrap_or_default();
            match res.status.as_u16() {
                200 => Ok(format!(
                    "Connected to GitHub as {}.",
                    body["login"].as_str().unwrap_or("an unnamed account")
                )),
                401 => Err("GitHub rejected this token: it is invalid or expired.".into()),
                403 => Err(
                    "GitHub refused: the token lacks permission, or the rate limit is reached."
                        .into(),
                ),
                status => Err(format!("GitHub answered with status {status}.")),
            }
        }
        ConnectionKind::Slack => {
            let res = egress
                .send_body(
                    Method::POST,
                    &format!("{}/auth.test", urls.slack),
                    slack_headers(secret)?,
                    Some(Vec::new()),
                )
                .await
                .map_err(|e| e.to_string())?;
            let body: serde_json::Value = serde_json::from_slice(&res.body).unwrap_or_default();
            if body["ok"] == true {
                Ok(format!(
                    "Connected to the Slack workspace {} as {}.",
                    body["team"].as_str().unwrap_or("?"),
                    body["user"].as_str().unwrap_or("?")
                ))
            } else {
                Err(slack_error(res.status.as_u16(), &body))
            }
        }
        ConnectionKind::Telegram => {
            let res = get(
                telegram_url(&urls.telegram, secret, "getMe"),
                HeaderMap::new(),
            )
            .await?;
            let body: serde_json::Value = serde_json::from_slice(&res.body).unwrap_or_default();
            if body["ok"] == true {
                Ok(format!(
                    "Connected to the Telegram bot @{}.",
                    body["result"]["username"].as_str().unwrap_or("?")
                ))
            } else {
                Err(telegram_error(&body))
            }
        }
        ConnectionKind::Smtp => {
            let smtp = credential
                .settings
                .smtp
                .as_ref()
                .ok_or("This connection has no mail server.")?;
            crate::tools::email::check(state, smtp, secret)
                .await
                .map(|()| format!("Signed in to {} as {}.", smtp.host, smtp.username))
        }
        ConnectionKind::HttpHeader => {
            let settings = credential
                .settings
                .header
                .as_ref()
                .ok_or("This connection has no header.")?;
            let mut headers = HeaderMap::new();
            let name = HeaderName::from_bytes(settings.name.as_bytes())
                .map_err(|_| "That header name is not valid.".to_owned())?;
            headers.insert(name, header(secret)?);
            let res = get(format!("https://{}/", settings.host), headers).await?;
            Ok(format!(
                "{} answered with status {}.",
                settings.host,
                res.status.as_u16()
            ))
        }
    }
}

/// A Slack API failure in plain words (Slack's own error codes only).
pub fn slack_error(status: u16, body: &serde_json::Value) -> String {
    match (status, body["error"].as_str().unwrap_or_default()) {
        (429, _) | (_, "ratelimited") => {
            "Slack is rate limiting this token: try again in a minute.".into()
        }
        (_, "invalid_auth" | "not_authed" | "token_revoked" | "account_inactive") => {
            "Slack rejected this token: it is invalid or revoked.".into()
        }
        (_, "channel_not_found") => "Slack has no such channel for this token.".into(),
        (_, "not_in_channel") => "The bot is not in that channel: invite it first.".into(),
        (_, "missing_scope") => "The token lacks the scope this needs.".into(),
        (_, code) if !code.is_empty() => format!("Slack refused: {code}."),
        (status, _) => format!("Slack answered with status {status}."),
    }
}

/// A Telegram API failure in plain words (its error code, not its text).
pub fn telegram_error(body: &serde_json::Value) -> String {
    match body["error_code"].as_u64() {
        Some(401) | Some(404) => "Telegram rejected this bot token.".into(),
        Some(403) => "The bot cannot write to that chat (it was blocked or removed).".into(),
        Some(400) => "Telegram refused: check the chat id.".into(),
        Some(429) => "Telegram is rate limiting this bot: try again shortly.".into(),
        _ => "Telegram did not accept the request.".into(),
    }
}
