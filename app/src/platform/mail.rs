//! Mail from Enclave itself (verification links, password resets,
//! notices): through the operator's SMTP server (`ENCLAVE_SMTP_URL`:
//! `smtp://` plain for a local relay or with `?tls=required` for STARTTLS,
//! `smtps://` for TLS from the start), or, in development, a catcher that
//! keeps the last 100 mails in memory for the `/dev/mail` page. Mail is
//! sent only by jobs (`jobs::Kind::Mail`), so a slow or absent mail server
//! never holds up a request, and a failure is tried again. Plain text with
//! a simple HTML twin: no remote images, no tracking.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
    },
};
use serde::{Deserialize, Serialize};

use super::jobs::JobError;

/// The longest one SMTP conversation may take.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(20);
/// How many mails the development catcher keeps.
const CAUGHT: usize = 100;

/// One mail to send (a mail job's sealed payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A mail the development catcher kept.
#[derive(Debug, Clone)]
pub struct Caught {
    pub at: chrono::DateTime<chrono::Utc>,
    pub mail: Outgoing,
}

/// TLS for a mail server `host`: the public roots plus the operator's own
/// (`ENCLAVE_SMTP_CA_FILE`). Shared with the email tool.
pub fn tls_parameters(host: &str, extra_roots: &[Vec<u8>]) -> Result<TlsParameters, String> {
    let mut tls = TlsParameters::builder(host.to_owned());
    for pem in extra_roots {
        let certificate = Certificate::from_pem(pem)
            .map_err(|_| "The operator's extra mail certificate cannot be read.".to_owned())?;
        tls = tls.add_root_certificate(certificate);
    }
    tls.build_rustls()
        .map_err(|_| "Enclave could not set up TLS for the mail server.".to_owned())
}

/// Where Enclave's own mail goes.
#[derive(Clone, Default)]
pub enum Mailer {
    /// No mail server: mail jobs end at once, saying so.
    #[default]
    Off,
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    /// Development only: kept in memory for `/dev/mail`.
    Catcher {
        from: Mailbox,
        caught: Arc<Mutex<VecDeque<Caught>>>,
    },
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may hold the SMTP password.
        f.write_str(match self {
            Mailer::Off => "Mailer::Off",
            Mailer::Smtp { .. } => "Mailer::Smtp(<redacted>)",
            Mailer::Catcher { .. } => "Mailer::Catcher",
        })
    }
}

impl Mailer {
    /// The development catcher, sending as `from`.
    pub fn catcher(from: &str) -> Result<Mailer, String> {
        Ok(Mailer::Catcher {
            from: parse_from(from)?,
            caught: Arc::default(),
        })
    }

    /// An SMTP mailer from `ENCLAVE_SMTP_URL`. `Err` says what is wrong
    /// without repeating the URL.
    pub fn smtp(url: &str, from: &str, extra_roots: &[Vec<u8>]) -> Result<Mailer, String> {
        let url = url::Url::parse(url).map_err(|_| {
            "it is not a URL like smtp://relay:25 or smtps://user:password@mail.example.com"
                .to_owned()
        })?;
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or("it has no host")?
            .to_owned();
        let tls_query = url
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let (tls, default_port) = match (url.scheme(), tls_query.as_deref()) {
            ("smtps", _) => (Tls::Wrapper(tls_parameters(&host, extra_roots)?), 465),
            ("smtp", Some("required")) => (Tls::Required(tls_parameters(&host, extra_roots)?), 587),
            ("smtp", Some("opportunistic")) => {
                (Tls::Opportunistic(tls_parameters(&host, extra_roots)?), 587)
            }
            ("smtp", None | Some("none")) => (Tls::None, 25),
            ("smtp", Some(_)) => {
                return Err("its tls= must be required, opportunistic or none".into());
            }
            _ => return Err("it must start with smtp:// or smtps://".into()),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(url.port().unwrap_or(default_port))
            .tls(tls)
            .timeout(Some(SMTP_TIMEOUT));
        if !url.username().is_empty() {
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .map(|d| d.into_owned())
                    .map_err(|_| "its user name or password is not valid percent-encoding")
            };
            builder = builder.credentials(Credentials::new(
                decode(url.username())?,
                decode(url.password().unwrap_or_default())?,
            ));
        }
        Ok(Mailer::Smtp {
            transport: builder.build(),
            from: parse_from(from)?,
        })
    }

    /// Whether Enclave's mail can go out, in one plain sentence (for
    /// `server doctor`): the SMTP server answers (connects, greets, TLS and
    /// login as configured), or why not, never with the URL or password.
    pub async fn check(&self) -> Result<&'static str, String> {
        match self {
            Mailer::Off => Err(
                "mail is off: sign-up confirmations, password resets and alerts are not sent; \
                 set ENCLAVE_SMTP_URL and ENCLAVE_MAIL_FROM"
                    .into(),
            ),
            Mailer::Catcher { .. } => Err(
                "mail goes to the development catcher: set ENCLAVE_SMTP_URL in production".into(),
            ),
            Mailer::Smtp { transport, .. } => match transport.test_connection().await {
                Ok(true) => Ok("the mail server answers"),
                Ok(false) => Err("the mail server did not accept the connection".into()),
                Err(err) => Err(format!(
                    "the mail server could not be reached or refused the login ({})",
                    if err.is_permanent() {
                        "permanent error"
                    } else if err.is_timeout() {
                        "timeout"
                    } else if err.is_tls() {
                        "TLS"
                    } else {
                        "connection"
                    }
                )),
            },
        }
    }

    pub fn is_catcher(&self) -> bool {
        matches!(self, Mailer::Catcher { .. })
    }

    /// The caught mails, newest first (empty unless this is the catcher).
    pub fn caught(&self) -> Vec<Caught> {
        match self {
            Mailer::Catcher { caught, .. } => caught
                .lock()
                .map(|c| c.iter().rev().cloned().collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Sends `mail`. The error is ours to store: no address, no server text.
    pub async fn send(&self, mail: &Outgoing) -> Result<(), JobError> {
        let (transport, from) = match self {
            Mailer::Off => {
                return Err(JobError::fatal(
                    "No mail server is configured (ENCLAVE_SMTP_URL).",
                ));
            }
            Mailer::Catcher { caught, .. } => {
                if let Ok(mut caught) = caught.lock() {
                    caught.push_back(Caught {
                        at: chrono::Utc::now(),
                        mail: mail.clone(),
                    });
                    while caught.len() > CAUGHT {
                        caught.pop_front();
                    }
                }
                return Ok(());
            }
            Mailer::Smtp { transport, from } => (transport, from),
        };
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|_| JobError::fatal("The recipient's address is not valid."))?;
        let message = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(&mail.subject)
            .multipart(MultiPart::alternative_plain_html(
                mail.text.clone(),
                mail.html.clone(),
            ))
            .map_err(|_| JobError::fatal("The mail could not be put together."))?;
        transport.send(message).await.map(|_| ()).map_err(|err| {
            if err.is_permanent() {
                let code = err.status().map(u16::from).unwrap_or(0);
                JobError::fatal(format!("The mail server refused the mail (code {code})."))
            } else {
                JobError::retry("The mail server could not be reached or did not answer.")
            }
        })
    }
}

fn parse_from(from: &str) -> Result<Mailbox, String> {
    from.parse().map_err(|_| {
        "ENCLAVE_MAIL_FROM is not an address like \"Enclave <enclave@example.com>\"".to_owned()
    })
}

/// Escapes text for the HTML twin of a mail.
pub fn escape_html(text: &str) -> String {
    html_escape::encode_double_quoted_attribute(text).into_owned()
}
