-- The platform administrator: the first account, or one named with
-- `server admin grant EMAIL`. An administrator sees counts and account
-- metadata, never anyone's content.
-- A disabled account (by an administrator) keeps its data but cannot sign
-- in, and its sessions, API keys, agent MCP tokens, schedules and Telegram
-- bots stop working at once; enabling it again restores them.
ALTER TABLE users
    ADD COLUMN is_admin    boolean NOT NULL DEFAULT false,
    ADD COLUMN disabled_at timestamptz;
