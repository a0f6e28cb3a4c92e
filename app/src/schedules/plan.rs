//! When a schedule fires: a five-field cron expression (croner, POSIX
//! rules) read in an IANA time zone (chrono-tz), so "09:00 on weekdays"
//! stays 09:00 on the wall clock across daylight-saving changes. A time that
//! a spring change skips fires once at the first time after the gap; an hour
//! that an autumn change repeats fires once.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::{
    Cron,
    parser::{CronParser, Seconds, Year},
};

use crate::error::{AppError, FieldError};

/// The shortest gap allowed between two runs: a schedule calls a model
/// every time, possibly on the operator's key.
pub const MIN_GAP_MINUTES: i64 = 5;
/// The longest cron expression accepted.
const MAX_LEN: usize = 120;

/// A parsed schedule: its expression in its zone.
#[derive(Debug, Clone)]
pub struct Plan {
    cron: Cron,
    zone: Tz,
}

impl Plan {
    /// Reads `expression` in `zone`; a mistake in either is a message on
    /// its field (`cron`, `time_zone`).
    pub fn parse(expression: &str, zone: &str) -> Result<Plan, AppError> {
        let expression = expression.trim();
        let zone: Result<Tz, _> = zone.trim().parse();
        let cron = if expression.is_empty() || expression.len() > MAX_LEN {
            None
        } else {
            CronParser::builder()
                .seconds(Seconds::Disallowed)
                .year(Year::Disallowed)
                .build()
                .parse(expression)
                .ok()
        };
        let (Some(cron), Ok(zone)) = (cron.clone(), zone) else {
            let mut errors = Vec::new();
            if cron.is_none() {
                errors.push(FieldError {
                    field: "cron".into(),
                    message: "Write when it runs as five fields: minute hour day-of-month month \
                              day-of-week, like 0 9 * * 1-5 for 09:00 on weekdays."
                        .into(),
                });
            }
            if zone.is_err() {
                errors.push(FieldError {
                    field: "time_zone".into(),
                    message: "Choose a time zone by its name, like Europe/Berlin, \
                              America/New_York or UTC."
                        .into(),
                });
            }
            return Err(AppError::Invalid(errors));
        };
        let plan = Plan { cron, zone };
        // Never, or too often: said plainly.
        let times = plan.next_runs(Utc::now(), 12);
        if times.is_empty() {
            return Err(AppError::invalid(
                "cron",
                "That expression never comes round (a 31st of February, say).",
            ));
        }
        if times
            .windows(2)
            .any(|w| (w[1] - w[0]).num_minutes() < MIN_GAP_MINUTES)
        {
            return Err(AppError::invalid(
                "cron",
                format!("A schedule may run at most every {MIN_GAP_MINUTES} minutes."),
            ));
        }
        Ok(plan)
    }

    /// The expression in words, with its zone: "At 09:00 on Monday through
    /// Friday (Europe/Berlin)".
    pub fn describe(&self) -> String {
        let words = self.cron.describe();
        format!("{} ({})", words.trim_end_matches('.'), self.zone.name())
    }

    /// The first time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&after.with_timezone(&self.zone), false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// The next `n` times after `after`.
    pub fn next_runs(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut at = after;
        while out.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }

    /// `t` on the schedule's wall clock: "Mon 7 Dec 2026, 09:00 CET".
    pub fn local(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.zone)
            .format("%a %-d %b %Y, %H:%M %Z")
            .to_string()
    }

    pub fn zone(&self) -> &str {
        self.zone.name()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    #[test]
    fn weekday_mornings_stay_at_nine_on_the_wall_clock_across_both_changes() {
        let plan = Plan::parse("0 9 * * 1-5", "Europe/Berlin").unwrap();
        assert!(
            plan.describe().ends_with("(Europe/Berlin)"),
            "{}",
            plan.describe()
        );
        // Fri 27 March 2026 is CET (UTC+1); Mon 30 March is CEST (UTC+2).
        let spring = plan.next_runs(utc(2026, 3, 26, 12, 0), 2);
        assert_eq!(spring, [utc(2026, 3, 27, 8, 0), utc(2026, 3, 30, 7, 0)]);
        // Fri 23 October is CEST; Mon 26 October is CET again.
        let autumn = plan.next_runs(utc(2026, 10, 22, 12, 0), 2);
        assert_eq!(autumn, [utc(2026, 10, 23, 7, 0), utc(2026, 10, 26, 8, 0)]);
        assert_eq!(plan.local(autumn[1]), "Mon 26 Oct 2026, 09:00 CET");
    }

    #[test]
    fn a_skipped_time_fires_once_after_the_gap_and_a_repeated_hour_once() {
        // 02:30 does not exist in Berlin on 29 March 2026 (02:00 -> 03:00).
        let plan = Plan::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let runs = plan.next_runs(utc(2026, 3, 27, 12, 0), 3);
        assert_eq!(runs[0], utc(2026, 3, 28, 1, 30), "CET: 02:30 is 01:30 UTC");
        assert_eq!(
            runs[1]
                .with_timezone(&chrono_tz::Europe::Berlin)
                .date_naive(),
            chrono::NaiveDate::from_ymd_opt(2026, 3, 29).unwrap(),
            "the skipped day still runs, once: {runs:?}"
        );
        assert_eq!(runs[2], utc(2026, 3, 30, 0, 30), "CEST: 02:30 is 00:30 UTC");
        // 02:30 happens twice in Berlin on 25 October 2026: one run.
        let runs = plan.next_runs(utc(2026, 10, 24, 12, 0), 3);
        let days: Vec<_> = runs
            .iter()
            .map(|t| t.with_timezone(&chrono_tz::Europe::Berlin).date_naive())
            .collect();
        assert_eq!(days.len(), 3);
        assert!(
            days.windows(2).all(|w| w[0] != w[1]),
            "one run a day: {runs:?}"
        );
    }

    #[test]
    fn mistakes_are_said_on_their_field() {
        let field = |e: AppError, f: &str| e.field_message(f).unwrap_or_default();
        let err = Plan::parse("every morning", "UTC").unwrap_err();
        assert!(field(err, "cron").contains("five fields"));
        let err = Plan::parse("0 9 * * *", "Mars/Olympus").unwrap_err();
        assert!(field(err, "time_zone").contains("Europe/Berlin"));
        let err = Plan::parse("* * * * *", "UTC").unwrap_err();
        assert!(field(err, "cron").contains("every 5 minutes"));
        let err = Plan::parse("0 0 31 2 *", "UTC").unwrap_err();
        assert!(field(err, "cron").contains("never"));
        let err = Plan::parse("0 9 * * * 2027", "UTC").unwrap_err();
        assert!(field(err, "cron").contains("five fields"));
        assert!(Plan::parse("*/5 * * * *", "UTC").is_ok());
        assert!(Plan::parse("0 9 * * MON-FRI", "America/New_York").is_ok());
    }
}
