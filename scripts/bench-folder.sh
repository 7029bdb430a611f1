#!/usr/bin/env bash
# Folder-size benchmark (sync-engine figures): what a save and idling cost as the folder grows.
# Real server and clients (release builds, embedded defaults, one machine). For each folder
# size, on an account of its own:
#   1. N small files (1 KB, 1,000 per folder) are written into A's folder and copied into B's;
#      A starts and uploads them, then B starts and finds them already there (nothing to
#      download: this measures a folder of N files, not a first sync);
#   2. saves on A (a 2 KB file written to a temporary name, then renamed, as editors do, into a
#      folder that holds up to 1,000 of those files), until byte-identical on B's disk: latency
#      and CPU of A and B per save (from /proc);
#   3. 60 s of idling: CPU of both, passes and scans counted; then each client's resident
#      memory (RSS now, and its peak since start).
#   scripts/bench-folder.sh [--sizes "200 20000 100000"] [--saves 100]
#   BENCH_CLIENT_WRAP runs each client under a profiler, "{dev}" standing for its name (a0, b0,
#   …), e.g. "heaptrack -o /tmp/ht/{dev}"; BENCH_SERVER_WRAP does so for the server (lib.sh).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
SIZES="200 20000 100000"
SAVES=100
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) SIZES="$2"; shift 2 ;;
    --saves) SAVES="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

bench_setup folder syncsphere-server syncsphere-cli

start_bench_server "$WORK" server --data-dir "$WORK/server"
PIDS+=("$STARTED_PID")
export SYNCSPHERE_PASSWORD="Benchmark-passw0rd"

echo "## Folder size ($(date -u +%F), $(nproc) cores, $SAVES saves per size)"
echo
echo "| files in the folder | save → other device p50 / p99 | CPU per save A / B | idle CPU, two clients (60 s) | passes / scans while idle | RSS A / B (peak) |"
echo "|---|---|---|---|---|---|"
python3 - "$WORK" "$SAVES" "$REL/syncsphere" "$STARTED_URL" $SIZES <<'PY'
import json, os, shutil, subprocess, sys, time
from benchlib import cpu, quantile, timed_saves
work, saves, cli, url = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
sizes = [int(s) for s in sys.argv[5:]]

def memory(pid):
    """(RSS now, peak RSS) in MiB."""
    got = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                got[key] = int(value.split()[0]) / 1024
    return got["VmRSS"], got["VmHWM"]

def status(dev):
    try:
        with open(os.path.join(work, dev, "status.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}

def counters(dev):
    w = status(dev).get("work", {})
    return w.get("passes", 0), w.get("full_scans", 0) + w.get("partial_scans", 0)

def wait_up_to_date(dev, count, timeout=3600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = status(dev)
        if s.get("state") == "up_to_date" and s.get("connected") and s.get("synced_files") == count and s.get("pending") == 0:
            return
        time.sleep(0.05)
    sys.exit(f"{dev} never got up to date with {count} files: {status(dev)}")

wrap = os.environ.get("BENCH_CLIENT_WRAP", "").split()

def start(dev, folder):
    log = open(os.path.join(work, f"{dev}.log"), "w")
    return subprocess.Popen([w.replace("{dev}", dev) for w in wrap] + [cli, "--config-dir", os.path.join(work, dev), "sync", "--folder", folder,
                             "--device-name", dev], env=dict(os.environ, RUST_LOG="warn"), stderr=log)

for n, files in enumerate(sizes):
    a, b = f"a{n}", f"b{n}"
    fa, fb = os.path.join(work, f"f{a}"), os.path.join(work, f"f{b}")
    email = f"folder{n}@example.com"
    subprocess.run([cli, "--config-dir", os.path.join(work, a), "signup", "--server", url, "--email", email], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([cli, "--config-dir", os.path.join(work, b), "login", "--server", url, "--email", email], check=True, stdout=subprocess.DEVNULL)
    for i in range(files):
        d = os.path.join(fa, "many", f"{i // 1000:03d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"file-{i:06d}.txt"), "wb") as f:
            f.write(os.urandom(512).hex().encode())
    shutil.copytree(fa, fb)
    pa = start(a, fa)
    wait_up_to_date(a, files)
    pb = start(b, fb)
    wait_up_to_date(b, files)
    time.sleep(5)
    # Saves into a folder of (up to) 1,000 of the files.
    into = os.path.join("many", "000")
    c0 = (cpu(pa.pid), cpu(pb.pid))
    lat = timed_saves(os.path.join(fa, into), os.path.join(fb, into), saves,
                      lambda i, name: f"save {i} did not arrive with {files} files")
    c1 = (cpu(pa.pid), cpu(pb.pid))
    q = lambda p: quantile(lat, p)
    total = files + min(saves, 20)
    wait_up_to_date(a, total); wait_up_to_date(b, total)
    time.sleep(5)
    w0 = (counters(a), counters(b))
    i0 = (cpu(pa.pid), cpu(pb.pid))
    time.sleep(60)
    i1 = (cpu(pa.pid), cpu(pb.pid))
    w1 = (counters(a), counters(b))
    (ra, pka), (rb, pkb) = memory(pa.pid), memory(pb.pid)
    idle = (i1[0] - i0[0] + i1[1] - i0[1]) / 60
    print(f"| {files:,} | **{q(0.5):.0f} / {q(0.99):.0f} ms** | **{(c1[0] - c0[0]) * 1000 / saves:.1f} / {(c1[1] - c0[1]) * 1000 / saves:.1f} ms** "
          f"| **{idle:.4f} cores** | {w1[0][0] - w0[0][0] + w1[1][0] - w0[1][0]} / {w1[0][1] - w0[0][1] + w1[1][1] - w0[1][1]} "
          f"| {ra:.0f} / {rb:.0f} MiB ({pka:.0f} / {pkb:.0f}) |", flush=True)
    for p in (pa, pb):
        p.terminate(); p.wait()
    shutil.rmtree(fa); shutil.rmtree(fb)
PY
