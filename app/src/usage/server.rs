//! The usage ledger, prices, budgets and credits (server only).
//!
//! - Every model call writes one `usage_entries` row through a [`Meter`]:
//!   the tokens the provider reported, the cost at the model's current
//!   price (integers in micro-units), and what was called, sealed.
//! - [`admit`] decides, before anything is stored or sent, whether a reply
//!   may start: a quota already used up, or credits that cannot cover the
//!   reply's reservation, refuse it with a plain sentence.
//! - In credits mode [`reserve`] takes the reservation from the balance in
//!   the transaction that queues the reply (a conditional `UPDATE`, so two
//!   replies at once cannot spend the same credits); [`Meter::settle`]
//!   gives back what the reply did not use. A reply that crosses its
//!   budget while being written finishes; the balance stops at zero.
//! - Alerts: a mail at 80% and 100% of a quota (and when credits run
//!   low and out), once per period; a spike (an hour at ten times the
//!   user's usual hourly spend) is written to the activity log and mailed.

use std::sync::{
    Arc, LazyLock,
    atomic::{AtomicI64, Ordering},
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Money, PriceView};
use crate::{
    data::activity::Event,
    error::AppError,
    llm::Usage,
    platform::{
        crypto::{DataKey, Place, Sealed},
        jobs::{self, Kind, NewJob},
        keystore::SealedColumn,
        mail::Outgoing,
        persist,
        settings::{BillingMode, QuotaPeriod, QuotaUnit, Quotas},
    },
    provider::Provider,
    state::AppState,
};

pub const SEALED: &[SealedColumn] = &[
    SealedColumn::owned("usage_entries", "details"),
    SealedColumn {
        table: "usage_entries",
        column: "team_details",
        id: "id",
        owner: "team_id",
    },
    SealedColumn::owned("credit_transactions", "note"),
];

pub fn place(table: &'static str, column: &'static str, id: Uuid, owner: Uuid) -> Place {
    Place::new(table, column, id, owner)
}

/// Output tokens a reply is assumed to need when its agent sets no limit
/// (for the credits it reserves).
pub const ASSUMED_OUTPUT_TOKENS: u64 = 2_000;
/// Input tokens a reply is assumed to read (its context, up to the
/// conversation's last messages).
pub const ASSUMED_INPUT_TOKENS: u64 = 8_000;
/// A spike: an hour at this many times the user's usual hourly spend.
pub const SPIKE_FACTOR: i64 = 10;
/// Hours of use in the last week before a spike can be told from normal.
const SPIKE_HISTORY_HOURS: i64 = 3;

/// A model's price, one version of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct Price {
    pub id: Uuid,
    pub input_per_mtok: i64,
    pub output_per_mtok: i64,
}

impl Price {
    /// What `input` and `output` tokens cost, rounded up to a whole
    /// micro-unit (never a float).
    pub fn cost(&self, input: u64, output: u64) -> i64 {
        let micro = i128::from(input) * i128::from(self.input_per_mtok)
            + i128::from(output) * i128::from(self.output_per_mtok);
        let whole = (micro + 999_999) / 1_000_000;
        i64::try_from(whole).unwrap_or(i64::MAX)
    }
}

/// The price in force for `model` of `provider` (`Prices::of`).
pub async fn price_of(db: &PgPool, provider: Provider, model: &str) -> Result<Price, AppError> {
    static CURRENT: LazyLock<String> = LazyLock::new(|| current_prices("$1"));
    let prices: PriceColumns = sqlx::query_as(sqlx::AssertSqlSafe(CURRENT.as_str()))
        .bind(provider.as_str())
        .fetch_one(db)
        .await?;
    Ok(Prices::from(prices).of(model))
}

/// The current price of every model of the provider named by SQL
/// expression `provider`, as four arrays (`PriceColumns`). A send reads them
/// in the statement that reads its agent: the agent's model is sealed, so
/// the one price is chosen (`Prices::of`) once the agent is opened.
pub(crate) fn current_prices(provider: &str) -> String {
    format!(
        "SELECT coalesce(array_agg(p.model), '{{}}') AS price_models,
                coalesce(array_agg(p.id), '{{}}') AS price_ids,
                coalesce(array_agg(p.input_per_mtok), '{{}}') AS price_inputs,
                coalesce(array_agg(p.output_per_mtok), '{{}}') AS price_outputs
         FROM (SELECT DISTINCT ON (model) model, id, input_per_mtok, output_per_mtok
               FROM model_prices WHERE provider = {provider}
               ORDER BY model, created_at DESC) p"
    )
}

/// The columns `current_prices` reads, one array each, a model at each index.
#[derive(sqlx::FromRow)]
pub(crate) struct PriceColumns {
    price_models: Vec<String>,
    price_ids: Vec<Uuid>,
    price_inputs: Vec<i64>,
    price_outputs: Vec<i64>,
}

impl From<PriceColumns> for Prices {
    fn from(c: PriceColumns) -> Self {
        let prices = c
            .price_ids
            .into_iter()
            .zip(c.price_inputs)
            .zip(c.price_outputs);
        Prices(
            c.price_models
                .into_iter()
                .zip(prices)
                .map(|(model, ((id, input_per_mtok), output_per_mtok))| {
                    let price = Price {
                        id,
                        input_per_mtok,
                        output_per_mtok,
                    };
                    (model, price)
                })
                .collect(),
        )
    }
}

/// The current prices of one provider's models (`current_prices`).
pub struct Prices(Vec<(String, Price)>);

