-- The device's local index: the synced tree (merge base), the remote tree as replayed from the
-- server's journal (with tombstones so replays stay idempotent), and small settings.
CREATE TABLE synced (
    path TEXT PRIMARY KEY,
    file_id TEXT NOT NULL,
    rev INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);

CREATE TABLE remote (
    file_id TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    rev INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    deleted INTEGER NOT NULL
);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
