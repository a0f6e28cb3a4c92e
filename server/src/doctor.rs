//! `server doctor`: whether this server's setup works, one line per part
//! (the database, the master key, outbound requests, each operator
//! provider key, mail, card payments), each OK or what to do. Exits
//! non-zero when anything needs fixing. Never prints a secret.

use app::{
    platform::{keystore::Crypto, settings::BillingMode},
    provider::Provider,
    state::AppState,
};

use crate::config::Config;

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub ok: bool,
    pub part: String,
    pub said: String,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = if self.ok { "ok " } else { "FIX" };
        write!(f, "{mark}  {:<12} {}", self.part, self.said)
    }
}

fn line(ok: bool, part: &str, said: impl Into<String>) -> Line {
    Line {
        ok,
        part: part.to_owned(),
        said: said.into(),
    }
}

/// Checks every part; stops after the database or the key if those fail
/// (nothing else can be checked without them).
pub async fn check(config: &Config) -> Vec<Line> {
    let mut lines = Vec::new();
    let db = match crate::connect_db(&config.database_url).await {
        Ok(db) => db,
        Err(err) => {
            lines.push(line(
                false,
                "database",
                format!("{err:#}: check ENCLAVE_DATABASE_URL and that PostgreSQL runs"),
            ));
            return lines;
        }
    };
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&db)
        .await
        .unwrap_or_default();
    lines.push(line(
        true,
        "database",
        format!(
            "PostgreSQL {version}, {} migrations applied",
            crate::MIGRATOR.iter().count()
        ),
    ));
    let crypto = match Crypto::load(&db, config.keyring.clone()).await {
        Ok(crypto) => crypto,
        Err(err) => {
            lines.push(line(false, "master key", err.to_string()));
            return lines;
        }
    };
    let older: i64 = sqlx::query_scalar("SELECT count(*) FROM user_keys WHERE kek_id <> $1")
        .bind(config.keyring.current_id())
        .fetch_one(&db)
        .await
        .unwrap_or(0);
    lines.push(if older == 0 {
        line(
            true,
            "master key",
            "opens this database's keys; every key is under it",
        )
    } else {
        line(
            false,
            "master key",
            format!(
                "opens this database's keys, but {older} are still under a previous key: \
                 run `server keys rotate`"
            ),
        )
    });
    let state = AppState::new(crate::leptos_options(), db, config.settings.clone(), crypto);
    let allowed: Vec<String> = state
        .settings
        .egress_allow
        .iter()
        .map(|a| format!("{}:{}", a.host, a.port))
        .collect();
    lines.push(line(
        true,
        "egress",
        if allowed.is_empty() {
            "private and local addresses are refused (no exceptions)".to_owned()
        } else {
            format!(
                "private and local addresses are refused, except {}",
                allowed.join(", ")
            )
        },
    ));
    let mut any_key = false;
    for provider in Provider::ALL {
        let Some(key) = state.settings.platform_keys.expose(provider) else {
            continue;
        };
        any_key = true;
        let part = format!("{} key", provider.as_str());
        match app::llm::models::list_models(
            &state.egress,
            &state.settings.provider_urls,
            provider,
            None,
            key,
        )
        .await
        {
            Ok(models) => lines.push(line(
                true,
                &part,
                format!("the provider answers ({} models)", models.len()),
            )),
            Err(message) => lines.push(line(
                false,
                &part,
                format!(
                    "{message} Check ENCLAVE_{}_API_KEY.",
                    provider.as_str().to_uppercase()
                ),
            )),
        }
    }
    if !any_key {
        lines.push(line(
            true,
            "providers",
            "no operator keys: people add their own under Settings → Provider keys",
        ));
    }
    lines.push(match state.settings.mailer.check().await {
        Ok(said) => line(true, "mail", said),
        Err(said) => line(false, "mail", said),
    });
    let billing = &state.settings.billing;
    lines.push(match (billing.mode, &billing.stripe) {
        (BillingMode::Credits, Some(_)) => line(
            true,
            "payments",
            format!(
                "credits with Stripe: its webhook must point at {}/stripe/webhook",
                state.settings.public_url.trim_end_matches('/')
            ),
        ),
        (BillingMode::Credits, None) => line(
            true,
            "payments",
            "credits without card payments: grant them with `server credits grant`",
        ),
        (BillingMode::Quotas(_), _) => line(true, "payments", "quotas (no payments)"),
        (BillingMode::Unlimited, _) => line(true, "payments", "unlimited (no payments)"),
    });
    lines
}

/// Prints the report; an error when anything needs fixing.
pub async fn run(config: &Config) -> anyhow::Result<()> {
    let lines = check(config).await;
    for l in &lines {
        println!("{l}");
    }
    let fix = lines.iter().filter(|l| !l.ok).count();
    if fix > 0 {
        anyhow::bail!("{fix} thing(s) to fix");
    }
    Ok(())
}