impl Prices {
    /// `model`'s price: its own, else the provider's `*`, else free.
    pub fn of(&self, model: &str) -> Price {
        let find = |name: &str| self.0.iter().find(|(m, _)| m == name).map(|(_, p)| *p);
        find(model).or_else(|| find("*")).unwrap_or(Price {
            id: Uuid::nil(),
            input_per_mtok: 0,
            output_per_mtok: 0,
        })
    }
}

/// Sets a model's price from now on: a new version; entries written
/// before keep the price they were charged at.
pub async fn set_price(
    db: &PgPool,
    provider: Provider,
    model: &str,
    input_per_mtok: i64,
    output_per_mtok: i64,
) -> Result<Uuid, AppError> {
    let model = model.trim();
    if model.is_empty() || model.chars().count() > 200 {
        return Err(AppError::invalid(
            "model",
            "Name the model (at most 200 characters), or * for the provider's other models.",
        ));
    }
    if input_per_mtok < 0 || output_per_mtok < 0 {
        return Err(AppError::invalid("price", "A price cannot be negative."));
    }
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO model_prices (id, provider, model, input_per_mtok, output_per_mtok)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(provider.as_str())
    .bind(model)
    .bind(input_per_mtok)
    .bind(output_per_mtok)
    .execute(db)
    .await?;
    tracing::info!(provider = provider.as_str(), price_id = %id, "model price set");
    Ok(id)
}

/// The prices in force, one per provider and model.
pub async fn prices(db: &PgPool) -> Result<Vec<PriceView>, AppError> {
    let rows: Vec<(String, String, i64, i64, DateTime<Utc>)> = sqlx::query_as(
        "SELECT DISTINCT ON (provider, model) provider, model, input_per_mtok, output_per_mtok, created_at
         FROM model_prices ORDER BY provider, model, created_at DESC",
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(provider, model, input, output, since)| PriceView {
            provider,
            model,
            input_per_mtok: input,
            output_per_mtok: output,
            since: since.format("%Y-%m-%d %H:%M UTC").to_string(),
        })
        .collect())
}

/// What was called, sealed in each entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Details {
    /// "reply" (a chat, schedule, Telegram or API reply, one entry per
    /// model call of its tool loop) or "embedding".
    pub kind: String,
    pub agent_id: Option<Uuid>,
    /// The agent's name when it was used (a knowledge base's for embeddings).
    pub agent: Option<String>,
    pub provider: String,
    pub model: String,
    /// The price version applied, and its figures.
    pub price_id: Uuid,
    pub input_per_mtok: i64,
    pub output_per_mtok: i64,
    /// The provider reported no token counts: estimated from the text.
    #[serde(default)]
    pub estimated: bool,
}

/// May a reply be started, and how is it paid for.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Counts against budgets and credits.
    pub charged: bool,
    pub price: Price,
    /// Credits reserved while it is written (credits mode, charged calls).
    pub hold: i64,
}

/// Whether a call on a key from `platform` (the operator's key, or the
/// demo model) is charged under this deployment's settings.
pub fn is_charged(state: &AppState, platform: bool) -> bool {
    platform || state.settings.billing.charge_own_keys
}

/// Decides whether `owner` may start a reply at `price` (for `team`'s
/// agent, if any), before anything is stored: refused with a
/// plain sentence when a quota is used up or the credits cannot cover it.
pub async fn admit(
    state: &AppState,
    owner: Uuid,
    team: Option<Uuid>,
    price: Price,
    max_output_tokens: Option<u32>,
    platform: bool,
) -> Result<Plan, AppError> {
    let charged = is_charged(state, platform);
    let output = max_output_tokens.map_or(ASSUMED_OUTPUT_TOKENS, u64::from);
    let mut plan = Plan {
        charged,
        price,
        hold: 0,
    };
    if !charged {
        return Ok(plan);
    }
    match state.settings.billing.mode {
        BillingMode::Unlimited => {}
        BillingMode::Quotas(quotas) => {
            if let Some(limit) = quotas.per_user {
                let used = used(&state.db, Holder::User(owner), quotas).await?;
                if used >= limit as i64 {
                    return Err(AppError::invalid(
                        "message",
                        format!(
                            "You have used your {} allowance ({}): it renews {}. \
                             Your usage is on the Usage page.",
                            period_word(quotas.period),
                            quota_amount(state, quotas.unit, limit as i64),
                            renews(quotas.period),
                        ),
                    ));
                }
            }
            if let (Some(limit), Some(team)) = (quotas.per_team, team) {
                let used = used(&state.db, Holder::Team(team), quotas).await?;
                if used >= limit as i64 {
                    return Err(AppError::invalid(
                        "message",
                        format!(
                            "This team has used its {} allowance ({}): it renews {}.",
                            period_word(quotas.period),
                            quota_amount(state, quotas.unit, limit as i64),
                            renews(quotas.period),
                        ),
                    ));
                }
            }
        }
        BillingMode::Credits => {
            plan.hold = price.cost(ASSUMED_INPUT_TOKENS, output).max(1);
            let balance = balance(&state.db, owner).await?;
            if balance < plan.hold {
                return Err(not_enough(state, balance, plan.hold));
            }
        }
    }
    Ok(plan)
}

fn not_enough(state: &AppState, balance: i64, hold: i64) -> AppError {
    let currency = &state.settings.billing.currency;
    let sentence = if balance <= 0 {
        "You have no credits left: add credits on the Usage page to keep chatting.".to_owned()
    } else {
        format!(
            "A reply from this agent can cost up to {} and you have {} in credits: \
             add credits on the Usage page to keep chatting.",
            Money(hold).display(currency),
            Money(balance).display(currency),
        )
    };
    AppError::invalid("message", sentence)
}

