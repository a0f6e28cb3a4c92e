//! `server admin grant EMAIL` / `server admin revoke EMAIL`: the operator
//! names who administers this Enclave (the first account does from the
//! start). The address is found by its blind index; nothing is decrypted.

use app::platform::keystore::Crypto;

use crate::config::Config;

pub async fn run(config: &Config, args: &[&str]) -> anyhow::Result<()> {
    let (grant, email) = match args {
        ["grant", email] => (true, *email),
        ["revoke", email] => (false, *email),
        _ => anyhow::bail!("usage: server admin grant|revoke EMAIL"),
    };
    let db = crate::connect_db(&config.database_url).await?;
    let crypto = Crypto::load(&db, config.keyring.clone()).await?;
    if !app::admin::server::set_admin(&db, &crypto, email, grant).await? {
        anyhow::bail!("no account has the address {email}");
    }
    if grant {
        println!("{email} is an administrator now (Admin is in their header)");
    } else {
        println!("{email} is no longer an administrator");
    }
    Ok(())
}
