-- Passkeys (WebAuthn). A passkey's name and its credential (public key,
-- counter, as webauthn-rs keeps them) are sealed with the user's key; it is
-- found at sign-in by the SHA-256 of its credential id.
CREATE TABLE passkeys (
    id               uuid PRIMARY KEY,
    user_id          uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    credential_index bytea NOT NULL UNIQUE,
    name             sealed NOT NULL,
    credential       sealed NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_used_at     timestamptz
);
CREATE INDEX passkeys_user_idx ON passkeys (user_id);

-- A ceremony between its two requests, five minutes, used once, so any
-- replica can finish it. Adding a passkey: its state sealed with the user's
-- key. Signing in (nobody known yet): the challenge state, which holds only
-- the random challenge already sent to the browser and the policy.
CREATE TABLE webauthn_ceremonies (
    id           uuid PRIMARY KEY,
    user_id      uuid REFERENCES users (id) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('register', 'sign_in')),
    sealed_state sealed,
    public_state jsonb,
    expires_at   timestamptz NOT NULL
);
