-- The built-in identity provider's e-mailed codes (syncsphere-auth::idp::codes), once it has a
-- mail server (--smtp-url): an account signed up then is unconfirmed until its code is entered;
-- a forgotten password is reset with one. Accounts from before are confirmed. One code per user
-- and purpose ('confirm', 'reset'); only a keyed hash of it is stored.
ALTER TABLE idp_users ADD COLUMN confirmed BIGINT NOT NULL DEFAULT 1;
CREATE TABLE idp_codes (
    user_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    code_hash TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    sent_ms BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    PRIMARY KEY (user_id, purpose)
);
