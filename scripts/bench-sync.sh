#!/usr/bin/env bash
# Sync-engine benchmark (sync-engine figures), real server and clients (release builds,
# embedded defaults, one machine):
#   1. save latency: a small file saved on device A (written to a temp name, then renamed, as
#      editors do) until it is byte-identical on device B's disk, over N saves 250 ms apart;
#   2. initial sync: 10,000 small files uploaded by A, then a new device C with an empty folder,
#      timed from its start until it holds every file ("up to date");
#   3. the same saves with those files in the folder (latency, and CPU of A and B per save from
#      /proc), then 60 s of idling (CPU of A and B, sync passes and folder scans counted).
#   scripts/bench-sync.sh [--saves 200] [--files 10000]
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
SAVES=200
FILES=10000
while [ $# -gt 0 ]; do
  case "$1" in
    --saves) SAVES="$2"; shift 2 ;;
    --files) FILES="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

bench_setup sync syncsphere-server syncsphere-cli

start_bench_server "$WORK" server --data-dir "$WORK/server"
PIDS+=("$STARTED_PID")
URL="$STARTED_URL"
export SYNCSPHERE_PASSWORD="Benchmark-passw0rd"
"$REL/syncsphere" --config-dir "$WORK/a" signup --server "$URL" --email sync@example.com >/dev/null
"$REL/syncsphere" --config-dir "$WORK/b" login --server "$URL" --email sync@example.com >/dev/null
mkdir -p "$WORK/fa" "$WORK/fb"
for d in a b; do
  RUST_LOG=warn "$REL/syncsphere" --config-dir "$WORK/$d" sync --folder "$WORK/f$d" --device-name "$d" \
    2>"$WORK/$d.log" &
  PIDS+=("$!")
done

python3 - "$WORK" "$SAVES" "$FILES" "$REL/syncsphere" "$URL" "${PIDS[1]}" "${PIDS[2]}" <<'PY'
import json, os, subprocess, sys, time
from benchlib import cpu, quantile, timed_saves
work, saves, files, cli, url = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
pid_a, pid_b = int(sys.argv[6]), int(sys.argv[7])

def work_counters(dev):
    w = status(dev).get("work", {})
    return w.get("passes", 0), w.get("full_scans", 0), w.get("partial_scans", 0)

def status(dev):
    try:
        with open(os.path.join(work, dev, "status.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}

def wait_up_to_date(dev, count, timeout=3600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = status(dev)
        if s.get("state") == "up_to_date" and s.get("connected") and s.get("synced_files") == count and s.get("pending") == 0:
            return
        time.sleep(0.02)
    sys.exit(f"{dev} never got up to date with {count} files: {status(dev)}")

wait_up_to_date("a", 0); wait_up_to_date("b", 0)

# 1. Save latency.
def measure_saves(saves):
    return timed_saves(os.path.join(work, "fa"), os.path.join(work, "fb"), saves,
                       lambda i, name: f"save {i} did not arrive")

def show(lat, what):
  q = lambda p: quantile(lat, p)
  print(f"- save on A → byte-identical on B's disk, {len(lat)} saves of 2 KB ({what}, 250 ms apart): "
        f"**p50 {q(0.5):.0f} ms**, p90 {q(0.9):.0f} ms, **p99 {q(0.99):.0f} ms**, max {lat[-1]:.0f} ms")

show(measure_saves(saves), f"{min(saves, 20)} files in the folder")

# 2. Initial sync of many small files (on top of the files the saves wrote).
base = min(saves, 20)
os.makedirs(os.path.join(work, "fa", "many"), exist_ok=True)
for i in range(files):
    d = os.path.join(work, "fa", "many", f"{i // 1000:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file-{i:05d}.txt"), "wb") as f:
        f.write(os.urandom(512).hex().encode())
t0 = time.perf_counter()
wait_up_to_date("a", base + files)
up = time.perf_counter() - t0
env = dict(os.environ)
subprocess.run([cli, "--config-dir", os.path.join(work, "c"), "login", "--server", url, "--email", "sync@example.com"], check=True, env=env, stdout=subprocess.DEVNULL)
os.makedirs(os.path.join(work, "fc"))
t0 = time.perf_counter()
p = subprocess.Popen([cli, "--config-dir", os.path.join(work, "c"), "sync", "--folder", os.path.join(work, "fc"), "--device-name", "c"], env=dict(env, RUST_LOG="warn"), stderr=open(os.path.join(work, "c.log"), "w"))
try:
    wait_up_to_date("c", base + files)
    down = time.perf_counter() - t0
finally:
    p.terminate(); p.wait()
print(f"- {files:,} small files (1 KB each) saved at once on A: uploaded and committed in **{up:.1f} s** ({files/up:.0f} files/s)")
print(f"- initial sync of those {files + base:,} files to a new device with an empty folder: **{down:.1f} s** ({(files + base)/down:.0f} files/s)")

# 3. Saves with those files in the folder, and idling.
wait_up_to_date("b", base + files)
time.sleep(5)
c0 = (cpu(pid_a), cpu(pid_b))
lat = measure_saves(min(saves, 100))
c1 = (cpu(pid_a), cpu(pid_b))
show(lat, f"{files + base:,} files in the folder")
n = len(lat)
print(f"- CPU per save with {files + base:,} files in the folder: A {(c1[0] - c0[0]) / n:.3f} s, B {(c1[1] - c0[1]) / n:.3f} s")
wait_up_to_date("a", base + files); wait_up_to_date("b", base + files)
time.sleep(5)
w0 = (work_counters("a"), work_counters("b"))
c0 = (cpu(pid_a), cpu(pid_b))
time.sleep(60)
c1 = (cpu(pid_a), cpu(pid_b))
w1 = (work_counters("a"), work_counters("b"))
d = lambda i, j: w1[i][j] - w0[i][j]
print(f"- two idle clients with {files + base:,} files, 60 s: **{(c1[0] - c0[0] + c1[1] - c0[1]) / 60:.4f} cores** together; "
      f"passes A {d(0, 0)} B {d(1, 0)}, full scans A {d(0, 1)} B {d(1, 1)}, partial scans A {d(0, 2)} B {d(1, 2)}")
PY
