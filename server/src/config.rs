//! Server configuration from `ENCLAVE_*` environment variables. Every secret can
//! also come from a file (`NAME_FILE`), which is how container secrets arrive.
//! Errors name the variable and what is wrong with it, never its value.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, time::Duration};

use app::platform::{Settings, settings::Limit};
use base64::{Engine as _, engine::general_purpose::STANDARD};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Development,
    Production,
}

/// The 256-bit master key. Never printed: `Debug` is redacted.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl MasterKey {
    /// The key material, for the crypto module only.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

#[derive(Clone)]
pub struct Config {
    pub mode: Mode,
    pub addr: Option<SocketAddr>,
    pub database_url: String,
    pub public_url: String,
    pub master_key: Option<MasterKey>,
    pub settings: Settings,
    pub log_json: bool,
}

/// The database URL may hold a password, so `Debug` leaves it out.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("mode", &self.mode)
            .field("addr", &self.addr)
            .field("database_url", &"<redacted>")
            .field("public_url", &self.public_url)
            .field("master_key", &self.master_key)
            .field("settings", &self.settings)
            .field("log_json", &self.log_json)
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
fn secret(src: &dyn Source, name: &'static str) -> Result<Option<String>, ConfigError> {
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

fn parse<T: std::str::FromStr>(
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

fn master_key(src: &dyn Source) -> Result<Option<MasterKey>, ConfigError> {
    let Some(encoded) = secret(src, "ENCLAVE_MASTER_KEY")? else {
        return Ok(None);
    };
    let invalid = |why: &str| ConfigError::Invalid {
        name: "ENCLAVE_MASTER_KEY",
        why: why.to_owned(),
    };
    let bytes = STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid("it is not base64 (create one with `openssl rand -base64 32`)"))?;
    let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
        invalid(&format!(
            "it decodes to {} bytes; it must be exactly 32",
            b.len()
        ))
    })?;
    Ok(Some(MasterKey(key)))
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(&Env)
    }

    pub fn from_source(src: &dyn Source) -> Result<Self, ConfigError> {
        let mode = match src.get("ENCLAVE_ENV").as_deref() {
            None | Some("development") | Some("dev") => Mode::Development,
            Some("production") | Some("prod") => Mode::Production,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "ENCLAVE_ENV",
                    why: format!("{other:?} is neither \"development\" nor \"production\""),
                });
            }
        };
        let database_url = secret(src, "ENCLAVE_DATABASE_URL")?
            .or_else(|| src.get("DATABASE_URL"))
            .ok_or(ConfigError::Missing(
                "ENCLAVE_DATABASE_URL",
                "Set it (or DATABASE_URL) to a PostgreSQL URL such as postgres://user@host/enclave.",
            ))?;
        let master_key = master_key(src)?;
        if mode == Mode::Production && master_key.is_none() {
            return Err(ConfigError::Missing(
                "ENCLAVE_MASTER_KEY",
                "Production mode needs the master key: set ENCLAVE_MASTER_KEY to 32 random \
                 bytes in base64, or ENCLAVE_MASTER_KEY_FILE to a file holding them.",
            ));
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
        let settings = Settings {
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
            trust_forwarded_for: parse(src, "ENCLAVE_TRUST_FORWARDED_FOR", false)?,
        };
        Ok(Config {
            mode,
            addr,
            database_url,
            public_url,
            master_key,
            settings,
            log_json: src.get("ENCLAVE_LOG_FORMAT").as_deref() == Some("json"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HashMap<&'static str, &'static str> {
        HashMap::from([("DATABASE_URL", "postgres://localhost/enclave")])
    }

    #[test]
    fn production_without_master_key_says_what_is_missing() {
        let mut env = base();
        env.insert("ENCLAVE_ENV", "production");
        let err = Config::from_source(&env).unwrap_err();
        assert!(err.to_string().contains("ENCLAVE_MASTER_KEY"), "{err}");
        assert!(err.to_string().contains("ENCLAVE_MASTER_KEY_FILE"), "{err}");
    }

    #[test]
    fn development_starts_without_master_key() {
        let config = Config::from_source(&base()).unwrap();
        assert_eq!(config.mode, Mode::Development);
        assert!(config.master_key.is_none());
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

        env.insert(
            "ENCLAVE_MASTER_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        );
        let config = Config::from_source(&env).unwrap();
        assert!(!format!("{config:?}").contains("AAECAwQF"));
        assert!(!format!("{config:?}").contains("postgres://"));
    }

    #[test]
    fn master_key_can_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("enclave-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("master.key");
        std::fs::write(&path, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n").unwrap();
        let path = path.to_string_lossy().into_owned();
        let mut env = base();
        env.insert("ENCLAVE_ENV", "production");
        env.insert("ENCLAVE_MASTER_KEY_FILE", &path);
        let config = Config::from_source(&env).unwrap();
        assert_eq!(config.master_key.unwrap().expose_bytes()[31], 31);
        std::fs::remove_dir_all(dir).unwrap();
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
        let env: HashMap<&str, &str> = HashMap::new();
        let err = Config::from_source(&env).unwrap_err();
        assert!(err.to_string().contains("ENCLAVE_DATABASE_URL"), "{err}");
    }
}
