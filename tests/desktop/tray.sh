#!/usr/bin/env bash
# Tray test, run by smoke.sh inside its Xvfb display and session bus once the WebDriver test
# has left $SYNCSPHERE_CONFIG_DIR signed in with a folder: a tray host (trayer, an XEmbed
# system tray) docks the app's icon; its menu, opened with a right click as a user would,
# pauses and resumes syncing (status.json and desktop.json follow), and Quit ends the app with
# status 0. Screenshot: $ARTIFACTS_DIR/desktop-tray-menu.png (the open menu, syncing paused).
#
#   tests/desktop/tray.sh <app binary>
#
# Needs: DISPLAY, DBUS_SESSION_BUS_ADDRESS, SYNCSPHERE_CONFIG_DIR, ARTIFACTS_DIR set by
# smoke.sh; trayer, xdotool, xwininfo, import. Ends only the processes it started.
set -euo pipefail
BIN=$1
WORK=$(mktemp -d -t syncsphere-tray.XXXXXX)
PIDS=()
log() { printf '[desktop-tray] %s\n' "$*" >&2; }

cleanup() {
  local rc=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ $rc -ne 0 ]]; then
    for f in "$WORK"/*.log; do
      [[ -s "$f" ]] && { log "---- $(basename "$f") (last 30 lines)"; tail -n 30 "$f" >&2; }
    done
    log "FAILED (exit $rc)"
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

for tool in trayer xdotool xwininfo /usr/bin/import; do
  command -v "$tool" >/dev/null || { log "missing $tool (apt: trayer xdotool x11-utils imagemagick)"; exit 1; }
done

state() { sed -n 's/^  "state": "\(.*\)",$/\1/p' "$SYNCSPHERE_CONFIG_DIR/status.json" 2>/dev/null; }
wait_state() {
  local want=$1
  for _ in $(seq 300); do [[ "$(state)" == "$want" ]] && return 0; sleep 0.1; done
  log "status is '$(state)', expected '$want'"
  return 1
}

trayer --edge top --align left --widthtype pixel --width 64 --heighttype pixel --height 32 \
  --SetDockType true --transparent false --expand false >"$WORK/trayer.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do
  PANEL=$(xwininfo -root -tree 2>/dev/null | awk '/"panel": \("panel" "trayer"\)/ {print $1; exit}')
  [[ -n "$PANEL" ]] && break
  sleep 0.1
done
[[ -n "${PANEL:-}" ]] || { log "trayer did not map its panel"; exit 1; }

rm -f "$SYNCSPHERE_CONFIG_DIR/status.json"
"$BIN" >"$WORK/app.log" 2>&1 &
APP=$!
PIDS+=("$APP")
log "app started (pid $APP); waiting for its icon in the tray"

# The docked icon is a window of at least 16×16 inside trayer's panel; prints its centre.
docked_icon() {
  local line re='([0-9]+)x([0-9]+)\+-?[0-9]+\+-?[0-9]+ +\+(-?[0-9]+)\+(-?[0-9]+)'
  while read -r line; do
    [[ $line == 0x* && $line =~ $re ]] || continue
    if ((BASH_REMATCH[1] >= 16 && BASH_REMATCH[2] >= 16)); then
      echo "$((BASH_REMATCH[3] + BASH_REMATCH[1] / 2)) $((BASH_REMATCH[4] + BASH_REMATCH[2] / 2))"
      return 0
    fi
  done < <(xwininfo -tree -id "$PANEL" 2>/dev/null)
  return 1
}
ICON=""
for _ in $(seq 300); do
  ICON=$(docked_icon) && break
  sleep 0.1
done
[[ -n "$ICON" ]] || { log "the app's icon never docked in the tray"; xwininfo -tree -id "$PANEL" >&2; exit 1; }
read -r ICON_X ICON_Y <<<"$ICON"
log "icon docked at $ICON_X,$ICON_Y"
wait_state up_to_date
paused_setting() { grep -c '"paused": true' "$SYNCSPHERE_CONFIG_DIR/desktop.json" || true; }
[[ "$(paused_setting)" == 0 ]] || { log "desktop.json says paused before the test"; exit 1; }

# GTK menus: Down from nothing selected goes to the first enabled item (the status line is
# disabled and separators are skipped): Open SyncSphere, Open folder, Sync now, Pause/Resume.
menu_item() {
  local downs=$1
  xdotool mousemove "$ICON_X" "$ICON_Y" click 3
  sleep 0.7
  for _ in $(seq "$downs"); do xdotool key Down; sleep 0.1; done
}

menu_item 4
xdotool key Return
wait_state paused
[[ "$(paused_setting)" == 1 ]] || { log "Pause did not reach desktop.json"; exit 1; }
log "Pause syncing from the tray: paused (status.json, desktop.json)"

# The menu open on Resume syncing, for the record.
menu_item 4
sleep 0.3
/usr/bin/import -window root "$ARTIFACTS_DIR/desktop-tray-menu.png"
xdotool key Return
wait_state up_to_date
[[ "$(paused_setting)" == 0 ]] || { log "Resume did not reach desktop.json"; exit 1; }
log "Resume syncing from the tray: up to date again"

# Up from nothing selected goes to the last item: Quit.
xdotool mousemove "$ICON_X" "$ICON_Y" click 3
sleep 0.7
xdotool key Up
sleep 0.1
xdotool key Return
for _ in $(seq 200); do kill -0 "$APP" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$APP" 2>/dev/null; then log "Quit did not end the app"; exit 1; fi
wait "$APP" && rc=0 || rc=$?
[[ $rc -eq 0 ]] || { log "the app exited with $rc after Quit"; exit 1; }
log "Quit from the tray: the app exited with 0"
log "passed"
