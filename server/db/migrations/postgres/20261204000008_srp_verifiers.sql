-- Cognito's USER_SRP_AUTH (syncsphere-auth::idp::srp): each user's SRP salt and verifier (hex),
-- made from the password at sign-up, or at the first USER_PASSWORD_AUTH sign-in of an account
-- created before (NULL until then).
ALTER TABLE idp_users ADD COLUMN srp_salt TEXT;
ALTER TABLE idp_users ADD COLUMN srp_verifier TEXT;
