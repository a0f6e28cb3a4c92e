-- Two-factor authentication with TOTP (RFC 6238). The secret is sealed with
-- the user's key; a factor counts once confirmed_at is set (enrolment is
-- confirmed by a first code). last_step is the newest time step a code was
-- accepted for: a code is refused unless its step is newer, so no code
-- works twice.
CREATE TABLE totp_factors (
    user_id      uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret       sealed NOT NULL,
    confirmed_at timestamptz,
    last_step    bigint NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Ten single-use recovery codes per enrolment, 80 random bits each, kept
-- only as their SHA-256.
CREATE TABLE recovery_codes (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash  bytea NOT NULL UNIQUE,
    used_at    timestamptz
);
CREATE INDEX recovery_codes_user_idx ON recovery_codes (user_id);

-- A password accepted for an account with a second factor opens a pending
-- session: it signs nobody in, and only the second-factor page reads it.
ALTER TABLE sessions
    ADD COLUMN second_factor_pending boolean NOT NULL DEFAULT false;
