-- Everything a user typed or chose is sealed: an agent's model and avatar,
-- a reply's model, and a reply's error sentence (which can name the host of
-- an agent's base URL). What stays plain is listed, with the reason, in
-- server/tests/schema.rs.
--
-- Also: a reply records which earlier reply it regenerates (kept until the
-- new one has text) and which server process writes it (a restarted server
-- ends its own unfinished replies at once); the agents' JSON placeholders
-- for later slices go (those slices bring tables of their own); and a base
-- URL is for OpenAI-compatible servers only (chat never used it for the
-- hosted providers).

-- Agents hold plaintext model names and avatars that SQL cannot seal (the
-- keys live outside the database). Refuse rather than lose them.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM agents) THEN
        RAISE EXCEPTION 'This upgrade seals agent model names, which SQL cannot do for % existing agent(s). '
            'This build predates any release: recreate the database (make dev uses .data/pg) and sign up again.',
            (SELECT count(*) FROM agents);
    END IF;
END $$;

ALTER TABLE agents
    DROP COLUMN model,
    DROP COLUMN avatar,
    DROP COLUMN tools,
    DROP COLUMN knowledge_base_ids,
    DROP COLUMN schedules;
ALTER TABLE agents
    ADD COLUMN model  sealed NOT NULL,
    ADD COLUMN avatar sealed NOT NULL,
    ADD CONSTRAINT agents_base_url_compatible_only
        CHECK (base_url IS NULL OR provider = 'openai_compatible');

ALTER TABLE messages
    DROP COLUMN model,
    DROP COLUMN error;
ALTER TABLE messages
    ADD COLUMN model sealed,
    -- The sentence the user reads, sealed (it can name a user's host).
    ADD COLUMN error sealed,
    -- What kind of failure, from a fixed list: written where no key is at
    -- hand (a restarted server), and never user-derived.
    ADD COLUMN error_code text CHECK (error_code ~ '^[a-z_]{1,40}$'),
    ADD COLUMN replaces uuid REFERENCES messages (id) ON DELETE SET NULL,
    -- The server process writing a streaming reply (ENCLAVE_INSTANCE).
    ADD COLUMN runner text;
CREATE INDEX messages_replaces_idx ON messages (replaces) WHERE replaces IS NOT NULL;
CREATE INDEX messages_runner_idx ON messages (runner) WHERE status = 'streaming';
