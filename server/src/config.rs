//! Server configuration from `ENCLAVE_*` environment variables. Every secret can
//! also come from a file (`NAME_FILE`), which is how container secrets arrive.
//! Errors name the variable and what is wrong with it, never its value.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, time::Duration};

use app::{
    agents::domain::{Provider, valid_base_url},
    platform::{
        Settings,
        crypto::{Kek, Keyring},
        egress::AllowEntry,
        settings::{Limit, OidcProvider, PlatformKeys, ProviderUrls, ServiceUrls},
    },
};
use base64::{Engine as _, engine::general_purpose::STANDARD};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Development,
    Production,
}

#[derive(Clone)]
pub struct Config {
    pub mode: Mode,
    pub addr: Option<SocketAddr>,
    pub database_url: String,
    pub public_url: String,
    /// The master keys: the current one and any still accepted during a rotation.
    pub keyring: Keyring,
    pub settings: Settings,
    pub log_json: bool,
    /// Serve the offline demo model (development only).
    pub demo_model: bool,
    /// Where Prometheus metrics are served, if anywhere.
    pub metrics: crate::metrics::MetricsConfig,
}

/// The database URL may hold a password, so `Debug` leaves it out.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("mode", &self.mode)
            .field("addr", &self.addr)
            .field("database_url", &"<redacted>")
            .field("public_url", &self.public_url)
            .field("keyring", &self.keyring)
            .field("settings", &self.settings)
            .field("log_json", &self.log_json)
            .field("demo_model", &self.demo_model)
            .field("metrics", &self.metrics)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{0} is not set. {1}")]
    Missing(&'static str, &'static str),
    #[error("{name} is invalid: {why}")]
    Invalid { name: &'static str, why: String },
    #[error("could not read {name} from {path}: {why}")]
    File {
        name: String,
        path: PathBuf,
        why: String,
    },
}

/// Where variables come from: the process environment, or a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

pub struct Env;

impl Source for Env {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Source for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).map(|v| (*v).to_owned())
    }
}

/// A value from `NAME`, or from the file named by `NAME_FILE`.
pub(crate) fn secret(src: &dyn Source, name: &str) -> Result<Option<String>, ConfigError> {
    if let Some(value) = src.get(name) {
        return Ok(Some(value));
    }
    let file_var = format!("{name}_FILE");
    match src.get(&file_var) {
        None => Ok(None),
        Some(path) => std::fs::read_to_string(&path)
            .map(|v| Some(v.trim().to_owned()))
            .map_err(|e| ConfigError::File {
                name: file_var,
                path: path.into(),
                why: e.kind().to_string(),
            }),
    }
}

pub(crate) fn parse<T: std::str::FromStr>(
    src: &dyn Source,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match src.get(name) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|_| ConfigError::Invalid {
            name,
            why: format!("could not read {raw:?} as a {}", std::any::type_name::<T>()),
        }),
    }
}

/// An amount of money as the operator writes it ("5", "2.50") in
/// micro-units; at most six decimals, never negative.
fn money(name: &'static str, raw: &str) -> Result<i64, ConfigError> {
    app::usage::parse_amount(raw).ok_or_else(|| ConfigError::Invalid {
        name,
        why: format!("{raw:?} is not an amount like 5 or 2.50"),
    })
}

