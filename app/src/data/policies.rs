//! The Privacy Policy and the Cookie Policy, served by the app with a
//! version, an effective date and the version history; publishing a new
//! version (`server policy publish`, the operator's command) mails every
//! user at least 30 days before it takes effect, and a signed-in user sees
//! a notice until they acknowledge it. Also the user's consent records and
//! their marketing mail choice (off unless they turn it on).

use serde::{Deserialize, Serialize};

/// Which policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKind {
    Privacy,
    Cookies,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 2] = [PolicyKind::Privacy, PolicyKind::Cookies];

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Privacy => "privacy",
            PolicyKind::Cookies => "cookies",
        }
    }

    pub fn parse(value: &str) -> Option<PolicyKind> {
        PolicyKind::ALL.into_iter().find(|k| k.as_str() == value)
    }

    pub fn title(self) -> &'static str {
        match self {
            PolicyKind::Privacy => "Privacy Policy",
            PolicyKind::Cookies => "Cookie Policy",
        }
    }

    /// Where the app serves it.
    pub fn path(self) -> &'static str {
        match self {
            PolicyKind::Privacy => "/privacy",
            PolicyKind::Cookies => "/cookies",
        }
    }

    /// The first version, shipped with Enclave.
    pub fn shipped(self) -> &'static str {
        match self {
            PolicyKind::Privacy => include_str!("../../policies/privacy-v1.md"),
            PolicyKind::Cookies => include_str!("../../policies/cookies-v1.md"),
        }
    }
}

/// The days of notice a new version needs.
pub const NOTICE_DAYS: i64 = 30;

/// One version in a policy's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyVersion {
    pub version: i32,
    /// `YYYY-MM-DD`.
    pub effective: String,
    pub summary: String,
    /// In force now.
    pub current: bool,
    /// Published, not yet in force.
    pub upcoming: bool,
}

/// A policy page: the version shown (the one in force unless another was
/// asked for), its text as sanitised HTML, and every version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyPage {
    pub kind: PolicyKind,
    pub shown: PolicyVersion,
    pub body_html: String,
    pub history: Vec<PolicyVersion>,
}

/// A change the signed-in user has not acknowledged yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyNotice {
    pub kind: PolicyKind,
    pub version: i32,
    pub effective: String,
    pub summary: String,
}

/// One consent record, as the data page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentView {
    /// What it was about: "Privacy Policy, version 2", "Marketing mail".
    pub what: String,
    pub granted: bool,
    /// `YYYY-MM-DD HH:MM UTC`.
    pub at: String,
}

#[cfg(feature = "ssr")]
pub mod server {
    use chrono::{DateTime, NaiveDate, Utc};
    use sqlx::PgPool;
    use uuid::Uuid;

    use super::{ConsentView, NOTICE_DAYS, PolicyKind, PolicyNotice, PolicyPage, PolicyVersion};
    use crate::{
        auth::server::AuthSession,
        data::activity::{self, Event},
        error::AppError,
        platform::{
            crypto::Keyring,
            jobs::{self, Kind, NewJob},
            keystore::{self, KeyUse},
            mail::{Outgoing, escape_html},
        },
        state::AppState,
    };

    /// The date the shipped first versions take effect.
    const SHIPPED_EFFECTIVE: &str = "2026-11-30T00:00:00Z";

    /// Stores the shipped first versions unless they are there (at start-up;
    /// two servers starting at once agree).
    pub async fn ensure_shipped(db: &PgPool) -> Result<(), sqlx::Error> {
        for kind in PolicyKind::ALL {
            sqlx::query(
                "INSERT INTO policy_versions (kind, version, effective_at, published_at, summary, body)
                 VALUES ($1, 1, $2::timestamptz, $2::timestamptz, 'The first version.', $3)
                 ON CONFLICT (kind, version) DO NOTHING",
            )
            .bind(kind.as_str())
            .bind(SHIPPED_EFFECTIVE)
            .bind(kind.shipped())
            .execute(db)
            .await?;
        }
        Ok(())
    }

    type VersionRow = (i32, DateTime<Utc>, String);

