#!/usr/bin/env bash
# File-transfer benchmark (File service figures), with the real client and server (release
# builds, embedded defaults, everything on the same disk):
#   1. a random file (default 256 MiB) is synced to a second device; then 1 byte is inserted at
#      its start, and the content bytes the first device uploads and the second downloads for
#      that edit are reported (goal: ≤ 2 MiB each), with the time until the second device holds
#      the new version and the CPU both spent on it;
#   2. a random 1 GiB file is synced from a fresh folder, timed from the client's start to
#      "up to date" (scan, chunking, upload, server fsyncs, commit), and compared with `cp` of the
#      same file on the same disk, with and without a final `sync` (goal: cp time / upload
#      time ≥ 0.7).
#   scripts/bench-files.sh [--edit-mib 256] [--big-mib 1024] [--blobs disk|s3]
# With `--blobs s3` the server keeps blobs in a local s3s-fs (installed if missing).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
EDIT_MIB=256
BIG_MIB=1024
BLOBS=disk
while [ $# -gt 0 ]; do
  case "$1" in
    --edit-mib) EDIT_MIB="$2"; shift 2 ;;
    --big-mib) BIG_MIB="$2"; shift 2 ;;
    --blobs) BLOBS="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

bench_setup files syncsphere-server syncsphere-cli
bench_cleanup_extra() { stop_s3; }

BLOB_ARGS=()
if [ "$BLOBS" = s3 ]; then
  ensure_s3s_fs
  start_s3
  BLOB_ARGS=(--s3-bucket "$S3_BUCKET_TEST" --s3-endpoint "$S3_ENDPOINT_TEST" --s3-path-style)
  export AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY_TEST" AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY_TEST"
fi
start_bench_server "$WORK" server "${BLOB_ARGS[@]}" --data-dir "$WORK/server"
PIDS+=("$STARTED_PID")
URL="$STARTED_URL"
export SYNCSPHERE_PASSWORD="Benchmark-passw0rd"
"$REL/syncsphere" --config-dir "$WORK/dev1" signup --server "$URL" --email bench@example.com >/dev/null