fn period_word(period: QuotaPeriod) -> &'static str {
    match period {
        QuotaPeriod::Day => "daily",
        QuotaPeriod::Month => "monthly",
    }
}

fn renews(period: QuotaPeriod) -> &'static str {
    match period {
        QuotaPeriod::Day => "at midnight UTC",
        QuotaPeriod::Month => "on the 1st (UTC)",
    }
}

fn quota_amount(state: &AppState, unit: QuotaUnit, amount: i64) -> String {
    match unit {
        QuotaUnit::Tokens => format!("{} tokens", super::thousands(amount)),
        QuotaUnit::Cost => Money(amount).display(&state.settings.billing.currency),
    }
}

/// Whose budget.
#[derive(Debug, Clone, Copy)]
pub enum Holder {
    User(Uuid),
    Team(Uuid),
}

impl Holder {
    /// The `usage_entries` column that names the holder, and its id.
    fn column(self) -> (&'static str, Uuid) {
        match self {
            Holder::User(id) => ("owner_id", id),
            Holder::Team(id) => ("team_id", id),
        }
    }
}

/// What `holder` used in the quota's current period (charged calls), in
/// the quota's unit.
pub async fn used(db: &PgPool, holder: Holder, quotas: Quotas) -> Result<i64, AppError> {
    let (column, id) = holder.column();
    let amount = match quotas.unit {
        QuotaUnit::Tokens => "input_tokens + output_tokens",
        QuotaUnit::Cost => "cost",
    };
    let sql = format!(
        "SELECT coalesce(sum({amount}), 0)::bigint FROM usage_entries
         WHERE {column} = $1 AND charged
           AND created_at >= date_trunc($2, now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
    );
    // Built from two fixed choices each, never from input.
    Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(match quotas.period {
            QuotaPeriod::Day => "day",
            QuotaPeriod::Month => "month",
        })
        .fetch_one(db)
        .await?)
}

/// `owner`'s credit balance (what replies being written hold is not in it).
pub async fn balance(db: &PgPool, owner: Uuid) -> Result<i64, AppError> {
    Ok(
        sqlx::query_scalar("SELECT balance FROM credit_balances WHERE owner_id = $1")
            .bind(owner)
            .fetch_optional(db)
            .await?
            .unwrap_or(0),
    )
}

/// Takes a reply's reservation from its user's balance, in the
/// transaction that queues it: refused (and the transaction rolls back)
/// when the balance no longer covers it, because another reply took it.
pub async fn reserve(
    state: &AppState,
    tx: &mut sqlx::PgConnection,
    owner: Uuid,
    message: Uuid,
    plan: &Plan,
) -> Result<(), AppError> {
    if plan.hold <= 0 {
        return Ok(());
    }
    let left: Option<i64> = sqlx::query_scalar(
        "UPDATE credit_balances SET balance = balance - $2, updated_at = now()
         WHERE owner_id = $1 AND balance >= $2 RETURNING balance",
    )
    .bind(owner)
    .bind(plan.hold)
    .fetch_optional(&mut *tx)
    .await?;
    if left.is_none() {
        let balance: i64 = sqlx::query_scalar(
            "SELECT coalesce((SELECT balance FROM credit_balances WHERE owner_id = $1), 0)",
        )
        .bind(owner)
        .fetch_one(&mut *tx)
        .await?;
        return Err(not_enough(state, balance, plan.hold));
    }
    sqlx::query("INSERT INTO credit_holds (message_id, owner_id, amount) VALUES ($1, $2, $3)")
        .bind(message)
        .bind(owner)
        .bind(plan.hold)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Adds `amount` to `owner`'s balance with a transaction whose note (what
/// it was) is sealed. In the caller's transaction.
pub async fn credit(
    tx: &mut sqlx::PgConnection,
    owner: Uuid,
    key: &DataKey,
    kind: &str,
    amount: i64,
    note: &str,
) -> Result<i64, AppError> {
    let balance: i64 = sqlx::query_scalar(
        "INSERT INTO credit_balances (owner_id, balance) VALUES ($1, $2)
         ON CONFLICT (owner_id) DO UPDATE
           SET balance = credit_balances.balance + $2, updated_at = now()
         RETURNING balance",
    )
    .bind(owner)
    .bind(amount)
    .fetch_one(&mut *tx)
    .await?;
    record_transaction(tx, owner, key, kind, amount, note).await?;
    Ok(balance)
}

async fn record_transaction(
    tx: &mut sqlx::PgConnection,
    owner: Uuid,
    key: &DataKey,
    kind: &str,
    amount: i64,
    note: &str,
) -> Result<(), AppError> {
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO credit_transactions (id, owner_id, kind, amount, note)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(owner)
    .bind(kind)
    .bind(amount)
    .bind(key.seal_str(place("credit_transactions", "note", id, owner), note))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Writes a run's (or an embedding's) model calls to the ledger, and in
/// credits mode settles its reservation when it ends.
#[derive(Clone)]
pub struct Meter {
    inner: Arc<MeterInner>,
}

struct MeterInner {
    state: AppState,
    owner: Uuid,
    key: DataKey,
    team: Option<(Uuid, DataKey)>,
    details: Details,
    price: Price,
    charged: bool,
    /// The reply whose reservation `settle` gives back (credits mode).
    reply: Option<Uuid>,
    /// A reply's meter: alerts and spikes are checked once when it ends
    /// (`settle`), not after each model call of its tool loop.
    per_run: bool,
    /// What the calls so far cost.
    spent: AtomicI64,
}

/// What a meter records for: who, which agent, which model.
pub struct Subject<'a> {
    pub owner: Uuid,
    pub key: &'a DataKey,
    /// The team whose agent (or knowledge base) it is, with its key.
    pub team: Option<(Uuid, DataKey)>,
    pub kind: &'static str,
    pub agent: Option<(Uuid, String)>,
    pub provider: Provider,
    pub model: &'a str,
}

