-- Path keys are Unicode case folding (syncsphere-protocol `path_key`) instead of lowercasing:
-- `οδος` and `οδοσ` are one name on NTFS and APFS. SQL cannot fold, so the files service
-- recomputes the stored keys once (syncsphere-files `rekey`) and records it in `upgrades`.
-- Live files that only the new key equates all stay: the second and later get key_twin 1, 2…,
-- every name written since gets 0, so the unique index still refuses every new clash.
ALTER TABLE files ADD COLUMN key_twin BIGINT NOT NULL DEFAULT 0;
DROP INDEX files_live_path;
CREATE UNIQUE INDEX files_live_path ON files (user_id, path_key, key_twin) WHERE deleted = 0;

-- One-time data upgrades done in Rust (by name), e.g. the re-keying above.
CREATE TABLE upgrades (
    name TEXT PRIMARY KEY,
    done_ms BIGINT NOT NULL
);
