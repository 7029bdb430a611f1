#!/usr/bin/env bash
# The main job: installs what is missing, builds everything, starts the all-in-one server on
# embedded defaults (SQLite + local blobs + built-in identity provider, ./syncsphere-data,
# http://127.0.0.1:8787) and opens the desktop app pointed at it. Without a display it keeps the
# server running and prints how to connect a headless `syncsphere` client. Ctrl-C stops it all.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_apt
ensure_toolchains
ensure_ui_deps
build_ui

LISTEN="${SYNCSPHERE_LISTEN:-127.0.0.1:8787}"
URL="http://$LISTEN"

log "building the server and the headless client"
cargo build --locked --bins -p syncsphere-server -p syncsphere-cli
HAVE_DISPLAY=""
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  HAVE_DISPLAY=1
  log "building the desktop app"
  cargo build --locked -p syncsphere-desktop --features custom-protocol
fi

log "starting syncsphere-server on $URL (data in ./syncsphere-data)"
"$BIN/syncsphere-server" --listen "$LISTEN" --data-dir "$ROOT/syncsphere-data" &
SERVER_PID=$!
trap 'kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do
  curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "the server exited; see its log above" >&2; exit 1; }
  sleep 0.1
done

if [ -n "$HAVE_DISPLAY" ]; then
  log "opening the desktop app (create an account in its window)"
  SYNCSPHERE_SERVER_URL="$URL" "$BIN/syncsphere-desktop"
else
  cat <<MSG

SyncSphere server is running at $URL (no display found, so the desktop app was not opened).
Connect a headless client (each --config-dir is one device):

  export SYNCSPHERE_PASSWORD='Choose-a-long-passw0rd'
  $BIN/syncsphere --config-dir ~/.config/syncsphere-a signup --server $URL --email you@example.com
  $BIN/syncsphere --config-dir ~/.config/syncsphere-a sync --folder ~/SyncSphere

Press Ctrl-C to stop the server.
MSG
  wait "$SERVER_PID"
fi
