-- Built-in identity provider (syncsphere-auth).
CREATE TABLE idp_users (
    user_id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);

CREATE TABLE idp_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES idp_users (user_id),
    expires_ms BIGINT NOT NULL,
    revoked BIGINT NOT NULL DEFAULT 0
);

-- File Management Service (syncsphere-files).
-- One row per user: the head of the user's change journal. Incrementing it inside the commit
-- transaction both allocates the next seq and serialises the user's commits.
CREATE TABLE journal_heads (
    user_id TEXT PRIMARY KEY,
    last_seq BIGINT NOT NULL
);

CREATE TABLE files (
    file_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    path TEXT NOT NULL,
    -- Case-folded path: live paths are unique per user regardless of case, like Dropbox.
    path_key TEXT NOT NULL,
    rev BIGINT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    deleted BIGINT NOT NULL,
    modified_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX files_live_path ON files (user_id, path_key) WHERE deleted = 0;

CREATE TABLE revisions (
    file_id TEXT NOT NULL REFERENCES files (file_id),
    rev BIGINT NOT NULL,
    path TEXT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    deleted BIGINT NOT NULL,
    modified_ms BIGINT NOT NULL,
    origin_device TEXT,
    PRIMARY KEY (file_id, rev)
);

CREATE TABLE journal (
    user_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    file_id TEXT NOT NULL,
    event TEXT NOT NULL,
    path TEXT NOT NULL,
    old_path TEXT,
    rev BIGINT NOT NULL,
    size BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    origin_device TEXT,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, seq)
);
