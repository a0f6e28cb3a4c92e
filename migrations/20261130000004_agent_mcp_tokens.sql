-- An agent served as an MCP server (/mcp/agents/{id}) answers only to the
-- token its owner created for it: one per agent, off (no row) by default,
-- revoked by deleting the row. The token is sealed (the owner can see it
-- again) and found by its SHA-256, which is all a request can offer.
CREATE TABLE agent_mcp_tokens (
    id           uuid PRIMARY KEY,
    owner_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    agent_id     uuid NOT NULL UNIQUE REFERENCES agents (id) ON DELETE CASCADE,
    token        sealed NOT NULL,
    token_hash   bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz
);
CREATE INDEX agent_mcp_tokens_owner_idx ON agent_mcp_tokens (owner_id);
