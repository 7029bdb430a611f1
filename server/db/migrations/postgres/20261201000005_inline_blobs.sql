-- Small contents kept inside the metadata database (syncsphere-files `inline`): a content of at
-- most the server's inline limit, uploaded in one request, is written in the same transaction
-- as the revision that uses it, so it is durable with that commit instead of costing an object
-- PUT in the blob store. Per user, like every blob (no cross-user dedup).
CREATE TABLE inline_blobs (
    user_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    data BYTEA NOT NULL,
    modified_ms BIGINT NOT NULL,
    PRIMARY KEY (user_id, sha256)
);
