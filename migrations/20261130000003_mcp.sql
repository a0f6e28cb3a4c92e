-- The user's own MCP servers (remote, streamable HTTP; never a command).
-- Everything the user typed is sealed, and so is what the server told us
-- (its tools, an error).
CREATE TABLE mcp_servers (
    id           uuid PRIMARY KEY,
    owner_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         sealed NOT NULL,
    url          sealed NOT NULL,
    -- none, or a static secret header.
    auth         text NOT NULL CHECK (auth IN ('none', 'header')),
    header_name  sealed,
    secret       sealed,
    masked       sealed,
    -- The server's tools (name, description, input schema), JSON.
    tools        sealed,
    refreshed_at timestamptz,
    last_error   sealed,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mcp_servers_owner_idx ON mcp_servers (owner_id, created_at);
