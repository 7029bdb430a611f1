-- Devices of a user (syncsphere-auth::devices): what GET /v1/devices lists and what a
-- revocation marks. A revoked device id stays revoked: its tokens, refresh tokens and push
-- sockets stop working, and the app signs in again as a new device.
CREATE TABLE devices (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    name TEXT,
    platform TEXT,
    created_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    revoked_ms INTEGER,
    PRIMARY KEY (user_id, device_id)
);

-- The device a refresh token was issued to (Cognito's DEVICE_KEY), so that revoking a device
-- revokes its refresh tokens and the access tokens refreshed from them carry the same key.
ALTER TABLE idp_refresh_tokens ADD COLUMN device_key TEXT;
