#!/usr/bin/env bash
# Push latency through API Gateway's WebSocket API (its double, tests/harness/ws_gateway.rs)
# against the same server's direct sockets, in the same run (issue 17's figure). Builds release
# binaries, starts the all-in-one server on embedded defaults with --apigw-endpoint pointing at
# the double, and runs syncsphere-loadtest twice: devices connected through the double (pushes
# go out as signed @connections POSTs, the double forwards them), then devices connected
# directly. Arguments go to the load tool (both runs); default: 1,000 devices.
#   scripts/bench-push-gateway.sh [--users 100 --devices-per-user 10 --rate 50 --duration 20]
# Prints both markdown reports (paste them into BENCHMARKS.md with the date and machine).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
build_bench_tools
cargo build --locked --release -p syncsphere-e2e --bin syncsphere-aws-doubles

ARGS=("$@")
if [ "${#ARGS[@]}" -eq 0 ]; then
  ARGS=(--users 100 --devices-per-user 10 --rate 50 --duration 20)
fi
WORK="$(mktemp -d /tmp/syncsphere-bench-gw.XXXXXX)"
PIDS=()
trap bench_cleanup EXIT

PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
SECRET="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$REL/syncsphere-aws-doubles" --ws-service "http://127.0.0.1:$PORT" --secret "$SECRET" \
  >"$WORK/doubles.out" 2>"$WORK/doubles.log" &
PIDS+=($!)
for _ in $(seq 200); do [ -s "$WORK/doubles.out" ] && break; sleep 0.05; done
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$WORK/doubles.out" "$1"; }
WS_URL="$(field ws_url)"
MGMT_URL="$(field management_url)"

AWS_ACCESS_KEY_ID="$(field access_key)" AWS_SECRET_ACCESS_KEY="$(field secret_key)" \
  AWS_REGION="$(field region)" AWS_EC2_METADATA_DISABLED=true RUST_LOG=warn \
  "$REL/syncsphere-server" --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" \
  --max-connections-per-user 100000 --max-connections-per-address 0 \
  --client-address-header X-Forwarded-For \
  --apigw-endpoint "$MGMT_URL" --apigw-secret "$SECRET" \
  >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER_PID=$!
PIDS+=("$SERVER_PID")
for _ in $(seq 200); do grep -q 'listening on' "$WORK/server.out" 2>/dev/null && break; sleep 0.05; done
grep -q 'listening on' "$WORK/server.out" || { cat "$WORK/server.log" >&2; exit 1; }
URL="http://127.0.0.1:$PORT"
log "server $URL (pid $SERVER_PID), WebSocket API double $WS_URL; $(nproc) cores"

log "through the WebSocket API double"
RUST_LOG=warn "$REL/syncsphere-loadtest" --server "$URL" --server-pid "$SERVER_PID" \
  --push-url "$WS_URL" "${ARGS[@]}"
log "directly (same server, other users)"
RUST_LOG=warn "$REL/syncsphere-loadtest" --server "$URL" --server-pid "$SERVER_PID" \
  --user-offset 100000 "${ARGS[@]}"
