#!/usr/bin/env bash
# Soak benchmark (issue 19): builds release binaries, starts the all-in-one server on embedded
# defaults in a temp directory, and runs syncsphere-loadtest --soak against it: devices stay
# connected for the whole run while commits flow, sockets churn (each reconnect catches up from
# its cursor) and the abuse suite's attacks run alongside. Prints a markdown report: a sample
# row per --sample-secs (server RSS, descriptors, sockets, push latency), then whether any
# change was lost, the RSS spread after the warm-up and what each attack was answered.
# Defaults are the issue's hour at 10,000 devices; arguments override them, e.g.
#   scripts/bench-soak.sh --duration 600 --users 200
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
build_bench_tools

DATA="$(mktemp -d /tmp/syncsphere-soak.XXXXXX)"
trap 'kill "${SERVER_PID:-}" 2>/dev/null; wait "${SERVER_CHILD:-}" 2>/dev/null; rm -rf "$DATA"' EXIT
# Tokens outlive the hour (the load tool signs in once); the per-user and per-address
# connection limits are the load's own (10 devices per user, all from loopback); the staged
# limit is lowered to 64 MiB so that the uncommitted-chunk attack reaches it within minutes;
# the garbage collector runs every 15 min (GC_INTERVAL_SECS), four passes in the hour.
start_bench_server "$DATA" server --data-dir "$DATA" --max-connections-per-user 100000 \
  --max-connections-per-address 0 --client-address-header X-Forwarded-For \
  --access-token-ttl 10800 --max-staged-bytes-per-user 67108864 \
  --gc-interval-secs "${GC_INTERVAL_SECS:-900}"
SERVER_PID="$STARTED_PID" SERVER_CHILD="$STARTED_CHILD" URL="$STARTED_URL"
log "server $URL (pid $SERVER_PID); $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; $(git rev-parse --short HEAD)"
RUST_LOG=warn "$REL/syncsphere-loadtest" --server "$URL" --server-pid "$SERVER_PID" --soak \
  --users 1000 --devices-per-user 10 --rate 20 --churn-per-sec 5 --attacks \
  --duration 3600 --sample-secs 60 --warmup-secs 600 --source-ips 16 "$@"
