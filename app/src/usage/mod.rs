//! Usage, budgets and credits: what each model call used and cost, the
//! deployment's billing mode (unlimited, quotas, or prepaid credits), and
//! buying credits with Stripe Checkout.
//!
//! `server` (ssr) the ledger, prices, budget checks, credits and alerts;
//! `stripe` (ssr) the Checkout Session and the signed webhook; `api` the
//! server functions; `pages` /usage with its charts.

pub mod api;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
pub mod stripe;

use serde::{Deserialize, Serialize};

/// An amount in micro-units of the deployment's currency (1 USD is
/// 1,000,000): integers, never floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Money(pub i64);

impl Money {
    /// "$1.25", "$19.9999", "$0.0031" (whole cents with two decimals, any
    /// other amount exactly, trailing zeros dropped: never rounded), "€2.00",
    /// "12.50 CHF" for other currencies.
    pub fn display(self, currency: &str) -> String {
        let negative = self.0 < 0;
        let micros = self.0.unsigned_abs();
        let whole = micros / 1_000_000;
        let fraction = micros % 1_000_000;
        let mut digits = format!("{}.{fraction:06}", thousands(whole as i64));
        if fraction.is_multiple_of(10_000) {
            // Whole cents: two decimals.
            digits.truncate(digits.len() - 4);
        } else {
            // A non-zero digit below the cents ends it.
            while digits.ends_with('0') {
                digits.pop();
            }
        }
        let sign = if negative { "-" } else { "" };
        match currency.to_ascii_lowercase().as_str() {
            "usd" => format!("{sign}${digits}"),
            "eur" => format!("{sign}€{digits}"),
            "gbp" => format!("{sign}£{digits}"),
            other => format!("{sign}{digits} {}", other.to_ascii_uppercase()),
        }
    }
}

/// An amount as people write it ("5", "2.50") in micro-units: at most six
/// decimals, never negative. `None` for anything else.
pub fn parse_amount(raw: &str) -> Option<i64> {
    let raw = raw.trim();
    let (whole, fraction) = raw.split_once('.').unwrap_or((raw, ""));
    if whole.is_empty()
        || fraction.len() > 6
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let fraction: i64 = format!("{fraction:0<6}").parse().ok()?;
    whole.checked_mul(1_000_000)?.checked_add(fraction)
}

/// 1234567 as "1,234,567".
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// A price in force, for the admin page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceView {
    pub provider: String,
    pub model: String,
    pub input_per_mtok: i64,
    pub output_per_mtok: i64,
    pub since: String,
}

/// One line of a usage table: totals for a day, an agent, a model or a
/// person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageLine {
    pub label: String,
    pub calls: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost: i64,
}

impl UsageLine {
    pub fn tokens(&self) -> i64 {
        self.input_tokens + self.output_tokens
    }

    fn add(&mut self, input: i64, output: i64, cost: i64) {
        self.calls += 1;
        self.input_tokens += input;
        self.output_tokens += output;
        self.cost += cost;
    }
}

/// A budget and how much of it is used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetView {
    /// "Your daily allowance", "This team's monthly allowance".
    pub label: String,
    pub used: String,
    pub limit: String,
    pub percent: u32,
}

/// A credit transaction, for the user's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionView {
    pub at: String,
    pub kind: String,
    pub amount: String,
    pub note: String,
}

/// The credits part of the usage page (credits mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditsView {
    pub balance: String,
    /// Held by replies being written right now.
    pub held: String,
    pub transactions: Vec<TransactionView>,
    /// What "Add credits" offers (micro-units, and as shown); empty when
    /// the operator set up no card payments.
    pub top_ups: Vec<(i64, String)>,
}