impl Meter {
    pub fn new(state: &AppState, subject: Subject<'_>, plan: &Plan, reply: Option<Uuid>) -> Self {
        let (agent_id, agent) = subject.agent.unzip();
        Meter {
            inner: Arc::new(MeterInner {
                state: state.clone(),
                owner: subject.owner,
                key: subject.key.clone(),
                team: subject.team,
                details: Details {
                    kind: subject.kind.to_owned(),
                    agent_id,
                    agent,
                    provider: subject.provider.as_str().to_owned(),
                    model: subject.model.to_owned(),
                    price_id: plan.price.id,
                    input_per_mtok: plan.price.input_per_mtok,
                    output_per_mtok: plan.price.output_per_mtok,
                    estimated: false,
                },
                price: plan.price,
                charged: plan.charged,
                reply: reply.filter(|_| plan.hold > 0),
                per_run: reply.is_some(),
                spent: AtomicI64::new(0),
            }),
        }
    }

    /// A meter for embeddings: the price looked up now, charged like a reply
    /// on the same key (no reservation: ingestion is not refused midway).
    pub async fn for_embeddings(
        state: &AppState,
        subject: Subject<'_>,
        platform: bool,
    ) -> Result<Self, AppError> {
        let price = price_of(&state.db, subject.provider, subject.model).await?;
        let plan = Plan {
            charged: is_charged(state, platform),
            price,
            hold: 0,
        };
        Ok(Meter::new(state, subject, &plan, None))
    }

    /// Writes one model call, retrying while the database is away (a lost
    /// entry would be use nobody pays for): the reply waits meanwhile.
    pub async fn record(&self, usage: Usage, estimated: bool) {
        // One id for every try: a try whose answer was lost is not counted twice.
        let id = Uuid::new_v4();
        persist::until_written("a usage entry", persist::PATIENCE, || {
            self.write(id, usage, estimated)
        })
        .await;
    }

