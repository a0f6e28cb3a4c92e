-- Files attached to a message in a conversation: parsed to text when they
-- are attached and given to the model with the message. Sealed with the
-- owner's data key (the name and the text); plain columns hold only the
-- kind, sizes and times. A file belongs to its message, so it goes with the
-- message, the conversation, or the account; until the message is sent it
-- has none, and the retention job erases it after a day.
CREATE TABLE chat_files (
    id          uuid PRIMARY KEY,
    owner_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    message_id  uuid REFERENCES messages (id) ON DELETE CASCADE,
    name        sealed NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('text', 'markdown', 'pdf', 'docx', 'html', 'csv', 'json')),
    size_bytes  bigint NOT NULL,
    text        sealed NOT NULL,
    chars       integer NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chat_files_message_idx ON chat_files (message_id, created_at);
CREATE INDEX chat_files_unsent_idx ON chat_files (created_at) WHERE message_id IS NULL;
CREATE INDEX chat_files_owner_idx ON chat_files (owner_id);
