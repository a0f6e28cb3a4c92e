//! Fixed-window rate limits kept in PostgreSQL, so every server replica sees the
//! same counts (an in-process limiter would give each replica its own budget).
//! Used for sign-in and sign-up, whose volume is small; the high-volume API
//! limits will sit in front of this.

use sqlx::PgPool;

use super::settings::Limit;
use crate::error::AppError;

/// Counts one event in `bucket`; refuses it when the window is already full.
pub async fn hit(db: &PgPool, bucket: &str, limit: Limit) -> Result<(), AppError> {
    let window = limit.window.as_secs_f64();
    let (hits, retry_after): (i32, f64) = sqlx::query_as(
        "INSERT INTO rate_limits AS r (bucket, window_start, hits) VALUES ($1, now(), 1)
         ON CONFLICT (bucket) DO UPDATE SET
           window_start = CASE WHEN r.window_start + make_interval(secs => $2) <= now()
                               THEN now() ELSE r.window_start END,
           hits = CASE WHEN r.window_start + make_interval(secs => $2) <= now()
                       THEN 1 ELSE r.hits + 1 END
         RETURNING hits,
           EXTRACT(EPOCH FROM (window_start + make_interval(secs => $2) - now()))::float8",
    )
    .bind(bucket)
    .bind(window)
    .fetch_one(db)
    .await?;
    refuse_over(hits, retry_after, limit)
}

/// Refuses when `bucket` is already full, without counting this check.
pub async fn check(db: &PgPool, bucket: &str, limit: Limit) -> Result<(), AppError> {
    let row: Option<(i32, f64)> = sqlx::query_as(
        "SELECT hits, EXTRACT(EPOCH FROM (window_start + make_interval(secs => $2) - now()))::float8
         FROM rate_limits
         WHERE bucket = $1 AND window_start + make_interval(secs => $2) > now()",
    )
    .bind(bucket)
    .bind(limit.window.as_secs_f64())
    .fetch_optional(db)
    .await?;
    match row {
        Some((hits, retry_after)) if hits >= limit.max as i32 => {
            refuse_over(hits + 1, retry_after, limit)
        }
        _ => Ok(()),
    }
}

/// Forgets `bucket` (after a successful sign-in, say).
pub async fn reset(db: &PgPool, bucket: &str) -> Result<(), AppError> {
    sqlx::query("DELETE FROM rate_limits WHERE bucket = $1")
        .bind(bucket)
        .execute(db)
        .await?;
    Ok(())
}

fn refuse_over(hits: i32, retry_after_secs: f64, limit: Limit) -> Result<(), AppError> {
    if hits > limit.max as i32 {
        Err(AppError::RateLimited {
            retry_after_secs: retry_after_secs.ceil().max(1.0) as u64,
        })
    } else {
        Ok(())
    }
}
