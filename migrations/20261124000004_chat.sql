-- Conversations with agents. Titles and message bodies are sealed with the
-- owner's data key. A reply is written while it streams (checkpointed), so a
-- crash loses at most the last second of tokens.

CREATE TABLE conversations (
    id          uuid PRIMARY KEY,
    owner_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    agent_id    uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    title       sealed NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversations_owner_agent_idx ON conversations (owner_id, agent_id, updated_at DESC);

CREATE TABLE messages (
    id              uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    owner_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role            text NOT NULL CHECK (role IN ('user', 'assistant')),
    body            sealed NOT NULL,
    -- streaming: a run is writing it; complete; stopped (by the user);
    -- interrupted (provider failure or server crash, see `error`).
    status          text NOT NULL CHECK (status IN ('streaming', 'complete', 'stopped', 'interrupted')),
    -- A plain sentence (never a provider's raw body).
    error           text,
    model           text,
    input_tokens    integer,
    output_tokens   integer,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_conversation_idx ON messages (conversation_id, created_at, id);
CREATE INDEX messages_streaming_idx ON messages (status) WHERE status = 'streaming';
