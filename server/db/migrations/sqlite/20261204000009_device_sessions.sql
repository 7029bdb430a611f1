-- Sign-in sessions bound to devices (syncsphere-auth::devices, decision 0038): an external
-- Cognito pool's tokens carry no device, but every token of one sign-in (refreshed ones too)
-- carries the same `origin_jti`. A device registering with such a token binds its session here;
-- from then on the session's tokens act for that device only and are refused once it is
-- revoked. The first binding of a session stays.
CREATE TABLE device_sessions (
    user_id TEXT NOT NULL,
    origin_jti TEXT NOT NULL,
    device_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, origin_jti)
);
CREATE INDEX device_sessions_by_device ON device_sessions (user_id, device_id);
