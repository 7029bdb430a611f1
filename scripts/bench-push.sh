#!/usr/bin/env bash
# Push benchmark (issue: State service figures). Builds release binaries, starts the all-in-one
# server on embedded defaults in a temp directory, and runs syncsphere-loadtest against it.
# Arguments are passed to the load tool, e.g.
#   scripts/bench-push.sh --users 1000 --devices-per-user 10 --rate 1000 --duration 20
# Prints a markdown report (paste it into BENCHMARKS.md with the date and machine).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
build_bench_tools

DATA="$(mktemp -d /tmp/syncsphere-bench.XXXXXX)"
# BENCH_DB=postgres: metadata in a throwaway PostgreSQL with fsync on (durable like SQLite).
DB_ARGS=()
if [ "${BENCH_DB:-sqlite}" = postgres ]; then
  PG_FSYNC=on start_postgres
  DB_ARGS=(--database-url "$PG_URL")
fi
trap 'kill "${SERVER_PID:-}" 2>/dev/null; wait "${SERVER_PID:-}" 2>/dev/null; stop_postgres; rm -rf "$DATA"' EXIT
start_bench_server "$DATA" server "${DB_ARGS[@]}" --data-dir "$DATA" --max-connections-per-user 100000 \
  --max-connections-per-address 0 --client-address-header X-Forwarded-For
SERVER_PID="$STARTED_PID" URL="$STARTED_URL"
log "server $URL (pid $SERVER_PID); $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB"
RUST_LOG=warn "$REL/syncsphere-loadtest" --server "$URL" --server-pid "$SERVER_PID" "$@"
