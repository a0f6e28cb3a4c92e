//! Every setting Enclave reads, in one table: `server config check` prints
//! what is in force and where it came from, and the README's configuration
//! reference is generated from the same table (`server config reference`;
//! a test compares them, and another that every variable `config.rs` reads
//! is here), so the two cannot drift.

use std::fmt::Write as _;

use base64::{Engine as _, engine::general_purpose::STANDARD};

use crate::config::{Config, ConfigError, Mode, Source, parse, secret};

/// One environment variable.
pub struct Setting {
    pub group: &'static str,
    pub name: &'static str,
    /// A secret: also read from the file `NAME_FILE` names, never printed.
    pub secret: bool,
    pub default: &'static str,
    pub meaning: &'static str,
}

pub const SETTINGS: &[Setting] = &[
    Setting {
        group: r#"Server"#,
        name: "ENCLAVE_ENV",
        secret: false,
        default: r#"`development`"#,
        meaning: r#"`production` refuses what is unsafe there: the demo model, the mail catcher, a development master key, an `http://` public URL (`server config check` lists them)"#,
    },
    Setting {
        group: r#"Server"#,
        name: "ENCLAVE_DATABASE_URL",
        secret: true,
        default: r#"none: required"#,
        meaning: r#"PostgreSQL URL, e.g. `postgres://enclave@db/enclave` (a generic `DATABASE_URL` is never read)"#,
    },
    Setting {
        group: r#"Server"#,
        name: "ENCLAVE_MASTER_KEY",
        secret: true,
        default: r#"none: required"#,
        meaning: r#"32 random bytes, base64 (`server keys generate`)"#,
    },
    Setting {
        group: r#"Server"#,
        name: "ENCLAVE_PREVIOUS_MASTER_KEYS",
        secret: true,
        default: r#"none"#,
        meaning: r#"old master keys still accepted during a rotation, comma- or line-separated"#,
    },
    Setting {
        group: r#"Server"#,
        name: "ENCLAVE_ADDR",
        secret: false,
        default: r#"`127.0.0.1:3000`"#,
        meaning: r#"address to listen on"#,
    },
    Setting {
        group: r#"Server"#,
        name: "ENCLAVE_PUBLIC_URL",
        secret: false,
        default: r#"`http://127.0.0.1:3000`"#,
        meaning: r#"the URL people use; `https://` makes cookies `Secure` and `__Host-` prefixed (production requires it); MCP addresses and OAuth callbacks are built from it"#,
    },
    Setting {
        group: r#"Server"#,
        name: "ENCLAVE_INSTANCE",
        secret: false,
        default: r#"host name and port"#,
        meaning: r#"this server process's name, unique among the servers on one database: stored with the replies it writes (after a restart it ends its own unfinished ones at once) and with its heartbeat (other servers end a stopped server's replies within seconds, and never a beating one's)"#,
    },
    Setting {
        group: r#"Server"#,
        name: "LEPTOS_SITE_ROOT",
        secret: false,
        default: r#"`site` next to the server binary, else `target/site`"#,
        meaning: r#"where the built CSS/JS/WASM are served from"#,
    },
    Setting {
        group: r#"Server"#,
        name: "ENCLAVE_LOG",
        secret: false,
        default: r#"`info,sqlx=warn`"#,
        meaning: r#"log filter (`tracing` `EnvFilter` syntax)"#,
    },
    Setting {
        group: r#"Server"#,
        name: "ENCLAVE_LOG_FORMAT",
        secret: false,
        default: r#"text"#,
        meaning: r#"`json` for one JSON object per line"#,
    },
    Setting {
        group: r#"Server"#,
        name: "ENCLAVE_METRICS_ADDR",
        secret: false,
        default: r#"none"#,
        meaning: r#"serve Prometheus metrics at `/metrics` on this address of their own (say `127.0.0.1:9464`; keep it off the public network)"#,
    },
    Setting {
        group: r#"Server"#,
        name: "ENCLAVE_METRICS_TOKEN",
        secret: true,
        default: r#"none"#,
        meaning: r#"serve Prometheus metrics at `/metrics` on the main address to requests with `Authorization: Bearer <token>` (at least 16 characters)"#,
    },
    Setting {
        group: r#"Sign-in and limits"#,
        name: "ENCLAVE_SESSION_TTL_HOURS",
        secret: false,
        default: r#"`720`"#,
        meaning: r#"how long a sign-in lasts"#,
    },
    Setting {
        group: r#"Sign-in and limits"#,
        name: "ENCLAVE_SIGN_IN_LIMIT_PER_IP",
        secret: false,
        default: r#"`30`"#,
        meaning: r#"sign-in attempts per client address per 15 minutes"#,
    },
    Setting {
        group: r#"Sign-in and limits"#,
        name: "ENCLAVE_SIGN_IN_LIMIT_PER_ACCOUNT",
        secret: false,
        default: r#"`5`"#,
        meaning: r#"sign-in attempts per account per 15 minutes, counted before the password is checked (a success resets it)"#,
    },
    Setting {
        group: r#"Sign-in and limits"#,
        name: "ENCLAVE_SIGN_UP_LIMIT_PER_IP",
        secret: false,
        default: r#"`10`"#,
        meaning: r#"sign-ups per client address per hour"#,
    },
    Setting {
        group: r#"Sign-in and limits"#,
        name: "ENCLAVE_PROXY_HOPS",
        secret: false,
        default: r#"`0`"#,
        meaning: r#"how many proxies in front of Enclave append to `X-Forwarded-For`; the client is the entry that many from the right (what the outermost trusted proxy saw). `0` ignores the header"#,
    },
    Setting {
        group: r#"Sign-in and limits"#,
        name: "ENCLAVE_TRUST_FORWARDED_FOR",
        secret: false,
        default: r#"`false`"#,
        meaning: r#"the older switch: `true` means `ENCLAVE_PROXY_HOPS=1`"#,
    },
    Setting {
        group: r#"Sign-in and limits"#,
        name: "ENCLAVE_CHAT_LIMIT_PER_USER",
        secret: false,
        default: r#"`30`"#,
        meaning: r#"replies (send, regenerate, edit) a user may ask for per minute"#,
    },
    Setting {
        group: r#"Sign-in and limits"#,
        name: "ENCLAVE_API_LIMIT_PER_KEY",
        secret: false,
        default: r#"`60`"#,
        meaning: r#"requests one API key may make to `/v1` per minute (a reply also counts against its owner's chat limit)"#,
    },
    Setting {
        group: r#"Sign-in and limits"#,
        name: "ENCLAVE_KEY_TEST_LIMIT_PER_USER",
        secret: false,
        default: r#"`10`"#,
        meaning: r#"provider key tests per user per minute"#,
    },
    Setting {
        group: r#"Sign-in and limits"#,
        name: "ENCLAVE_RUN_DEADLINE_MINUTES",
        secret: false,
        default: r#"`15`"#,
        meaning: r#"the longest a reply may take, retries included; it then ends with what was written and says why"#,
    },
    Setting {
        group: r#"Sign-in and limits"#,
        name: "ENCLAVE_PROVIDER_TIMEOUT_SECS",
        secret: false,
        default: r#"`60`"#,
        meaning: r#"the longest a model provider may be silent, before its first token or between two pieces of a reply; raise it for a slow model on your own hardware"#,
    },
    Setting {
        group: r#"Sign-in and limits"#,
        name: "ENCLAVE_TOOL_TIMEOUT_SECS",
        secret: false,
        default: r#"`30`"#,
        meaning: r#"the longest one tool call may take"#,
    },
    Setting {
        group: r#"Sign-in and limits"#,
        name: "ENCLAVE_OIDC_PROVIDERS",
        secret: false,
        default: r#"none"#,
        meaning: r#"sign-in providers, by id: `google,corp` (see "Sign in with Google" below)"#,
    },
    Setting {
        group: r#"Sign-in and limits"#,
        name: "ENCLAVE_REQUIRE_VERIFIED_EMAIL",
        secret: false,
        default: r#"`false`"#,
        meaning: r#"accounts reach agents and chat only once their address is confirmed (settings and the "send a new link" banner stay open); needs mail, so the server refuses it without `ENCLAVE_SMTP_URL` or the catcher"#,
    },
    Setting {
        group: r#"Models and services"#,
        name: "ENCLAVE_OPENAI_API_KEY",
        secret: true,
        default: r#"none"#,
        meaning: r#"platform key used by agents whose owner has no OpenAI key"#,
    },
    Setting {
        group: r#"Models and services"#,
        name: "ENCLAVE_ANTHROPIC_API_KEY",
        secret: true,
        default: r#"none"#,
        meaning: r#"the same for Anthropic"#,
    },
    Setting {
        group: r#"Models and services"#,
        name: "ENCLAVE_GOOGLE_API_KEY",
        secret: true,
        default: r#"none"#,
        meaning: r#"the same for Google Gemini"#,
    },
    Setting {
        group: r#"Models and services"#,
        name: "ENCLAVE_OPENAI_BASE_URL",
        secret: false,
        default: r#"`https://api.openai.com/v1`"#,
        meaning: r#"where the OpenAI API lives (a proxy, say)"#,
    },
    Setting {
        group: r#"Models and services"#,
        name: "ENCLAVE_ANTHROPIC_BASE_URL",
        secret: false,
        default: r#"`https://api.anthropic.com/v1`"#,
        meaning: r#"the same for Anthropic"#,
    },
    Setting {
        group: r#"Models and services"#,
        name: "ENCLAVE_GOOGLE_BASE_URL",
        secret: false,
        default: r#"`https://generativelanguage.googleapis.com/v1beta`"#,
        meaning: r#"the same for Google"#,
    },
    Setting {
        group: r#"Models and services"#,
        name: "ENCLAVE_EGRESS_ALLOW",
        secret: false,
        default: r#"none"#,
        meaning: r#"private `host:port`s outbound requests may reach (see Providers)"#,
    },
    Setting {
        group: r#"Models and services"#,
        name: "ENCLAVE_DEMO_MODEL",
        secret: false,
        default: r#"`false` (`make dev`: `true`)"#,
        meaning: r#"run the offline demo model provider (development only)"#,
    },
    Setting {
        group: r#"Models and services"#,
        name: "ENCLAVE_GITHUB_API_URL",
        secret: false,
        default: r#"`https://api.github.com`"#,
        meaning: r#"the GitHub API the GitHub tools use (GitHub Enterprise: its `/api/v3`)"#,
    },
    Setting {
        group: r#"Models and services"#,
        name: "ENCLAVE_SLACK_API_URL",
        secret: false,
        default: r#"`https://slack.com/api`"#,
        meaning: r#"the Slack Web API"#,
    },
    Setting {
        group: r#"Models and services"#,
        name: "ENCLAVE_TELEGRAM_API_URL",
        secret: false,
        default: r#"`https://api.telegram.org`"#,
        meaning: r#"the Telegram Bot API"#,
    },
    Setting {
        group: r#"Models and services"#,
        name: "ENCLAVE_TELEGRAM_WEBHOOK_URL",
        secret: false,
        default: r#"the public URL when it is `https://`, else none"#,
        meaning: r#"the https address Telegram posts agents' bot messages to (`…/telegram/webhook/{id}` is added); with none, bots are long-polled instead"#,
    },
    Setting {
        group: r#"Mail"#,
        name: "ENCLAVE_SMTP_URL",
        secret: true,
        default: r#"none"#,
        meaning: r#"where Enclave's own mail goes: `smtp://relay:25` (plain, for a local relay), `smtp://user:password@host:587?tls=required` (STARTTLS), `smtps://user:password@host` (TLS); percent-encode special characters in the password. Without it (and without the catcher) no mail is sent, and the reason is kept with each mail job"#,
    },
    Setting {
        group: r#"Mail"#,
        name: "ENCLAVE_MAIL_FROM",
        secret: false,
        default: r#"`Enclave <enclave@localhost>`"#,
        meaning: r#"the sender of Enclave's mail"#,
    },
    Setting {
        group: r#"Mail"#,
        name: "ENCLAVE_MAIL_CATCHER",
        secret: false,
        default: r#"`false` (`make dev`: `true`)"#,
        meaning: r#"keep sent mail in memory and list it at `/dev/mail` (development only; production refuses it)"#,
    },
    Setting {
        group: r#"Mail"#,
        name: "ENCLAVE_SMTP_CA_FILE",
        secret: false,
        default: r#"none"#,
        meaning: r#"extra certificate authorities (PEM) trusted for users' mail servers"#,
    },
    Setting {
        group: r#"Retention"#,
        name: "ENCLAVE_CONVERSATION_RETENTION_DAYS",
        secret: false,
        default: r#"`90`"#,
        meaning: r#"a conversation is erased this many days after its last message (a user may choose a shorter time)"#,
    },
    Setting {
        group: r#"Retention"#,
        name: "ENCLAVE_ACTIVITY_RETENTION_DAYS",
        secret: false,
        default: r#"`90`"#,
        meaning: r#"how long the account activity log and tool call records are kept"#,
    },
    Setting {
        group: r#"Retention"#,
        name: "ENCLAVE_DELETION_GRACE_DAYS",
        secret: false,
        default: r#"`30`"#,
        meaning: r#"how long a deleted account can be restored by signing in before it is erased"#,
    },
    Setting {
        group: r#"Usage and billing"#,
        name: "ENCLAVE_BILLING",
        secret: false,
        default: r#"`unlimited`"#,
        meaning: r#"`unlimited` (recorded and shown), `quotas` or `credits` (see Usage, budgets and credits)"#,
    },
    Setting {
        group: r#"Usage and billing"#,
        name: "ENCLAVE_BILLING_CHARGE_OWN_KEYS",
        secret: false,
        default: r#"`false`"#,
        meaning: r#"also charge calls made with people's own provider keys"#,
    },
    Setting {
        group: r#"Usage and billing"#,
        name: "ENCLAVE_QUOTA_PERIOD",
        secret: false,
        default: r#"`month`"#,
        meaning: r#"with `quotas`: `day` or `month` (UTC)"#,
    },
    Setting {
        group: r#"Usage and billing"#,
        name: "ENCLAVE_QUOTA_UNIT",
        secret: false,
        default: r#"`tokens`"#,
        meaning: r#"with `quotas`: `tokens`, or `cost` in the currency"#,
    },
    Setting {
        group: r#"Usage and billing"#,
        name: "ENCLAVE_QUOTA_PER_USER",
        secret: false,
        default: r#"none"#,
        meaning: r#"with `quotas`: what one person may use per period (`20000` tokens, or an amount like `5.00`)"#,
    },
    Setting {
        group: r#"Usage and billing"#,
        name: "ENCLAVE_QUOTA_PER_TEAM",
        secret: false,
        default: r#"none"#,
        meaning: r#"with `quotas`: what a team's agents may use per period"#,
    },
    Setting {
        group: r#"Usage and billing"#,
        name: "ENCLAVE_CURRENCY",
        secret: false,
        default: r#"`usd`"#,
        meaning: r#"the currency of prices and credits (a three-letter code Stripe takes)"#,
    },
    Setting {
        group: r#"Usage and billing"#,
        name: "ENCLAVE_CREDIT_TOP_UPS",
        secret: false,
        default: r#"`5,20,50`"#,
        meaning: r#"the amounts of credits offered for purchase"#,
    },
    Setting {
        group: r#"Usage and billing"#,
        name: "ENCLAVE_STRIPE_SECRET_KEY",
        secret: true,
        default: r#"none"#,
        meaning: r#"with `credits`: Stripe's secret API key (`sk_live_…`), for card payments"#,
    },
    Setting {
        group: r#"Usage and billing"#,
        name: "ENCLAVE_STRIPE_WEBHOOK_SECRET",
        secret: true,
        default: r#"none"#,
        meaning: r#"the signing secret (`whsec_…`) of the webhook at `https://YOUR-SERVER/stripe/webhook`"#,
    },
    Setting {
        group: r#"Usage and billing"#,
        name: "ENCLAVE_STRIPE_API_URL",
        secret: false,
        default: r#"`https://api.stripe.com`"#,
        meaning: r#"where the Stripe API lives"#,
    },
];

