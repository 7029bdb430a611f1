-- SQLite compares TEXT bytewise (BINARY) already; this keeps the migration sets in step with
-- PostgreSQL's, where path_key becomes COLLATE "C".
SELECT 1;
