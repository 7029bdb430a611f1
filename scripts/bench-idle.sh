#!/usr/bin/env bash
# Idle-connection benchmark (State service memory figure). One process may hold at most
# `ulimit -Hn` open files (20,000 on the development machine, and the hard limit cannot be raised
# without CAP_SYS_RESOURCE), so 100k connections need several `--role state` instances and several
# load processes: this script starts Redis, one `files` instance and N `state` instances (release
# builds), then one load process per state instance holding its share of the connections. It
# prints, per instance and in total, the connections held at the same time and the RSS growth
# per connection.
#   scripts/bench-idle.sh [--instances 6] [--per-instance 17000] [--devices-per-user 10]
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ulimit -n "$(ulimit -Hn)"

INSTANCES=6
PER_INSTANCE=17000
DEVICES=10
while [ $# -gt 0 ]; do
  case "$1" in
    --instances) INSTANCES="$2"; shift 2 ;;
    --per-instance) PER_INSTANCE="$2"; shift 2 ;;
    --devices-per-user) DEVICES="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
USERS=$(( PER_INSTANCE / DEVICES ))
TOTAL=$(( USERS * DEVICES * INSTANCES ))

bench_setup idle syncsphere-server syncsphere-loadtest
DATA="$WORK"
bench_cleanup_extra() { stop_redis; }
start_redis

# Starts a server with the given arguments and remembers it for cleanup.
start_server() {
  start_bench_server "$DATA" "$@"
  PIDS+=("$STARTED_PID")
}

# The load tool opens every connection from a few loopback addresses: no per-address limit;
# it signs each user in from an address of its own (X-Forwarded-For), as real users would.
start_server files --role files --data-dir "$DATA/files" --redis-url "$REDIS_URL_TEST" \
  --max-connections-per-address 0 --client-address-header X-Forwarded-For
FILES_URL="$STARTED_URL"
STATE_URLS=(); STATE_PIDS=()
for i in $(seq "$INSTANCES"); do
  start_server "state$i" --role state --redis-url "$REDIS_URL_TEST" \
    --auth-issuer "$FILES_URL/local_syncsphere" --max-connections-per-user 100000 \
    --max-connections-per-address 0
  STATE_URLS+=("$STARTED_URL"); STATE_PIDS+=("$STARTED_PID")
done
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
BEFORE=()
for pid in "${STATE_PIDS[@]}"; do BEFORE+=("$(rss "$pid")"); done
log "files $FILES_URL, $INSTANCES state instances; opening $TOTAL connections ($USERS users × $DEVICES devices per instance)"

LOADS=()
for i in $(seq 0 $(( INSTANCES - 1 ))); do
  RUST_LOG=warn "$REL/syncsphere-loadtest" --server "$FILES_URL" --push-url "${STATE_URLS[$i]}" \
    --users "$USERS" --user-offset $(( i * USERS )) --devices-per-user "$DEVICES" \
    --rate 1 --duration 0 --source-ips 8 --hold-secs 3600 \
    >"$DATA/load$i.out" 2>"$DATA/load$i.log" &
  LOADS+=("$!"); PIDS+=("$!")
done

connections() {
  local sum=0 n
  for url in "${STATE_URLS[@]}"; do
    n="$(curl -s "$url/metrics" | awk '/^syncsphere_state_connections /{print $2}')"
    sum=$(( sum + ${n:-0} ))
  done
  echo "$sum"
}
started=$(date +%s)
while :; do
  held="$(connections)"
  [ "$held" -ge "$TOTAL" ] && break
  for pid in "${LOADS[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then cat "$DATA"/load*.log >&2; echo "a load process died" >&2; exit 1; fi
  done
  [ $(( $(date +%s) - started )) -lt 1800 ] || { echo "timed out at $held connections" >&2; exit 1; }
  sleep 5
done
sleep 5
held="$(connections)"
log "all $held connections open after $(( $(date +%s) - started )) s"

echo "## Idle connections: $INSTANCES state instances"
echo
echo "| instance | connections | RSS before | RSS with connections | per connection |"
echo "|---|---|---|---|---|"
total_delta=0
for i in $(seq 0 $(( INSTANCES - 1 ))); do
  after="$(rss "${STATE_PIDS[$i]}")"
  n="$(curl -s "${STATE_URLS[$i]}/metrics" | awk '/^syncsphere_state_connections /{print $2}')"
  delta=$(( after - BEFORE[i] ))
  total_delta=$(( total_delta + delta ))
  printf '| %d | %d | %d KiB | %d KiB | %.1f KiB |\n' "$i" "$n" "${BEFORE[$i]}" "$after" "$(echo "$delta / $n" | bc -l)"
done
printf '| **all** | **%d** | | | **%.1f KiB** |\n' "$held" "$(echo "$total_delta / $held" | bc -l)"
