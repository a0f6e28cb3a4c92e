-- A knowledge base is its maker's own (team_id NULL) or a team's; its
-- documents and passages carry the same team_id, so that every value of a
-- team's base is sealed with the team's key (the place's owner being the
-- team) and found by coalesce(team_id, owner_id). owner_id stays the
-- person who made the row (handed to an owner when they leave).
ALTER TABLE knowledge_bases ADD COLUMN team_id uuid REFERENCES teams (id) ON DELETE CASCADE;
ALTER TABLE knowledge_documents ADD COLUMN team_id uuid REFERENCES teams (id) ON DELETE CASCADE;
ALTER TABLE knowledge_chunks ADD COLUMN team_id uuid REFERENCES teams (id) ON DELETE CASCADE;
CREATE INDEX knowledge_bases_team_idx ON knowledge_bases (team_id) WHERE team_id IS NOT NULL;
CREATE INDEX knowledge_documents_team_idx ON knowledge_documents (team_id) WHERE team_id IS NOT NULL;
CREATE INDEX knowledge_chunks_team_idx ON knowledge_chunks (team_id) WHERE team_id IS NOT NULL;
