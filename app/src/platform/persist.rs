//! Writes that must not be lost because the database blinked (a restart, a
//! failover): a reply's final state, what a model call cost, a reply's
//! credits settled. Each is tried again with backoff (100 ms, doubling to
//! 5 s) until it lands or its patience runs out, every failure logged.
//! Meanwhile the caller waits: a run stays live, so its readers still see
//! its text. Each write must be safe to repeat (the same ids each time).

use std::{fmt::Display, future::Future, time::Duration};

/// How long such a write keeps trying: longer than a database takes to
/// restart or fail over.
pub const PATIENCE: Duration = Duration::from_secs(600);

/// Runs `write` until it succeeds, or `patience` has passed since the first
/// try. Returns whether it landed.
pub async fn until_written<F, Fut, E>(what: &'static str, patience: Duration, mut write: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let started = tokio::time::Instant::now();
    let mut wait = Duration::from_millis(100);
    loop {
        match write().await {
            Ok(()) => return true,
            Err(err) if started.elapsed() < patience => {
                tracing::warn!(what, error = %err, retry_in_ms = wait.as_millis() as u64, "could not save; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
            Err(err) => {
                tracing::error!(what, error = %err, "gave up saving");
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tries_until_it_lands_and_gives_up_after_its_patience() {
        let tries = AtomicU32::new(0);
        let landed = until_written("a test row", PATIENCE, || async {
            let n = tries.fetch_add(1, Ordering::Relaxed);
            if n < 3 {
                Err("the database is down")
            } else {
                Ok(())
            }
        })
        .await;
        assert!(landed);
        assert_eq!(tries.load(Ordering::Relaxed), 4);

        let tries = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let landed = until_written("a test row", Duration::from_secs(30), || async {
            tries.fetch_add(1, Ordering::Relaxed);
            Err::<(), _>("the database is down")
        })
        .await;
        assert!(!landed);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(30) && waited < Duration::from_secs(36),
            "{waited:?}"
        );
        // 0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 3.2 s, then every 5 s.
        assert_eq!(tries.load(Ordering::Relaxed), 12);
    }
}
