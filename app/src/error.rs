//! `AppError`: the one error type that crosses the wire.
//!
//! Every variant carries only what is safe to show a user. Causes (SQL errors,
//! I/O errors, anything with internals) are logged on the server next to a short
//! reference, and the user sees the reference, never the cause.

use leptos::server_fn::{
    codec::JsonEncoding,
    error::{FromServerFnError, ServerFnErrorErr},
};
use serde::{Deserialize, Serialize};

/// One problem with one form field, shown next to that field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    /// Input that failed validation; one entry per offending field.
    #[error("Please correct the highlighted fields.")]
    Invalid(Vec<FieldError>),
    /// The request needs a signed-in user.
    #[error("Please sign in to continue.")]
    Unauthorized,
    /// Any sign-in failure: unknown email and wrong password look the same.
    #[error("The email or password is incorrect.")]
    InvalidCredentials,
    #[error("Too many attempts. Try again in {retry_after_secs} seconds.")]
    RateLimited { retry_after_secs: u64 },
    /// Missing, or owned by someone else: the two are indistinguishable.
    #[error("Not found.")]
    NotFound,
    /// Something failed on the server; `reference` finds the cause in the log.
    #[error("Something went wrong on our side. Please try again (reference {reference}).")]
    Internal { reference: String },
    /// The request never completed (network down, server unreachable, bad reply).
    #[error("Could not reach the server. Check your connection and try again.")]
    Transport,
    /// The request could not be read (missing or malformed fields).
    #[error("The request was incomplete or malformed.")]
    BadRequest,
    /// The database could not be reached (restarting, say): the request
    /// can be made again once it is back.
    #[error("Enclave cannot reach its database right now. Please try again shortly.")]
    Unavailable,
    /// This server asks for a confirmed address before agents and chat.
    #[error(
        "Please confirm your email address first: open the link we mailed you, or send a new one from the banner at the top."
    )]
    EmailNotVerified,
}

impl AppError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        AppError::Invalid(vec![FieldError {
            field: field.to_owned(),
            message: message.into(),
        }])
    }

    /// The message for `field`, if this error names it.
    pub fn field_message(&self, field: &str) -> Option<String> {
        match self {
            AppError::Invalid(errors) => errors
                .iter()
                .find(|e| e.field == field)
                .map(|e| e.message.clone()),
            _ => None,
        }
    }

    /// The error in plain words, field messages included: for answers that
    /// have no form to highlight (uploads, MCP tool results).
    pub fn sentence(&self) -> String {
        match self {
            AppError::Invalid(fields) => fields
                .iter()
                .map(|f| f.message.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            AppError::Invalid(_) => 422,
            AppError::Unauthorized | AppError::InvalidCredentials => 401,
            AppError::RateLimited { .. } => 429,
            AppError::NotFound => 404,
            AppError::Internal { .. } => 500,
            AppError::Transport => 502,
            AppError::Unavailable => 503,
            AppError::BadRequest => 400,
            AppError::EmailNotVerified => 403,
        }
    }
}

impl FromServerFnError for AppError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            // The client could not build or send the request, or read the reply.
            ServerFnErrorErr::Request(_)
            | ServerFnErrorErr::Response(_)
            | ServerFnErrorErr::Deserialization(_) => AppError::Transport,
            // The server could not read the arguments: a missing or malformed field.
            ServerFnErrorErr::Args(_) | ServerFnErrorErr::MissingArg(_) => AppError::BadRequest,
            // Anything else is ours; its text may hold internals, so it is not kept.
            _ => AppError::Internal {
                reference: "server-fn".to_owned(),
            },
        }
    }
}

#[cfg(feature = "ssr")]
pub use ssr::found;

#[cfg(feature = "ssr")]
mod ssr {
    use super::AppError;

    impl AppError {
        /// Logs `cause` with a fresh reference and returns the safe error that
        /// names it. Use for every failure whose text must not reach a client.
        pub fn internal(cause: impl std::fmt::Display) -> Self {
            let reference = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
            tracing::error!(%reference, error = %cause, "internal error");
            AppError::Internal { reference }
        }
    }

    /// `NotFound` when a statement that names its owner touched no row: the
    /// row is missing or someone else's, and the two look the same.
    pub fn found(done: sqlx::postgres::PgQueryResult) -> Result<(), AppError> {
        if done.rows_affected() == 0 {
            Err(AppError::NotFound)
        } else {
            Ok(())
        }
    }

    impl From<sqlx::Error> for AppError {
        fn from(err: sqlx::Error) -> Self {
            if unreachable(&err) {
                tracing::warn!(error = %err, "the database is unreachable");
                return AppError::Unavailable;
            }
            AppError::internal(err)
        }
    }

    /// Whether `err` says the database could not be reached, rather than
    /// that a statement failed: no connection to be had, a connection lost,
    /// or a server shutting down or starting (SQLSTATE classes 08 and 57P).
    fn unreachable(err: &sqlx::Error) -> bool {
        match err {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
            sqlx::Error::Database(e) => e
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_no_internal_detail() {
        let err = AppError::from_server_fn_error(ServerFnErrorErr::ServerError(
            "relation \"users\" does not exist".into(),
        ));
        assert!(!err.to_string().contains("relation"), "{err}");
        assert_eq!(err.status(), 500);
    }

    #[cfg(feature = "ssr")]
    #[test]
    fn an_unreachable_database_is_unavailable_and_a_failed_statement_internal() {
        let lost = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        for err in [sqlx::Error::PoolTimedOut, sqlx::Error::Io(lost)] {
            let err = AppError::from(err);
            assert_eq!(err, AppError::Unavailable);
            assert_eq!(err.status(), 503);
            assert!(err.to_string().contains("try again shortly"), "{err}");
        }
        let failed = AppError::from(sqlx::Error::RowNotFound);
        assert_eq!(failed.status(), 500);
    }

    #[test]
    fn rate_limited_says_when_to_retry() {
        let err = AppError::RateLimited {
            retry_after_secs: 42,
        };
        assert_eq!(
            err.to_string(),
            "Too many attempts. Try again in 42 seconds."
        );
    }

    #[test]
    fn field_message_finds_the_named_field_only() {
        let err = AppError::invalid("email", "Enter a valid email address.");
        assert_eq!(
            err.field_message("email").as_deref(),
            Some("Enter a valid email address.")
        );
        assert_eq!(err.field_message("password"), None);
    }
}
