-- Settings -> Sessions: what a user needs to recognise each session. The
-- browser's User-Agent and the sign-in address are the user's data, sealed
-- with their key (nullable: sessions from before this migration have
-- none); last_seen_at is refreshed at most once a minute per session.
ALTER TABLE sessions
    ADD COLUMN user_agent   sealed,
    ADD COLUMN ip           sealed,
    ADD COLUMN last_seen_at timestamptz NOT NULL DEFAULT now();
