#!/usr/bin/env bash
# Garbage-collection benchmark (issue 19: the soak found the collector's pass growing the
# server's memory). Builds release binaries, starts the all-in-one server on embedded defaults
# with a short collector interval, fills it with small files through syncsphere-loadtest (all
# live: the pass deletes nothing, the steady state of a server whose users keep their files),
# then samples the server's RSS every 0.2 s through the first collection pass. Prints the files
# stored, RSS before, at the peak of and after the pass, and the pass's duration. Defaults:
# 70,000 files (100 users, 700 commits/s for 100 s), first pass at 240 s (GC_INTERVAL_SECS).
#   scripts/bench-gc.sh [--users N] [--rate R] [--duration S]   (loadtest flags)
# SERVER_BIN=/path/to/syncsphere-server runs another build of the server (a comparison in the
# same sitting, e.g. the previous release).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
build_bench_tools
INTERVAL="${GC_INTERVAL_SECS:-240}"
if [ -n "${SERVER_BIN:-}" ]; then
  mkdir -p "$CARGO_TARGET_DIR/bench-gc"
  cp "$SERVER_BIN" "$CARGO_TARGET_DIR/bench-gc/syncsphere-server"
  cp "$REL/syncsphere-loadtest" "$CARGO_TARGET_DIR/bench-gc/"
  REL="$CARGO_TARGET_DIR/bench-gc"
fi

DATA="$(mktemp -d /tmp/syncsphere-gc.XXXXXX)"
trap 'kill "${SAMPLER_PID:-}" "${SERVER_PID:-}" 2>/dev/null; wait "${SERVER_PID:-}" 2>/dev/null; rm -rf "$DATA"' EXIT
# The pass is found by its log line (older builds have no collector metrics).
BENCH_SERVER_LOG="warn,syncsphere_files::gc=info" start_bench_server "$DATA" server \
  --data-dir "$DATA" --max-connections-per-user 100000 --max-connections-per-address 0 \
  --client-address-header X-Forwarded-For --gc-interval-secs "$INTERVAL" --gc-grace-secs 60
SERVER_PID="$STARTED_PID" URL="$STARTED_URL"
# The collector's first pass starts one interval after the server.
PASS_START_MS=$(($(date +%s%3N) + INTERVAL * 1000))
log "server $URL (pid $SERVER_PID), first collection at $INTERVAL s; $(git rev-parse --short HEAD)"

# RSS in KiB every 0.2 s: "<epoch ms> <KiB>".
(while kill -0 "$SERVER_PID" 2>/dev/null; do
  echo "$(date +%s%3N) $(awk '/VmRSS/{print $2}' "/proc/$SERVER_PID/status" 2>/dev/null)"
  sleep 0.2
done) >"$DATA/rss" &
SAMPLER_PID=$!

RUST_LOG=warn "$REL/syncsphere-loadtest" --server "$URL" --server-pid "$SERVER_PID" \
  --users 100 --devices-per-user 2 --rate 700 --duration 100 --source-ips 16 "$@" |
  tee "$DATA/load.md" >&2
BEFORE_MS=$(date +%s%3N)
if [ "$BEFORE_MS" -ge "$PASS_START_MS" ]; then
  echo "the load outlasted the collector's interval ($INTERVAL s): raise GC_INTERVAL_SECS" >&2
  exit 1
fi
log "load done; waiting for the first pass"
until grep -q "garbage collection" "$DATA/server.log"; do
  [ "$(date +%s%3N)" -lt $((PASS_START_MS + INTERVAL * 1000)) ] || { echo "no pass" >&2; exit 1; }
  sleep 0.2
done
DONE_MS=$(date +%s%3N)
grep -q "garbage collection pass" "$DATA/server.log" || { tail "$DATA/server.log" >&2; exit 1; }
sleep 30
END_MS=$(date +%s%3N)
# The pass's own measure where the build has it, else from its start to its log line.
PASS_MS="$(curl -fsS "$URL/metrics" | awk '$1 == "syncsphere_files_gc_last_pass_milliseconds" {print $2}')"
PASS_MS="${PASS_MS:-$((DONE_MS - PASS_START_MS))}"
python3 - "$DATA/rss" "$BEFORE_MS" "$DONE_MS" "$END_MS" "$PASS_MS" "$DATA/load.md" <<'PY'
import re, sys
rss_file, before, done, end, pass_ms, load = sys.argv[1], *map(int, sys.argv[2:6]), sys.argv[6]
samples = [tuple(map(int, l.split())) for l in open(rss_file) if len(l.split()) == 2]
start = done - pass_ms
idle = [kib for t, kib in samples if before <= t < start]
during = [kib for t, kib in samples if start - 200 <= t <= done + 200]
after = [kib for t, kib in samples if end - 5000 <= t <= end]
commits = re.search(r"commits: (\d+)", open(load).read())
mib = lambda kib: f"{kib / 1024:.0f} MiB"
print(f"- files stored: {commits.group(1) if commits else '?'} (all live: the pass deletes none)")
print(f"- collection pass: {pass_ms} ms")
print(f"- server RSS: {mib(max(idle))} before the pass, {mib(max(during))} at its peak "
      f"(+{mib(max(during) - max(idle))}), {mib(min(after))} 30 s after "
      f"(+{mib(min(after) - max(idle))} kept)")
PY
