#!/usr/bin/env bash
# Desktop smoke test: builds the app with the UI embedded, starts it under Xvfb through
# tauri-driver (WebKitWebDriver), and checks that the sign-in screen loads (smoke.mjs); with a
# server, signs up and walks the pages, checks that the sign-in went into the keychain (a real
# GNOME Keyring on the test's session bus), then drives the tray menu under trayer (tray.sh).
#
#   tests/desktop/smoke.sh
#
# Env:
#   SYNCSPHERE_DESKTOP_BIN  use this already-built binary (with the UI embedded); skips the build
#   ARTIFACTS_DIR           where desktop-*.png screenshots go (default: artifacts)
#   SYNCSPHERE_SERVER_URL   sign up against this server and wait for "up to date" (and, when the
#                           headless client as a second device saves a file, it must reach the
#                           app's disk and activity list); when unset and
#                           a built syncsphere-server exists, the script starts one of its own
#   CARGO_TARGET_DIR        honoured by the build
#
# Needs: Xvfb, dbus-daemon, gnome-keyring-daemon and secret-tool (the app keeps its sign-in in
# the Secret Service), /usr/bin/WebKitWebDriver (webkit2gtk-driver), Node 20, cargo.
# Every process this script starts is ended by PID on exit, including tauri-driver's
# WebKitWebDriver and the app it launched; nothing else is touched.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
ARTIFACTS_DIR=${ARTIFACTS_DIR:-artifacts}
mkdir -p "$ARTIFACTS_DIR"
ARTIFACTS_DIR=$(cd "$ARTIFACTS_DIR" && pwd)
NATIVE_DRIVER=/usr/bin/WebKitWebDriver

WORK=$(mktemp -d -t syncsphere-desktop-smoke.XXXXXX)
STARTED=()   # PIDs this script started, in start order
DBUS_PID=""

log() { printf '[desktop-smoke] %s\n' "$*" >&2; }

# All descendants of a PID, children first found first (collected before anything is killed,
# since orphans lose their parent link).
descendants() {
  local child
  for child in $(pgrep -P "$1" || true); do
    echo "$child"
    descendants "$child"
  done
}

