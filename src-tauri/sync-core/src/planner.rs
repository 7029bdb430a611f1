//! The planner: three trees in, one batch of independent operations out.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::clash::{self, RemoteNames, TakenNames};
use crate::{
    FileKey, LocalFile, LocalTree, Op, PlanContext, RemoteFile, RemoteTree, SyncedFile, SyncedTree,
};

fn remote_unchanged(r: Option<&RemoteFile>, s: Option<&SyncedFile>) -> bool {
    match (r, s) {
        (None, None) => true,
        (Some(r), Some(s)) => r.file_id == s.file_id && r.rev == s.rev,
        _ => false,
    }
}

fn local_unchanged(l: Option<&LocalFile>, s: Option<&SyncedFile>) -> bool {
    l.map(|l| &l.sha256) == s.map(|s| &s.sha256)
}

fn synced_from(r: &RemoteFile) -> SyncedFile {
    SyncedFile {
        file_id: r.file_id.clone(),
        rev: r.rev,
        sha256: r.sha256.clone(),
    }
}

/// Each remote file by its id, with its path.
fn by_file_id(remote: &RemoteTree) -> HashMap<&FileKey, (&str, &RemoteFile)> {
    remote
        .iter()
        .map(|(p, r)| (&r.file_id, (p.as_str(), r)))
        .collect()
}

/// Plans a server-side move of `from`'s synced file to `to` when the server would take the
/// name now (`leaving`: files this plan deletes there are no obstacle, nor the file itself);
/// whether it did.
fn move_remote<'t>(
    from: &'t str,
    to: &'t str,
    synced: &SyncedTree,
    names: &RemoteNames,
    leaving: &impl Fn(&str) -> bool,
    ops: &mut Vec<Op>,
    handled: &mut BTreeSet<&'t str>,
) -> bool {
    if names.clash_at(to, leaving).is_some() || names.clash_at(to, |p| p == from).is_some() {
        return false;
    }
    let s = &synced[from];
    ops.push(Op::MoveRemote {
        from: from.to_owned(),
        to: to.to_owned(),
        file_id: s.file_id.clone(),
        rev: s.rev,
    });
    handled.insert(from);
    handled.insert(to);
    true
}

/// A path with what each tree holds there.
type Entry<'t> = (
    &'t str,
    Option<&'t LocalFile>,
    Option<&'t RemoteFile>,
    Option<&'t SyncedFile>,
);

/// Every path of the three trees once, in order, with each tree's entry: a merge of their
/// sorted keys (no lookups — with many files, looking each path up in each tree was most of a
/// plan's time).
fn merged<'t>(
    local: &'t LocalTree,
    remote: &'t RemoteTree,
    synced: &'t SyncedTree,
) -> impl Iterator<Item = Entry<'t>> {
    let mut l = local.iter().peekable();
    let mut r = remote.iter().peekable();
    let mut s = synced.iter().peekable();
    std::iter::from_fn(move || {
        let next: &str = [
            l.peek().map(|e| e.0),
            r.peek().map(|e| e.0),
            s.peek().map(|e| e.0),
        ]
        .into_iter()
        .flatten()
        .min()?;
        Some((
            next,
            l.next_if(|e| e.0 == next).map(|e| e.1),
            r.next_if(|e| e.0 == next).map(|e| e.1),
            s.next_if(|e| e.0 == next).map(|e| e.1),
        ))
    })
}

/// Whether a path has nothing to do: both sides are as last synced. Such a path plays no part
/// in a plan other than as context (a name taken, a file staying on the server).
fn settled(entry: &Entry<'_>) -> bool {
    let &(_, l, r, s) = entry;
    local_unchanged(l, s) && remote_unchanged(r, s)
}

/// Whether `path` has nothing to do: both sides as last synced (a name no tree holds too).
pub fn is_settled(path: &str, local: &LocalTree, remote: &RemoteTree, synced: &SyncedTree) -> bool {
    settled(&(path, local.get(path), remote.get(path), synced.get(path)))
}

/// Every path where a side differs from the synced tree: what [`plan_paths`] must be given.
pub fn unsettled_paths(
    local: &LocalTree,
    remote: &RemoteTree,
    synced: &SyncedTree,
) -> BTreeSet<String> {
    merged(local, remote, synced)
        .filter(|e| !settled(e))
        .map(|e| e.0.to_owned())
        .collect()
}