/// Variables of the build and test tools, never of the server: not typos.
const TOOLING: &[&str] = &[
    "ENCLAVE_TEST_DATABASE_URL",
    "ENCLAVE_TOOLS_CACHE",
    "ENCLAVE_MCP_PEERS",
    "ENCLAVE_PYTHON_PEERS",
    "ENCLAVE_WRITE_UPGRADE_FIXTURE",
];

const BEGIN: &str =
    "<!-- configuration reference: generated by `server config reference`; do not edit -->";
const END: &str = "<!-- end of the configuration reference -->";

/// The README's configuration reference, between its markers.
pub fn reference() -> String {
    let mut out = format!("{BEGIN}\n");
    let mut group = "";
    for s in SETTINGS {
        if s.group != group {
            group = s.group;
            let _ = write!(
                out,
                "\n#### {group}\n\n| variable | default | meaning |\n|---|---|---|\n"
            );
        }
        let file = if s.secret { " (`_FILE`)" } else { "" };
        let _ = writeln!(
            out,
            "| `{}`{file} | {} | {} |",
            s.name, s.default, s.meaning
        );
    }
    out.push('\n');
    out.push_str(END);
    out
}

/// The reference as it stands in `readme` (between the markers), if any.
pub fn reference_in(readme: &str) -> Option<&str> {
    let start = readme.find(BEGIN)?;
    let end = readme[start..].find(END)? + start + END.len();
    Some(&readme[start..end])
}

