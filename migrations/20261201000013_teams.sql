-- Teams: people who share agents. A team has its own data key, wrapped
-- under the master key like a user's (`team_keys`); what belongs to the
-- team is sealed with it, so every member's request can open it and
-- nobody else's can. Deleting the team deletes its key (crypto-shredding).
CREATE TABLE teams (
    id         uuid PRIMARY KEY,
    -- Sealed with the team's key; place owner is the team itself.
    name       sealed NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE team_keys (
    team_id     uuid PRIMARY KEY REFERENCES teams (id) ON DELETE CASCADE,
    kek_id      text NOT NULL,
    wrapped_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    rotated_at  timestamptz
);
CREATE INDEX team_keys_kek_id_idx ON team_keys (kek_id);

-- Owners manage the team and its people; admins edit what the team shares
-- and invite; members use it. A team always keeps at least one owner (the
-- server refuses the change that would leave none).
CREATE TABLE team_members (
    team_id   uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id   uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role      text NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user_idx ON team_members (user_id);

-- An invitation mailed to an address: a single-use link (only its SHA-256
-- here), for the account with that address (matched by the blind index,
-- the address itself sealed with the team's key), expiring.
CREATE TABLE team_invitations (
    id          uuid PRIMARY KEY,
    team_id     uuid NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    invited_by  uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email       sealed NOT NULL,
    email_index bytea NOT NULL,
    role        text NOT NULL CHECK (role IN ('admin', 'member')),
    token_hash  bytea NOT NULL UNIQUE,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (team_id, email_index)
);

-- An agent is its creator's own (team_id NULL) or its team's. A team's
-- agent is sealed with the team's key; owner_id stays the person who made
-- it (the server hands it to a remaining owner when that account goes).
ALTER TABLE agents ADD COLUMN team_id uuid REFERENCES teams (id) ON DELETE CASCADE;
CREATE INDEX agents_team_idx ON agents (team_id) WHERE team_id IS NOT NULL;