    async fn write(&self, id: Uuid, usage: Usage, estimated: bool) -> Result<(), AppError> {
        let m = &self.inner;
        let cost = m.price.cost(usage.input_tokens, usage.output_tokens);
        let details = Details {
            estimated,
            ..m.details.clone()
        };
        let json = serde_json::to_string(&details)
            .map_err(|_| AppError::internal("usage details did not serialise"))?;
        let sealed = m
            .key
            .seal_str(place("usage_entries", "details", id, m.owner), &json);
        let team_sealed = m.team.as_ref().map(|(team, key)| {
            key.seal_str(place("usage_entries", "team_details", id, *team), &json)
        });
        sqlx::query(
            "INSERT INTO usage_entries
               (id, owner_id, team_id, input_tokens, output_tokens, cost, charged, details, team_details)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(m.owner)
        .bind(m.team.as_ref().map(|(t, _)| *t))
        .bind(i64::try_from(usage.input_tokens).unwrap_or(i64::MAX))
        .bind(i64::try_from(usage.output_tokens).unwrap_or(i64::MAX))
        .bind(cost)
        .bind(m.charged)
        .bind(sealed)
        .bind(team_sealed)
        .execute(&m.state.db)
        .await?;
        m.spent.fetch_add(cost, Ordering::Relaxed);
        if !m.per_run {
            // Embeddings (no reservation) are charged as they happen.
            if m.charged && m.state.settings.billing.mode == BillingMode::Credits && cost > 0 {
                charge(&m.state, m.owner, &m.key, 0, cost, &self.note()).await?;
            }
            self.check().await;
        }
        Ok(())
    }

    /// Alerts for the budget (charged use only) and a spike.
    async fn check(&self) {
        let m = &self.inner;
        if m.charged {
            alerts(&m.state, m.owner, &m.key, m.team.as_ref().map(|(t, _)| *t)).await;
        }
        spike(&m.state, m.owner, &m.key).await;
    }

    /// What a charge was for (its amount is the transaction's own).
    fn note(&self) -> String {
        let d = &self.inner.details;
        let what = match (&d.agent, d.kind.as_str()) {
            (Some(agent), "embedding") => format!("Embeddings for “{agent}”"),
            (Some(agent), _) => format!("Reply from “{agent}”"),
            (None, _) => "Model use".to_owned(),
        };
        format!("{what} ({} {})", d.provider, d.model)
    }

    /// The reply ended: its reservation is given back, less what its calls
    /// cost (the balance stops at zero when they cost more), once; then
    /// the budget's alerts and a spike are checked.
    pub async fn settle(&self) {
        self.give_back().await;
        self.check().await;
    }

    /// Retried while the database is away: the hold is gone once it lands,
    /// so a repeat finds nothing to settle.
    async fn give_back(&self) {
        let m = &self.inner;
        let Some(reply) = m.reply else {
            return;
        };
        let cost = m.spent.load(Ordering::Relaxed);
        let settle = || async {
            let mut tx = m.state.db.begin().await?;
            let held: Option<i64> = sqlx::query_scalar(
                "DELETE FROM credit_holds WHERE message_id = $1 AND owner_id = $2 RETURNING amount",
            )
            .bind(reply)
            .bind(m.owner)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(held) = held else {
                return Ok::<_, AppError>(());
            };
            settle_in(&mut tx, m.owner, &m.key, held, cost, &self.note()).await?;
            tx.commit().await?;
            Ok(())
        };
        persist::until_written("a reply's credits", persist::PATIENCE, settle).await;
    }
}

/// Gives `held` back to the balance and takes `cost` from it (no lower
/// than zero), recording the charge.
async fn settle_in(
    tx: &mut sqlx::PgConnection,
    owner: Uuid,
    key: &DataKey,
    held: i64,
    cost: i64,
    note: &str,
) -> Result<(), AppError> {
    let taken: Option<i64> = sqlx::query_scalar(
        "WITH before AS (SELECT balance FROM credit_balances WHERE owner_id = $1 FOR UPDATE)
         UPDATE credit_balances c
            SET balance = before.balance + $2 - least($3, before.balance + $2), updated_at = now()
           FROM before WHERE c.owner_id = $1
         RETURNING least($3, before.balance + $2)",
    )
    .bind(owner)
    .bind(held)
    .bind(cost)
    .fetch_optional(&mut *tx)
    .await?;
    let taken = taken.unwrap_or(0);
    if taken > 0 {
        let note = if taken < cost {
            format!("{note} (the balance covered only part of it)")
        } else {
            note.to_owned()
        };
        record_transaction(tx, owner, key, "charge", -taken, &note).await?;
    }
    Ok(())
}

/// Charges `cost` now (no reservation), in a transaction of its own.
async fn charge(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    held: i64,
    cost: i64,
    note: &str,
) -> Result<(), AppError> {
    let mut tx = state.db.begin().await?;
    settle_in(&mut tx, owner, key, held, cost, note).await?;
    tx.commit().await?;
    Ok(())
}

/// Gives back, whole, the reservations of replies no longer being
/// written (their server stopped before it could settle them). For the
/// hourly job; how many.
pub async fn release_orphan_holds(db: &PgPool) -> Result<u64, sqlx::Error> {
    let mut tx = db.begin().await?;
    let released: Vec<(Uuid, i64)> = sqlx::query_as(
        "DELETE FROM credit_holds h
         WHERE h.created_at < now() - interval '5 minutes'
           AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = h.message_id
                             AND m.status IN ('streaming', 'awaiting_approval'))
         RETURNING owner_id, amount",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (owner, amount) in &released {
        sqlx::query(
            "UPDATE credit_balances SET balance = balance + $2, updated_at = now() WHERE owner_id = $1",
        )
        .bind(owner)
        .bind(amount)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(released.len() as u64)
}

/// Mails `owner` at 80% and 100% of their quota (and their team's, if the
/// call was for a team's agent, to the owner of the call), once a period;
/// in credits mode when the balance falls under a fifth of the last
/// top-up, and when it is gone, once per top-up.
async fn alerts(state: &AppState, owner: Uuid, key: &DataKey, team: Option<Uuid>) {
    let result = async {
        match state.settings.billing.mode {
            BillingMode::Unlimited => {}
            BillingMode::Quotas(quotas) => {
                let period = period_start(quotas.period);
                if let Some(limit) = quotas.per_user {
                    let used = used(&state.db, Holder::User(owner), quotas).await?;
                    quota_alert(state, owner, key, None, quotas, limit as i64, used, &period).await?;
                }
                if let (Some(limit), Some(team)) = (quotas.per_team, team) {
                    let used = used(&state.db, Holder::Team(team), quotas).await?;
                    quota_alert(state, owner, key, Some(team), quotas, limit as i64, used, &period)
                        .await?;
                }
            }
            BillingMode::Credits => {
                let last: Option<(Uuid, i64)> = sqlx::query_as(
                    "SELECT id, amount FROM credit_transactions
                     WHERE owner_id = $1 AND kind IN ('top_up', 'grant')
                     ORDER BY created_at DESC LIMIT 1",
                )
                .bind(owner)
                .fetch_optional(&state.db)
                .await?;
                let Some((top_up, added)) = last else {
                    return Ok(());
                };
                let balance = balance(&state.db, owner).await?;
                let currency = &state.settings.billing.currency;
                let (level, subject, sentence) = if balance <= 0 {
                    (
                        "100",
                        "Your Enclave credits are used up",
                        "Your credits are used up: replies on the server's keys wait until you add credits."
                            .to_owned(),
                    )
                } else if balance * 5 <= added {
                    (
                        "80",
                        "Your Enclave credits are running low",
                        format!(
                            "You have {} left of the {} you last added.",
                            Money(balance).display(currency),
                            Money(added).display(currency)
                        ),
                    )
                } else {
                    return Ok(());
                };
                notify(
                    state,
                    owner,
                    key,
                    &format!("credits-{level}:{owner}:{top_up}"),
                    subject,
                    &sentence,
                    (level == "100").then_some(Event::BudgetReached),
                )
                .await?;
            }
        }
        Ok::<_, AppError>(())
    }
    .await;
    if let Err(err) = result {
        tracing::warn!(user_id = %owner, error = %err, "could not check usage alerts");
    }
}

#[allow(clippy::too_many_arguments)]
async fn quota_alert(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    team: Option<Uuid>,
    quotas: Quotas,
    limit: i64,
    used: i64,
    period: &str,
) -> Result<(), AppError> {
    if limit <= 0 {
        return Ok(());
    }
    let level = if used >= limit {
        100
    } else if used * 10 >= limit * 8 {
        80
    } else {
        return Ok(());
    };
    let whose = if team.is_some() {
        "Your team has"
    } else {
        "You have"
    };
    let sentence = format!(
        "{whose} used {level}% of the {} allowance ({} of {}).{}",
        period_word(quotas.period),
        quota_amount(state, quotas.unit, used),
        quota_amount(state, quotas.unit, limit),
        if level == 100 {
            format!(
                " New replies on the server's keys wait until it renews {}.",
                renews(quotas.period)
            )
        } else {
            String::new()
        }
    );
    let subject = if level == 100 {
        "Your Enclave usage allowance is used up"
    } else {
        "You have used 80% of your Enclave allowance"
    };
    let holder = team.map_or(format!("user:{owner}"), |t| format!("team:{t}:{owner}"));
    notify(
        state,
        owner,
        key,
        &format!("quota-{level}:{holder}:{period}"),
        subject,
        &sentence,
        (level == 100).then_some(Event::BudgetReached),
    )
    .await?;
    Ok(())
}

fn period_start(period: QuotaPeriod) -> String {
    let now = Utc::now();
    match period {
        QuotaPeriod::Day => now.format("%Y-%m-%d").to_string(),
        QuotaPeriod::Month => now.format("%Y-%m").to_string(),
    }
}

/// Records the alert `key` (ids and a period, never user data); false when
/// it was sent already.
async fn first_time(db: &PgPool, owner: Uuid, key: &str) -> Result<bool, AppError> {
    Ok(sqlx::query_scalar::<_, String>(
        "INSERT INTO usage_alerts (key, owner_id) VALUES ($1, $2)
         ON CONFLICT DO NOTHING RETURNING key",
    )
    .bind(key)
    .bind(owner)
    .fetch_optional(db)
    .await?
    .is_some())
}

/// Mails `owner` once per `idempotency` (and writes `activity`, if any, to
/// their activity log with the sentence). Whether it was the first time.
async fn notify(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
    idempotency: &str,
    subject: &str,
    sentence: &str,
    activity: Option<Event>,
) -> Result<bool, AppError> {
    if !first_time(&state.db, owner, idempotency).await? {
        return Ok(false);
    }
    let (email, first_name) = crate::data::activity::server::contact(&state.db, owner, key).await?;
    let usage = format!("{}/usage", state.settings.public_url.trim_end_matches('/'));
    let mail = Outgoing {
        to: email,
        subject: subject.to_owned(),
        text: format!("Hello {first_name},\n\n{sentence}\n\nYour usage:\n\n{usage}\n"),
        html: format!(
            "<p>Hello {},</p><p>{}</p><p><a href=\"{}\">Your usage</a></p>",
            crate::platform::mail::escape_html(&first_name),
            crate::platform::mail::escape_html(sentence),
            crate::platform::mail::escape_html(&usage)
        ),
    };
    let mut conn = state.db.acquire().await?;
    let queued = jobs::enqueue(
        &mut conn,
        NewJob::new(Kind::Mail)
            .for_owner(owner, key, &mail)
            .idempotency_key(idempotency.to_owned()),
    )
    .await?;
    drop(conn);
    if queued.is_some() {
        state.jobs.wake();
    }
    if let Some(event) = activity {
        crate::data::activity::server::note_for(state, owner, key, event, None, Some(sentence))
            .await;
    }
    Ok(true)
}

/// A spike: this hour's spend at `SPIKE_FACTOR` times the user's usual
/// hour (the average of the hours they used anything in the week before),
/// once there is such a week to compare with. Written to the activity log
/// and mailed, once an hour.
async fn spike(state: &AppState, owner: Uuid, key: &DataKey) {
    let result = async {
        let (now, usual, hours): (i64, i64, i64) = sqlx::query_as(
            "WITH hours AS (
               SELECT date_trunc('hour', created_at) AS hour, sum(cost) AS spent
               FROM usage_entries
               WHERE owner_id = $1 AND created_at >= date_trunc('hour', now()) - interval '7 days'
               GROUP BY 1)
             SELECT coalesce((SELECT spent FROM hours WHERE hour = date_trunc('hour', now())), 0)::bigint,
                    coalesce((SELECT avg(spent) FROM hours WHERE hour < date_trunc('hour', now())), 0)::bigint,
                    (SELECT count(*) FROM hours WHERE hour < date_trunc('hour', now()))::bigint",
        )
        .bind(owner)
        .fetch_one(&state.db)
        .await?;
        if hours < SPIKE_HISTORY_HOURS || usual <= 0 || now < usual.saturating_mul(SPIKE_FACTOR) {
            return Ok::<_, AppError>(());
        }
        let currency = &state.settings.billing.currency;
        let sentence = format!(
            "Your agents have used {} of model calls this hour, more than {SPIKE_FACTOR} times \
             your usual hour ({}). If that is not you or your schedules, check your API keys \
             and sessions.",
            Money(now).display(currency),
            Money(usual).display(currency),
        );
        let hour = Utc::now().format("%Y-%m-%dT%H");
        let first = notify(
            state,
            owner,
            key,
            &format!("usage-spike:{owner}:{hour}"),
            "Unusually high usage on your Enclave account",
            &sentence,
            Some(Event::UsageSpike),
        )
        .await?;
        if first {
            tracing::warn!(user_id = %owner, "unusual usage");
        }
        Ok(())
    }
    .await;
    if let Err(err) = result {
        tracing::warn!(user_id = %owner, error = %err, "could not check for a usage spike");
    }
}