    /// A policy page: `version`, or the one in force.
    pub async fn page(
        db: &PgPool,
        kind: PolicyKind,
        version: Option<i32>,
    ) -> Result<PolicyPage, AppError> {
        let list = || {
            sqlx::query_as::<_, VersionRow>(
                "SELECT version, effective_at, summary FROM policy_versions
                 WHERE kind = $1 ORDER BY version DESC",
            )
            .bind(kind.as_str())
            .fetch_all(db)
        };
        let mut rows = list().await?;
        if rows.is_empty() {
            ensure_shipped(db).await?;
            rows = list().await?;
        }
        let now = Utc::now();
        // In force: the newest version whose date has come (or the first).
        let current = rows
            .iter()
            .find(|(_, effective, _)| *effective <= now)
            .or(rows.last())
            .map(|(v, _, _)| *v)
            .ok_or(AppError::NotFound)?;
        let history: Vec<PolicyVersion> = rows
            .iter()
            .map(|(v, effective, summary)| PolicyVersion {
                version: *v,
                effective: effective.format("%Y-%m-%d").to_string(),
                summary: summary.clone(),
                current: *v == current,
                upcoming: *v > current,
            })
            .collect();
        let wanted = version.unwrap_or(current);
        let shown = history
            .iter()
            .find(|v| v.version == wanted)
            .cloned()
            .ok_or(AppError::NotFound)?;
        let body: String =
            sqlx::query_scalar("SELECT body FROM policy_versions WHERE kind = $1 AND version = $2")
                .bind(kind.as_str())
                .bind(wanted)
                .fetch_one(db)
                .await?;
        Ok(PolicyPage {
            kind,
            shown,
            body_html: crate::ui::markdown::render(&body),
            history,
        })
    }

    /// Publishes a new version taking effect on `effective` (at least 30
    /// days away) and mails every user about it. Returns its number and
    /// how many mails were queued.
    pub async fn publish(
        db: &PgPool,
        keyring: &Keyring,
        public_url: &str,
        kind: PolicyKind,
        body: &str,
        effective: NaiveDate,
        summary: &str,
    ) -> Result<(i32, u64), AppError> {
        let effective_at = effective
            .and_hms_opt(0, 0, 0)
            .ok_or_else(|| AppError::invalid("effective", "That is not a date."))?
            .and_utc();
        if effective_at < Utc::now() + chrono::Duration::days(NOTICE_DAYS) {
            return Err(AppError::invalid(
                "effective",
                format!(
                    "A new version needs {NOTICE_DAYS} days' notice: choose a date at least {NOTICE_DAYS} days from today."
                ),
            ));
        }
        let (body, summary) = (body.trim(), summary.trim());
        if body.is_empty() || summary.is_empty() || summary.chars().count() > 500 {
            return Err(AppError::invalid(
                "summary",
                "A new version needs its text and a short summary of what changes (at most 500 characters).",
            ));
        }
        ensure_shipped(db).await?;
        let mut tx = db.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('policy_versions', 0))")
            .execute(&mut *tx)
            .await?;
        let version: i32 = sqlx::query_scalar(
            "INSERT INTO policy_versions (kind, version, effective_at, summary, body)
             SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4
             FROM policy_versions WHERE kind = $1
             RETURNING version",
        )
        .bind(kind.as_str())
        .bind(effective_at)
        .bind(summary)
        .bind(body)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;