/// Where a setting's value came from.
#[derive(Debug, PartialEq, Eq)]
pub enum Origin {
    Environment,
    File(String),
    Default,
}

/// One line of `config check`: the setting, what is in force (a secret's
/// value is never shown), and where it came from.
pub fn in_force(src: &dyn Source, s: &Setting) -> (String, Origin) {
    let hidden = "(set, hidden)".to_owned();
    if let Some(value) = src.get(s.name) {
        let shown = if s.secret { hidden } else { value };
        return (shown, Origin::Environment);
    }
    if s.secret
        && let Some(path) = src.get(&format!("{}_FILE", s.name))
    {
        return (hidden, Origin::File(path));
    }
    (s.default.replace('`', ""), Origin::Default)
}

/// Whether a master key is one nobody may trust with real data: made by
/// `make dev` (it starts with the development marker, or is the checkout's
/// `.data/master.key`), or one anyone could guess (every byte the same).
pub fn is_development_key(bytes: &[u8], file: Option<&str>) -> bool {
    bytes.starts_with(DEV_KEY_MARKER)
        || bytes.windows(2).all(|w| w[0] == w[1])
        || file.is_some_and(|f| f.ends_with("/.data/master.key") || f == ".data/master.key")
}

/// The first 16 bytes of every master key `make dev` makes.
pub const DEV_KEY_MARKER: &[u8] = b"enclave-dev-key:";

