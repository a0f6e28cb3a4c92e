-- Exports of a user's data (Settings -> Your data): built by a job, the zip
-- sealed with the user's key, offered for 24 hours, then deleted by the
-- retention job.
CREATE TABLE exports (
    id          uuid PRIMARY KEY,
    owner_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    state       text NOT NULL CHECK (state IN ('queued', 'building', 'ready', 'failed')),
    progress    smallint NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    file        sealed,
    size_bytes  bigint,
    created_at  timestamptz NOT NULL DEFAULT now(),
    ready_at    timestamptz,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX exports_owner_idx ON exports (owner_id, created_at DESC);
CREATE INDEX exports_expires_idx ON exports (expires_at);