/// Plans one batch. Applying it and planning again converges to an empty plan once neither
/// side changes any more.
pub fn plan(
    local: &LocalTree,
    remote: &RemoteTree,
    synced: &SyncedTree,
    ctx: &PlanContext,
) -> Vec<Op> {
    let unsettled: Vec<Entry<'_>> = merged(local, remote, synced)
        .filter(|e| !settled(e))
        .collect();
    plan_entries(local, remote, synced, ctx, &unsettled, None)
}

/// [`plan`], looking only at the paths in `focus` (sorted, any spelling the trees use): the
/// same operations as `plan` as long as every path where a side differs from the synced tree
/// is in `focus` (the other paths are only looked up, never walked). With a folder of many
/// files and a change or two, the caller that knows which paths changed plans in time
/// proportional to them (decision 0029). `names` are `remote`'s ([`RemoteNames::of`], kept up
/// to date), so that checking a change against the server's names costs lookups, not a walk.
pub fn plan_paths<'t, I>(
    local: &'t LocalTree,
    remote: &'t RemoteTree,
    synced: &'t SyncedTree,
    ctx: &PlanContext,
    focus: I,
    names: &RemoteNames,
) -> Vec<Op>
where
    I: IntoIterator<Item = &'t str>,
{
    let mut unsettled: Vec<Entry<'t>> = focus
        .into_iter()
        .filter_map(|p| {
            // Borrow the path from whichever tree holds it (a path none holds has no part).
            let path = local
                .get_key_value(p)
                .map(|(k, _)| k)
                .or_else(|| remote.get_key_value(p).map(|(k, _)| k))
                .or_else(|| synced.get_key_value(p).map(|(k, _)| k))?;
            Some((path.as_str(), local.get(p), remote.get(p), synced.get(p)))
        })
        .filter(|e| !settled(e))
        .collect();
    unsettled.sort_unstable_by_key(|e| e.0);
    unsettled.dedup_by_key(|e| e.0);
    plan_entries(local, remote, synced, ctx, &unsettled, Some(names))
}

