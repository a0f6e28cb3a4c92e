-- OAuth 2.1 for the user's MCP servers: the client Enclave registered at
-- the server's authorization server and the tokens it was given, sealed per
-- user and per server (a token is never used for another user: it lives in
-- the user's own row, sealed with their key). Sign-ins in progress keep
-- their PKCE verifier here, sealed, found by the SHA-256 of their `state`.
ALTER TABLE mcp_servers DROP CONSTRAINT mcp_servers_auth_check;
ALTER TABLE mcp_servers ADD CONSTRAINT mcp_servers_auth_check
    CHECK (auth IN ('none', 'header', 'oauth'));
ALTER TABLE mcp_servers
    ADD COLUMN oauth_client sealed,
    ADD COLUMN oauth_tokens sealed;

CREATE TABLE mcp_oauth_states (
    id          uuid PRIMARY KEY,
    owner_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    server_id   uuid NOT NULL REFERENCES mcp_servers (id) ON DELETE CASCADE,
    state_hash  bytea NOT NULL UNIQUE,
    state       sealed NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mcp_oauth_states_server_idx ON mcp_oauth_states (server_id);