/// How model calls are paid for: `ENCLAVE_BILLING` (`unlimited`, `quotas`
/// or `credits`) and the settings of each mode.
fn billing(src: &dyn Source) -> Result<app::platform::settings::Billing, ConfigError> {
    use app::platform::settings::{
        Billing, BillingMode, QuotaPeriod, QuotaUnit, Quotas, Settings, Stripe,
    };
    let defaults = Settings::default().billing;
    let currency = src
        .get("ENCLAVE_CURRENCY")
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or(defaults.currency);
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(ConfigError::Invalid {
            name: "ENCLAVE_CURRENCY",
            why: format!("{currency:?} is not a three-letter ISO code such as usd or eur"),
        });
    }
    let mode = match src.get("ENCLAVE_BILLING").as_deref().map(str::trim) {
        None | Some("unlimited") => BillingMode::Unlimited,
        Some("credits") => BillingMode::Credits,
        Some("quotas") => {
            let period = match src.get("ENCLAVE_QUOTA_PERIOD").as_deref().map(str::trim) {
                None | Some("month") => QuotaPeriod::Month,
                Some("day") => QuotaPeriod::Day,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        name: "ENCLAVE_QUOTA_PERIOD",
                        why: format!("{other:?} is neither \"day\" nor \"month\""),
                    });
                }
            };
            let unit = match src.get("ENCLAVE_QUOTA_UNIT").as_deref().map(str::trim) {
                None | Some("tokens") => QuotaUnit::Tokens,
                Some("cost") => QuotaUnit::Cost,
                Some(other) => {
                    return Err(ConfigError::Invalid {
                        name: "ENCLAVE_QUOTA_UNIT",
                        why: format!("{other:?} is neither \"tokens\" nor \"cost\""),
                    });
                }
            };
            let limit = |name: &'static str| -> Result<Option<u64>, ConfigError> {
                let Some(raw) = src.get(name) else {
                    return Ok(None);
                };
                let value = match unit {
                    QuotaUnit::Tokens => {
                        raw.trim()
                            .parse::<u64>()
                            .map_err(|_| ConfigError::Invalid {
                                name,
                                why: format!("{raw:?} is not a number of tokens"),
                            })?
                    }
                    QuotaUnit::Cost => money(name, &raw)? as u64,
                };
                Ok(Some(value))
            };
            let quotas = Quotas {
                period,
                unit,
                per_user: limit("ENCLAVE_QUOTA_PER_USER")?,
                per_team: limit("ENCLAVE_QUOTA_PER_TEAM")?,
            };
            if quotas.per_user.is_none() && quotas.per_team.is_none() {
                return Err(ConfigError::Invalid {
                    name: "ENCLAVE_BILLING",
                    why: "quotas need ENCLAVE_QUOTA_PER_USER or ENCLAVE_QUOTA_PER_TEAM".into(),
                });
            }
            BillingMode::Quotas(quotas)
        }
        Some(other) => {
            return Err(ConfigError::Invalid {
                name: "ENCLAVE_BILLING",
                why: format!("{other:?} is not \"unlimited\", \"quotas\" or \"credits\""),
            });
        }
    };
    let secret_key = secret(src, "ENCLAVE_STRIPE_SECRET_KEY")?;
    let webhook_secret = secret(src, "ENCLAVE_STRIPE_WEBHOOK_SECRET")?;
    let stripe = match (secret_key, webhook_secret) {
        (None, None) => None,
        (Some(secret_key), Some(webhook_secret)) => {
            if mode != BillingMode::Credits {
                return Err(ConfigError::Invalid {
                    name: "ENCLAVE_STRIPE_SECRET_KEY",
                    why: "card payments buy credits: set ENCLAVE_BILLING=credits too".into(),
                });
            }
            let api_url = src
                .get("ENCLAVE_STRIPE_API_URL")
                .unwrap_or_else(|| "https://api.stripe.com".to_owned());
            if !api_url.starts_with("https://") && !api_url.starts_with("http://") {
                return Err(ConfigError::Invalid {
                    name: "ENCLAVE_STRIPE_API_URL",
                    why: "it must be an http(s) address".into(),
                });
            }
            Some(Stripe {
                api_url,
                secret_key,
                webhook_secret,
            })
        }
        (Some(_), None) => {
            return Err(ConfigError::Missing(
                "ENCLAVE_STRIPE_WEBHOOK_SECRET",
                "Card payments need the webhook's signing secret (whsec_...) too.",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::Missing(
                "ENCLAVE_STRIPE_SECRET_KEY",
                "Card payments need the Stripe secret key (sk_...) too.",
            ));
        }
    };
    let top_ups = match src.get("ENCLAVE_CREDIT_TOP_UPS") {
        None => defaults.top_ups,
        Some(raw) => raw
            .split(',')
            .map(|a| money("ENCLAVE_CREDIT_TOP_UPS", a))
            .collect::<Result<Vec<_>, _>>()?,
    };
    Ok(Billing {
        mode,
        charge_own_keys: parse(src, "ENCLAVE_BILLING_CHARGE_OWN_KEYS", false)?,
        currency,
        stripe,
        top_ups,
    })
}

/// A retention period in days: 1 to 100 years' worth.
fn days(src: &dyn Source, name: &'static str, default: u32) -> Result<u32, ConfigError> {
    let value: u32 = parse(src, name, default)?;
    if !(1..=36_500).contains(&value) {
        return Err(ConfigError::Invalid {
            name,
            why: format!("{value} days is not between 1 and 36500"),
        });
    }
    Ok(value)
}

/// One base64 master key, checked. Errors name `name`, never the value.
fn parse_kek(name: &'static str, encoded: &str) -> Result<Kek, ConfigError> {
    let invalid = |why: String| ConfigError::Invalid { name, why };
    let bytes = STANDARD.decode(encoded.trim()).map_err(|_| {
        invalid("it is not base64 (create a key with `server keys generate`)".into())
    })?;
    if bytes.len() != 32 {
        return Err(invalid(format!(
            "it decodes to {} bytes; it must be exactly 32",
            bytes.len()
        )));
    }
    Kek::from_bytes(&bytes).map_err(|e| invalid(e.to_string()))
}