/// The usage page for a user (or a team's administrators).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// "unlimited", "quotas" or "credits".
    pub mode: String,
    /// The team shown (`None`: the user's own usage).
    pub team: Option<(String, String)>,
    /// Teams whose usage this user may see (admin or owner).
    pub teams: Vec<(String, String)>,
    pub days: u32,
    pub currency: String,
    /// One line per day of the period, oldest first (days with no use too).
    pub by_day: Vec<UsageLine>,
    pub by_agent: Vec<UsageLine>,
    pub by_model: Vec<UsageLine>,
    /// Per person (the team view).
    pub by_person: Vec<UsageLine>,
    pub total: UsageLine,
    pub budgets: Vec<BudgetView>,
    pub credits: Option<CreditsView>,
    /// Calls on the user's own keys are not charged here.
    pub own_keys_exempt: bool,
}

/// What one entry adds to a report, opened.
#[derive(Debug, Clone)]
pub struct Counted {
    pub day: String,
    pub agent: String,
    pub model: String,
    pub person: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost: i64,
}

/// Totals by day (every one of `days` ending `today`, oldest first), by
/// agent and by model (most expensive first), by person, and overall.
pub fn summarise(
    entries: &[Counted],
    day_labels: &[String],
) -> (
    Vec<UsageLine>,
    Vec<UsageLine>,
    Vec<UsageLine>,
    Vec<UsageLine>,
    UsageLine,
) {
    use std::collections::BTreeMap;
    let mut by_day: Vec<UsageLine> = day_labels
        .iter()
        .map(|d| UsageLine {
            label: d.clone(),
            ..UsageLine::default()
        })
        .collect();
    let mut agents: BTreeMap<&str, UsageLine> = BTreeMap::new();
    let mut models: BTreeMap<&str, UsageLine> = BTreeMap::new();
    let mut people: BTreeMap<&str, UsageLine> = BTreeMap::new();
    let mut total = UsageLine {
        label: "Total".into(),
        ..UsageLine::default()
    };
    for e in entries {
        let (i, o, c) = (e.input_tokens, e.output_tokens, e.cost);
        if let Some(line) = by_day.iter_mut().find(|l| l.label == e.day) {
            line.add(i, o, c);
        }
        for (map, key) in [
            (&mut agents, e.agent.as_str()),
            (&mut models, e.model.as_str()),
            (&mut people, e.person.as_str()),
        ] {
            map.entry(key)
                .or_insert_with(|| UsageLine {
                    label: key.to_owned(),
                    ..UsageLine::default()
                })
                .add(i, o, c);
        }
        total.add(i, o, c);
    }
    let ranked = |map: BTreeMap<&str, UsageLine>| {
        let mut lines: Vec<UsageLine> = map.into_values().collect();
        lines.sort_by(|a, b| b.cost.cmp(&a.cost).then(b.tokens().cmp(&a.tokens())));
        lines
    };
    (
        by_day,
        ranked(agents),
        ranked(models),
        ranked(people),
        total,
    )
}

/// The report as CSV: one row per day, agent and model.
pub fn csv_rows(entries: &[Counted], currency: &str) -> String {
    use std::collections::BTreeMap;
    let mut rows: BTreeMap<(&str, &str, &str), UsageLine> = BTreeMap::new();
    for e in entries {
        rows.entry((e.day.as_str(), e.agent.as_str(), e.model.as_str()))
            .or_default()
            .add(e.input_tokens, e.output_tokens, e.cost);
    }
    let mut out = format!(
        "date,agent,model,calls,input_tokens,output_tokens,cost_micro_{0},cost_{0}\r\n",
        currency.to_ascii_lowercase()
    );
    for ((day, agent, model), line) in rows {
        out.push_str(&format!(
            "{day},{},{},{},{},{},{},{}\r\n",
            csv_field(agent),
            csv_field(model),
            line.calls,
            line.input_tokens,
            line.output_tokens,
            line.cost,
            decimal(line.cost),
        ));
    }
    out
}

/// Micro-units as a plain decimal ("0.001234").
fn decimal(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    format!("{sign}{}.{:06}", m / 1_000_000, m % 1_000_000)
}