/// The planner proper. `unsettled` is every path where a side differs from the synced tree,
/// in order, with each tree's entry; each step below walks only those (a settled path can be
/// no step's subject: not a move's source — its file is where the server has it — nor a
/// move's target — it is synced — nor a change), and looks the rest up.
fn plan_entries<'t>(
    local: &'t LocalTree,
    remote: &'t RemoteTree,
    synced: &'t SyncedTree,
    ctx: &PlanContext,
    unsettled: &[Entry<'t>],
    names: Option<&RemoteNames>,
) -> Vec<Op> {
    // The server's names, to check new names against (built on first use when not given:
    // only a local change needs them, and most plans have none).
    let own_names = std::cell::OnceCell::new();
    let names = || names.unwrap_or_else(|| own_names.get_or_init(|| RemoteNames::of(remote)));
    // Where the server has each file now, by id (built on first use: in most plans every
    // synced file is still where the server has it).
    let mut remote_by_id: Option<HashMap<&FileKey, (&str, &RemoteFile)>> = None;
    // A name the synced tree still gives to a file it also records, as recent or more, at the
    // name the server has it at now is a leftover of a pass cut short (a file moved elsewhere
    // was downloaded at its new name and recorded there; forgetting the old name did not
    // happen). It is planned as never synced: a file on disk there is the user's — kept,
    // uploaded, or a move's new name — never "deleted on the server, so delete it here"; and
    // the leftover entry goes.
    // On a disk that folds case the same holds for a name whose other spelling the synced
    // tree records with the file the server has under it: the disk has one file for both,
    // and it is that one's (a download under the new spelling recorded, the old spelling's
    // entry, of a file since moved away, not forgotten yet) — unless the disk's file still
    // holds the old entry's content (as a file that cannot be read is assumed to).
    let mut stale: BTreeSet<&str> = BTreeSet::new();
    for &(path, l, r_here, s) in unsettled {
        let Some(s) = s else { continue };
        if r_here.is_some_and(|r| r.file_id == s.file_id) {
            continue;
        }
        let by_id = remote_by_id.get_or_insert_with(|| by_file_id(remote));
        if let Some(&(there, _)) = by_id.get(&s.file_id)
            && synced
                .get(there)
                .is_some_and(|t| t.file_id == s.file_id && t.rev >= s.rev)
        {
            stale.insert(path);
            continue;
        }
        if ctx.fold_case
            && r_here.is_none()
            && !local_unchanged(l, Some(s))
            && let Some(there) = names().spelling_of(path)
            && there != path
            && let (Some(r), Some(t)) = (remote.get(there), synced.get(there))
            && t.file_id == r.file_id
        {
            stale.insert(path);
        }
    }
    let unsettled: Cow<'_, [Entry<'t>]> = if stale.is_empty() {
        Cow::Borrowed(unsettled)
    } else {
        unsettled
            .iter()
            .map(|&(p, l, r, s)| (p, l, r, s.filter(|_| !stale.contains(p))))
            .collect()
    };
    let entries = || unsettled.iter().copied();
    let mut ops = Vec::new();
    let mut handled: BTreeSet<&str> = BTreeSet::new();
    // Names a new name must avoid (case-insensitively), including the ones this plan picks;
    // built on first use, since most plans pick none.
    let mut taken: Option<TakenNames> = None;
    let mut copy_name = |path: &str| {
        taken
            .get_or_insert_with(|| TakenNames::of(local, remote, synced))
            .pick_copy_name(path, ctx)
    };

    // Renamed on the server, with only one side touching the content: rename locally instead of
    // download + delete (an edit made here follows the file to its new name and uploads there).
    for (from, l, r_here, s) in entries() {
        let Some(s) = s else { continue };
        if r_here.is_some_and(|r| r.file_id == s.file_id) {
            continue;
        }
        let by_id = remote_by_id.get_or_insert_with(|| by_file_id(remote));
        let Some(&(to, r)) = by_id.get(&s.file_id) else {
            continue;
        };
        let Some(l) = l else { continue };
        let (edited_here, edited_there) = (l.sha256 != s.sha256, r.sha256 != s.sha256);
        // A file cannot be renamed into or onto itself as a directory (`d` → `d/e`): such a
        // move goes down as a download plus a delete.
        // (Compared case-folded: on a case-insensitive disk `d` → `D/e` is the same trap.)
        let (kf, kt) = (clash::key(from), clash::key(to));
        let nested = kt.starts_with(&format!("{kf}/")) || kf.starts_with(&format!("{kt}/"));
        if (edited_here && edited_there)
            || nested
            || synced.contains_key(to)
            || local.contains_key(to)
            || handled.contains(to)
        {
            continue;
        }
        // The synced state after the rename: the server's revision if the content agrees; the
        // old revision if the server's content changed (the next round downloads it); the
        // server's revision with the old content if ours changed (the next round uploads it).
        let synced_after = match (edited_here, edited_there) {
            (false, false) => synced_from(r),
            (false, true) => s.clone(),
            _ => SyncedFile {
                rev: r.rev,
                ..s.clone()
            },
        };
        ops.push(Op::MoveLocal {
            from: from.to_owned(),
            to: to.to_owned(),
            expect_sha256: l.sha256.clone(),
            synced: synced_after,
        });
        handled.insert(from);
        handled.insert(to);
    }

    // What leaves the server in this plan (deleted here, untouched there): no obstacle to a
    // name. Everything else stays.
    let leaving = |p: &str| {
        !local.contains_key(p)
            && synced
                .get(p)
                .is_some_and(|s| remote_unchanged(remote.get(p), Some(s)))
    };

    // Renamed here only in case or Unicode form, untouched on the server: a vanished synced
    // name and a new local name the server counts as the same name are one file, whatever
    // its content now — a server-side move (the file keeps its id and history; an edit goes
    // up in the next round), not a deletion of the name and a new file under it. (Unless the
    // vanished file's content is in some new file: then that is where it went, below.)
    let gone: Vec<(&str, &SyncedFile)> = entries()
        .filter(|&(p, l, r, s)| l.is_none() && !handled.contains(p) && remote_unchanged(r, s))
        .filter_map(|(p, _, _, s)| Some((p, s?)))
        .collect();
    let mut vanished_names: HashMap<String, &str> = HashMap::new();
    if !gone.is_empty() {
        let new_contents: HashSet<&crate::ContentHash> = entries()
            .filter(|(p, _, r, s)| s.is_none() && r.is_none() && !handled.contains(p))
            .filter_map(|(_, l, _, _)| l.map(|l| &l.sha256))
            .collect();
        for (p, s) in gone {
            if !new_contents.contains(&s.sha256) {
                vanished_names.insert(clash::key(p), p);
            }
        }
    }
    let some_vanished = !vanished_names.is_empty();
    for (to, l, r, s) in entries().take_while(|_| some_vanished) {
        if l.is_none() || s.is_some() || r.is_some() || handled.contains(to) {
            continue;
        }
        let k = clash::key(to);
        let Some(&from) = vanished_names.get(&k) else {
            continue;
        };
        if move_remote(from, to, synced, names(), &leaving, &mut ops, &mut handled) {
            vanished_names.remove(&k);
        }
    }

    // Renamed here, untouched on the server: a vanished synced path and a new local path with
    // the same content become a server-side move (keeping the file's id and history).
    let mut vanished: BTreeMap<&crate::ContentHash, Vec<&str>> = BTreeMap::new();
    for (p, l, r, s) in entries() {
        if let Some(s) = s
            && l.is_none()
            && !handled.contains(p)
            && remote_unchanged(r, Some(s))
        {
            vanished.entry(&s.sha256).or_default().push(p);
        }
    }
    // A move must not wait for another one (`a` → `b` while `b` → `a`, or into a name another
    // move frees): only names free on the server now, and after this plan, are moved to.
    let some_vanished = !vanished.is_empty();
    for (to, l, r, s) in entries().take_while(|_| some_vanished) {
        let Some(l) = l else { continue };
        if s.is_some() || r.is_some() || handled.contains(to) {
            continue;
        }
        let Some(candidates) = vanished.get_mut(&l.sha256) else {
            continue;
        };
        let Some(&from) = candidates.first() else {
            continue;
        };
        if move_remote(from, to, synced, names(), &leaving, &mut ops, &mut handled) {
            candidates.remove(0);
        }
    }

    // A local change the server would refuse because of a file that stays there (the same name
    // in another case, a file where this is a directory or the other way round) moves aside
    // under a conflicted-copy name and then uploads as a new file. Files under a clashing
    // directory move with it, keeping their place inside it.
    let mut moved_aside: HashMap<&str, String> = HashMap::new();
    for (path, l, _, s) in entries() {
        let Some(l) = l else { continue };
        if handled.contains(path) || local_unchanged(Some(l), s) {
            continue;
        }
        let Some(at) = names().clash_at(path, leaving) else {
            continue;
        };
        let copy_at = moved_aside
            .entry(at)
            .or_insert_with(|| copy_name(at))
            .clone();
        ops.push(Op::ConflictCopy {
            path: path.to_owned(),
            copy: format!("{copy_at}{}", &path[at.len()..]),
        });
        handled.insert(path);
    }

    for (path, l, r, s) in entries() {
        if handled.contains(path) {
            continue;
        }
        let local_same = local_unchanged(l, s);
        let remote_same = remote_unchanged(r, s);
        let op = match (local_same, remote_same) {
            (true, true) if stale.contains(path) => Op::RecordSynced {
                path: path.to_owned(),
                synced: None,
            },
            (true, true) => continue,
            // Changed here only: carry it to the server.
            (false, true) => match (l, r) {
                (Some(_), r) => Op::Upload {
                    path: path.to_owned(),
                    parent_rev: r.map(|r| r.rev),
                },
                (None, Some(r)) => Op::DeleteRemote {
                    path: path.to_owned(),
                    file_id: r.file_id.clone(),
                    rev: r.rev,
                },
                (None, None) => Op::RecordSynced {
                    path: path.to_owned(),
                    synced: None,
                },
            },
            // Changed on the server only: carry it here.
            (true, false) => match (r, l) {
                (Some(r), l) if l.is_some_and(|l| l.sha256 == r.sha256) => Op::RecordSynced {
                    path: path.to_owned(),
                    synced: Some(synced_from(r)),
                },
                (Some(r), l) => Op::Download {
                    path: path.to_owned(),
                    file: r.clone(),
                    expect_local: l.map(|l| l.sha256.clone()),
                },
                (None, Some(l)) => Op::DeleteLocal {
                    path: path.to_owned(),
                    expect_sha256: l.sha256.clone(),
                },
                (None, None) => Op::RecordSynced {
                    path: path.to_owned(),
                    synced: None,
                },
            },
            // Changed on both sides.
            (false, false) => match (l, r) {
                (Some(l), Some(r)) if l.sha256 == r.sha256 => Op::RecordSynced {
                    path: path.to_owned(),
                    synced: Some(synced_from(r)),
                },
                (Some(_), Some(_)) => Op::ConflictCopy {
                    path: path.to_owned(),
                    copy: copy_name(path),
                },
                // Edited here, deleted (or moved away) there: the edit survives as a new file.
                (Some(_), None) => Op::Upload {
                    path: path.to_owned(),
                    parent_rev: None,
                },
                // Deleted here, edited there: the edit survives.
                (None, Some(r)) => Op::Download {
                    path: path.to_owned(),
                    file: r.clone(),
                    expect_local: None,
                },
                (None, None) => Op::RecordSynced {
                    path: path.to_owned(),
                    synced: None,
                },
            },
        };
        ops.push(op);
    }
    ops
}

#[cfg(test)]
mod tests;
