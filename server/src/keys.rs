//! The operator's key commands. See README "The master key" for the procedure.

use app::platform::keystore;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use rand::RngCore as _;

use crate::config::Config;

/// A new random 256-bit master key, base64.
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    STANDARD.encode(bytes)
}

/// Re-wraps every key under the current master key, printing progress.
/// Safe to interrupt and run again.
pub async fn rotate(config: &Config) -> anyhow::Result<()> {
    let db = crate::connect_db(&config.database_url).await?;
    println!(
        "rotating to master key {} (accepting {} key(s) in all)",
        config.keyring.current_id(),
        config.keyring.len()
    );
    let report = keystore::rotate(&db, &config.keyring, 500, |p| {
        println!("  re-wrapped {} key(s), {} left", p.rewrapped, p.remaining);
    })
    .await
    .map_err(|e| anyhow::anyhow!("rotation stopped: {e}"))?;
    println!(
        "done: {} key(s) re-wrapped; every key is now under master key {}",
        report.rewrapped,
        config.keyring.current_id()
    );
    Ok(())
}

/// Opens every key and sealed value; lists each failure and fails if any.
pub async fn verify(config: &Config) -> anyhow::Result<()> {
    let db = crate::connect_db(&config.database_url).await?;
    let report = keystore::verify(&db, &config.keyring, app::sealed_columns(), |f| {
        let row = f.row.map(|r| format!(" row {r}")).unwrap_or_default();
        let owner = f.owner.map(|o| format!(" owner {o}")).unwrap_or_default();
        println!("FAILED {}{row}{owner}: {}", f.what, f.error);
    })
    .await
    .map_err(|e| anyhow::anyhow!("verification stopped: {e}"))?;
    println!(
        "verified {} key(s) and {} sealed value(s): {} failure(s)",
        report.keys,
        report.values,
        report.failures.len()
    );
    if report.failures.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} value(s) could not be opened", report.failures.len())
    }
}
