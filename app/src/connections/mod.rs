//! Connections: the user's credentials for the services tools use (a GitHub
//! token, a Slack bot token, an SMTP account, a Telegram bot token, a secret
//! header for a web API). Sealed like provider keys, shown only by mask,
//! testable with a cheap authenticated call, replaceable and deletable. A
//! secret is resolved inside the tool that uses it and never reaches the
//! model, a log line, an error or a stored reply.
//!
//! `api` holds the server functions, `server` (ssr) the queries, the tests
//! against each service and the look-up tools use, `pages` Settings →
//! Connections.

pub mod api;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod server;

use serde::{Deserialize, Serialize};

use crate::error::{AppError, FieldError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    Github,
    Slack,
    Smtp,
    Telegram,
    HttpHeader,
}

impl ConnectionKind {
    pub const ALL: [ConnectionKind; 5] = [
        ConnectionKind::Github,
        ConnectionKind::Slack,
        ConnectionKind::Smtp,
        ConnectionKind::Telegram,
        ConnectionKind::HttpHeader,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionKind::Github => "github",
            ConnectionKind::Slack => "slack",
            ConnectionKind::Smtp => "smtp",
            ConnectionKind::Telegram => "telegram",
            ConnectionKind::HttpHeader => "http_header",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == value)
    }

    pub fn label(self) -> &'static str {
        match self {
            ConnectionKind::Github => "GitHub (personal access token)",
            ConnectionKind::Slack => "Slack (bot token)",
            ConnectionKind::Smtp => "Email (SMTP account)",
            ConnectionKind::Telegram => "Telegram (bot token)",
            ConnectionKind::HttpHeader => "Web API (secret header)",
        }
    }

    /// What the secret field is called for this kind.
    pub fn secret_label(self) -> &'static str {
        match self {
            ConnectionKind::Smtp => "SMTP password",
            ConnectionKind::HttpHeader => "Header value",
            _ => "Token",
        }
    }
}

/// How an SMTP connection is protected. There is no plain option: a
/// password never crosses the network unencrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Port 587: connect, then upgrade with STARTTLS (required).
    Starttls,
    /// Port 465: TLS from the first byte.
    Tls,
}

/// The parts of a connection that are not secret (sealed all the same).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionSettings {
    /// SMTP: server, port, user name, sender address, protection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpSettings>,
    /// Secret header: its name and the one host it is sent to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub from: String,
    pub security: SmtpSecurity,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderSettings {
    pub name: String,
    pub host: String,
}

/// A stored connection as the UI sees it: masked, never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionView {
    pub id: String,
    pub kind: ConnectionKind,
    pub label: String,
    pub masked: String,
    pub settings: ConnectionSettings,
    /// Whose it is, for the user looking.
    #[serde(flatten)]
    pub sharing: crate::teams::Sharing,
}

/// The outcome of testing a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionTest {
    pub ok: bool,
    pub message: String,
}

pub const LABEL_MAX: usize = 60;
pub const SECRET_MAX: usize = 1024;

/// A new connection as typed in.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInput {
    pub kind: String,
    pub label: String,
    pub secret: String,
    pub smtp_host: String,
    pub smtp_port: String,
    pub smtp_username: String,
    pub smtp_from: String,
    pub smtp_security: String,
    pub header_name: String,
    pub header_host: String,
}

/// A checked new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewConnection {
    pub kind: ConnectionKind,
    pub label: String,
    pub secret: String,
    pub settings: ConnectionSettings,
}

fn host_name_ok(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
}

