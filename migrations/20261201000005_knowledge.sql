-- Knowledge bases: documents a user uploads, split into passages and
-- embedded, so agents answer from them with citations. Everything a user
-- wrote or uploaded is sealed with their data key: names, the file while it
-- is ingested, passage text, where a passage came from, and the vectors
-- (embeddings can be inverted back into text). Plain columns hold only
-- the provider's kind, file kinds, states, counts and times.
CREATE TABLE knowledge_bases (
    id              uuid PRIMARY KEY,
    owner_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            sealed NOT NULL,
    description     sealed NOT NULL,
    -- Which embeddings: the wire format and the model.
    provider        text NOT NULL CHECK (provider IN ('openai', 'google', 'openai_compatible', 'demo')),
    -- Typed by the user (a compatible server's model can be any name): sealed
    -- like an agent's.
    model           sealed NOT NULL,
    -- The user's key it embeds with; NULL means "pick automatically".
    provider_key_id uuid REFERENCES provider_keys (id) ON DELETE SET NULL,
    -- For openai_compatible: the server.
    base_url        sealed,
    -- Moves with every change to the base's passages: the search cache's key.
    version         bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX knowledge_bases_owner_idx ON knowledge_bases (owner_id, created_at);

CREATE TABLE knowledge_documents (
    id              uuid PRIMARY KEY,
    base_id         uuid NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    owner_id        uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name            sealed NOT NULL,
    -- What the content turned out to be (sniffed, not taken from the name).
    -- NULL when it was refused before its kind was known.
    kind            text CHECK (kind IN ('text', 'markdown', 'pdf', 'docx', 'html', 'csv', 'json')),
    size_bytes      bigint NOT NULL,
    -- The uploaded file, kept (sealed) only until its passages are stored,
    -- so a restart mid-ingestion starts again from it.
    source          sealed,
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'parsing', 'embedding', 'ready', 'failed')),
    pages           integer,
    chunks_total    integer NOT NULL DEFAULT 0,
    chunks_embedded integer NOT NULL DEFAULT 0,
    -- Why it failed, in plain words.
    error           sealed,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX knowledge_documents_base_idx ON knowledge_documents (base_id, created_at);
CREATE INDEX knowledge_documents_owner_idx ON knowledge_documents (owner_id);

CREATE TABLE knowledge_chunks (
    id          uuid PRIMARY KEY,
    document_id uuid NOT NULL REFERENCES knowledge_documents (id) ON DELETE CASCADE,
    base_id     uuid NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    owner_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    seq         integer NOT NULL,
    text        sealed NOT NULL,
    -- JSON {"page": n, "heading": "..."}: what a citation shows.
    location    sealed NOT NULL,
    -- The embedding (little-endian f32), NULL until embedded.
    vector      sealed,
    UNIQUE (document_id, seq)
);
CREATE INDEX knowledge_chunks_base_idx ON knowledge_chunks (base_id) WHERE vector IS NOT NULL;
CREATE INDEX knowledge_chunks_owner_idx ON knowledge_chunks (owner_id);

-- Which bases an agent answers from.
CREATE TABLE agent_knowledge_bases (
    agent_id uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    base_id  uuid NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
    PRIMARY KEY (agent_id, base_id)
);
CREATE INDEX agent_knowledge_bases_base_idx ON agent_knowledge_bases (base_id);