/// The current master key and the previous ones still accepted (a rotation
/// in progress): `ENCLAVE_PREVIOUS_MASTER_KEYS` is a comma- or line-separated list.
fn keyring(src: &dyn Source) -> Result<Keyring, ConfigError> {
    let current = secret(src, "ENCLAVE_MASTER_KEY")?.ok_or(ConfigError::Missing(
        "ENCLAVE_MASTER_KEY",
        "Enclave encrypts everything users store and needs its master key: set \
         ENCLAVE_MASTER_KEY to 32 random bytes in base64 (`server keys generate` \
         makes one), or ENCLAVE_MASTER_KEY_FILE to a file holding it.",
    ))?;
    let current = parse_kek("ENCLAVE_MASTER_KEY", &current)?;
    let previous = secret(src, "ENCLAVE_PREVIOUS_MASTER_KEYS")?
        .unwrap_or_default()
        .split([',', '\n'])
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| parse_kek("ENCLAVE_PREVIOUS_MASTER_KEYS", k))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Keyring::new(current, previous))
}

/// `ENCLAVE_EGRESS_ALLOW`: comma-separated `host:port` entries.
fn egress_allow(src: &dyn Source) -> Result<Vec<AllowEntry>, ConfigError> {
    src.get("ENCLAVE_EGRESS_ALLOW")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|entry| {
            AllowEntry::parse(entry).ok_or_else(|| ConfigError::Invalid {
                name: "ENCLAVE_EGRESS_ALLOW",
                why: format!("{entry:?} is not host:port, like 127.0.0.1:11434"),
            })
        })
        .collect()
}

fn provider_urls(src: &dyn Source) -> Result<ProviderUrls, ConfigError> {
    let defaults = ProviderUrls::default();
    let url = |name: &'static str, default: String| -> Result<String, ConfigError> {
        let value = src.get(name).unwrap_or(default);
        valid_base_url(&value).map_err(|why| ConfigError::Invalid { name, why })?;
        Ok(value.trim_end_matches('/').to_owned())
    };
    Ok(ProviderUrls {
        openai: url("ENCLAVE_OPENAI_BASE_URL", defaults.openai)?,
        anthropic: url("ENCLAVE_ANTHROPIC_BASE_URL", defaults.anthropic)?,
        google: url("ENCLAVE_GOOGLE_BASE_URL", defaults.google)?,
    })
}

fn service_urls(src: &dyn Source) -> Result<ServiceUrls, ConfigError> {
    let defaults = ServiceUrls::default();
    let url = |name: &'static str, default: String| -> Result<String, ConfigError> {
        let value = src.get(name).unwrap_or(default);
        valid_base_url(&value).map_err(|why| ConfigError::Invalid { name, why })?;
        Ok(value.trim_end_matches('/').to_owned())
    };
    Ok(ServiceUrls {
        github: url("ENCLAVE_GITHUB_API_URL", defaults.github)?,
        slack: url("ENCLAVE_SLACK_API_URL", defaults.slack)?,
        telegram: url("ENCLAVE_TELEGRAM_API_URL", defaults.telegram)?,
        telegram_webhook: src
            .get("ENCLAVE_TELEGRAM_WEBHOOK_URL")
            .map(|value| {
                valid_base_url(&value).map_err(|why| ConfigError::Invalid {
                    name: "ENCLAVE_TELEGRAM_WEBHOOK_URL",
                    why,
                })?;
                Ok::<_, ConfigError>(value.trim_end_matches('/').to_owned())
            })
            .transpose()?,
    })
}

/// Keys the operator provides for everyone: `ENCLAVE_<PROVIDER>_API_KEY(_FILE)`.
fn platform_keys(src: &dyn Source) -> Result<PlatformKeys, ConfigError> {
    let mut keys = std::collections::HashMap::new();
    for (provider, name) in [
        (Provider::Openai, "ENCLAVE_OPENAI_API_KEY"),
        (Provider::Anthropic, "ENCLAVE_ANTHROPIC_API_KEY"),
        (Provider::Google, "ENCLAVE_GOOGLE_API_KEY"),
    ] {
        if let Some(key) = secret(src, name)? {
            keys.insert(provider, key.trim().to_owned());
        }
    }
    Ok(PlatformKeys::new(keys))
}

/// `ENCLAVE_SMTP_CA_FILE`: extra certificate authorities (PEM) trusted for
/// users' mail servers.
fn smtp_roots(src: &dyn Source) -> Result<Vec<Vec<u8>>, ConfigError> {
    let Some(path) = src.get("ENCLAVE_SMTP_CA_FILE") else {
        return Ok(Vec::new());
    };
    let pem = std::fs::read(&path).map_err(|e| ConfigError::File {
        name: "ENCLAVE_SMTP_CA_FILE".into(),
        path: path.clone().into(),
        why: e.kind().to_string(),
    })?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(ConfigError::Invalid {
            name: "ENCLAVE_SMTP_CA_FILE",
            why: "it holds no PEM certificate".into(),
        });
    }
    Ok(vec![pem])
}

