-- Account deletion with a grace period: `deleted_at` set blocks every
-- session and token of the account at once; signing in again within the
-- grace period (30 days by default) clears it. After it, the retention job
-- erases the account: its data key first (crypto-shredding), then its rows.
ALTER TABLE users
    ADD COLUMN deleted_at timestamptz,
    -- The user's own, shorter, conversation retention (days); NULL: the
    -- server's (90 days by default).
    ADD COLUMN conversation_retention_days integer
        CHECK (conversation_retention_days BETWEEN 1 AND 36500);
CREATE INDEX users_deleted_at_idx ON users (deleted_at) WHERE deleted_at IS NOT NULL;

-- The retention job finds expired conversations by their last message.
CREATE INDEX conversations_updated_at_idx ON conversations (updated_at);
