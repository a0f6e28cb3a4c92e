-- Tools. A reply that called tools keeps its steps and calls, in order, as
-- sealed JSON (`parts`); its text stays in `body`. An agent's tool settings
-- (which tools, which ask first, the step limit) are sealed JSON too.
ALTER TABLE messages ADD COLUMN parts sealed;
ALTER TABLE agents ADD COLUMN tools sealed;

-- The tool audit: one row per call, for its user to read (Settings → Tool
-- activity), kept 90 days. Never the arguments, the result or a secret: the
-- tool and the host it reached are sealed, the rest are numbers.
CREATE TABLE tool_calls (
    id             uuid PRIMARY KEY,
    owner_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- The reply that made the call (kept when the reply is deleted).
    message_id     uuid REFERENCES messages (id) ON DELETE SET NULL,
    tool           sealed NOT NULL,
    target         sealed,
    status         text NOT NULL CHECK (status IN ('done', 'failed', 'cancelled', 'denied')),
    bytes_sent     bigint NOT NULL DEFAULT 0,
    bytes_received bigint NOT NULL DEFAULT 0,
    duration_ms    integer NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tool_calls_owner_idx ON tool_calls (owner_id, created_at DESC);
CREATE INDEX tool_calls_created_idx ON tool_calls (created_at);

-- Connections: the user's credentials for the services tools use. All
-- sealed; the kind is from a fixed list.
CREATE TABLE connections (
    id          uuid PRIMARY KEY,
    owner_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind        text NOT NULL CHECK (kind IN ('github', 'slack', 'smtp', 'telegram', 'http_header')),
    label       sealed NOT NULL,
    secret      sealed NOT NULL,
    masked      sealed NOT NULL,
    -- Non-secret settings (SMTP server and sender, header name and host), JSON.
    settings    sealed NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX connections_owner_idx ON connections (owner_id, kind, created_at);

-- A reply can pause: a tool set to "ask first" waits for the user.
ALTER TABLE messages DROP CONSTRAINT messages_status_check;
ALTER TABLE messages ADD CONSTRAINT messages_status_check
    CHECK (status IN ('streaming', 'complete', 'stopped', 'interrupted', 'awaiting_approval'));
