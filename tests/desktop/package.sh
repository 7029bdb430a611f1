#!/usr/bin/env bash
# Installer test: builds the .deb and .rpm (debug), installs the .deb with dpkg -i, checks what
# it put on the system, runs the desktop smoke test (tests/desktop/smoke.sh) against the
# *installed* app, and removes the package again (also when something fails).
#
#   tests/desktop/package.sh      (root or sudo: dpkg installs system-wide)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$ROOT/scripts/lib.sh"
cd "$ROOT"

"$ROOT/scripts/package.sh" --debug
BUNDLE="$CARGO_TARGET_DIR/debug/bundle"
DEB=$(ls -t "$BUNDLE"/deb/*.deb | head -n1)
RPM=$(ls -t "$BUNDLE"/rpm/*.rpm | head -n1)
PACKAGE=$(dpkg-deb -f "$DEB" Package)
log "package $PACKAGE: $(basename "$DEB"), $(basename "$RPM")"
[[ -s "$RPM" ]] || { echo "the .rpm is empty" >&2; exit 1; }

if dpkg-query -W -f='${Status}' "$PACKAGE" 2>/dev/null | grep -q "install ok installed"; then
  echo "$PACKAGE is already installed on this machine; not touching it" >&2
  exit 1
fi
remove() { $SUDO dpkg -r "$PACKAGE" >/dev/null || true; }
trap remove EXIT
log "dpkg -i $(basename "$DEB")"
$SUDO dpkg -i "$DEB"

for f in /usr/bin/syncsphere-desktop /usr/share/syncsphere/config.toml.example; do
  [[ -e "$f" ]] || { echo "the package did not install $f" >&2; dpkg -L "$PACKAGE" >&2; exit 1; }
done
dpkg -L "$PACKAGE" | grep -q '\.desktop$' || { echo "no desktop entry installed" >&2; exit 1; }

log "smoke test of the installed app"
SYNCSPHERE_DESKTOP_BIN=/usr/bin/syncsphere-desktop "$ROOT/tests/desktop/smoke.sh"
log "installer test passed"
