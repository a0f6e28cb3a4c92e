-- Background jobs (platform::jobs): claimed with FOR UPDATE SKIP LOCKED and
-- a lease, retried with backoff, dead after max_attempts with the last
-- error (our own words, never a secret). A payload holding user data is
-- sealed with its owner's key, and goes with the owner.
CREATE TABLE jobs (
    id              uuid PRIMARY KEY,
    kind            text NOT NULL,
    owner_id        uuid REFERENCES users (id) ON DELETE CASCADE,
    payload         sealed,
    idempotency_key text UNIQUE,
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'running', 'done', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL DEFAULT 8 CHECK (max_attempts > 0),
    run_at          timestamptz NOT NULL DEFAULT now(),
    locked_until    timestamptz,
    locked_by       text,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (payload IS NULL OR owner_id IS NOT NULL)
);
CREATE INDEX jobs_due_idx ON jobs (run_at) WHERE state IN ('queued', 'running');
CREATE INDEX jobs_owner_idx ON jobs (owner_id);
