-- A connection (the credential a tool uses) is its maker's own (team_id
-- NULL) or a team's, sealed with the team's key; a team's agent uses only
-- its team's connections.
ALTER TABLE connections ADD COLUMN team_id uuid REFERENCES teams (id) ON DELETE CASCADE;
CREATE INDEX connections_team_idx ON connections (team_id) WHERE team_id IS NOT NULL;
