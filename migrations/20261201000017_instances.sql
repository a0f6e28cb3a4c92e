-- Scale and speed: each server process's heartbeat. A reply whose writer
-- stopped beating is marked interrupted within seconds, and a reply whose
-- writer beats is never marked, however long it is silent (a long
-- Retry-After wait, a model thinking).
CREATE TABLE instances (
    -- ENCLAVE_INSTANCE: host name and port, never user data.
    name         text PRIMARY KEY,
    heartbeat_at timestamptz NOT NULL DEFAULT now()
);
