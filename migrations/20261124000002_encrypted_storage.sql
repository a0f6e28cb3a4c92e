-- Encrypted storage: user content is sealed with the user's data key
-- (AES-256-GCM, see app/src/platform/crypto.rs); the database never holds a
-- key it could use by itself.

-- Accounts from before this migration hold plaintext that cannot be sealed in
-- SQL (the keys live outside the database). Refuse rather than delete them.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM users) THEN
        RAISE EXCEPTION 'Encrypted storage cannot convert % existing account(s) in SQL. '
            'This build predates any release: recreate the database (make dev uses .data/pg) and sign up again.',
            (SELECT count(*) FROM users);
    END IF;
END $$;

-- A sealed value: format version 1, then nonce (12 bytes), ciphertext and tag (16).
-- Plaintext written by mistake fails this check.
CREATE DOMAIN sealed AS bytea
    CHECK (length(VALUE) >= 29 AND get_byte(VALUE, 0) = 1);

DROP INDEX users_email_key;
ALTER TABLE users
    DROP COLUMN email,
    DROP COLUMN first_name,
    DROP COLUMN last_name,
    DROP COLUMN password_hash;
ALTER TABLE users
    -- HMAC-SHA256 of the normalised email under the blind-index key: finds an
    -- account by email without storing the email in the clear.
    ADD COLUMN email_index   bytea  NOT NULL,
    ADD COLUMN email         sealed NOT NULL,
    ADD COLUMN first_name    sealed NOT NULL,
    ADD COLUMN last_name     sealed NOT NULL,
    -- The argon2id hash, sealed too: a database copy alone gives nothing to crack.
    ADD COLUMN password_hash sealed NOT NULL;
CREATE UNIQUE INDEX users_email_index_key ON users (email_index);

-- One data key per user, wrapped under a master key (kek_id names which).
-- Deleting the row is crypto-shredding: the user's sealed values become noise.
CREATE TABLE user_keys (
    user_id     uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    kek_id      text NOT NULL,
    wrapped_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    rotated_at  timestamptz
);
CREATE INDEX user_keys_kek_id_idx ON user_keys (kek_id);

-- Keys of the platform itself (the blind-index key), wrapped the same way.
CREATE TABLE system_keys (
    name        text PRIMARY KEY,
    kek_id      text NOT NULL,
    wrapped_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    rotated_at  timestamptz
);