/// One ledger row, opened.
#[derive(Debug, Clone)]
pub struct Entry {
    pub at: DateTime<Utc>,
    pub owner: Uuid,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost: i64,
    pub charged: bool,
    /// `None` when it cannot be opened any more (a team's copy after the
    /// team was deleted).
    pub details: Option<Details>,
}

/// `holder`'s entries since `since`, oldest first, opened with `key` (the
/// user's own for `User`, the team's for `Team`).
pub async fn entries(
    db: &PgPool,
    holder: Holder,
    key: &DataKey,
    since: DateTime<Utc>,
) -> Result<Vec<Entry>, AppError> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: Uuid,
        owner_id: Uuid,
        team_id: Option<Uuid>,
        input_tokens: i64,
        output_tokens: i64,
        cost: i64,
        charged: bool,
        details: Sealed,
        team_details: Option<Sealed>,
        created_at: DateTime<Utc>,
    }
    let (column, id) = holder.column();
    // The column is one of two fixed names, never input.
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, owner_id, team_id, input_tokens, output_tokens, cost, charged, details,
                team_details, created_at
         FROM usage_entries WHERE {column} = $1 AND created_at >= $2 ORDER BY created_at, id"
    )))
    .bind(id)
    .bind(since)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|row| {
            let opened = match holder {
                Holder::User(owner) => Some(key.open_text(
                    place("usage_entries", "details", row.id, owner),
                    &row.details,
                )?),
                Holder::Team(team) => row
                    .team_details
                    .as_ref()
                    .filter(|_| row.team_id == Some(team))
                    .map(|sealed| {
                        key.open_text(place("usage_entries", "team_details", row.id, team), sealed)
                    })
                    .transpose()?,
            };
            Ok(Entry {
                at: row.created_at,
                owner: row.owner_id,
                input_tokens: row.input_tokens,
                output_tokens: row.output_tokens,
                cost: row.cost,
                charged: row.charged,
                details: opened.and_then(|json| serde_json::from_str(&json).ok()),
            })
        })
        .collect()
}

