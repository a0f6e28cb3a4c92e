-- A Telegram bot per agent: people write to the bot, the agent answers.
-- The token, the bot's name, who may write and the code that lets someone
-- in are sealed; the webhook's secret is kept as its SHA-256 only (the
-- header Telegram sends is compared with it in constant time). Each
-- Telegram chat is a conversation of the agent, found by a keyed hash of
-- its chat id (the id itself sealed).
CREATE TABLE telegram_channels (
    id               uuid PRIMARY KEY,
    owner_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    agent_id         uuid NOT NULL UNIQUE REFERENCES agents (id) ON DELETE CASCADE,
    token            sealed NOT NULL,
    bot_username     sealed NOT NULL,
    -- webhook: Telegram posts to /telegram/webhook/{id}; polling: one server
    -- at a time asks getUpdates, holding the lease below.
    mode             text NOT NULL CHECK (mode IN ('webhook', 'polling')),
    secret_hash      bytea NOT NULL,
    -- A sealed JSON list of the Telegram user ids who may write.
    allowed_users    sealed NOT NULL,
    -- "/start CODE" adds its sender to the list.
    start_code       sealed NOT NULL,
    -- Polling: the newest update handed on.
    update_offset    bigint NOT NULL DEFAULT 0,
    poll_lease_owner text,
    poll_lease_until timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX telegram_channels_owner_idx ON telegram_channels (owner_id);
CREATE INDEX telegram_channels_polling_idx ON telegram_channels (poll_lease_until) WHERE mode = 'polling';

CREATE TABLE telegram_chats (
    id              uuid PRIMARY KEY,
    channel_id      uuid NOT NULL REFERENCES telegram_channels (id) ON DELETE CASCADE,
    owner_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    chat_index      bytea NOT NULL,
    chat_id         sealed NOT NULL,
    conversation_id uuid REFERENCES conversations (id) ON DELETE SET NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel_id, chat_index)
);
CREATE INDEX telegram_chats_owner_idx ON telegram_chats (owner_id);
