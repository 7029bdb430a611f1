#!/usr/bin/env bash
# The product owner's AWS topology on this machine, by hand (issue 17; the e2e suite
# tests/e2e/aws_topology.rs runs the same shape): moto as Amazon Cognito (a user pool and a
# public app client created through the AWS API), s3s-fs as S3, PostgreSQL as RDS, Redis as
# ElastiCache, one `files` task and two `state` tasks, and the API Gateway doubles in front of
# them — the REST API before the files task, the WebSocket API (integrations spread over both
# state tasks, pushes through @connections) before the state tasks. Prints how to connect
# headless clients; Ctrl-C stops everything it started.
#   scripts/aws-topology.sh
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_apt
log "building the server, the client and the API Gateway doubles"
cargo build --locked --bins -p syncsphere-server -p syncsphere-cli
cargo build --locked -p syncsphere-e2e --bin syncsphere-aws-doubles

WORK="$(mktemp -d /tmp/syncsphere-aws.XXXXXX)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  set +u
  stop_moto; stop_s3; stop_redis; stop_postgres
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
start_postgres
start_redis
start_s3
start_moto

# Cognito: a pool (e-mail confirmation) and a public app client, as an administrator makes them.
cognito() {
  curl -sS --fail-with-body -X POST "$MOTO_URL_TEST/" \
    -H 'content-type: application/x-amz-json-1.1' \
    -H "x-amz-target: AWSCognitoIdentityProviderService.$1" -d "$2"
}
POOL_ID="$(cognito CreateUserPool '{"PoolName":"syncsphere","AutoVerifiedAttributes":["email"]}' | jq -r .UserPool.Id)"
CLIENT_ID="$(cognito CreateUserPoolClient "$(jq -nc --arg p "$POOL_ID" \
  '{UserPoolId: $p, ClientName: "desktop", GenerateSecret: false,
    ExplicitAuthFlows: ["ALLOW_USER_SRP_AUTH", "ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]}')" |
  jq -r .UserPoolClient.ClientId)"
# moto's USER_SRP_AUTH is a stand-in (any proof passes): clients send the password here.
POOL_ARGS=(--cognito-user-pool-id "$POOL_ID" --cognito-client-id "$CLIENT_ID"
  --cognito-jwks-url "$MOTO_URL_TEST/$POOL_ID/.well-known/jwks.json"
  --cognito-endpoint "$MOTO_URL_TEST" --cognito-auth-flow user-password-auth)
log "user pool $POOL_ID, app client $CLIENT_ID"

FILES_PORT="$(free_port)"
STATE_PORTS=("$(free_port)" "$(free_port)")
SECRET="$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
"$BIN/syncsphere-aws-doubles" --rest-upstream "http://127.0.0.1:$FILES_PORT" \
  --ws-service "http://127.0.0.1:${STATE_PORTS[0]}" --ws-service "http://127.0.0.1:${STATE_PORTS[1]}" \
  --secret "$SECRET" >"$WORK/doubles.out" 2>"$WORK/doubles.log" &
PIDS+=($!)
for _ in $(seq 200); do [ -s "$WORK/doubles.out" ] && break; sleep 0.05; done
field() { jq -r ".$1" "$WORK/doubles.out"; }
REST_URL="$(field rest_url)"
WS_URL="$(field ws_url)"

# start NAME PORT [env…] -- [flags…]
start() {
  local name="$1" port="$2"
  shift 2
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  env "${envs[@]}" RUST_LOG="${RUST_LOG:-info}" "$BIN/syncsphere-server" --listen "127.0.0.1:$port" \
    --data-dir "$WORK/$name" "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
  PIDS+=($!)
  wait_for_port "$port" 300
  curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || { cat "$WORK/$name.log" >&2; exit 1; }
}
start files "$FILES_PORT" AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY_TEST" \
  AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY_TEST" AWS_EC2_METADATA_DISABLED=true -- \
  --role files --database-url "$PG_URL" --redis-url "$REDIS_URL_TEST" \
  --s3-bucket "$S3_BUCKET_TEST" --s3-endpoint "$S3_ENDPOINT_TEST" --s3-path-style \
  --push-url "$WS_URL" "${POOL_ARGS[@]}"
for i in 0 1; do
  start "state$i" "${STATE_PORTS[$i]}" AWS_ACCESS_KEY_ID="$(field access_key)" \
    AWS_SECRET_ACCESS_KEY="$(field secret_key)" AWS_REGION="$(field region)" \
    AWS_EC2_METADATA_DISABLED=true -- \
    --role state --redis-url "$REDIS_URL_TEST" --apigw-endpoint "$(field management_url)" \
    --apigw-secret "$SECRET" "${POOL_ARGS[@]}"
done

cat <<MSG

The AWS topology is running (logs in $WORK):
  REST API (files task on PostgreSQL, S3, Redis):   $REST_URL
  WebSocket API (two state tasks, @connections):    $WS_URL
  Cognito user pool (moto):                         $MOTO_URL_TEST  $POOL_ID

Connect headless clients (each --config-dir is one device; moto accepts any confirmation code):

  export SYNCSPHERE_PASSWORD='Choose-a-long-passw0rd-9'
  $BIN/syncsphere --config-dir /tmp/aws-a signup --server $REST_URL --email you@example.com
  $BIN/syncsphere --config-dir /tmp/aws-a confirm-signup --server $REST_URL --email you@example.com --code 123456
  $BIN/syncsphere --config-dir /tmp/aws-a sync --folder /tmp/aws-a-folder
  $BIN/syncsphere --config-dir /tmp/aws-b login --server $REST_URL --email you@example.com

Press Ctrl-C to stop it all.
MSG
wait "${PIDS[1]}"
