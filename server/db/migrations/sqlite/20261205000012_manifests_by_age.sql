-- The collector (syncsphere-files::gc, decision 0049) reads manifests by age: those past the
-- grace period (candidates for deletion), and under its lock those written since its pass
-- began (a commit's manifest, even one whose commit then failed, names chunks to keep).
CREATE INDEX content_manifests_created_ms ON content_manifests (created_ms);