status() { cat "$1/status.json" 2>/dev/null || echo '{}'; }
field() { python3 -c "import json,sys; print(json.load(open('$1/status.json')).get('$2', ''))" 2>/dev/null; }
# Waits until the device in config dir $1 is up to date with $2 synced files and, with $3,
# more than $3 content bytes uploaded (so an edit is not taken as done before it is even
# noticed). Pure bash: a process per poll (python, jq) would take CPU from the transfer timed.
wait_synced() {
  local dir="$1" files="$2" more_than="${3:--1}" s
  for _ in $(seq 60000); do
    s="$(<"$dir/status.json")" 2>/dev/null || s=""
    if [[ $s =~ \"state\":\ \"up_to_date\" && $s =~ \"synced_files\":\ $files[^0-9] \
          && $s =~ \"pending\":\ 0[^0-9] && $s =~ \"bytes_uploaded\":\ ([0-9]+) ]] \
       && (( BASH_REMATCH[1] > more_than )); then return 0; fi
    sleep 0.02
  done
  echo "timed out waiting for $dir" >&2; status "$dir" >&2; exit 1
}
start_sync() {
  RUST_LOG=warn "$REL/syncsphere" --config-dir "$1" sync --folder "$2" --device-name "${3:-bench}" \
    2>"$1.log" &
  SYNC_PID=$!
  PIDS+=("$SYNC_PID")
}
# CPU seconds (user + system) process $1 has used so far.
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{ print ($14 + $15) / t }' "/proc/$1/stat"; }
# Waits until file $2 in folder $1 has the same bytes as file $3.
wait_same() {
  for _ in $(seq 60000); do
    if cmp -s "$1/$2" "$3"; then return 0; fi
    sleep 0.02
  done
  echo "timed out waiting for $1/$2" >&2; exit 1
}

# 1. One-byte insert at the start of a large file, sent from dev1 and received by dev1b.
"$REL/syncsphere" --config-dir "$WORK/dev1b" login --server "$URL" --email bench@example.com >/dev/null
mkdir -p "$WORK/folder1" "$WORK/folder1b"
head -c "$(( EDIT_MIB * 1024 * 1024 ))" /dev/urandom >"$WORK/folder1/edit.bin"
start_sync "$WORK/dev1" "$WORK/folder1" sender
SENDER_PID="$SYNC_PID"
start_sync "$WORK/dev1b" "$WORK/folder1b" receiver
RECEIVER_PID="$SYNC_PID"
wait_synced "$WORK/dev1" 1
wait_same "$WORK/folder1b" edit.bin "$WORK/folder1/edit.bin"
wait_synced "$WORK/dev1b" 1
first="$(field "$WORK/dev1" bytes_uploaded)"
first_down="$(field "$WORK/dev1b" bytes_downloaded)"
{ printf '#'; cat "$WORK/folder1/edit.bin"; } >"$WORK/edit.new"
cpu_a0="$(cpu_s "$SENDER_PID")"; cpu_b0="$(cpu_s "$RECEIVER_PID")"
t_edit=$(date +%s.%N)
mv "$WORK/edit.new" "$WORK/folder1/edit.bin"
wait_same "$WORK/folder1b" edit.bin "$WORK/folder1/edit.bin"
t_arrived=$(date +%s.%N)
wait_synced "$WORK/dev1" 1 "$first"
wait_synced "$WORK/dev1b" 1
cpu_a1="$(cpu_s "$SENDER_PID")"; cpu_b1="$(cpu_s "$RECEIVER_PID")"
second="$(field "$WORK/dev1" bytes_uploaded)"
second_down="$(field "$WORK/dev1b" bytes_downloaded)"
for pid in "$SENDER_PID" "$RECEIVER_PID"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done
edit_bytes=$(( second - first ))
edit_down=$(( second_down - first_down ))
edit_s=$(echo "$t_arrived - $t_edit" | bc -l)

# 2. 1 GiB upload vs cp on the same disk.
head -c "$(( BIG_MIB * 1024 * 1024 ))" /dev/urandom >"$WORK/big.src"
sync
t0=$(date +%s.%N); cp "$WORK/big.src" "$WORK/big.cp1"; t1=$(date +%s.%N)
sync
t2=$(date +%s.%N); cp "$WORK/big.src" "$WORK/big.cp2"; sync; t3=$(date +%s.%N)
rm -f "$WORK/big.cp1" "$WORK/big.cp2"; sync
cp_s=$(echo "$t1 - $t0" | bc -l); cp_sync_s=$(echo "$t3 - $t2" | bc -l)
# A second account, so the timed run uploads the big file and nothing else (no download of the
# first part's file).
"$REL/syncsphere" --config-dir "$WORK/dev2" signup --server "$URL" --email bench2@example.com >/dev/null
mkdir -p "$WORK/folder2"
mv "$WORK/big.src" "$WORK/folder2/big.bin"; sync
t5=$(date +%s.%N)
start_sync "$WORK/dev2" "$WORK/folder2"
wait_synced "$WORK/dev2" 1
t4=$(date +%s.%N)
up_s=$(echo "$t4 - $t5" | bc -l)
up_bytes="$(field "$WORK/dev2" bytes_uploaded)"

echo "## File transfers ($(date -u +%F), $(nproc) cores, blobs: $BLOBS)"
echo
echo "- 1-byte insert at the start of a ${EDIT_MIB} MiB random file: **$edit_bytes bytes** uploaded for the edit (first upload: $first bytes), **$edit_down bytes** downloaded by the other device (first download: $first_down bytes)"
printf -- '- that edit, saved → byte-identical on the other device: **%.2f s**; CPU sender %.2f s, receiver %.2f s\n' "$edit_s" "$(echo "$cpu_a1 - $cpu_a0" | bc -l)" "$(echo "$cpu_b1 - $cpu_b0" | bc -l)"
printf -- '- %d MiB random file, client start → up to date: **%.2f s** (%.0f MiB/s; %s content bytes uploaded)\n' "$BIG_MIB" "$up_s" "$(echo "$BIG_MIB / $up_s" | bc -l)" "$up_bytes"
printf -- '- cp of the same file on the same disk: %.2f s (page cache), %.2f s with sync\n' "$cp_s" "$cp_sync_s"
printf -- '- ratio cp time / upload time: **%.2f** (cp), **%.2f** (cp + sync)\n' "$(echo "$cp_s / $up_s" | bc -l)" "$(echo "$cp_sync_s / $up_s" | bc -l)"
