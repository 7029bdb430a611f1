#!/usr/bin/env bash
# The built UI in headless Chromium (Debian's chromium + playwright-core, IPC shimmed): builds
# ui/dist, serves it on 127.0.0.1 and walks sign-in → status → every page (walk.mjs). Writes
# artifacts/ui-*.png, one screenshot per page.
#
#   tests/ui/run.sh
#
# Env: ARTIFACTS_DIR (default artifacts), CHROMIUM (default /usr/bin/chromium).
# Installs what it needs: the chromium package (apt) and the UI's npm dependencies.
# Every process it starts (the browser, the file server) ends with walk.mjs.
set -euo pipefail
# shellcheck source=../../scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../../scripts" && pwd)/lib.sh"
cd "$ROOT"

APT_PACKAGES=(chromium)
ensure_apt
ensure_ui_deps
build_ui
log "UI in headless Chromium (playwright-core)"
node tests/ui/walk.mjs