        let users: Vec<Uuid> =
            sqlx::query_scalar("SELECT id FROM users WHERE deleted_at IS NULL ORDER BY id")
                .fetch_all(db)
                .await?;
        let mut mailed = 0;
        for user in users {
            let key = keystore::user_key(db, keyring, user, KeyUse::Operator).await?;
            let (email, first_name) = activity::server::contact(db, user, &key).await?;
            let mail = change_mail(
                public_url,
                kind,
                version,
                effective,
                summary,
                &email,
                &first_name,
            );
            let mut conn = db.acquire().await?;
            if jobs::enqueue(
                &mut conn,
                NewJob::new(Kind::Mail)
                    .for_owner(user, &key, &mail)
                    .idempotency_key(format!("policy:{}:{version}:{user}", kind.as_str())),
            )
            .await?
            .is_some()
            {
                mailed += 1;
            }
        }
        Ok((version, mailed))
    }

    fn change_mail(
        public_url: &str,
        kind: PolicyKind,
        version: i32,
        effective: NaiveDate,
        summary: &str,
        email: &str,
        first_name: &str,
    ) -> Outgoing {
        let link = format!(
            "{}{}?version={version}",
            public_url.trim_end_matches('/'),
            kind.path()
        );
        let title = kind.title();
        let date = effective.format("%Y-%m-%d");
        let text = format!(
            "Hello {first_name},\n\n\
             Our {title} changes on {date}. What changes:\n\n{summary}\n\n\
             Read the new version here:\n\n{link}\n\n\
             Every earlier version stays readable on the same page.\n"
        );
        let html = format!(
            "<p>Hello {name},</p><p>Our {title} changes on {date}. What changes:</p>\
             <p>{summary_h}</p><p><a href=\"{href}\">Read the new version</a>. Every \
             earlier version stays readable on the same page.</p>",
            name = escape_html(first_name),
            summary_h = escape_html(summary),
            href = escape_html(&link),
        );
        Outgoing {
            to: email.to_owned(),
            subject: format!("Our {title} changes on {date}"),
            text,
            html,
        }
    }

    /// Published versions the user has not acknowledged, newer than their
    /// account (whoever signed up read the version of the day; the first
    /// version is what everyone signed up under).
    pub async fn notices(db: &PgPool, owner: Uuid) -> Result<Vec<PolicyNotice>, AppError> {
        let rows: Vec<(String, i32, DateTime<Utc>, String)> = sqlx::query_as(
            "SELECT p.kind, p.version, p.effective_at, p.summary
             FROM policy_versions p JOIN users u ON u.id = $1
             WHERE p.version > 1 AND p.published_at > u.created_at
               AND p.version = (SELECT max(version) FROM policy_versions q WHERE q.kind = p.kind)
               AND NOT EXISTS (SELECT 1 FROM consents c
                               WHERE c.owner_id = $1 AND c.purpose = p.kind
                                 AND c.version = p.version AND c.granted)
             ORDER BY p.kind",
        )
        .bind(owner)
        .fetch_all(db)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(kind, version, effective, summary)| {
                Some(PolicyNotice {
                    kind: PolicyKind::parse(&kind)?,
                    version,
                    effective: effective.format("%Y-%m-%d").to_string(),
                    summary,
                })
            })
            .collect())
    }

    /// Records that the user read `version` of `kind` (a version that
    /// exists; anything else is not found).
    pub async fn acknowledge(
        state: &AppState,
        session: &AuthSession,
        kind: PolicyKind,
        version: i32,
    ) -> Result<(), AppError> {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM policy_versions WHERE kind = $1 AND version = $2)",
        )
        .bind(kind.as_str())
        .bind(version)
        .fetch_one(&state.db)
        .await?;
        if !exists {
            return Err(AppError::NotFound);
        }
        record_consent(
            &state.db,
            session.user_id,
            kind.as_str(),
            Some(version),
            true,
        )
        .await?;
        let detail = format!("{}, version {version}", kind.title());
        activity::server::note(state, session, Event::PolicyAcknowledged, Some(&detail)).await;
        Ok(())
    }

    async fn record_consent(
        db: &PgPool,
        owner: Uuid,
        purpose: &str,
        version: Option<i32>,
        granted: bool,
    ) -> Result<(), AppError> {
        sqlx::query(
            "INSERT INTO consents (id, owner_id, purpose, version, granted) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(Uuid::new_v4())
        .bind(owner)
        .bind(purpose)
        .bind(version)
        .bind(granted)
        .execute(db)
        .await?;
        Ok(())
    }

    /// Whether the user wants marketing mail.
    pub async fn marketing(db: &PgPool, owner: Uuid) -> Result<bool, AppError> {
        Ok(
            sqlx::query_scalar("SELECT marketing_mail FROM users WHERE id = $1")
                .bind(owner)
                .fetch_one(db)
                .await?,
        )
    }

    /// Turns marketing mail on or off, with a consent record.
    pub async fn set_marketing(
        state: &AppState,
        session: &AuthSession,
        on: bool,
    ) -> Result<(), AppError> {
        let changed = sqlx::query(
            "UPDATE users SET marketing_mail = $2 WHERE id = $1 AND marketing_mail <> $2",
        )
        .bind(session.user_id)
        .bind(on)
        .execute(&state.db)
        .await?
        .rows_affected()
            == 1;
        if changed {
            record_consent(&state.db, session.user_id, "marketing_mail", None, on).await?;
            let detail = if on { "on" } else { "off" };
            activity::server::note(state, session, Event::MarketingChanged, Some(detail)).await;
        }
        Ok(())
    }

    /// The user's consent records, newest first.
    pub async fn consents(db: &PgPool, owner: Uuid) -> Result<Vec<ConsentView>, AppError> {
        let rows: Vec<(String, Option<i32>, bool, DateTime<Utc>)> = sqlx::query_as(
            "SELECT purpose, version, granted, at FROM consents
             WHERE owner_id = $1 ORDER BY at DESC, id DESC",
        )
        .bind(owner)
        .fetch_all(db)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(purpose, version, granted, at)| {
                let what = match (PolicyKind::parse(&purpose), version) {
                    (Some(kind), Some(v)) => format!("{}, version {v}", kind.title()),
                    _ => "Marketing mail".to_owned(),
                };
                ConsentView {
                    what,
                    granted,
                    at: at.format("%Y-%m-%d %H:%M UTC").to_string(),
                }
            })
            .collect())
    }
}