/// What production refuses, each with what to do instead (empty in
/// development, where all of it is allowed).
pub fn production_problems(src: &dyn Source, mode: Mode) -> Vec<ConfigError> {
    if mode != Mode::Production {
        return Vec::new();
    }
    // A value that is not a boolean is the server's own error to name.
    let on = |name: &'static str| parse(src, name, false).unwrap_or(false);
    let mut problems = Vec::new();
    if on("ENCLAVE_DEMO_MODEL") {
        problems.push(ConfigError::Invalid {
            name: "ENCLAVE_DEMO_MODEL",
            why: "the offline demo model is for development only; unset it in production".into(),
        });
    }
    if on("ENCLAVE_MAIL_CATCHER") {
        problems.push(ConfigError::Invalid {
            name: "ENCLAVE_MAIL_CATCHER",
            why: "the mail catcher is for development only; set ENCLAVE_SMTP_URL in production"
                .into(),
        });
    }
    let key = secret(src, "ENCLAVE_MASTER_KEY").ok().flatten();
    let from_file = match src.get("ENCLAVE_MASTER_KEY") {
        Some(_) => None,
        None => src.get("ENCLAVE_MASTER_KEY_FILE"),
    };
    if let Some(bytes) = key.and_then(|k| STANDARD.decode(k.trim()).ok())
        && is_development_key(&bytes, from_file.as_deref())
    {
        problems.push(ConfigError::Invalid {
            name: "ENCLAVE_MASTER_KEY",
            why: "it is a development key (made by make dev, or one anyone could guess); \
                  make a key with `server keys generate` and keep it apart from the checkout"
                .into(),
        });
    }
    let public_url = src.get("ENCLAVE_PUBLIC_URL").unwrap_or_default();
    if !public_url.trim().starts_with("https://") {
        problems.push(ConfigError::Invalid {
            name: "ENCLAVE_PUBLIC_URL",
            why: "production needs the https:// address people use (TLS from a reverse proxy): \
                  over http, passwords and session cookies cross the network readable"
                .into(),
        });
    }
    problems
}

