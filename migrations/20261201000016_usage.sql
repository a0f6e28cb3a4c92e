-- Usage, budgets and credits.
--
-- Amounts are integers in micro-units of the deployment's currency
-- (1 USD = 1,000,000), never floats. They stay plain so that a budget check
-- and a balance change are one SQL statement inside a transaction; what was
-- used (agent, provider, model, the price applied) is sealed with the
-- user's key, and for a team agent a second copy with the team's key, so
-- the team's administrators can read their team's usage.

-- What a model costs: one row per version. A price is never updated, only
-- superseded by a newer row, so an entry keeps the price it was charged at.
-- `model` is a model's exact name, or '*' for the provider's other models.
CREATE TABLE model_prices (
    id              uuid PRIMARY KEY,
    provider        text NOT NULL,
    model           text NOT NULL,
    -- Micro-units per million tokens.
    input_per_mtok  bigint NOT NULL CHECK (input_per_mtok >= 0),
    output_per_mtok bigint NOT NULL CHECK (output_per_mtok >= 0),
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX model_prices_current_idx ON model_prices (provider, model, created_at DESC);

-- Shipped defaults (list prices per million tokens when this was written;
-- the operator changes them on the admin page or with `server prices set`).
INSERT INTO model_prices (id, provider, model, input_per_mtok, output_per_mtok, created_at) VALUES
  ('00000000-0000-4000-8000-000000000001', 'openai', '*',                  2500000, 10000000, '2026-12-01'),
  ('00000000-0000-4000-8000-000000000002', 'openai', 'gpt-4o',             2500000, 10000000, '2026-12-01'),
  ('00000000-0000-4000-8000-000000000003', 'openai', 'gpt-4o-mini',         150000,   600000, '2026-12-01'),
  ('00000000-0000-4000-8000-000000000004', 'openai', 'gpt-4.1',            2000000,  8000000, '2026-12-01'),
  ('00000000-0000-4000-8000-000000000005', 'openai', 'gpt-4.1-mini',        400000,  1600000, '2026-12-01'),
  ('00000000-0000-4000-8000-000000000006', 'openai', 'text-embedding-3-small', 20000,      0, '2026-12-01'),
  ('00000000-0000-4000-8000-000000000007', 'anthropic', '*',               3000000, 15000000, '2026-12-01'),
  ('00000000-0000-4000-8000-000000000008', 'anthropic', 'claude-3-5-haiku-latest', 800000, 4000000, '2026-12-01'),
  ('00000000-0000-4000-8000-000000000009', 'google', '*',                  1250000, 10000000, '2026-12-01'),
  ('00000000-0000-4000-8000-00000000000a', 'google', 'gemini-2.0-flash',    100000,   400000, '2026-12-01'),
  ('00000000-0000-4000-8000-00000000000b', 'openai_compatible', '*',             0,        0, '2026-12-01'),
  ('00000000-0000-4000-8000-00000000000c', 'demo', '*',                          0,        0, '2026-12-01');

-- One row per model call: who made it (`owner_id`), for which team's agent
-- (`team_id`), the tokens the provider reported, and what it cost.
-- `charged`: the call counts against budgets and credits (the operator's
-- key, or any key when the operator charges users' own keys too).
CREATE TABLE usage_entries (
    id            uuid PRIMARY KEY,
    owner_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    team_id       uuid REFERENCES teams (id) ON DELETE SET NULL,
    input_tokens  bigint NOT NULL CHECK (input_tokens >= 0),
    output_tokens bigint NOT NULL CHECK (output_tokens >= 0),
    cost          bigint NOT NULL CHECK (cost >= 0),
    charged       boolean NOT NULL,
    -- Sealed JSON: what was called (kind, agent, provider, model, price).
    details       sealed NOT NULL,
    -- The same, sealed with the team's key (only for a team's agent).
    team_details  sealed,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK ((team_details IS NULL) OR (team_id IS NOT NULL))
);
CREATE INDEX usage_entries_owner_idx ON usage_entries (owner_id, created_at);
CREATE INDEX usage_entries_team_idx ON usage_entries (team_id, created_at) WHERE team_id IS NOT NULL;

-- Prepaid credits (billing mode "credits"): the balance, never below zero.
-- `held`: what replies being written have reserved (taken from the
-- balance when they start, the unused part given back when they end).
CREATE TABLE credit_balances (
    owner_id   uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    balance    bigint NOT NULL DEFAULT 0 CHECK (balance >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every change to a balance: a top-up, a grant, a reply's charge.
-- `amount` is signed (+ added, - spent); the note (what it was for, the
-- Stripe session) is sealed.
CREATE TABLE credit_transactions (
    id         uuid PRIMARY KEY,
    owner_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('top_up', 'grant', 'charge')),
    amount     bigint NOT NULL,
    note       sealed NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credit_transactions_owner_idx ON credit_transactions (owner_id, created_at);

-- A top-up begun: Enclave's side of a Stripe Checkout Session. Credits
-- are added only when Stripe's signed webhook says it was paid, once.
CREATE TABLE credit_checkouts (
    id           uuid PRIMARY KEY,
    owner_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    amount       bigint NOT NULL CHECK (amount > 0),
    -- SHA-256 of Stripe's session id (the id itself is not kept).
    session_hash bytea UNIQUE,
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid', 'expired')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    paid_at      timestamptz
);
CREATE INDEX credit_checkouts_owner_idx ON credit_checkouts (owner_id, created_at);

-- Stripe events already handled: a repeated delivery changes nothing.
CREATE TABLE stripe_events (
    event_id    text PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now()
);

-- What a reply being written has reserved from its user's balance (credits
-- mode): taken when the reply is queued, so two replies at once cannot
-- spend the same credits; given back, less the reply's cost, when it
-- ends. A hold whose reply is no longer being written (its server died)
-- is given back whole by the hourly job.
CREATE TABLE credit_holds (
    message_id uuid PRIMARY KEY,
    owner_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    amount     bigint NOT NULL CHECK (amount > 0),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credit_holds_owner_idx ON credit_holds (owner_id);

-- Alerts sent (80%, 100%, credits low, a spike), by a key of ids and the
-- period, so each is mailed once however many calls cross the line.
CREATE TABLE usage_alerts (
    key        text PRIMARY KEY,
    owner_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);