/// Before a team is deleted: its copies of its members' usage can no
/// longer be opened (its key goes), so they go; each member's own stays.
pub async fn forget_team(tx: &mut sqlx::PgConnection, team: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE usage_entries SET team_id = NULL, team_details = NULL WHERE team_id = $1")
        .bind(team)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The longest period the usage page shows.
pub const MAX_DAYS: u32 = 366;

/// What `user` used in the last `days` days (their own, or with `team` a
/// team's, for its admins and owners; anyone else gets `NotFound`), opened
/// and summed; and the CSV of it when `csv`.
pub async fn report(
    state: &AppState,
    user: Uuid,
    key: &DataKey,
    team: Option<Uuid>,
    days: u32,
) -> Result<(super::UsageReport, Vec<super::Counted>), AppError> {
    use super::{BudgetView, Counted, CreditsView, TransactionView, UsageReport, summarise};
    let days = days.clamp(1, MAX_DAYS);
    let today = Utc::now().date_naive();
    let first = today - chrono::Duration::days(i64::from(days) - 1);
    let since = first
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or_else(Utc::now);
    let day_labels: Vec<String> = first
        .iter_days()
        .take(days as usize)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .collect();
    let billing = &state.settings.billing;
    let currency = billing.currency.clone();
    // The teams whose usage this user may see: those they administer.
    let teams = crate::teams::server::choices(state, user).await?;
    let (entries, shown, people) = match team {
        None => (
            entries(&state.db, Holder::User(user), key, since).await?,
            None,
            std::collections::HashMap::new(),
        ),
        Some(team) => {
            // Only a team this user administers (anything else: not found).
            let name = teams
                .iter()
                .find(|t| t.id == team.to_string())
                .map(|t| t.name.clone())
                .ok_or(AppError::NotFound)?;
            let team_key = crate::platform::keystore::team_key_for_member(
                &state.db,
                &state.crypto.keyring,
                team,
                user,
            )
            .await?;
            let people: std::collections::HashMap<String, String> =
                crate::teams::server::members(state, team, user)
                    .await?
                    .into_iter()
                    .map(|m| (m.user_id, m.name))
                    .collect();
            (
                entries(&state.db, Holder::Team(team), &team_key, since).await?,
                Some((team.to_string(), name)),
                people,
            )
        }
    };
    let counted: Vec<Counted> = entries
        .iter()
        .map(|e| {
            let (agent, model) = match &e.details {
                Some(d) => (
                    d.agent.clone().unwrap_or_else(|| "(no agent)".into()),
                    format!("{} {}", d.provider, d.model),
                ),
                None => ("(unreadable)".into(), "(unreadable)".into()),
            };
            Counted {
                day: e.at.format("%Y-%m-%d").to_string(),
                agent,
                model,
                person: people
                    .get(&e.owner.to_string())
                    .cloned()
                    .unwrap_or_else(|| "Someone who left".into()),
                input_tokens: e.input_tokens,
                output_tokens: e.output_tokens,
                cost: e.cost,
            }
        })
        .collect();
    let (by_day, by_agent, by_model, by_person, total) = summarise(&counted, &day_labels);
    let mut budgets = Vec::new();
    if let BillingMode::Quotas(quotas) = billing.mode {
        let mut budget = |label: String, used: i64, limit: u64| {
            let limit = limit as i64;
            budgets.push(BudgetView {
                label,
                used: quota_amount(state, quotas.unit, used),
                limit: quota_amount(state, quotas.unit, limit),
                percent: if limit > 0 {
                    ((used.saturating_mul(100)) / limit).clamp(0, 999) as u32
                } else {
                    100
                },
            });
        };
        match team {
            None => {
                if let Some(limit) = quotas.per_user {
                    let used = used(&state.db, Holder::User(user), quotas).await?;
                    budget(
                        format!("Your {} allowance", period_word(quotas.period)),
                        used,
                        limit,
                    );
                }
            }
            Some(team) => {
                if let Some(limit) = quotas.per_team {
                    let used = used(&state.db, Holder::Team(team), quotas).await?;
                    budget(
                        format!("This team's {} allowance", period_word(quotas.period)),
                        used,
                        limit,
                    );
                }
            }
        }
    }
    let credits = if billing.mode == BillingMode::Credits && team.is_none() {
        let held: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(amount), 0)::bigint FROM credit_holds WHERE owner_id = $1",
        )
        .bind(user)
        .fetch_one(&state.db)
        .await?;
        let rows: Vec<(Uuid, String, i64, Sealed, DateTime<Utc>)> = sqlx::query_as(
            "SELECT id, kind, amount, note, created_at FROM credit_transactions
             WHERE owner_id = $1 ORDER BY created_at DESC, id LIMIT 50",
        )
        .bind(user)
        .fetch_all(&state.db)
        .await?;
        let transactions = rows
            .into_iter()
            .map(|(id, kind, amount, note, at)| {
                Ok(TransactionView {
                    at: at.format("%Y-%m-%d %H:%M UTC").to_string(),
                    kind: match kind.as_str() {
                        "top_up" => "Top-up",
                        "grant" => "Granted",
                        _ => "Spent",
                    }
                    .to_owned(),
                    amount: Money(amount).display(&currency),
                    note: key.open_text(place("credit_transactions", "note", id, user), &note)?,
                })
            })
            .collect::<Result<Vec<_>, AppError>>()?;
        let top_ups = if billing.stripe.is_some() {
            billing
                .top_ups
                .iter()
                .map(|a| (*a, Money(*a).display(&currency)))
                .collect()
        } else {
            Vec::new()
        };
        Some(CreditsView {
            balance: Money(balance(&state.db, user).await?).display(&currency),
            held: Money(held).display(&currency),
            transactions,
            top_ups,
        })
    } else {
        None
    };
    Ok((
        UsageReport {
            mode: match billing.mode {
                BillingMode::Unlimited => "unlimited",
                BillingMode::Quotas(_) => "quotas",
                BillingMode::Credits => "credits",
            }
            .to_owned(),
            team: shown,
            teams: teams.into_iter().map(|t| (t.id, t.name)).collect(),
            days,
            currency,
            by_day,
            by_agent,
            by_model,
            by_person,
            total,
            budgets,
            credits,
            own_keys_exempt: !billing.charge_own_keys,
        },
        counted,
    ))
}