/// `server config check`: every setting in force and where it came from,
/// variables that look like settings but are not, and what production
/// refuses. Returns whether the configuration may serve.
pub fn check(src: &dyn Source, environment: &[String], out: &mut String) -> bool {
    // An unknown mode is refused below, with the rest.
    let mode = crate::config::mode(src).unwrap_or(Mode::Development);
    let width = SETTINGS.iter().map(|s| s.name.len()).max().unwrap_or(0);
    for s in SETTINGS {
        let (value, origin) = in_force(src, s);
        let origin = match origin {
            Origin::Environment => "environment".to_owned(),
            Origin::File(path) => format!("file {path}"),
            Origin::Default => "default".to_owned(),
        };
        let _ = writeln!(out, "{:width$}  {value}  [{origin}]", s.name);
    }
    // Sign-in providers' own variables (ENCLAVE_OIDC_<ID>_...).
    let mut oidc: Vec<&String> = environment
        .iter()
        .filter(|n| n.starts_with("ENCLAVE_OIDC_") && *n != "ENCLAVE_OIDC_PROVIDERS")
        .collect();
    oidc.sort();
    for name in oidc {
        let secret = name.contains("SECRET");
        let value = if secret {
            "(set, hidden)".to_owned()
        } else {
            src.get(name).unwrap_or_default()
        };
        let _ = writeln!(out, "{name:width$}  {value}  [environment]");
    }
    let mut fine = true;
    let known = |name: &str| {
        SETTINGS
            .iter()
            .any(|s| s.name == name || (s.secret && name.strip_suffix("_FILE") == Some(s.name)))
            || name.starts_with("ENCLAVE_OIDC_")
            || TOOLING.contains(&name)
    };
    let mut unknown: Vec<&String> = environment
        .iter()
        .filter(|n| n.starts_with("ENCLAVE_") && !known(n))
        .collect();
    unknown.sort();
    for name in unknown {
        let _ = writeln!(
            out,
            "warning: {name} is not a setting Enclave reads (a typo?); it has no effect"
        );
    }
    match Config::from_source(src) {
        Ok(_) => {}
        Err(err) => {
            fine = false;
            let _ = writeln!(out, "error: {err}");
        }
    }
    // Every production refusal, not only the first the server would name.
    let problems = production_problems(src, mode);
    for problem in &problems {
        let message = format!("error: {problem}");
        if !out.contains(&message) {
            let _ = writeln!(out, "{message}");
        }
    }
    fine &= problems.is_empty();
    let _ = writeln!(
        out,
        "{}",
        match (fine, mode) {
            (true, Mode::Production) => "configuration OK for production",
            (true, Mode::Development) =>
                "configuration OK for development (ENCLAVE_ENV=production checks what production refuses)",
            (false, _) => "configuration NOT OK: the server would refuse to start",
        }
    );
    fine
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const KEY: &str = "q8Xr1m0yqzWw2QqE3Vq5hY9m7nKc2bqkq3Zc6cZb0dA=";

    fn production() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("ENCLAVE_ENV", "production"),
            (
                "ENCLAVE_DATABASE_URL",
                "postgres://enclave:db-canary-pw@db/enclave",
            ),
            ("ENCLAVE_MASTER_KEY", KEY),
            ("ENCLAVE_PUBLIC_URL", "https://enclave.example.com"),
        ])
    }

    fn names(env: &HashMap<&str, &str>) -> Vec<String> {
        env.keys().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn the_readme_reference_is_the_generated_one() {
        let readme = include_str!("../../README.md");
        let found = reference_in(readme).expect("README.md has the reference's markers");
        assert!(
            found == reference(),
            "README.md's configuration reference is out of date: replace it with the \
             output of `server config reference`"
        );
    }

    #[test]
    fn every_variable_the_configuration_reads_is_in_the_table() {
        let sources = [
            include_str!("config.rs"),
            include_str!("telemetry.rs"),
            include_str!("lib.rs"),
        ];
        let mut read = std::collections::BTreeSet::new();
        for source in sources {
            // The code, not its tests (which name variables that do not exist).
            let code = source.split("#[cfg(test)]").next().unwrap();
            for (i, _) in code
                .match_indices("\"ENCLAVE_")
                .chain(code.match_indices("\"LEPTOS_"))
            {
                let name: String = code[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_uppercase() || *c == '_')
                    .collect();
                // Prefixes of names made at run time (ENCLAVE_OIDC_<ID>_...).
                if !name.ends_with('_') {
                    read.insert(name);
                }
            }
        }
        assert!(read.len() > 40, "found only {read:?}");
        for name in &read {
            assert!(
                SETTINGS.iter().any(|s| s.name == name),
                "{name} is read but not in config_check::SETTINGS (nor the README)"
            );
        }
        for s in SETTINGS {
            assert!(
                read.contains(s.name),
                "{} is documented but never read",
                s.name
            );
        }
    }

    #[test]
    fn a_sound_production_configuration_passes_and_secrets_are_never_printed() {
        let mut env = production();
        env.insert("ENCLAVE_STRIPE_SECRET_KEY", "sk_live_canary_1d9f");
        env.insert("ENCLAVE_STRIPE_WEBHOOK_SECRET", "whsec_canary_2e8a");
        env.insert("ENCLAVE_BILLING", "credits");
        env.insert("ENCLAVE_OIDC_PROVIDERS", "google");
        env.insert("ENCLAVE_OIDC_GOOGLE_CLIENT_ID", "google-client-id");
        env.insert("ENCLAVE_OIDC_GOOGLE_CLIENT_SECRET", "oidc-canary-3c7b");
        env.insert("ENCLAVE_SESSION_TTL_HOURS", "48");
        let mut out = String::new();
        assert!(check(&env, &names(&env), &mut out), "{out}");
        assert!(out.contains("configuration OK for production"), "{out}");
        for secret in [
            KEY,
            "db-canary-pw",
            "sk_live_canary",
            "whsec_canary",
            "oidc-canary",
        ] {
            assert!(!out.contains(secret), "printed a secret: {out}");
        }
        let line = |name: &str| {
            out.lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("no line for {name}: {out}"))
                .to_owned()
        };
        assert!(line("ENCLAVE_SESSION_TTL_HOURS").contains("48  [environment]"));
        assert!(line("ENCLAVE_CHAT_LIMIT_PER_USER").contains("30  [default]"));
        assert!(line("ENCLAVE_MASTER_KEY").contains("(set, hidden)  [environment]"));
        assert!(line("ENCLAVE_OIDC_GOOGLE_CLIENT_ID").contains("google-client-id"));
        assert!(line("ENCLAVE_OIDC_GOOGLE_CLIENT_SECRET").contains("(set, hidden)"));
    }

    #[test]
    fn a_secret_from_a_file_says_which_file() {
        let dir = std::env::temp_dir().join(format!("enclave-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("master.key");
        std::fs::write(&path, KEY).unwrap();
        let path = path.to_string_lossy().into_owned();
        let mut env = production();
        env.remove("ENCLAVE_MASTER_KEY");
        env.insert("ENCLAVE_MASTER_KEY_FILE", &path);
        let mut out = String::new();
        assert!(check(&env, &names(&env), &mut out), "{out}");
        assert!(
            out.contains(&format!("(set, hidden)  [file {path}]")),
            "{out}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn production_refuses_every_unsafe_setting_and_names_them_all() {
        let dev_key = STANDARD.encode([DEV_KEY_MARKER, &[9u8; 16]].concat());
        let mut env = production();
        env.insert("ENCLAVE_DEMO_MODEL", "true");
        env.insert("ENCLAVE_MAIL_CATCHER", "true");
        env.insert("ENCLAVE_MASTER_KEY", &dev_key);
        env.insert("ENCLAVE_PUBLIC_URL", "http://enclave.example.com");
        env.insert("ENCLAVE_SMPT_URL", "smtp://typo");
        let mut out = String::new();
        assert!(!check(&env, &names(&env), &mut out));
        for name in [
            "error: ENCLAVE_DEMO_MODEL is invalid",
            "error: ENCLAVE_MAIL_CATCHER is invalid",
            "error: ENCLAVE_MASTER_KEY is invalid: it is a development key",
            "error: ENCLAVE_PUBLIC_URL is invalid: production needs the https://",
            "warning: ENCLAVE_SMPT_URL is not a setting",
            "configuration NOT OK",
        ] {
            assert!(out.contains(name), "{name} missing from:\n{out}");
        }
        // Each listed once, though the server itself names the first.
        assert_eq!(
            out.matches("ENCLAVE_DEMO_MODEL is invalid").count(),
            1,
            "{out}"
        );
        assert!(!out.contains(&dev_key), "{out}");
        // The server refuses to start with the first of them.
        let err = Config::from_source(&env).err().unwrap();
        assert!(err.to_string().contains("ENCLAVE_DEMO_MODEL"), "{err}");
        // A guessable key, and make dev's key file, are development keys too.
        let guessable = STANDARD.encode([7u8; 32]);
        let mut weak = production();
        weak.insert("ENCLAVE_MASTER_KEY", &guessable);
        assert!(Config::from_source(&weak).is_err());
        assert!(is_development_key(
            &[1, 2, 3],
            Some("/home/me/enclave/.data/master.key")
        ));
        assert!(!is_development_key(
            &STANDARD.decode(KEY).unwrap(),
            Some("/etc/enclave/master.key")
        ));
        // Development allows all of it.
        env.insert("ENCLAVE_ENV", "development");
        let mut out = String::new();
        assert!(check(&env, &names(&env), &mut out), "{out}");
        assert!(out.contains("configuration OK for development"), "{out}");
    }
}
