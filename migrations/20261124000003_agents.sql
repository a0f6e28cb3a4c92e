-- Agents and the provider API keys they use. Everything a user typed is
-- sealed with their data key; provider, model and numeric settings are not.

CREATE TABLE provider_keys (
    id          uuid PRIMARY KEY,
    owner_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider    text NOT NULL CHECK (provider IN ('openai', 'anthropic', 'google', 'openai_compatible')),
    label       sealed NOT NULL,
    -- The API key itself. Never returned to the browser.
    secret      sealed NOT NULL,
    -- "…abcd": what the UI shows instead of the key, sealed like the rest.
    masked      sealed NOT NULL,
    -- For openai_compatible keys: the server to test the key against.
    base_url    sealed,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provider_keys_owner_idx ON provider_keys (owner_id, provider);

CREATE TABLE agents (
    id                uuid PRIMARY KEY,
    owner_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name              sealed NOT NULL,
    description       sealed NOT NULL,
    system_prompt     sealed NOT NULL,
    provider          text NOT NULL CHECK (provider IN ('openai', 'anthropic', 'google', 'openai_compatible')),
    model             text NOT NULL,
    base_url          sealed,
    temperature       real,
    top_p             real,
    max_output_tokens integer,
    -- JSON array of up to four strings, sealed.
    starters          sealed NOT NULL,
    avatar            text NOT NULL,
    -- The user's key this agent uses; NULL means "pick automatically".
    provider_key_id   uuid REFERENCES provider_keys (id) ON DELETE SET NULL,
    -- Filled by later slices (tools, knowledge bases, schedules).
    tools             jsonb NOT NULL DEFAULT '[]',
    knowledge_base_ids jsonb NOT NULL DEFAULT '[]',
    schedules         jsonb NOT NULL DEFAULT '[]',
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agents_owner_idx ON agents (owner_id, created_at);
