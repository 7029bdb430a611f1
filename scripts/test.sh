#!/usr/bin/env bash
# Runs every test of SyncSphere on a fresh Debian/Ubuntu machine: installs what is missing,
# checks formatting and lints, starts a throwaway PostgreSQL (plain and TLS), Redis (plain, and
# one with TLS and a password), S3 server (s3s-fs), Cognito emulator (moto) and mail
# server (aiosmtpd), runs all Rust tests (unit,
# service tests on SQLite and PostgreSQL, end-to-end with real processes, a Redis-backed cluster
# of one files and three state instances), the REST contract (schemathesis against the OpenAPI
# document a real server serves), the UI unit tests, and the desktop installers: the
# .deb is built, installed with dpkg and the installed app driven under Xvfb through tauri-driver.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

ensure_apt
ensure_toolchains
ensure_s3s_fs
ensure_ui_deps
build_ui   # the desktop crate embeds ui/dist at compile time

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "building the binaries the end-to-end tests start"
cargo build --locked --bins -p syncsphere-server -p syncsphere-cli

start_postgres
start_redis
start_redis_tls
start_s3
start_moto
start_smtp
trap 'stop_smtp; stop_moto; stop_s3; stop_redis_tls; stop_redis; stop_postgres' EXIT
export SYNCSPHERE_TEST_DATABASE_URL="$PG_URL" SYNCSPHERE_TEST_PG_CA="$PG_CA"
export SYNCSPHERE_TEST_REDIS_URL="$REDIS_URL_TEST"
export SYNCSPHERE_TEST_REDIS_TLS_URL="$REDIS_TLS_URL_TEST" SYNCSPHERE_TEST_REDIS_TLS_PASSWORD="$REDIS_TLS_PASSWORD_TEST"
export SYNCSPHERE_TEST_REDIS_TLS_CA="$REDIS_TLS_CA_TEST"
export SYNCSPHERE_TEST_S3_ENDPOINT="$S3_ENDPOINT_TEST" SYNCSPHERE_TEST_S3_BUCKET="$S3_BUCKET_TEST"
export SYNCSPHERE_TEST_S3_ACCESS_KEY="$S3_ACCESS_KEY_TEST" SYNCSPHERE_TEST_S3_SECRET_KEY="$S3_SECRET_KEY_TEST"
export SYNCSPHERE_TEST_MOTO_URL="$MOTO_URL_TEST" SYNCSPHERE_TEST_MOTO_KEY="$MOTO_KEY"
export SYNCSPHERE_TEST_SMTP_URL="$SMTP_URL_TEST" SYNCSPHERE_TEST_MAILDIR="$SMTP_MAILDIR_TEST"

log "cargo test (workspace)"
cargo test --workspace --locked

scripts/check-deploy.sh   # Dockerfile and CloudFormation template: linters, project rules, moto smoke deployment

tests/contract/run.sh   # schemathesis against the served OpenAPI document; artifacts/contract/

log "UI unit tests (vitest)"
(cd ui && npm test --silent)
log "Nautilus emblem extension (python unittest)"
python3 -m unittest discover -s tests/desktop -p 'test_*.py'
tests/ui/run.sh   # the built UI in headless Chromium; artifacts/ui-*.png

log "desktop installers: build the .deb/.rpm, install the .deb, smoke-test the installed app under Xvfb"
tests/desktop/package.sh

log "all tests passed"
