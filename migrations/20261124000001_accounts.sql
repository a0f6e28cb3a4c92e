-- Accounts, sessions and shared rate-limit counters.

CREATE TABLE users (
    id               uuid PRIMARY KEY,
    -- Normalised (trimmed, lower-case). Encrypted storage replaces this with a
    -- sealed value and a keyed blind index.
    email            text NOT NULL,
    first_name       text NOT NULL,
    last_name        text NOT NULL,
    -- argon2id PHC string; never the password.
    password_hash    text NOT NULL,
    email_verified_at timestamptz,
    -- When the user confirmed being 16 or older (required to sign up).
    age_confirmed_at timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_key ON users (email);

-- Opaque session tokens: only their SHA-256 is stored. Ending a session deletes it.
CREATE TABLE sessions (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);

-- Fixed-window counters shared by every server replica (sign-in, sign-up).
CREATE TABLE rate_limits (
    bucket       text PRIMARY KEY,
    window_start timestamptz NOT NULL,
    hits         integer NOT NULL
);