/// Sign-in providers: `ENCLAVE_OIDC_PROVIDERS=google,corp`, then for each
/// id `ENCLAVE_OIDC_<ID>_CLIENT_ID`, `_CLIENT_SECRET` (or `_FILE`),
/// `_ISSUER` (Google's is known) and `_NAME` (the button's label).
fn oidc_providers(src: &dyn Source) -> Result<Vec<OidcProvider>, ConfigError> {
    const NAME: &str = "ENCLAVE_OIDC_PROVIDERS";
    let Some(list) = src.get(NAME) else {
        return Ok(Vec::new());
    };
    let mut providers = Vec::new();
    for id in list.split(',').map(str::trim).filter(|id| !id.is_empty()) {
        let id = id.to_ascii_lowercase();
        if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') || id.len() > 32 {
            return Err(ConfigError::Invalid {
                name: NAME,
                why: format!("{id:?} is not a provider id (letters, digits and -)"),
            });
        }
        let var = |suffix: &str| {
            format!(
                "ENCLAVE_OIDC_{}_{suffix}",
                id.to_ascii_uppercase().replace('-', "_")
            )
        };
        let missing = |suffix: &str| ConfigError::Invalid {
            name: NAME,
            why: format!("{} is not set", var(suffix)),
        };
        let issuer = match src.get(&var("ISSUER")) {
            Some(issuer) => issuer,
            None if id == "google" => "https://accounts.google.com".to_owned(),
            None => return Err(missing("ISSUER")),
        };
        if url::Url::parse(&issuer).is_err() {
            return Err(ConfigError::Invalid {
                name: NAME,
                why: format!("{} is not a URL", var("ISSUER")),
            });
        }
        let client_id = src
            .get(&var("CLIENT_ID"))
            .ok_or_else(|| missing("CLIENT_ID"))?;
        let client_secret =
            secret(src, &var("CLIENT_SECRET"))?.ok_or_else(|| missing("CLIENT_SECRET"))?;
        let name = src.get(&var("NAME")).unwrap_or_else(|| {
            if id == "google" {
                "Google".to_owned()
            } else {
                id.clone()
            }
        });
        providers.push(OidcProvider {
            id,
            name,
            issuer: issuer.trim_end_matches('/').to_owned(),
            client_id,
            client_secret,
        });
    }
    Ok(providers)
}

/// Where Enclave's own mail goes: `ENCLAVE_SMTP_URL` (`_FILE`; it may hold
/// the password), from `ENCLAVE_MAIL_FROM`; else, with
/// `ENCLAVE_MAIL_CATCHER=true` (development only), the in-memory catcher
/// behind `/dev/mail`; else nowhere (mail jobs end saying so).
fn mailer(
    src: &dyn Source,
    mode: Mode,
    roots: &[Vec<u8>],
) -> Result<app::platform::mail::Mailer, ConfigError> {
    use app::platform::mail::Mailer;
    let from = src
        .get("ENCLAVE_MAIL_FROM")
        .unwrap_or_else(|| "Enclave <enclave@localhost>".to_owned());
    // Production refuses the catcher (`config_check::production_problems`).
    let catcher = parse(src, "ENCLAVE_MAIL_CATCHER", false)? && mode == Mode::Development;
    match secret(src, "ENCLAVE_SMTP_URL")? {
        Some(url) => Mailer::smtp(&url, &from, roots).map_err(|why| ConfigError::Invalid {
            name: "ENCLAVE_SMTP_URL",
            why,
        }),
        None if catcher => Mailer::catcher(&from).map_err(|why| ConfigError::Invalid {
            name: "ENCLAVE_MAIL_FROM",
            why,
        }),
        None => Ok(Mailer::Off),
    }
}

/// `ENCLAVE_PROXY_HOPS`: how many proxies append to `X-Forwarded-For`.
/// `ENCLAVE_TRUST_FORWARDED_FOR=true` (the older switch) means one.
fn proxy_hops(src: &dyn Source) -> Result<u8, ConfigError> {
    match src.get("ENCLAVE_PROXY_HOPS") {
        Some(_) => parse(src, "ENCLAVE_PROXY_HOPS", 0u8),
        None => Ok(u8::from(parse(src, "ENCLAVE_TRUST_FORWARDED_FOR", false)?)),
    }
}

/// `ENCLAVE_METRICS_ADDR` (an address of their own) and
/// `ENCLAVE_METRICS_TOKEN` (`_FILE`; `/metrics` on the main address with it
/// as a bearer token). Neither: no metrics.
fn metrics(src: &dyn Source) -> Result<crate::metrics::MetricsConfig, ConfigError> {
    let addr = match src.get("ENCLAVE_METRICS_ADDR") {
        None => None,
        Some(raw) => Some(raw.trim().parse().map_err(|_| ConfigError::Invalid {
            name: "ENCLAVE_METRICS_ADDR",
            why: format!("{raw:?} is not an address like 127.0.0.1:9464"),
        })?),
    };
    let token = secret(src, "ENCLAVE_METRICS_TOKEN")?.map(|t| t.trim().to_owned());
    if let Some(token) = &token
        && token.chars().count() < 16
    {
        return Err(ConfigError::Invalid {
            name: "ENCLAVE_METRICS_TOKEN",
            why: "it must be at least 16 characters (`openssl rand -hex 24` makes one)".into(),
        });
    }
    Ok(crate::metrics::MetricsConfig { addr, token })
}

