-- Signing out everywhere (syncsphere-auth::sign_out): access tokens of the user issued before
-- `before_s` (seconds since the epoch) are refused by every role. One row per user; a later
-- sign-out only moves the cut-off forward.
CREATE TABLE sign_outs (
    user_id TEXT PRIMARY KEY,
    before_s BIGINT NOT NULL
);