stop_pids() {
  local pid alive
  [[ $# -eq 0 ]] && return 0
  kill -TERM "$@" 2>/dev/null || true
  for _ in $(seq 30); do
    alive=()
    for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive+=("$pid"); done
    [[ ${#alive[@]} -eq 0 ]] && return 0
    sleep 0.1
  done
  kill -KILL "${alive[@]}" 2>/dev/null || true
}

cleanup() {
  local rc=$? pids=() pid i
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    pid=${STARTED[i]}
    pids+=($(descendants "$pid") "$pid")
  done
  [[ -n "$DBUS_PID" ]] && pids+=("$DBUS_PID")
  stop_pids "${pids[@]}"
  if [[ $rc -ne 0 ]]; then
    for f in "$WORK"/*.log; do
      [[ -s "$f" ]] || continue
      log "---- $(basename "$f") (last 40 lines)"
      tail -n 40 "$f" >&2
    done
    log "FAILED (exit $rc)"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in Xvfb dbus-daemon dbus-send gnome-keyring-daemon secret-tool node pgrep "$NATIVE_DRIVER"; do
  command -v "$tool" >/dev/null || { log "missing $tool (see MACHINE-NOTES: xvfb, dbus, gnome-keyring, libsecret-tools, webkit2gtk-driver, procps)"; exit 1; }
done

# ---- the app binary
if [[ -n "${SYNCSPHERE_DESKTOP_BIN:-}" ]]; then
  BIN=$SYNCSPHERE_DESKTOP_BIN
else
  if [[ ! -d ui/node_modules || ui/package-lock.json -nt ui/node_modules/.package-lock.json ]]; then
    log "installing UI dependencies (npm ci)"
    (cd ui && npm ci --no-audit --no-fund)
  fi
  log "building the UI"
  (cd ui && npm run build)
  log "building syncsphere-desktop with the UI embedded"
  start=$SECONDS
  cargo build -p syncsphere-desktop --features custom-protocol
  log "cargo build took $((SECONDS - start)) s"
  target_dir=$(cargo metadata --format-version 1 --no-deps |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
  # Copy it, so a concurrent dev build (same path, no UI embedded) cannot swap it under us.
  BIN=$WORK/syncsphere-desktop
  cp "$target_dir/debug/syncsphere-desktop" "$BIN"
fi
[[ -x "$BIN" ]] || { log "not an executable: $BIN"; exit 1; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

if ! command -v tauri-driver >/dev/null; then
  log "installing tauri-driver"
  cargo install tauri-driver --locked
fi

# ---- a real server for the sign-up round trip (unless one was given)
SERVER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/syncsphere-server"
# The headless client is a second device of the account (smoke.mjs), built with the server.
CLI_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/syncsphere"
export SYNCSPHERE_CLI_BIN=$CLI_BIN SYNCSPHERE_SMOKE_WORK=$WORK
if [[ -z "${SYNCSPHERE_SERVER_URL:-}" && -x "$SERVER_BIN" ]]; then
  "$SERVER_BIN" --listen 127.0.0.1:0 --data-dir "$WORK/server-data" >"$WORK/server.out" 2>"$WORK/server.log" &
  STARTED+=($!)
  for _ in $(seq 200); do grep -q 'listening on' "$WORK/server.out" 2>/dev/null && break; sleep 0.05; done
  SYNCSPHERE_SERVER_URL=$(grep -o 'http://[0-9.:]*' "$WORK/server.out" | head -n1)
  [[ -n "$SYNCSPHERE_SERVER_URL" ]] || { log "syncsphere-server did not start"; exit 1; }
  export SYNCSPHERE_SERVER_URL
  log "syncsphere-server on $SYNCSPHERE_SERVER_URL"
fi
if [[ -n "${SYNCSPHERE_SERVER_URL:-}" && ! -x "$CLI_BIN" ]]; then
  log "missing $CLI_BIN, the second device: cargo build --bins -p syncsphere-cli"
  exit 1
fi

# ---- display and session bus
exec 3>"$WORK/display"
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
STARTED+=($!)
exec 3>&-
for _ in $(seq 100); do [[ -s "$WORK/display" ]] && break; sleep 0.1; done
[[ -s "$WORK/display" ]] || { log "Xvfb did not start"; exit 1; }
export DISPLAY=":$(head -n1 "$WORK/display")"
log "Xvfb on $DISPLAY"

{ read -r DBUS_SESSION_BUS_ADDRESS; read -r DBUS_PID; } < <(dbus-daemon --session --fork --print-address=1 --print-pid=1)
export DBUS_SESSION_BUS_ADDRESS
export NO_AT_BRIDGE=1

# A real keychain on that bus: GNOME Keyring's Secret Service, unlocked, with a throwaway login
# keyring under $WORK (never this machine's own).
export XDG_RUNTIME_DIR=$WORK/runtime
mkdir -m 700 "$XDG_RUNTIME_DIR" "$WORK/keyring-home"
printf 'a throwaway keyring password' |
  HOME=$WORK/keyring-home XDG_DATA_HOME=$WORK/keyring-home/data \
    gnome-keyring-daemon --foreground --unlock --components=secrets >"$WORK/keyring.log" 2>&1 &
STARTED+=($!)
secrets_on_bus() {
  dbus-send --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
    org.freedesktop.DBus.NameHasOwner string:org.freedesktop.secrets 2>/dev/null | grep -q 'boolean true'
}
for _ in $(seq 100); do secrets_on_bus && break; sleep 0.1; done
secrets_on_bus || { log "gnome-keyring-daemon did not take org.freedesktop.secrets"; exit 1; }

# ---- an isolated app environment: fresh config (so it starts signed out), data and caches
export SYNCSPHERE_CONFIG_DIR=$WORK/config
export XDG_DATA_HOME=$WORK/data XDG_CACHE_HOME=$WORK/cache
# The app writes a GTK bookmark here when sync starts: never into this machine's own.
export XDG_CONFIG_HOME=$WORK/xdg-config
export SYNCSPHERE_SMOKE_FOLDER=$WORK/folder
# No administrator presets from this machine's /etc/syncsphere (debug builds honour this).
export SYNCSPHERE_SYSTEM_CONFIG=$WORK/no-system-config.toml
mkdir -p "$SYNCSPHERE_CONFIG_DIR" "$XDG_DATA_HOME" "$XDG_CACHE_HOME" "$XDG_CONFIG_HOME"

free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
PORT=$(free_port)
NATIVE_PORT=$(free_port)
tauri-driver --port "$PORT" --native-port "$NATIVE_PORT" --native-driver "$NATIVE_DRIVER" \
  >"$WORK/tauri-driver.log" 2>&1 &
STARTED+=($!)
log "tauri-driver on port $PORT"

WEBDRIVER_URL="http://127.0.0.1:$PORT" SYNCSPHERE_DESKTOP_BIN="$BIN" ARTIFACTS_DIR="$ARTIFACTS_DIR" \
  node "$ROOT/tests/desktop/smoke.mjs"
# The sign-in is in the keychain (only the refresh token), not in a file.
if [[ -n "${SYNCSPHERE_SERVER_URL:-}" ]]; then
  secret=$(secret-tool lookup service SyncSphere username "$SYNCSPHERE_CONFIG_DIR" || true)
  [[ ${#secret} -gt 20 ]] || { log "the app's sign-in is not in the keychain"; exit 1; }
  [[ ! -e "$SYNCSPHERE_CONFIG_DIR/session.json" ]] || { log "session.json exists beside the keychain"; exit 1; }
  grep -q '"session_storage": "keychain"' "$SYNCSPHERE_CONFIG_DIR/config.json" || { log "config.json does not say keychain"; exit 1; }
  log "the sign-in is in the keychain"
fi
# Sync started, so the folder is in the file managers (src-tauri/src/file_manager.rs).
grep -q ' SyncSphere$' "$XDG_CONFIG_HOME/gtk-3.0/bookmarks" || { log "no SyncSphere GTK bookmark"; exit 1; }
[[ -x "$XDG_DATA_HOME/kio/servicemenus/syncsphere.desktop" ]] || { log "no Dolphin service menu"; exit 1; }
[[ -x "$XDG_DATA_HOME/nautilus/scripts/SyncSphere - Version history" ]] || { log "no Nautilus script"; exit 1; }
log "file manager integration in place"
# The tray menu, driven as a user would, under a tray host on the same display and bus.
if [[ -n "${SYNCSPHERE_SERVER_URL:-}" ]]; then
  ARTIFACTS_DIR="$ARTIFACTS_DIR" "$ROOT/tests/desktop/tray.sh" "$BIN"
fi
log "passed"