/// `ENCLAVE_ENV`: development unless it says production.
pub(crate) fn mode(src: &dyn Source) -> Result<Mode, ConfigError> {
    match src.get("ENCLAVE_ENV").as_deref() {
        None | Some("development") | Some("dev") => Ok(Mode::Development),
        Some("production") | Some("prod") => Ok(Mode::Production),
        Some(other) => Err(ConfigError::Invalid {
            name: "ENCLAVE_ENV",
            why: format!("{other:?} is neither \"development\" nor \"production\""),
        }),
    }
}

/// A whole number of at least 1.
fn positive(src: &dyn Source, name: &'static str, default: u64) -> Result<u64, ConfigError> {
    let value = parse(src, name, default)?;
    if value == 0 {
        return Err(ConfigError::Invalid {
            name,
            why: "it must be at least 1".into(),
        });
    }
    Ok(value)
}

/// This process's name by default: the host name and the port it listens on.
fn default_instance(addr: Option<SocketAddr>) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "enclave".to_owned());
    format!("{host}:{}", addr.map_or(3000, |a| a.port()))
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&Env)
    }

    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let mode = mode(src)?;
        // Only our own variable: a generic DATABASE_URL left in a shell may
        // name another project's database, which startup would migrate.
        let database_url = secret(src, "ENCLAVE_DATABASE_URL")?.ok_or(ConfigError::Missing(
            "ENCLAVE_DATABASE_URL",
            "Set it to a PostgreSQL URL such as postgres://user@host/enclave \
             (DATABASE_URL is not read).",
        ))?;
        let keyring = keyring(src)?;
        // What production refuses (the demo model, the mail catcher, a
        // development master key, an http public URL): the first of them.
        if let Some(problem) = crate::config_check::production_problems(src, mode)
            .into_iter()
            .next()
        {
            return Err(problem);
        }
        let addr = match src.get("ENCLAVE_ADDR") {
            None => None,
            Some(raw) => Some(raw.parse().map_err(|_| ConfigError::Invalid {
                name: "ENCLAVE_ADDR",
                why: format!("{raw:?} is not an address like 127.0.0.1:3000"),
            })?),
        };
        let public_url = src
            .get("ENCLAVE_PUBLIC_URL")
            .unwrap_or_else(|| "http://127.0.0.1:3000".to_owned());
        let secure_cookies = if public_url.starts_with("https://") {
            true
        } else if public_url.starts_with("http://") {
            false
        } else {
            return Err(ConfigError::Invalid {
                name: "ENCLAVE_PUBLIC_URL",
                why: "it must start with https:// or http://".into(),
            });
        };
        let defaults = Settings::default();
        let hours = parse(
            src,
            "ENCLAVE_SESSION_TTL_HOURS",
            defaults.session_ttl.as_secs() / 3600,
        )?;
        if hours == 0 {
            return Err(ConfigError::Invalid {
                name: "ENCLAVE_SESSION_TTL_HOURS",
                why: "it must be at least 1".into(),
            });
        }
        let smtp_roots = smtp_roots(src)?;
        let mailer = mailer(src, mode, &smtp_roots)?;
        let settings = Settings {
            public_url: public_url.trim_end_matches('/').to_owned(),
            secure_cookies,
            session_ttl: Duration::from_secs(hours * 3600),
            sign_in_per_ip: Limit {
                max: parse(
                    src,
                    "ENCLAVE_SIGN_IN_LIMIT_PER_IP",
                    defaults.sign_in_per_ip.max,
                )?,
                ..defaults.sign_in_per_ip
            },
            sign_in_per_account: Limit {
                max: parse(
                    src,
                    "ENCLAVE_SIGN_IN_LIMIT_PER_ACCOUNT",
                    defaults.sign_in_per_account.max,
                )?,
                ..defaults.sign_in_per_account
            },
            sign_up_per_ip: Limit {
                max: parse(
                    src,
                    "ENCLAVE_SIGN_UP_LIMIT_PER_IP",
                    defaults.sign_up_per_ip.max,
                )?,
                ..defaults.sign_up_per_ip
            },
            proxy_hops: proxy_hops(src)?,
            chat_sends_per_user: Limit::new(
                parse(
                    src,
                    "ENCLAVE_CHAT_LIMIT_PER_USER",
                    defaults.chat_sends_per_user.max,
                )?,
                60,
            ),
            key_tests_per_user: Limit::new(
                parse(
                    src,
                    "ENCLAVE_KEY_TEST_LIMIT_PER_USER",
                    defaults.key_tests_per_user.max,
                )?,
                60,
            ),
            api_requests_per_key: Limit::new(
                parse(
                    src,
                    "ENCLAVE_API_LIMIT_PER_KEY",
                    defaults.api_requests_per_key.max,
                )?,
                60,
            ),
            run_deadline: Duration::from_secs(
                60 * positive(
                    src,
                    "ENCLAVE_RUN_DEADLINE_MINUTES",
                    defaults.run_deadline.as_secs() / 60,
                )?,
            ),
            provider_timeout: Duration::from_secs(positive(
                src,
                "ENCLAVE_PROVIDER_TIMEOUT_SECS",
                defaults.provider_timeout.as_secs(),
            )?),
            max_reply_bytes: defaults.max_reply_bytes,
            instance: src
                .get("ENCLAVE_INSTANCE")
                .unwrap_or_else(|| default_instance(addr)),
            tool_timeout: Duration::from_secs(positive(
                src,
                "ENCLAVE_TOOL_TIMEOUT_SECS",
                defaults.tool_timeout.as_secs(),
            )?),
            smtp_roots,
            egress_allow: egress_allow(src)?,
            provider_urls: provider_urls(src)?,
            service_urls: service_urls(src)?,
            platform_keys: platform_keys(src)?,
            demo_url: None,
            mailer,
            require_verified_email: parse(src, "ENCLAVE_REQUIRE_VERIFIED_EMAIL", false)?,
            oidc_providers: oidc_providers(src)?,
            retention: app::platform::settings::Retention {
                conversation_days: days(
                    src,
                    "ENCLAVE_CONVERSATION_RETENTION_DAYS",
                    defaults.retention.conversation_days,
                )?,
                activity_days: days(
                    src,
                    "ENCLAVE_ACTIVITY_RETENTION_DAYS",
                    defaults.retention.activity_days,
                )?,
                deletion_grace_days: days(
                    src,
                    "ENCLAVE_DELETION_GRACE_DAYS",
                    defaults.retention.deletion_grace_days,
                )?,
            },
            billing: billing(src)?,
        };
        if settings.require_verified_email
            && matches!(settings.mailer, app::platform::mail::Mailer::Off)
        {
            return Err(ConfigError::Invalid {
                name: "ENCLAVE_REQUIRE_VERIFIED_EMAIL",
                why: "nobody could confirm an address without mail: set ENCLAVE_SMTP_URL too"
                    .into(),
            });
        }
        // Production refuses it (`config_check::production_problems`).
        let demo_model = parse(src, "ENCLAVE_DEMO_MODEL", false)? && mode == Mode::Development;
        Ok(Config {
            mode,
            addr,
            database_url,
            public_url,
            keyring,
            settings,
            log_json: src.get("ENCLAVE_LOG_FORMAT").as_deref() == Some("json"),
            demo_model,
            metrics: metrics(src)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY_B: &str = "HxwdHhsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=";

    fn base() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("ENCLAVE_DATABASE_URL", "postgres://localhost/enclave"),
            ("ENCLAVE_MASTER_KEY", KEY_A),
        ])
    }

    #[test]
    fn without_master_key_the_server_says_what_is_missing() {
        for env_mode in ["production", "development"] {
            let mut env = base();
            env.remove("ENCLAVE_MASTER_KEY");
            env.insert("ENCLAVE_ENV", env_mode);
            let err = Config::from_source(&env).unwrap_err();
            assert!(
                err.to_string().contains("ENCLAVE_MASTER_KEY is not set"),
                "{err}"
            );
            assert!(err.to_string().contains("ENCLAVE_MASTER_KEY_FILE"), "{err}");
        }
    }

    #[test]
    fn master_key_must_be_32_bytes_of_base64_and_is_never_echoed() {
        let mut env = base();
        env.insert("ENCLAVE_MASTER_KEY", "c2hvcnQta2V5"); // "short-key"
        let err = Config::from_source(&env).unwrap_err();
        assert!(err.to_string().contains("9 bytes"), "{err}");
        assert!(!err.to_string().contains("c2hvcnQta2V5"), "{err}");

        env.insert("ENCLAVE_MASTER_KEY", "not base64 at all!");
        let err = Config::from_source(&env).unwrap_err();
        assert!(!err.to_string().contains("not base64 at all"), "{err}");

        env.insert("ENCLAVE_MASTER_KEY", KEY_A);
        let config = Config::from_source(&env).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("AAECAwQF"), "{debug}");
        assert!(!debug.contains("postgres://"), "{debug}");
    }

    #[test]
    fn master_key_can_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("enclave-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("master.key");
        std::fs::write(&path, format!("{KEY_B}\n")).unwrap();
        let path = path.to_string_lossy().into_owned();
        let mut env = base();
        env.remove("ENCLAVE_MASTER_KEY");
        env.insert("ENCLAVE_ENV", "production");
        env.insert("ENCLAVE_PUBLIC_URL", "https://enclave.example.com");
        env.insert("ENCLAVE_MASTER_KEY_FILE", &path);
        let config = Config::from_source(&env).unwrap();
        let expected = Kek::from_bytes(&STANDARD.decode(KEY_B).unwrap()).unwrap();
        assert_eq!(config.keyring.current_id(), expected.id());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn previous_master_keys_are_accepted_during_rotation() {
        let mut env = base();
        env.insert("ENCLAVE_PREVIOUS_MASTER_KEYS", KEY_B);
        let config = Config::from_source(&env).unwrap();
        let a = Kek::from_bytes(&STANDARD.decode(KEY_A).unwrap()).unwrap();
        let b = Kek::from_bytes(&STANDARD.decode(KEY_B).unwrap()).unwrap();
        assert_eq!(config.keyring.current_id(), a.id());
        assert!(config.keyring.knows(b.id()));

        env.insert("ENCLAVE_PREVIOUS_MASTER_KEYS", "bad");
        let err = Config::from_source(&env).unwrap_err();
        assert!(
            err.to_string().contains("ENCLAVE_PREVIOUS_MASTER_KEYS"),
            "{err}"
        );
    }

    #[test]
    fn egress_allowlist_and_platform_keys_are_read_and_keys_never_printed() {
        let mut env = base();
        env.insert("ENCLAVE_EGRESS_ALLOW", "127.0.0.1:11434, ollama:11434");
        env.insert("ENCLAVE_ANTHROPIC_API_KEY", "sk-ant-canary-platform");
        let config = Config::from_source(&env).unwrap();
        assert_eq!(config.settings.egress_allow.len(), 2);
        assert!(config.settings.platform_keys.has(Provider::Anthropic));
        assert!(!config.settings.platform_keys.has(Provider::Openai));
        assert!(!format!("{config:?}").contains("canary"));

        env.insert("ENCLAVE_EGRESS_ALLOW", "127.0.0.1");
        let err = Config::from_source(&env).unwrap_err();
        assert!(err.to_string().contains("ENCLAVE_EGRESS_ALLOW"), "{err}");
    }

    #[test]
    fn the_demo_model_is_refused_in_production() {
        let mut env = base();
        env.insert("ENCLAVE_DEMO_MODEL", "true");
        assert!(Config::from_source(&env).unwrap().demo_model);
        env.insert("ENCLAVE_ENV", "production");
        let err = Config::from_source(&env).unwrap_err();
        assert!(err.to_string().contains("ENCLAVE_DEMO_MODEL"), "{err}");
    }

    #[test]
    fn sign_in_providers_are_read_with_google_known_and_secrets_hidden() {
        let mut env = base();
        env.insert("ENCLAVE_OIDC_PROVIDERS", "google, corp-sso");
        env.insert("ENCLAVE_OIDC_GOOGLE_CLIENT_ID", "g-id");
        env.insert("ENCLAVE_OIDC_GOOGLE_CLIENT_SECRET", "g-secret-canary");
        let err = Config::from_source(&env).unwrap_err();
        assert!(
            err.to_string().contains("ENCLAVE_OIDC_CORP_SSO_ISSUER"),
            "{err}"
        );
        env.insert(
            "ENCLAVE_OIDC_CORP_SSO_ISSUER",
            "https://sso.example.com/realms/x/",
        );
        env.insert("ENCLAVE_OIDC_CORP_SSO_CLIENT_ID", "c-id");
        let err = Config::from_source(&env).unwrap_err();
        assert!(
            err.to_string()
                .contains("ENCLAVE_OIDC_CORP_SSO_CLIENT_SECRET"),
            "{err}"
        );
        env.insert("ENCLAVE_OIDC_CORP_SSO_CLIENT_SECRET", "c-secret-canary");
        env.insert("ENCLAVE_OIDC_CORP_SSO_NAME", "Staff SSO");
        let config = Config::from_source(&env).unwrap();
        let p = &config.settings.oidc_providers;
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].id.as_str(), p[0].name.as_str()), ("google", "Google"));
        assert_eq!(p[0].issuer, "https://accounts.google.com");
        assert_eq!(p[1].issuer, "https://sso.example.com/realms/x");
        assert_eq!(p[1].name, "Staff SSO");
        assert!(!format!("{config:?}").contains("secret-canary"));
        env.insert("ENCLAVE_OIDC_PROVIDERS", "bad id!");
        assert!(Config::from_source(&env).is_err());
    }

    #[test]
    fn retention_periods_default_to_the_policy_and_are_checked() {
        let mut env = base();
        let config = Config::from_source(&env).unwrap();
        assert_eq!(
            config.settings.retention,
            app::platform::settings::Retention {
                conversation_days: 90,
                activity_days: 90,
                deletion_grace_days: 30,
            }
        );
        env.insert("ENCLAVE_CONVERSATION_RETENTION_DAYS", "30");
        env.insert("ENCLAVE_DELETION_GRACE_DAYS", "14");
        let retention = Config::from_source(&env).unwrap().settings.retention;
        assert_eq!(
            (retention.conversation_days, retention.deletion_grace_days),
            (30, 14)
        );
        for bad in ["0", "-3", "forever", "36501"] {
            env.insert("ENCLAVE_ACTIVITY_RETENTION_DAYS", bad);
            let err = Config::from_source(&env).unwrap_err();
            assert!(
                err.to_string().contains("ENCLAVE_ACTIVITY_RETENTION_DAYS"),
                "{err}"
            );
        }
    }

    #[test]
    fn requiring_a_verified_email_needs_mail() {
        let mut env = base();
        env.insert("ENCLAVE_REQUIRE_VERIFIED_EMAIL", "true");
        let err = Config::from_source(&env).unwrap_err();
        assert!(err.to_string().contains("ENCLAVE_SMTP_URL"), "{err}");
        env.insert("ENCLAVE_MAIL_CATCHER", "true");
        assert!(
            Config::from_source(&env)
                .unwrap()
                .settings
                .require_verified_email
        );
    }

    #[test]
    fn mail_goes_to_smtp_or_the_development_catcher_and_never_says_the_password() {
        let mut env = base();
        assert!(matches!(
            Config::from_source(&env).unwrap().settings.mailer,
            app::platform::mail::Mailer::Off
        ));
        env.insert("ENCLAVE_MAIL_CATCHER", "true");
        assert!(
            Config::from_source(&env)
                .unwrap()
                .settings
                .mailer
                .is_catcher()
        );
        env.insert("ENCLAVE_ENV", "production");
        env.insert("ENCLAVE_PUBLIC_URL", "https://enclave.example.com");
        let err = Config::from_source(&env).unwrap_err();
        assert!(err.to_string().contains("ENCLAVE_MAIL_CATCHER"), "{err}");
        env.remove("ENCLAVE_MAIL_CATCHER");
        for url in [
            "smtp://relay:25",
            "smtp://user:p%40ss@mail.example.com:587?tls=required",
            "smtps://user:secret@mail.example.com",
        ] {
            env.insert("ENCLAVE_SMTP_URL", url);
            let config = Config::from_source(&env).unwrap();
            assert!(matches!(
                config.settings.mailer,
                app::platform::mail::Mailer::Smtp { .. }
            ));
            assert!(!format!("{:?}", config.settings).contains("secret"));
        }
        for bad in [
            "ftp://relay",
            "smtp://relay?tls=sometimes",
            "not a url with secret",
        ] {
            env.insert("ENCLAVE_SMTP_URL", bad);
            let err = Config::from_source(&env).unwrap_err().to_string();
            assert!(err.contains("ENCLAVE_SMTP_URL"), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
        env.insert("ENCLAVE_SMTP_URL", "smtp://relay");
        env.insert("ENCLAVE_MAIL_FROM", "not an address");
        let err = Config::from_source(&env).unwrap_err().to_string();
        assert!(err.contains("ENCLAVE_MAIL_FROM"), "{err}");
    }

    #[test]
    fn https_public_url_makes_cookies_secure() {
        let mut env = base();
        env.insert("ENCLAVE_PUBLIC_URL", "https://enclave.example.com");
        assert!(Config::from_source(&env).unwrap().settings.secure_cookies);
        env.insert("ENCLAVE_PUBLIC_URL", "enclave.example.com");
        assert!(Config::from_source(&env).is_err());
    }

    #[test]
    fn missing_database_url_is_a_clear_error() {
        let env: HashMap<&str, &str> = HashMap::from([("ENCLAVE_MASTER_KEY", KEY_A)]);
        let err = Config::from_source(&env).unwrap_err();
        assert!(err.to_string().contains("ENCLAVE_DATABASE_URL"), "{err}");
    }

    #[test]
    fn a_generic_database_url_is_never_used() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("ENCLAVE_MASTER_KEY", KEY_A),
            ("DATABASE_URL", "postgres://localhost/another_project"),
        ]);
        let err = Config::from_source(&env).unwrap_err();
        assert!(err.to_string().contains("ENCLAVE_DATABASE_URL"), "{err}");
    }

    #[test]
    fn proxy_hops_and_per_user_limits_are_read() {
        let mut env = base();
        assert_eq!(Config::from_source(&env).unwrap().settings.proxy_hops, 0);
        env.insert("ENCLAVE_TRUST_FORWARDED_FOR", "true");
        assert_eq!(Config::from_source(&env).unwrap().settings.proxy_hops, 1);
        env.insert("ENCLAVE_PROXY_HOPS", "2");
        env.insert("ENCLAVE_CHAT_LIMIT_PER_USER", "7");
        env.insert("ENCLAVE_API_LIMIT_PER_KEY", "9");
        env.insert("ENCLAVE_RUN_DEADLINE_MINUTES", "3");
        env.insert("ENCLAVE_PROVIDER_TIMEOUT_SECS", "300");
        let settings = Config::from_source(&env).unwrap().settings;
        assert_eq!(settings.provider_timeout, Duration::from_secs(300));
        assert_eq!(settings.proxy_hops, 2);
        assert_eq!(settings.chat_sends_per_user, Limit::new(7, 60));
        assert_eq!(settings.api_requests_per_key, Limit::new(9, 60));
        assert_eq!(settings.run_deadline, Duration::from_secs(180));
        env.insert("ENCLAVE_RUN_DEADLINE_MINUTES", "0");
        assert!(Config::from_source(&env).is_err());
    }
}
