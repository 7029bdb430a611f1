//! The mass-delete brake: a plan that would delete an unusual share of the synced tree on the
//! server is held back until the user confirms it (Nextcloud's "all files deleted?" prompt).
//! A folder that vanished, an unmounted drive or a bug that reads the folder as empty all look
//! like "the user deleted everything" to the planner; the brake is the last line before such a
//! reading reaches every other device.
//!
//! Only server-side deletions count: they propagate to every device. The other operations of the
//! plan go ahead meanwhile.

use std::collections::BTreeSet;

use crate::Op;

/// When a pass must ask before deleting on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletePolicy {
    /// Deletions are held when there are at least this many …
    pub min_files: usize,
    /// … and they are more than this share (percent) of the synced tree.
    pub max_share_pct: u8,
    /// Deleting every synced file is held from this many files on, whatever `min_files` says.
    pub all_from: usize,
}

impl Default for DeletePolicy {
    fn default() -> Self {
        DeletePolicy {
            min_files: 100,
            max_share_pct: 25,
            all_from: 10,
        }
    }
}

impl DeletePolicy {
    /// Whether deleting `deletes` of `synced` files needs the user's confirmation.
    pub fn trips(&self, deletes: usize, synced: usize) -> bool {
        if deletes == 0 {
            return false;
        }
        let share = deletes * 100 > usize::from(self.max_share_pct) * synced;
        (deletes >= self.min_files && share) || (deletes >= synced && deletes >= self.all_from)
    }
}

/// Server-side deletions held back for the user's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldDeletes {
    /// The paths the held operations would delete, sorted.
    pub paths: Vec<String>,
    /// How many files the synced tree holds (for "N of M files").
    pub synced_files: usize,
    /// Names exactly this set of paths: a confirmation given for one set never covers another.
    pub fingerprint: String,
}

/// Splits `ops` into what may run now and the server-side deletions held for confirmation.
/// Deletions of paths in `approved` (a set the user confirmed) always run; the others are held
/// together when the policy trips on them.
pub fn brake_deletes(
    ops: Vec<Op>,
    synced_files: usize,
    policy: &DeletePolicy,
    approved: &BTreeSet<String>,
) -> (Vec<Op>, Option<HeldDeletes>) {
    let unapproved = ops
        .iter()
        .filter(|op| matches!(op, Op::DeleteRemote { path, .. } if !approved.contains(path)))
        .count();
    if !policy.trips(unapproved, synced_files) {
        return (ops, None);
    }
    let (held, run): (Vec<Op>, Vec<Op>) = ops
        .into_iter()
        .partition(|op| matches!(op, Op::DeleteRemote { path, .. } if !approved.contains(path)));
    let mut paths: Vec<String> = held.into_iter().map(|op| op.path().to_owned()).collect();
    paths.sort();
    let fingerprint = fingerprint(&paths);
    (
        run,
        Some(HeldDeletes {
            paths,
            synced_files,
            fingerprint,
        }),
    )
}

/// FNV-1a (64 bit) over the paths, each ended by a NUL: stable across runs and platforms.
fn fingerprint(paths: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in paths {
        for b in p.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}-{}", paths.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delete(path: &str) -> Op {
        Op::DeleteRemote {
            path: path.into(),
            file_id: format!("id-{path}").into(),
            rev: 1,
        }
    }

    fn upload(path: &str) -> Op {
        Op::Upload {
            path: path.into(),
            parent_rev: None,
        }
    }

    #[test]
    fn the_policy_trips_on_many_and_on_all() {
        let p = DeletePolicy::default();
        // (deletes, synced) → held?
        let cases = [
            (0, 0, false),
            (1, 1, false),        // one file, all of it: too few to ask
            (9, 9, false),        // below `all_from`
            (10, 10, true),       // every file of a small tree
            (20, 20, true),       // the 20 of 20
            (19, 20, false),      // not all, and under `min_files`
            (99, 100, false),     // under `min_files`
            (100, 400, false),    // exactly 25 %: not more than the share
            (101, 400, true),     // over both
            (150, 10_000, false), // many, but a small share
            (5_000, 10_000, true),
        ];
        for (deletes, synced, want) in cases {
            assert_eq!(p.trips(deletes, synced), want, "{deletes} of {synced}");
        }
    }

    #[test]
    fn held_deletions_are_split_out_and_the_rest_runs() {
        let mut ops: Vec<Op> = (0..12).map(|i| delete(&format!("f{i:02}"))).collect();
        ops.push(upload("new.txt"));
        let (run, held) =
            brake_deletes(ops.clone(), 12, &DeletePolicy::default(), &BTreeSet::new());
        assert_eq!(run, [upload("new.txt")]);
        let held = held.expect("all 12 synced files deleted: held");
        assert_eq!(held.paths.len(), 12);
        assert_eq!(held.paths[0], "f00");
        assert_eq!(held.synced_files, 12);

        // Confirmed: the same set runs.
        let approved: BTreeSet<String> = held.paths.iter().cloned().collect();
        let (run, again) = brake_deletes(ops.clone(), 12, &DeletePolicy::default(), &approved);
        assert_eq!(again, None);
        assert_eq!(run.len(), 13);

        // A confirmation covers only its own set: one more deletion than confirmed is fine,
        // a new large set is held again, with another fingerprint.
        let mut more = ops.clone();
        more.push(delete("extra"));
        let (run, again) = brake_deletes(more, 13, &DeletePolicy::default(), &approved);
        assert_eq!((run.len(), again), (14, None));
        let other: Vec<Op> = (0..12).map(|i| delete(&format!("g{i:02}"))).collect();
        let (run, again) = brake_deletes(other, 12, &DeletePolicy::default(), &approved);
        assert!(run.is_empty());
        assert_ne!(again.unwrap().fingerprint, held.fingerprint);
    }

    #[test]
    fn fingerprints_name_the_set() {
        let a = fingerprint(&["a".into(), "b".into()]);
        assert_eq!(a, fingerprint(&["a".into(), "b".into()]), "stable");
        assert_ne!(a, fingerprint(&["ab".into()]), "boundaries count");
        assert_ne!(a, fingerprint(&["a".into(), "c".into()]));
    }
}
