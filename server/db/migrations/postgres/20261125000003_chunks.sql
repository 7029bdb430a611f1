-- Chunked contents (syncsphere-files): a file content uploaded in content-defined chunks is
-- the ordered list of its chunks, each stored as a blob of the user (per-user namespace, so no
-- cross-user dedup). Contents uploaded in one request are a single blob and have no row here.
CREATE TABLE content_manifests (
    user_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    -- JSON array of [chunk sha256, chunk size] in file order.
    chunks TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, sha256)
);
