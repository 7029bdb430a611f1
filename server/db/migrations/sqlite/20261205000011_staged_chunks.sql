-- The ledger of staged chunks (syncsphere-files::store::staged, issue 19): chunks a user
-- uploaded that no commit has used yet. Their bytes within the collector's grace period are
-- the user's uploads in flight, bounded per user (--max-staged-bytes-per-user) and counted
-- against the quota; a commit deletes the rows of its chunks, old rows are pruned.
CREATE TABLE staged_chunks (
    user_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    staged_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, sha256)
);
CREATE INDEX staged_chunks_staged_ms ON staged_chunks (staged_ms);
