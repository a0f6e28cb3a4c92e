-- Scale and speed: a rate limit's counters need no durability. As an
-- ordinary table every counted request (each chat message, each sign-in)
-- waited for its own WAL flush; unlogged, a transaction that touches only
-- this table commits without one. After a crash PostgreSQL empties it:
-- the windows start again, which is the only loss.
ALTER TABLE rate_limits SET UNLOGGED;
