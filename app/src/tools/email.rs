//! The email tool: sends from the user's own SMTP account (their
//! connection), with `lettre`. The mail server is reached under the egress
//! policy like every address a user chooses: its name is resolved and
//! checked here, and lettre connects to that checked address while TLS
//! verifies the certificate against the name. A password never crosses the
//! network unencrypted (STARTTLS is required, or TLS from the start).

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
    transport::smtp::{authentication::Credentials, client::Tls},
};
use serde_json::{Value, json};

use super::{
    server::{Tool, ToolCtx, ToolError, ToolOutput},
    services::connection,
};
use crate::{
    connections::{ConnectionKind, SmtpSecurity, SmtpSettings},
    llm::ToolDecl,
    state::AppState,
};

/// The longest an SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// A transport to the user's mail server, at its checked address.
async fn transport(
    state: &AppState,
    smtp: &SmtpSettings,
    password: &str,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let addr = state
        .egress
        .check_server(&smtp.host, smtp.port)
        .await
        .map_err(|e| e.to_string())?;
    let tls = crate::platform::mail::tls_parameters(&smtp.host, &state.settings.smtp_roots)?;
    let tls = match smtp.security {
        SmtpSecurity::Starttls => Tls::Required(tls),
        SmtpSecurity::Tls => Tls::Wrapper(tls),
    };
    Ok(
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
            .port(addr.port())
            .tls(tls)
            .credentials(Credentials::new(smtp.username.clone(), password.to_owned()))
            .timeout(Some(SMTP_TIMEOUT))
            .build(),
    )
}

/// What went wrong with the mail server, in plain words (lettre's error
/// text can quote the server, so it is not repeated).
fn smtp_failure(err: &lettre::transport::smtp::Error) -> String {
    if err.is_permanent()
        && let Some(code) = err.status()
    {
        let code = u16::from(code);
        return match code {
            530 | 534 | 535 => "The mail server rejected the user name or password.".into(),
            550..=553 => "The mail server refused a recipient or the sender address.".into(),
            _ => format!("The mail server refused (code {code})."),
        };
    }
    if err.is_transient() {
        return "The mail server is busy or refused for now: try again later.".into();
    }
    if err.is_timeout() {
        return "The mail server did not answer in time.".into();
    }
    if err.is_tls() {
        return "The mail server's TLS could not be verified.".into();
    }
    "Could not talk to the mail server.".into()
}

/// Connects and signs in (a connection test).
pub async fn check(state: &AppState, smtp: &SmtpSettings, password: &str) -> Result<(), String> {
    let transport = transport(state, smtp, password).await?;
    match transport.test_connection().await {
        Ok(true) => Ok(()),
        Ok(false) => Err("The mail server did not accept the connection.".into()),
        Err(err) => Err(smtp_failure(&err)),
    }
}

pub fn email_tool() -> Arc<dyn Tool> {
    Arc::new(SendEmail)
}

pub struct SendEmail;

impl Tool for SendEmail {
    fn decl(&self) -> ToolDecl {
        ToolDecl {
            name: "send_email".into(),
            description: super::builtin("send_email")
                .map(|t| t.description)
                .unwrap_or_default()
                .into(),
            parameters: json!({"type": "object", "properties": {
                "to": {"type": "string", "description": "The recipient's address (several: comma-separated, at most 10)."},
                "subject": {"type": "string"},
                "body": {"type": "string", "description": "The message, plain text."}
            }, "required": ["to", "subject", "body"]}),
        }
    }

    fn side_effects(&self) -> bool {
        true
    }

    fn call<'a>(
        &'a self,
        ctx: &'a ToolCtx,
        arguments: Value,
    ) -> BoxFuture<'a, Result<ToolOutput, ToolError>> {
        Box::pin(async move {
            let field = |name: &str| {
                arguments[name]
                    .as_str()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| ToolError::Invalid(format!("Give the {name}.")))
            };
            let to: Vec<Mailbox> = field("to")?
                .split(',')
                .map(|a| {
                    a.trim().parse().map_err(|_| {
                        ToolError::Invalid(format!("“{}” is not an address.", a.trim()))
                    })
                })
                .collect::<Result<_, _>>()?;
            if to.is_empty() || to.len() > 10 {
                return Err(ToolError::Invalid("Send to one to ten addresses.".into()));
            }
            let subject = field("subject")?;
            let body = field("body")?;
            if subject.chars().count() > 300 || body.len() > 256 * 1024 {
                return Err(ToolError::Invalid(
                    "The subject or body is too long.".into(),
                ));
            }
            let credential = connection(ctx, ConnectionKind::Smtp).await?;
            let smtp = credential.settings.smtp.clone().ok_or_else(|| {
                ToolError::Failed("The email connection has no mail server.".into())
            })?;
            let from: Mailbox = smtp.from.parse().map_err(|_| {
                ToolError::Failed("The email connection's sender address is not valid.".into())
            })?;
            let mut message = Message::builder().from(from).subject(subject);
            for recipient in &to {
                message = message.to(recipient.clone());
            }
            let message = message
                .header(ContentType::TEXT_PLAIN)
                .body(body.to_owned())
                .map_err(|_| ToolError::Invalid("That message could not be built.".into()))?;
            let size = message.formatted().len() as u64;
            let transport = transport(&ctx.state, &smtp, credential.expose())
                .await
                .map_err(ToolError::Failed)?;
            transport
                .send(message)
                .await
                .map_err(|e| ToolError::Failed(smtp_failure(&e)))?;
            let names: Vec<String> = to.iter().map(|m| m.email.to_string()).collect();
            Ok(ToolOutput {
                content: format!("Sent “{subject}” to {}.", names.join(", ")),
                target: Some(smtp.host),
                bytes_sent: size,
                bytes_received: 0,
            })
        })
    }
}
