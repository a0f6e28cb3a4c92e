-- The Privacy Policy and the Cookie Policy as the app serves them: every
-- version kept (the version history), each with the date it takes effect.
-- Public documents, so plain text.
CREATE TABLE policy_versions (
    kind          text NOT NULL CHECK (kind IN ('privacy', 'cookies')),
    version       integer NOT NULL CHECK (version >= 1),
    effective_at  timestamptz NOT NULL,
    published_at  timestamptz NOT NULL DEFAULT now(),
    summary       text NOT NULL,
    body          text NOT NULL,
    PRIMARY KEY (kind, version)
);

-- Consent records: what a user agreed to or withdrew, and when
-- (acknowledging a policy version; marketing mail on or off). Kept while
-- the account is.
CREATE TABLE consents (
    id        uuid PRIMARY KEY,
    owner_id  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose   text NOT NULL CHECK (purpose IN ('privacy', 'cookies', 'marketing_mail')),
    version   integer,
    granted   boolean NOT NULL,
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consents_owner_idx ON consents (owner_id, purpose, at DESC);

-- Marketing mail: off unless the user turns it on.
ALTER TABLE users ADD COLUMN marketing_mail boolean NOT NULL DEFAULT false;
