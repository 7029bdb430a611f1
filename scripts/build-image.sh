#!/usr/bin/env bash
# Builds deploy/Dockerfile without a Docker daemon and without pulling anything, runs the image
# and checks that it serves and syncs (issue 18 item 1). No base image can be pulled here, so
# the two the Dockerfile names are made from Debian packages first (mmdebstrap) and stored
# under their names in a private image store (buildah/podman, vfs driver, chroot isolation):
#   debian:bookworm-slim        Debian 12 (apt variant)
#   rust:1.95-slim-bookworm     the same plus gcc/libc6-dev and this machine's Rust 1.95
# Then: buildah bud of deploy/Dockerfile as written (docker format: OCI drops HEALTHCHECK),
# the image run (`buildah run`, host network, loopback port), `healthcheck` inside it, and two
# real clients syncing a file through it.
# Prints the image size. Slow (a release build inside the container): not part of the test
# command; its last output is committed as docs/image-build.log.
#   scripts/build-image.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
APT_PACKAGES=(buildah podman mmdebstrap crun)
ensure_apt

WORK="$(mktemp -d /tmp/syncsphere-image.XXXXXX)"
STORE=(--storage-driver vfs --root "$WORK/storage" --runroot "$WORK/run")
CONTAINER=""
SERVER=""
cleanup() {
  # The server runs in its own process group (setsid): end the group, buildah and server.
  if [ -n "$SERVER" ]; then kill -TERM -- "-$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
  buildah "${STORE[@]}" rm --all >/dev/null 2>&1 || true
  rm -rf "$WORK" 2>/dev/null || true
}
trap cleanup EXIT
started=$SECONDS

log "base images from Debian packages (mmdebstrap)"
mmdebstrap --quiet --variant=apt --include=ca-certificates bookworm "$WORK/slim.tar"
podman "${STORE[@]}" import --quiet "$WORK/slim.tar" docker.io/library/debian:bookworm-slim >/dev/null
mmdebstrap --quiet --variant=apt --include=ca-certificates,gcc,libc6-dev bookworm "$WORK/rust.tar"
podman "${STORE[@]}" import --quiet "$WORK/rust.tar" localhost/rust-base >/dev/null
TOOLCHAIN="$(rustc --print sysroot)"
rustc --version | grep -q '^rustc 1\.95\.' || { echo "needs this machine's Rust 1.95" >&2; exit 1; }
B="$(buildah "${STORE[@]}" from --pull-never localhost/rust-base)"
buildah "${STORE[@]}" copy "$B" "$TOOLCHAIN" /usr/local/rust >/dev/null
buildah "${STORE[@]}" config --env PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env CARGO_HOME=/usr/local/cargo "$B"
buildah "${STORE[@]}" commit --quiet "$B" docker.io/library/rust:1.95-slim-bookworm >/dev/null
buildah "${STORE[@]}" rm "$B" >/dev/null

log "buildah bud deploy/Dockerfile (release build inside the container)"
# Mounted for the RUN steps only (nothing of them stays in the image): this machine's CA
# bundle (its network reaches crates.io through a TLS-inspecting proxy whose CA Debian's
# bundle lacks) and its crate cache (the crates are downloaded once, not per build).
mkdir -p "${CARGO_HOME:-$HOME/.cargo}/registry"
buildah "${STORE[@]}" bud --pull-never --isolation chroot --layers=false --format docker \
  -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
  -v "${CARGO_HOME:-$HOME/.cargo}/registry:/usr/local/cargo/registry" \
  -f deploy/Dockerfile -t localhost/syncsphere-server:local .
SIZE="$(podman "${STORE[@]}" image inspect --format '{{.Size}}' localhost/syncsphere-server:local)"
log "image localhost/syncsphere-server:local: $((SIZE / 1024 / 1024)) MiB"

log "run it (buildah run: the image's root filesystem, user and environment; host network)"
# Not `podman run`: in this sandbox crun may not set the rlimits podman asks for and cgroups
# are in hybrid mode; buildah's chroot isolation runs the same image without cgroups.
PORT="$(free_port)"
CONTAINER="$(buildah "${STORE[@]}" from --pull-never localhost/syncsphere-server:local)"
setsid buildah "${STORE[@]}" run --isolation chroot --network host \
  --env SYNCSPHERE_LISTEN="127.0.0.1:$PORT" "$CONTAINER" -- /usr/local/bin/syncsphere-server \
  >"$WORK/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 100); do curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "http://127.0.0.1:$PORT/healthz" || { cat "$WORK/server.log"; exit 1; }
echo
buildah "${STORE[@]}" run --isolation chroot --network host \
  --env SYNCSPHERE_LISTEN="127.0.0.1:$PORT" "$CONTAINER" -- /usr/local/bin/syncsphere-server healthcheck
echo "healthcheck inside the container: exit $?"
buildah "${STORE[@]}" run --isolation chroot "$CONTAINER" -- id
podman "${STORE[@]}" image inspect --format 'user {{.Config.User}}, healthcheck {{.HealthCheck.Test}}' \
  localhost/syncsphere-server:local

log "two clients sync a file through the container"
cargo build --locked --bins -p syncsphere-cli
export SYNCSPHERE_PASSWORD="Image-test-$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')-9"
URL="http://127.0.0.1:$PORT"
"$BIN/syncsphere" --config-dir "$WORK/a" signup --server "$URL" --email image@example.com </dev/null
"$BIN/syncsphere" --config-dir "$WORK/b" login --server "$URL" --email image@example.com </dev/null
mkdir -p "$WORK/fa" "$WORK/fb"
"$BIN/syncsphere" --config-dir "$WORK/a" sync --folder "$WORK/fa" >"$WORK/a.log" 2>&1 &
PA=$!
"$BIN/syncsphere" --config-dir "$WORK/b" sync --folder "$WORK/fb" >"$WORK/b.log" 2>&1 &
PB=$!
sleep 3
echo "synced through the container image" >"$WORK/fa/hello.txt"
ok=""
for _ in $(seq 100); do cmp -s "$WORK/fa/hello.txt" "$WORK/fb/hello.txt" && ok=1 && break; sleep 0.1; done
kill "$PA" "$PB"; wait "$PA" "$PB" 2>/dev/null || true
[ -n "$ok" ] || { echo "the file did not arrive"; cat "$WORK/b.log"; exit 1; }
echo "hello.txt arrived on the second device"
log "done in $((SECONDS - started)) s; image $((SIZE / 1024 / 1024)) MiB"
