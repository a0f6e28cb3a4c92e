-- The activity log: security-relevant events of an account (sign-ins and
-- their failures, sign-outs, password, email and second-factor changes,
-- keys added and removed, exports, deletion requests), for the user to read
-- under Settings -> Account activity. Kept 90 days (the retention job).
-- What identifies a person (address, browser, the event's detail such as a
-- key's name) is sealed with the user's key; the kind and the time are not,
-- so the purge and the paging need no key.
CREATE TABLE activity (
    id            uuid PRIMARY KEY,
    owner_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    at            timestamptz NOT NULL DEFAULT now(),
    kind          text NOT NULL,
    ip            sealed,
    user_agent    sealed,
    detail        sealed,
    -- A keyed hash of (user, browser family, system): finds "a sign-in from
    -- a browser this account has not used" without storing the browser.
    browser_index bytea
);
CREATE INDEX activity_owner_at_idx ON activity (owner_id, at DESC, id DESC);
CREATE INDEX activity_at_idx ON activity (at);
CREATE INDEX activity_browser_idx ON activity (owner_id, browser_index) WHERE browser_index IS NOT NULL;