impl NewConnection {
    pub fn parse(input: &ConnectionInput) -> Result<NewConnection, AppError> {
        let mut errors = Vec::new();
        let mut fail = |field: &str, message: &str| {
            errors.push(FieldError {
                field: field.to_owned(),
                message: message.to_owned(),
            })
        };
        let kind = ConnectionKind::parse(input.kind.trim());
        if kind.is_none() {
            fail("kind", "Choose what to connect.");
        }
        let label = input.label.trim().to_owned();
        if label.is_empty() || label.chars().count() > LABEL_MAX {
            fail(
                "label",
                "Name the connection (up to 60 characters), like \"Work GitHub\".",
            );
        }
        let secret = input.secret.trim().to_owned();
        if secret.is_empty() {
            fail("secret", "Paste the secret.");
        } else if secret.len() > SECRET_MAX || secret.chars().any(|c| c.is_control()) {
            fail("secret", "That does not look like a token or password.");
        }
        let mut settings = ConnectionSettings::default();
        match kind {
            Some(ConnectionKind::Smtp) => {
                let host = input.smtp_host.trim().to_ascii_lowercase();
                if !host_name_ok(&host) {
                    fail(
                        "smtp_host",
                        "Give the mail server's host name, like smtp.example.com.",
                    );
                }
                let security = match input.smtp_security.trim() {
                    "tls" => SmtpSecurity::Tls,
                    _ => SmtpSecurity::Starttls,
                };
                let default_port = if security == SmtpSecurity::Tls {
                    465
                } else {
                    587
                };
                let port = match input.smtp_port.trim() {
                    "" => Some(default_port),
                    p => p.parse::<u16>().ok().filter(|p| *p > 0),
                };
                if port.is_none() {
                    fail("smtp_port", "The port is a number, usually 587 or 465.");
                }
                let username = input.smtp_username.trim().to_owned();
                if username.is_empty() || username.len() > 320 {
                    fail("smtp_username", "Give the account's user name.");
                }
                let from = input.smtp_from.trim().to_owned();
                if !(from.contains('@') && from.len() <= 320 && !from.contains(char::is_whitespace))
                {
                    fail("smtp_from", "Give the address mail is sent from.");
                }
                settings.smtp = Some(SmtpSettings {
                    host,
                    port: port.unwrap_or(default_port),
                    username,
                    from,
                    security,
                });
            }
            Some(ConnectionKind::HttpHeader) => {
                let name = input.header_name.trim().to_owned();
                if name.is_empty()
                    || name.len() > 100
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    fail("header_name", "Give the header's name, like X-Api-Key.");
                }
                let host = input.header_host.trim().to_ascii_lowercase();
                if !host_name_ok(&host) {
                    fail(
                        "header_host",
                        "Give the one host it is sent to, like api.example.com.",
                    );
                }
                settings.header = Some(HeaderSettings { name, host });
            }
            _ => {}
        }
        match kind {
            Some(kind) if errors.is_empty() => Ok(NewConnection {
                kind,
                label,
                secret,
                settings,
            }),
            _ => Err(AppError::Invalid(errors)),
        }
    }
}

/// What the UI shows instead of a secret: its last four characters.
pub fn mask(secret: &str) -> String {
    crate::provider_keys::mask_key(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(kind: &str) -> ConnectionInput {
        ConnectionInput {
            kind: kind.into(),
            label: "Work".into(),
            secret: "ghp_secret1234".into(),
            ..ConnectionInput::default()
        }
    }

    #[test]
    fn each_kind_asks_for_what_it_needs() {
        assert!(NewConnection::parse(&input("github")).is_ok());
        let smtp = NewConnection::parse(&input("smtp")).unwrap_err();
        for field in ["smtp_host", "smtp_username", "smtp_from"] {
            assert!(smtp.field_message(field).is_some(), "{field}");
        }
        let good = ConnectionInput {
            smtp_host: "smtp.example.com".into(),
            smtp_username: "me".into(),
            smtp_from: "me@example.com".into(),
            smtp_security: "tls".into(),
            ..input("smtp")
        };
        let parsed = NewConnection::parse(&good).unwrap();
        assert_eq!(parsed.settings.smtp.unwrap().port, 465);
        let header = ConnectionInput {
            header_name: "X Api Key".into(),
            header_host: "https://api.example.com".into(),
            ..input("http_header")
        };
        let err = NewConnection::parse(&header).unwrap_err();
        assert!(err.field_message("header_name").is_some());
        assert!(err.field_message("header_host").is_some());
        assert!(NewConnection::parse(&input("ftp")).is_err());
    }
}
