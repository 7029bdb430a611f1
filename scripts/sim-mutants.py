#!/usr/bin/env python3
"""Proves the safety rules are guarded: removes one rule at a time from the engine, runs the
randomized simulation and the deterministic tests beside the rule (sync-core's unit tests, or the
client's unit tests and scripted scenarios), and lists the seeds and tests that fail (a rule
nothing misses is not proven).

    python3 scripts/sim-mutants.py [SEEDS] [NAME-FILTER...]

Never commit while it runs: the rule under test is missing from the working tree. SEEDS
defaults to 1500; a filter keeps the rules whose name contains it. Each file is restored
after its run, whatever happens. Not part of the test command: about three minutes a rule on
2 cores. With HEAVY_LOCK=<file> each cargo command holds that lock (`flock`), so builds of
others sharing the machine take turns with it.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (rule, file, the lines that make it, what they become without it)
CASES = [
 ("folder marker check", "src-tauri/sync-client/src/folder.rs", "match read_marker(fs, &self.path) {", "match Some(self.id.clone()) {"),
 ("mass-delete brake", "src-tauri/sync-core/src/brake.rs", "    if !policy.trips(unapproved, synced_files) {", "    if true {"),
 ("NFD names mapped to NFC", "src-tauri/sync-client/src/scan.rs", "let name: String = disk_name.nfc().collect();", "let name: String = disk_name.to_string();"),
 ("download placed no-replace", "src-tauri/sync-client/src/engine/execute.rs", "            .rename_no_replace(tmp, &dest)", "            .rename(tmp, &dest).map(|()| true)"),
 ("moves/copies no-replace", "src-tauri/sync-client/src/engine/execute.rs", "                self.fs.rename_no_replace(src, dst)", "                self.fs.rename(src, dst).map(|()| true)"),
 ("download folder fsync", "src-tauri/sync-client/src/engine/execute.rs", "        if let Some(parent) = dest.parent() {\n            self.fs.sync_dir(parent);\n        }", ""),
 ("downloaded file fsync (Api::download's sync_all)", "src-tauri/sync-client/src/sim/server.rs", "                .and_then(|()| self.fs.fsync_file(dest)) // as `Api::download` does\n", ""),
 ("renames durable", "src-tauri/sync-client/src/engine/execute.rs", "                    for dir in [dst.parent(), src.parent()].into_iter().flatten() {\n                        self.fs.sync_dir(dir);\n                    }", ""),
 ("set-aside hash re-check", "src-tauri/sync-client/src/engine/aside.rs", "if sha.as_ref().is_ok_and(|s| s == expect) {", "if true {"),
 # Not a safety rule, listed to show it: without it a file edited after the scan is moved
 # anyway and its edit goes up at the new name next pass (an edit follows a rename), so nothing
 # can catch its absence.
 ("move re-check of content", "src-tauri/sync-client/src/engine/execute.rs", "if now.as_deref() != Some(expect_sha256.as_str()) || occupied {", "if occupied {"),
 ("unreadable never recorded", "src-tauri/sync-core/src/unreadable.rs", "            Op::MoveLocal { to, .. } if !self.covers(&to) => {", "            Op::RecordSynced { .. } => Some(op),\n            Op::MoveLocal { to, .. } if !self.covers(&to) => {"),
 ("unreadable synced files held", "src-tauri/sync-core/src/unreadable.rs", "        for (p, s) in synced.iter().filter(|(p, _)| self.covers(p)) {", "        for (p, s) in synced.iter().filter(|_| false) {"),
 ("ops on unreadable paths wait", "src-tauri/sync-core/src/unreadable.rs", "        if !self.touches(&op) {", "        if true {"),
 ("unreadable names compared folded", "src-tauri/sync-core/src/unreadable.rs", "let norm = |p: &str| if fold { key(p) } else { p.to_owned() };", "let norm = |p: &str| p.to_owned();"),
 ("held files keep their synced spelling", "src-tauri/sync-core/src/unreadable.rs", "        let local = if self.fold {\n            adopt_folder_spelling(scanned, remote, synced)\n        } else {\n            scanned.clone()\n        };\n        self.hold(local, synced)", "        let local = self.hold(scanned.clone(), synced);\n        if self.fold {\n            adopt_folder_spelling(&local, remote, synced)\n        } else {\n            local\n        }"),
 ("set-aside files held", "src-tauri/sync-client/src/engine.rs", "            scan.unreadable.extend(self.aside_origins());", ""),
 # Not guarded by the simulation, listed to show it: the fake disk reports the engine's own
 # writes as watcher events, so without the engine's marks the next rescan still looks at the
 # names an operation touched. On a real disk the watcher's word comes later than the next
 # round; the e2e tests (two_devices, idle) are what notice a round planning with a stale
 # listing there.
 ("engine marks the names it touched", "src-tauri/sync-client/src/engine.rs", "        for p in &touched {\n            self.dirty.mark(p);\n        }", ""),
]


def main() -> None:
    # Killed or interrupted (also where a background shell ignores SIGINT): leave through the
    # `finally` below, which puts the rule back.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(1))
    seeds = sys.argv[1] if len(sys.argv) > 1 else "1500"
    only = sys.argv[2:]
    lock = os.environ.get("HEAVY_LOCK")
    prefix = f"flock {lock} " if lock else ""
    for name, rel, old, new in CASES:
        if only and not any(o in name for o in only):
            continue
        path = os.path.join(ROOT, rel)
        src = open(path, encoding="utf-8").read()
        if src.count(old) != 1:
            print(f"{name}: the rule's lines are not found once in {rel}; update this list")
            continue
        backup = tempfile.NamedTemporaryFile(delete=False)
        backup.close()
        shutil.copy(path, backup.name)
        try:
            open(path, "w", encoding="utf-8").write(src.replace(old, new))
            out = subprocess.run(
                f"{prefix}cargo test --release -p syncsphere-sync-client "
                "sim::randomized_devices_converge_without -- --nocapture",
                shell=True, cwd=ROOT, capture_output=True, text=True,
                env={**os.environ, "SIM_RUNS": seeds},
            )
            text = out.stdout + out.stderr
            if "error[" in text:
                print(f"{name}: does not build without it; update this list", flush=True)
                continue
            failed = sorted(int(s) for s in re.findall(r"simulation seed (\d+) \(fake server\) failed", text))
            # The deterministic tests beside the rule: the unit tests of sync-core, or the
            # client's unit tests and scripted scenarios (all but the randomized runs).
            crate = "syncsphere-sync-core" if "sync-core" in rel else "syncsphere-sync-client"
            unit = subprocess.run(
                f"{prefix}cargo test --release -p {crate} --lib -- --skip sim::randomized",
                shell=True, cwd=ROOT, capture_output=True, text=True,
            )
            tests = sorted(set(re.findall(r"^test (\S+) \.\.\. FAILED", unit.stdout, re.M)))
            found = []
            if failed:
                found.append(f"seeds {failed}")
            if tests:
                found.append(f"tests {tests}")
            if found:
                print(f"{name}: caught by {'; '.join(found)}", flush=True)
            else:
                print(f"{name}: NOT caught in {seeds} seeds nor by a test", flush=True)
        finally:
            shutil.copy(backup.name, path)
            os.unlink(backup.name)


if __name__ == "__main__":
    main()
