//! Signals between the server processes sharing one database, through
//! PostgreSQL's `LISTEN`/`NOTIFY`: what one process (or the operator's
//! command line) decides, every server acts on at once. A notification
//! reaches every session listening when its transaction commits; a server
//! that is not connected at that moment misses it, so each signal is only
//! a faster path for something the database also records (a disabled
//! account is refused on every later check anyway).
//!
//! Control payloads are ids, never user content. A reply followed from
//! another server crosses as pieces on `STREAM_CHANNEL`, sealed with its
//! owner's key (the database only relays ciphertext).

use std::time::Duration;

use sqlx::{PgPool, postgres::PgListener};
use uuid::Uuid;

/// The channel of signals every server listens on.
pub const CHANNEL: &str = "enclave_control";
/// The channel of live replies' pieces, for the servers following them.
pub const STREAM_CHANNEL: &str = "enclave_stream";

/// The largest piece of a sealed update in one notification (PostgreSQL
/// takes payloads under 8000 bytes).
pub const PIECE_BYTES: usize = 7000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Stop every reply this account has running (it was disabled or deleted).
    StopOwner(Uuid),
    /// Stop this reply of this owner (asked on another server than the one
    /// writing it).
    Stop { message: Uuid, owner: Uuid },
    /// Someone follows this reply from another server: the server writing
    /// it publishes it (from a fresh snapshot) on `STREAM_CHANNEL`.
    Follow { message: Uuid, owner: Uuid },
    /// A piece of a published update.
    Piece(Piece),
}

/// Piece `index` of `count` of update `seq` of the reply `message`: base64
/// of the sealed JSON. Handed as it is to every follower of the reply
/// (cloned for each, hence the shared text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub message: Uuid,
    pub seq: u64,
    pub index: u32,
    pub count: u32,
    pub data: std::sync::Arc<str>,
}

impl Signal {
    fn channel(&self) -> &'static str {
        match self {
            Signal::Piece(_) => STREAM_CHANNEL,
            _ => CHANNEL,
        }
    }

    fn payload(&self) -> String {
        match self {
            Signal::StopOwner(user) => format!("stop_owner:{user}"),
            Signal::Stop { message, owner } => format!("stop:{message}:{owner}"),
            Signal::Follow { message, owner } => format!("follow:{message}:{owner}"),
            Signal::Piece(p) => {
                format!("{}:{}:{}:{}:{}", p.message, p.seq, p.index, p.count, p.data)
            }
        }
    }

    fn parse(channel: &str, payload: &str) -> Option<Signal> {
        if channel == STREAM_CHANNEL {
            let mut fields = payload.splitn(5, ':');
            let message = Uuid::parse_str(fields.next()?).ok()?;
            let seq = fields.next()?.parse().ok()?;
            let index = fields.next()?.parse().ok()?;
            let count = fields.next()?.parse().ok()?;
            let data = fields.next()?.into();
            return (index < count).then_some(Signal::Piece(Piece {
                message,
                seq,
                index,
                count,
                data,
            }));
        }
        let (kind, id) = payload.split_once(':')?;
        match kind {
            "stop_owner" => Uuid::parse_str(id).ok().map(Signal::StopOwner),
            "stop" | "follow" => {
                let (message, owner) = id.split_once(':')?;
                let message = Uuid::parse_str(message).ok()?;
                let owner = Uuid::parse_str(owner).ok()?;
                Some(if kind == "stop" {
                    Signal::Stop { message, owner }
                } else {
                    Signal::Follow { message, owner }
                })
            }
            _ => None,
        }
    }
}

/// Tells every server (this one included) about `signal`.
pub async fn send(db: &PgPool, signal: Signal) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(signal.channel())
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
            Ok(mut listener) => match listener.listen_all([CHANNEL, STREAM_CHANNEL]).await {
                Ok(()) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(());
                    }
                    loop {
                        match listener.recv().await {
                            Ok(note) => match Signal::parse(note.channel(), note.payload()) {
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
            Signal::Follow {
                message: Uuid::new_v4(),
                owner: user,
            },
            Signal::Piece(Piece {
                message: Uuid::new_v4(),
                seq: 7,
                index: 1,
                count: 2,
                data: "c2VhbGVk:+/=".into(),
            }),
        ] {
            assert_eq!(
                Signal::parse(signal.channel(), &signal.payload()),
                Some(signal)
            );
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
            assert_eq!(Signal::parse(CHANNEL, bad), None, "{bad}");
            assert_eq!(Signal::parse(STREAM_CHANNEL, bad), None, "{bad}");
        }
    }
}