/// Deletes up to `batch` usage entries older than `days` (the policies keep
/// token usage with the conversations: 90 days), Stripe event ids as old,
/// and marks checkouts never paid within a day expired. Credit
/// transactions stay while the account does (they are its balance's
/// history).
pub async fn purge(db: &PgPool, days: u32, batch: i64) -> Result<u64, sqlx::Error> {
    // Table, key and time column: fixed names, never input.
    let older = |table: &str, id: &str, at: &str, days: u32| {
        let sql = format!(
            "DELETE FROM {table} WHERE {id} IN (
               SELECT {id} FROM {table} WHERE {at} < now() - make_interval(days => $1) LIMIT $2)"
        );
        async move {
            Ok::<_, sqlx::Error>(
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(days as i32)
                    .bind(batch)
                    .execute(db)
                    .await?
                    .rows_affected(),
            )
        }
    };
    let entries = older("usage_entries", "id", "created_at", days).await?;
    let events = older("stripe_events", "event_id", "received_at", days).await?;
    // Longer than the longest period an alert is for (a month).
    let alerts = older("usage_alerts", "key", "created_at", 40).await?;
    sqlx::query(
        "UPDATE credit_checkouts SET status = 'expired'
         WHERE status = 'open' AND created_at < now() - interval '1 day'",
    )
    .execute(db)
    .await?;
    Ok(entries + events + alerts)
}

/// Everything the ledger holds about `owner`, for their export: each model
/// call (with what was called, opened), the credit balance, its changes,
/// and the card payments begun (amounts and states; Stripe holds the rest).
pub async fn export(
    state: &AppState,
    owner: Uuid,
    key: &DataKey,
) -> Result<serde_json::Value, AppError> {
    let calls: Vec<serde_json::Value> = entries(
        &state.db,
        Holder::User(owner),
        key,
        DateTime::<Utc>::UNIX_EPOCH,
    )
    .await?
    .into_iter()
    .map(|e| {
        serde_json::json!({
            "at": e.at,
            "input_tokens": e.input_tokens,
            "output_tokens": e.output_tokens,
            "cost_micro": e.cost,
            "charged": e.charged,
            "details": e.details,
        })
    })
    .collect();
    let rows: Vec<(Uuid, String, i64, Sealed, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, kind, amount, note, created_at FROM credit_transactions
         WHERE owner_id = $1 ORDER BY created_at, id",
    )
    .bind(owner)
    .fetch_all(&state.db)
    .await?;
    let transactions = rows
        .into_iter()
        .map(|(id, kind, amount, note, at)| {
            Ok(serde_json::json!({
                "at": at,
                "kind": kind,
                "amount_micro": amount,
                "note": key.open_text(place("credit_transactions", "note", id, owner), &note)?,
            }))
        })
        .collect::<Result<Vec<_>, AppError>>()?;
    type Checkout = (i64, String, DateTime<Utc>, Option<DateTime<Utc>>);
    let checkouts: Vec<Checkout> = sqlx::query_as(
        "SELECT amount, status, created_at, paid_at FROM credit_checkouts
         WHERE owner_id = $1 ORDER BY created_at",
    )
    .bind(owner)
    .fetch_all(&state.db)
    .await?;
    Ok(serde_json::json!({
        "currency": state.settings.billing.currency,
        "model_calls": calls,
        "credit_balance_micro": balance(&state.db, owner).await?,
        "credit_transactions": transactions,
        "card_payments": checkouts
            .into_iter()
            .map(|(amount, status, at, paid)| serde_json::json!({
                "amount_micro": amount, "status": status, "started_at": at, "paid_at": paid,
            }))
            .collect::<Vec<_>>(),
    }))
}
