//! Fixed-window rate limits kept in PostgreSQL, so every server replica sees the
//! same counts (an in-process limiter would give each replica its own budget).
//! Used for sign-in, sign-up, chat sends and key tests; the high-volume API
//! limits will sit in front of this.

use std::{
    net::{IpAddr, Ipv6Addr},
    sync::LazyLock,
};

use sqlx::PgPool;

use super::settings::Limit;
use crate::error::AppError;

/// Counts one event in `bucket`; refuses it when the window is already full.
pub async fn hit(db: &PgPool, bucket: &str, limit: Limit) -> Result<(), AppError> {
    static HIT: LazyLock<String> = LazyLock::new(|| counting("$1", "$2"));
    let (hits, retry_after): (i32, f64) = sqlx::query_as(sqlx::AssertSqlSafe(HIT.as_str()))
        .bind(bucket)
        .bind(window_secs(limit))
        .fetch_one(db)
        .await?;
    refuse_over(hits, retry_after, limit)
}

/// The statement that counts one event in the bucket named by parameter
/// `bucket` (a window of `window` seconds, see `window_secs`) and returns
/// `hits` and `retry_after` (seconds) for `refuse_over`. A statement of its
/// own in `hit`; a send runs it inside the query that reads what the send
/// needs, so that counting costs no round trip of its own. A null `bucket`
/// counts nothing and returns no row (a send whose session is not live).
pub(crate) fn counting(bucket: &str, window: &str) -> String {
    format!(
        "INSERT INTO rate_limits AS r (bucket, window_start, hits)
         SELECT b, now(), 1 FROM (SELECT ({bucket})::text AS b) AS named WHERE b IS NOT NULL
         ON CONFLICT (bucket) DO UPDATE SET
           window_start = CASE WHEN r.window_start + make_interval(secs => {window}) <= now()
                               THEN now() ELSE r.window_start END,
           hits = CASE WHEN r.window_start + make_interval(secs => {window}) <= now()
                       THEN 1 ELSE r.hits + 1 END
         RETURNING hits,
           EXTRACT(EPOCH FROM (window_start + make_interval(secs => {window}) - now()))::float8
             AS retry_after"
    )
}

/// `limit`'s window, as `counting`'s `window` parameter.
pub(crate) fn window_secs(limit: Limit) -> f64 {
    limit.window.as_secs_f64()
}

/// Forgets `bucket` (after a successful sign-in, say).
pub async fn reset(db: &PgPool, bucket: &str) -> Result<(), AppError> {
    sqlx::query("DELETE FROM rate_limits WHERE bucket = $1")
        .bind(bucket)
        .execute(db)
        .await?;
    Ok(())
}

pub(crate) fn refuse_over(hits: i32, retry_after_secs: f64, limit: Limit) -> Result<(), AppError> {
    if hits > limit.max as i32 {
        Err(AppError::RateLimited {
            retry_after_secs: retry_after_secs.ceil().max(1.0) as u64,
        })
    } else {
        Ok(())
    }
}

/// Whom an address-keyed limit counts: an IPv4 address (also when written
/// inside IPv6), or an IPv6 client's /64, since one subscriber usually holds
/// a whole /64 and could otherwise take a fresh bucket per address.
pub fn ip_subject(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{}/64", Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ip_subject(a), ip_subject(b));
        assert_ne!(ip_subject(a), ip_subject(c));
        assert_eq!(ip_subject(a), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(ip_subject(mapped), "192.0.2.7");
    }
}