/// A CSV field, quoted when it needs to be; a leading `=`, `+`, `-` or `@`
/// is prefixed with `'` so a spreadsheet does not run it as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_shown_in_cents_or_significant_digits() {
        assert_eq!(Money(1_250_000).display("usd"), "$1.25");
        assert_eq!(Money(0).display("usd"), "$0.00");
        assert_eq!(Money(3_100).display("usd"), "$0.0031");
        assert_eq!(
            Money(19_999_900).display("usd"),
            "$19.9999",
            "never rounded up"
        );
        assert_eq!(Money(1_000_001).display("eur"), "€1.000001");
        assert_eq!(Money(-20_000_000).display("usd"), "-$20.00");
        assert_eq!(Money(1_234_567_890_000).display("usd"), "$1,234,567.89");
        assert_eq!(Money(12_500_000).display("chf"), "12.50 CHF");
    }

    #[test]
    fn amounts_are_read_without_floats() {
        assert_eq!(parse_amount("5"), Some(5_000_000));
        assert_eq!(parse_amount(" 2.50 "), Some(2_500_000));
        assert_eq!(parse_amount("0.000001"), Some(1));
        for bad in [
            "",
            "-1",
            "1.0000001",
            "1,5",
            "abc",
            ".5",
            "99999999999999999",
        ] {
            assert_eq!(parse_amount(bad), None, "{bad}");
        }
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(-1_234_567), "-1,234,567");
    }

    fn counted(day: &str, agent: &str, model: &str, i: i64, o: i64, c: i64) -> Counted {
        Counted {
            day: day.into(),
            agent: agent.into(),
            model: model.into(),
            person: "me".into(),
            input_tokens: i,
            output_tokens: o,
            cost: c,
        }
    }

    #[test]
    fn summaries_add_up_by_day_agent_and_model() {
        let days: Vec<String> = ["2026-11-29", "2026-11-30", "2026-12-01"]
            .map(String::from)
            .to_vec();
        let entries = [
            counted("2026-11-29", "Helper", "gpt-4o", 10, 5, 100),
            counted("2026-12-01", "Helper", "gpt-4o-mini", 20, 10, 7),
            counted("2026-12-01", "Writer", "gpt-4o", 1, 1, 300),
        ];
        let (by_day, by_agent, by_model, _, total) = summarise(&entries, &days);
        assert_eq!(by_day.len(), 3);
        assert_eq!(by_day[1].calls, 0, "a day with no use is there, empty");
        assert_eq!((by_day[2].calls, by_day[2].cost), (2, 307));
        assert_eq!(by_agent[0].label, "Writer", "most expensive first");
        assert_eq!(
            (by_agent[1].label.as_str(), by_agent[1].cost),
            ("Helper", 107)
        );
        assert_eq!(by_model[0].label, "gpt-4o");
        assert_eq!(by_model[0].tokens(), 17);
        assert_eq!(
            (
                total.calls,
                total.input_tokens,
                total.output_tokens,
                total.cost
            ),
            (3, 31, 16, 407)
        );
    }

    #[test]
    fn csv_quotes_fields_and_defuses_formulas() {
        let entries = [
            counted("2026-12-01", "=HYPERLINK(\"x\")", "gpt-4o", 1, 2, 1_500_000),
            counted("2026-12-01", "Plain, with comma", "m", 3, 4, 5),
        ];
        let csv = csv_rows(&entries, "usd");
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "date,agent,model,calls,input_tokens,output_tokens,cost_micro_usd,cost_usd"
        );
        assert_eq!(
            lines[1],
            "2026-12-01,\"'=HYPERLINK(\"\"x\"\")\",gpt-4o,1,1,2,1500000,1.500000"
        );
        assert_eq!(
            lines[2],
            "2026-12-01,\"Plain, with comma\",m,1,3,4,5,0.000005"
        );
    }
}
