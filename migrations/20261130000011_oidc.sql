-- Sign-in with Google and other OpenID Connect providers.

-- A sign-in in progress, found by the SHA-256 of its `state`; used once,
-- for ten minutes. It is bound to the browser that started it: the SHA-256
-- of a random token in that browser's session cookie, or (connecting a
-- provider from settings) of the signed-in session's id. The PKCE verifier
-- and the nonce are not stored: both are derived from `state` with the
-- server's keyed hash.
CREATE TABLE oidc_states (
    state_hash     bytea PRIMARY KEY,
    provider       text NOT NULL,
    browser_hash   bytea NOT NULL,
    link_user      uuid REFERENCES users (id) ON DELETE CASCADE,
    create_account boolean NOT NULL DEFAULT false,
    next           text NOT NULL,
    expires_at     timestamptz NOT NULL
);

-- A provider account connected to an Enclave account: found by a keyed
-- hash of (provider, subject); the subject and the address the provider
-- gave are sealed with the user's key.
CREATE TABLE user_identities (
    id            uuid PRIMARY KEY,
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider      text NOT NULL,
    subject_index bytea NOT NULL,
    subject       sealed NOT NULL,
    email         sealed,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    UNIQUE (provider, subject_index)
);
CREATE INDEX user_identities_user_idx ON user_identities (user_id);

-- An account made by signing in with a provider has no password until its
-- owner sets one (by "forgot your password?").
ALTER TABLE users ALTER COLUMN password_hash DROP NOT NULL;
