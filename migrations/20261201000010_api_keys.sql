-- Personal API keys: programs act as their owner through /v1 (and later
-- /api/v1) with one. The key is shown once and kept as its SHA-256 only;
-- its name is sealed. What it may do (scopes) is a fixed list, plain.
CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    owner_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         sealed NOT NULL,
    -- The key's first characters ("enc_AbCd"), to tell keys apart.
    prefix       text NOT NULL,
    token_hash   bytea NOT NULL UNIQUE,
    scopes       text[] NOT NULL,
    expires_at   timestamptz,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_keys_owner_idx ON api_keys (owner_id, created_at);
