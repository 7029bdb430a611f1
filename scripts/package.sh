#!/usr/bin/env bash
# Builds the desktop installers for Linux: a .deb and an .rpm of the app with the UI embedded
# (AppImage is left out: building one downloads tools, which this offline build cannot do).
#
#   scripts/package.sh            release build
#   scripts/package.sh --debug    debug build (what the package test installs)
#
# Output: $CARGO_TARGET_DIR/<release|debug>/bundle/{deb,rpm}/ (printed at the end). The
# packages also carry /usr/share/syncsphere/config.toml.example, the administrators' template
# for /etc/syncsphere/config.toml.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
PROFILE=release
ARGS=()
for arg in "$@"; do
  case "$arg" in
    --debug) PROFILE=debug; ARGS+=(--debug) ;;
    *) echo "unknown argument $arg" >&2; exit 2 ;;
  esac
done
ensure_apt
ensure_toolchains
ensure_ui_deps
log "building the .deb and .rpm ($PROFILE)"
# The Tauri CLI runs beforeBuildCommand (the UI build) itself and embeds ui/dist.
# The root package is not a default workspace member (plain `cargo build` skips the desktop
# app), so name it for the cargo build the CLI runs.
"$ROOT/ui/node_modules/.bin/tauri" build "${ARGS[@]}" --bundles deb,rpm --ci -- -p syncsphere-desktop
ls -1 "$CARGO_TARGET_DIR/$PROFILE/bundle/deb/"*.deb "$CARGO_TARGET_DIR/$PROFILE/bundle/rpm/"*.rpm
