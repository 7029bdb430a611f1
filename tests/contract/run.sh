#!/usr/bin/env bash
# The REST contract, checked by a tool nobody here wrote: schemathesis (PyPI) generates
# requests from the OpenAPI document a real `syncsphere-server` serves (`/v1/openapi.json`),
# signed in as a user of the built-in identity provider, and checks every answer against the
# document — status codes, content types, response schemas and headers, schema-valid input
# accepted, schema-violating input refused, auth enforced — then chains operations through the
# document's `links` (stateful phase: commit → get, move, delete, restore, …). Any finding fails.
#
#   tests/contract/run.sh
#
# Env: SERVER_BIN (default "$CARGO_TARGET_DIR/debug/syncsphere-server", built by
# scripts/test.sh), CONTRACT_EXAMPLES (examples per operation, default 200), CONTRACT_SEED
# (default 1), ARTIFACTS_DIR (default artifacts: the JUnit report and the server log land in
# ARTIFACTS_DIR/contract). Starts one server on 127.0.0.1 and stops exactly that PID.
set -euo pipefail
# shellcheck source=../../scripts/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../../scripts" && pwd)/lib.sh"
cd "$ROOT"

APT_PACKAGES=(python3-venv jq curl)
ensure_apt
ensure_schemathesis
SERVER_BIN="${SERVER_BIN:-$BIN/syncsphere-server}"
[ -x "$SERVER_BIN" ] || { echo "no $SERVER_BIN: cargo build -p syncsphere-server first" >&2; exit 1; }
OUT="${ARTIFACTS_DIR:-$ROOT/artifacts}/contract"
rm -rf "$OUT"
mkdir -p "$OUT"
DATA="$(mktemp -d /tmp/syncsphere-contract.XXXXXX)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  cp "$DATA/server.log" "$OUT/server.log" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

log "contract: starting syncsphere-server (embedded defaults) on 127.0.0.1"
RUST_LOG=warn "$SERVER_BIN" --listen 127.0.0.1:0 --data-dir "$DATA" \
  >"$DATA/server.out" 2>"$DATA/server.log" &
SERVER_PID=$!
for _ in $(seq 200); do grep -q 'listening on' "$DATA/server.out" 2>/dev/null && break; sleep 0.05; done
URL="$(grep -o 'http://[0-9.:]*' "$DATA/server.out" | head -n1 || true)"
[ -n "$URL" ] || { cat "$DATA/server.log" >&2; echo "the server did not start" >&2; exit 1; }

# A user of the built-in identity provider, signed in the way the desktop client does it (the
# Cognito JSON API, as a device: a token bound to no device would be bound to the first device
# schemathesis registers, and revoked with it — 0038); its access token is the bearer of every
# request.
cognito() {
  curl -sS --fail-with-body -X POST "$URL/auth/cognito/" \
    -H 'content-type: application/x-amz-json-1.1' \
    -H "x-amz-target: AWSCognitoIdentityProviderService.$1" -d "$2"
}
CLIENT_ID="$(curl -sS --fail "$URL/v1/config" | jq -r .cognito.client_id)"
PASSWORD="Contract-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')-9"
cognito SignUp "$(jq -nc --arg c "$CLIENT_ID" --arg p "$PASSWORD" \
  '{ClientId: $c, Username: "contract@example.com", Password: $p}')" >/dev/null
TOKEN="$(cognito InitiateAuth "$(jq -nc --arg c "$CLIENT_ID" --arg p "$PASSWORD" \
  '{AuthFlow: "USER_PASSWORD_AUTH", ClientId: $c,
    AuthParameters: {USERNAME: "contract@example.com", PASSWORD: $p, DEVICE_KEY: "contract-device"}}')" |
  jq -r .AuthenticationResult.AccessToken)"
[ -n "$TOKEN" ] && [ "$TOKEN" != null ] || { echo "sign-in failed" >&2; exit 1; }

log "contract: schemathesis $SCHEMATHESIS_VERSION against $URL/v1/openapi.json"
# Every check but use_after_free (a file in the trash stays readable by design: see
# schemathesis.toml), every phase (examples, coverage, fuzzing, stateful); a fixed seed and no
# example database, so a run replays; settings that are not flags are in schemathesis.toml.
started=$SECONDS
# From the server's temporary directory, so the tool's own cache (.schemathesis/) goes with it.
#   schemathesis_run REPORT_SUBDIR PHASES EXTRA_ARGS…
schemathesis_run() {
  local report="$OUT/$1" phases="$2"
  shift 2
  mkdir -p "$report"
  (cd "$DATA" && SCHEMATHESIS_HOOKS=hooks PYTHONPATH="$ROOT/tests/contract" \
    "$SCHEMATHESIS" --config-file "$ROOT/tests/contract/schemathesis.toml" run "$URL/v1/openapi.json" \
    --url "$URL" \
    --header "Authorization: Bearer $TOKEN" \
    --checks all \
    --exclude-checks use_after_free \
    --phases "$phases" \
    --max-examples "${CONTRACT_EXAMPLES:-200}" \
    --seed "${CONTRACT_SEED:-1}" \
    --generation-database none \
    --workers 1 \
    --request-timeout 30 \
    --no-color \
    --report junit --report-dir "$report" \
    "$@")
}
# Signing out everywhere voids the bearer every request carries: every operation first, then
# that one alone (its later calls are answered `401 signed_out`, allowed in schemathesis.toml).
# (No stateful phase for it alone: no link leads there.)
schemathesis_run all examples,coverage,fuzzing,stateful --exclude-operation-id signOutEverywhere
schemathesis_run sign-out examples,coverage,fuzzing --include-operation-id signOutEverywhere
# ...and it did sign the user out: the bearer is refused as signed out.
refused="$(curl -sS -H "Authorization: Bearer $TOKEN" "$URL/v1/files" | jq -r .error)"
[ "$refused" = signed_out ] || { echo "signOutEverywhere left the token working ($refused)" >&2; exit 1; }
log "contract: no findings ($((SECONDS - started)) s)"
