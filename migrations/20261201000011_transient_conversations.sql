-- A conversation started through the OpenAI-compatible API with
-- `"store": false` is transient: it exists (sealed, like any other) only
-- while its reply is written, is never listed, and is deleted when the reply
-- ends (or by the hourly retention pass, should its server stop first).
ALTER TABLE conversations ADD COLUMN transient boolean NOT NULL DEFAULT false;
CREATE INDEX conversations_transient_idx ON conversations (updated_at) WHERE transient;
