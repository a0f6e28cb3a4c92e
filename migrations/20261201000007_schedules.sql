-- Schedules: an agent runs on its own at the times a cron expression names,
-- in the user's time zone, with a prompt. What the user chose is sealed
-- (name, expression, zone, prompt); the scheduler reads only `enabled` and
-- `next_run_at`, and opens the expression with the owner's key to move
-- `next_run_at` on. Each run is recorded in `schedule_runs`, unique per
-- (schedule, fire time), so two servers never start the same run twice.
CREATE TABLE schedules (
    id                    uuid PRIMARY KEY,
    owner_id              uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    agent_id              uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    name                  sealed NOT NULL,
    cron                  sealed NOT NULL,
    time_zone             sealed NOT NULL,
    prompt                sealed NOT NULL,
    -- Continue one conversation (the one the first run started) instead of
    -- starting a new one each time.
    continue_conversation boolean NOT NULL DEFAULT false,
    conversation_id       uuid REFERENCES conversations (id) ON DELETE SET NULL,
    -- Mail the owner each run's reply.
    deliver_mail          boolean NOT NULL DEFAULT false,
    enabled               boolean NOT NULL DEFAULT true,
    -- When it fires next (NULL while off).
    next_run_at           timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX schedules_owner_idx ON schedules (owner_id, agent_id, created_at);
CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE enabled;

CREATE TABLE schedule_runs (
    id              uuid PRIMARY KEY,
    schedule_id     uuid NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    owner_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The time it was due ("run now": the time it was asked for).
    fire_at         timestamptz NOT NULL,
    manual          boolean NOT NULL DEFAULT false,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'running', 'complete', 'waiting', 'failed')),
    started_at      timestamptz,
    finished_at     timestamptz,
    conversation_id uuid REFERENCES conversations (id) ON DELETE SET NULL,
    -- The reply the run started (its tokens and text are the message's).
    message_id      uuid REFERENCES messages (id) ON DELETE SET NULL,
    input_tokens    integer,
    output_tokens   integer,
    -- Why it failed, in plain words.
    error           sealed,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (schedule_id, fire_at)
);
CREATE INDEX schedule_runs_owner_idx ON schedule_runs (owner_id, created_at);
CREATE INDEX schedule_runs_schedule_idx ON schedule_runs (schedule_id, fire_at DESC);
