-- Changing the email address: the link goes to the new address, and the
-- new address waits in the link's row, sealed with the user's key, until
-- the link is opened.
ALTER TABLE email_tokens DROP CONSTRAINT email_tokens_purpose_check;
ALTER TABLE email_tokens
    ADD CONSTRAINT email_tokens_purpose_check
        CHECK (purpose IN ('verify_email', 'reset_password', 'change_email')),
    ADD COLUMN new_email sealed;
