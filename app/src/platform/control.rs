//! Signals between the server processes sharing one database, through
//! PostgreSQL's `LISTEN`/`NOTIFY`: what one process (or the operator's
//! command line) decides, every server acts on at once. A notification
//! reaches every session listening when its transaction commits; a server
//! that is not connected at that moment misses it, so each signal is only
//! a faster path for something the database also records (a disabled
//! account is refused on every later check anyway).
//!
//! Payloads are ids, never user content.

use std::time::Duration;

use sqlx::{PgPool, postgres::PgListener};
use uuid::Uuid;

/// The one channel every server listens on.
pub const CHANNEL: &str = "enclave_control";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Stop every reply this account has running (it was disabled or deleted).
    StopOwner(Uuid),
    /// Stop this reply of this owner (asked on another server than the one
    /// writing it).
    Stop { message: Uuid, owner: Uuid },
}

impl Signal {
    fn payload(self) -> String {
        match self {
            Signal::StopOwner(user) => format!("stop_owner:{user}"),
            Signal::Stop { message, owner } => format!("stop:{message}:{owner}"),
        }
    }

    fn parse(payload: &str) -> Option<Signal> {
        let (kind, id) = payload.split_once(':')?;
        match kind {
            "stop_owner" => Uuid::parse_str(id).ok().map(Signal::StopOwner),
            "stop" => {
                let (message, owner) = id.split_once(':')?;
                Some(Signal::Stop {
                    message: Uuid::parse_str(message).ok()?,
                    owner: Uuid::parse_str(owner).ok()?,
                })
            }
            _ => None,
        }
    }
}

/// Tells every server (this one included) about `signal`.
pub async fn send(db: &PgPool, signal: Signal) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(signal.payload())
        .execute(db)
        .await?;
    Ok(())
}

/// Listens for signals for as long as the process runs, calling `on` for
/// each; reconnects (after a second) whenever the connection is lost.
/// `ready` is told once the first `LISTEN` is in place.
pub async fn listen(
    db: PgPool,
    on: impl Fn(Signal) + Send + 'static,
    ready: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let mut ready = ready;
    loop {
        match PgListener::connect_with(&db).await {
            Ok(mut listener) => match listener.listen(CHANNEL).await {
                Ok(()) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                    loop {
                        match listener.recv().await {
                            Ok(note) => match Signal::parse(note.payload()) {
                                Some(signal) => on(signal),
                                None => tracing::warn!("an unknown control signal"),
                            },
                            Err(err) => {
                                tracing::warn!(error = %err, "lost the control channel; listening again");
                                break;
                            }
                        }
                    }
                }
                Err(err) => tracing::warn!(error = %err, "could not listen on the control channel"),
            },
            Err(err) => tracing::warn!(error = %err, "could not connect for the control channel"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_round_trip_and_nonsense_is_ignored() {
        let user = Uuid::new_v4();
        for signal in [
            Signal::StopOwner(user),
            Signal::Stop {
                message: Uuid::new_v4(),
                owner: user,
            },
        ] {
            assert_eq!(Signal::parse(&signal.payload()), Some(signal));
        }
        for bad in [
            "",
            "stop_owner",
            "stop_owner:nope",
            "shutdown:all",
            ":",
            "stop:1:2",
            &format!("stop:{user}"),
        ] {
            assert_eq!(Signal::parse(bad), None, "{bad}");
        }
    }
}
