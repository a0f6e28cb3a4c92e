//! `server users list [TEXT]`, `server users disable|enable|delete EMAIL`:
//! the operator's view of the accounts, as an administrator's Admin page
//! has it (metadata and counts, never anyone's content), from the server's
//! environment. The address is found by its blind index.

use app::{
    admin::server::{self as admin, Actor},
    platform::keystore::Crypto,
    state::AppState,
};

use crate::config::Config;

/// The account with the address `email` (found by its blind index), or an
/// error that says there is none. For the operator's commands.
pub(crate) async fn account_by_email(
    db: &sqlx::PgPool,
    crypto: &Crypto,
    email: &str,
) -> anyhow::Result<uuid::Uuid> {
    let user: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM users WHERE email_index = $1")
            .bind(crypto.email_index(&email.trim().to_lowercase()))
            .fetch_optional(db)
            .await?;
    user.ok_or_else(|| anyhow::anyhow!("no account has the address {email}"))
}

const USAGE: &str = "usage: server users list [TEXT] | server users disable|enable|delete EMAIL";

pub async fn run(config: &Config, args: &[&str]) -> anyhow::Result<()> {
    let db = crate::connect_db(&config.database_url).await?;
    let crypto = Crypto::load(&db, config.keyring.clone()).await?;
    let state = AppState::new(
        crate::leptos_options(),
        db.clone(),
        config.settings.clone(),
        crypto,
    );
    let fail = |e: app::error::AppError| anyhow::anyhow!("{e}");
    match args {
        ["list"] | ["list", ..] => {
            let query = args[1..].join(" ");
            let users = admin::users(&state, Actor::Operator, &query)
                .await
                .map_err(fail)?;
            println!("email\tname\tjoined\tlast seen\tagents\tconversations\tstate");
            for u in users {
                let state = match (u.is_admin, u.disabled, u.deleting) {
                    (_, _, true) => "being deleted",
                    (_, true, _) => "disabled",
                    (true, _, _) => "administrator",
                    _ => "active",
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{state}",
                    u.email,
                    u.name,
                    u.created,
                    u.last_seen.as_deref().unwrap_or("-"),
                    u.agents,
                    u.conversations
                );
            }
            Ok(())
        }
        [action @ ("disable" | "enable" | "delete"), email] => {
            let user = account_by_email(&db, &state.crypto, email).await?;
            match *action {
                "disable" => {
                    admin::set_disabled(&state, Actor::Operator, user, true)
                        .await
                        .map_err(fail)?;
                    println!(
                        "{email} is disabled: signed out everywhere; its API keys, schedules, \
                         bots and new replies are refused"
                    );
                }
                "enable" => {
                    admin::set_disabled(&state, Actor::Operator, user, false)
                        .await
                        .map_err(fail)?;
                    println!("{email} is enabled again");
                }
                _ => {
                    admin::delete_user(&state, Actor::Operator, user)
                        .await
                        .map_err(fail)?;
                    println!(
                        "{email} is disabled and will be erased after the deletion grace period \
                         ({} days)",
                        config.settings.retention.deletion_grace_days
                    );
                }
            }
            Ok(())
        }
        _ => anyhow::bail!(USAGE),
    }
}
