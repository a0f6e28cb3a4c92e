//! The operator's billing commands:
//! - `server prices list`: the price in force for each model;
//! - `server prices set PROVIDER MODEL INPUT OUTPUT`: a model's price per
//!   million tokens, in the deployment's currency (`*` for the provider's
//!   other models); a new version, so earlier usage keeps its price;
//! - `server credits grant EMAIL AMOUNT`: add credits to an account (the
//!   address is found by its blind index).

use app::{
    platform::keystore::{self, Crypto, KeyUse},
    provider::Provider,
    usage::{Money, server as usage},
};

use crate::config::Config;

const USAGE: &str = "usage: server prices list | server prices set PROVIDER MODEL INPUT OUTPUT | \
     server credits grant EMAIL AMOUNT";

/// "2.50" as micro-units.
fn amount(raw: &str) -> anyhow::Result<i64> {
    app::usage::parse_amount(raw)
        .ok_or_else(|| anyhow::anyhow!("{raw:?} is not an amount like 5 or 2.50"))
}

pub async fn prices(config: &Config, args: &[&str]) -> anyhow::Result<()> {
    let db = crate::connect_db(&config.database_url).await?;
    let currency = &config.settings.billing.currency;
    match args {
        ["list"] => {
            println!("provider\tmodel\tinput per 1M tokens\toutput per 1M tokens\tsince");
            for p in usage::prices(&db).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    p.provider,
                    p.model,
                    Money(p.input_per_mtok).display(currency),
                    Money(p.output_per_mtok).display(currency),
                    p.since
                );
            }
            Ok(())
        }
        ["set", provider, model, input, output] => {
            let provider = Provider::parse(provider).ok_or_else(|| {
                anyhow::anyhow!(
                    "{provider:?} is not a provider (openai, anthropic, google, openai_compatible, demo)"
                )
            })?;
            let (input, output) = (amount(input)?, amount(output)?);
            usage::set_price(&db, provider, model, input, output)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "{} {model}: {} in, {} out per million tokens from now on",
                provider.as_str(),
                Money(input).display(currency),
                Money(output).display(currency)
            );
            Ok(())
        }
        _ => anyhow::bail!(USAGE),
    }
}

pub async fn credits(config: &Config, args: &[&str]) -> anyhow::Result<()> {
    let ["grant", email, raw] = args else {
        anyhow::bail!(USAGE);
    };
    let value = amount(raw)?;
    if value <= 0 {
        anyhow::bail!("grant more than nothing");
    }
    let db = crate::connect_db(&config.database_url).await?;
    let crypto = Crypto::load(&db, config.keyring.clone()).await?;
    let user = crate::users_cli::account_by_email(&db, &crypto, email).await?;
    let key = keystore::user_key(&db, &crypto.keyring, user, KeyUse::Operator)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let currency = &config.settings.billing.currency;
    let mut tx = db.begin().await?;
    let balance = usage::credit(
        &mut tx,
        user,
        &key,
        "grant",
        value,
        &format!(
            "Granted by the operator ({})",
            Money(value).display(currency)
        ),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    tx.commit().await?;
    println!(
        "{email} has {} in credits now",
        Money(balance).display(currency)
    );
    Ok(())
}
