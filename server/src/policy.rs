//! `server policy publish KIND FILE EFFECTIVE SUMMARY`: the operator
//! publishes a new version of the Privacy Policy (`privacy`) or the Cookie
//! Policy (`cookies`) from a Markdown file, taking effect on EFFECTIVE
//! (`YYYY-MM-DD`, at least 30 days away); every user is mailed.

use app::data::policies::{PolicyKind, server as policies};

use crate::config::Config;

pub async fn publish(config: &Config, args: &[&str]) -> anyhow::Result<()> {
    let [kind, file, effective, summary @ ..] = args else {
        anyhow::bail!("usage: server policy publish privacy|cookies FILE YYYY-MM-DD SUMMARY");
    };
    let kind = PolicyKind::parse(kind)
        .ok_or_else(|| anyhow::anyhow!("the policy is `privacy` or `cookies`, not {kind:?}"))?;
    let body =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("could not read {file}: {e}"))?;
    let effective = chrono::NaiveDate::parse_from_str(effective, "%Y-%m-%d")
        .map_err(|_| anyhow::anyhow!("the date is YYYY-MM-DD, not {effective:?}"))?;
    let summary = summary.join(" ");
    let db = crate::connect_db(&config.database_url).await?;
    let (version, mailed) = policies::publish(
        &db,
        &config.keyring,
        &config.public_url,
        kind,
        &body,
        effective,
        &summary,
    )
    .await
    .map_err(|e| match e {
        // Say what is wrong, not "correct the highlighted fields".
        app::error::AppError::Invalid(fields) => anyhow::anyhow!(
            "{}",
            fields
                .iter()
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => anyhow::anyhow!("{other}"),
    })?;
    println!(
        "published {} version {version}, in force from {effective}; {mailed} user(s) will be mailed",
        kind.title()
    );
    Ok(())
}
