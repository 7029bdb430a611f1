#!/usr/bin/env bash
# The deployment files checked by linters nobody here wrote (issue 18): the image's Dockerfile
# with hadolint (any warning fails; each ignored rule is in the Dockerfile with its reason) and
# checkov's Dockerfile checks (each skipped check in the file with its reason). Run by
# scripts/test.sh.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
ensure_deploy_linters
# First, that the linters find what they are for: a Dockerfile with an unpinned base, no user
# and no health check must fail both (a linter that passes everything would check nothing).
BAD="$(mktemp -d /tmp/syncsphere-lint.XXXXXX)"
trap 'rm -rf "$BAD"' EXIT
printf 'FROM debian:latest\nRUN apt-get update && apt-get install -y curl\nCMD ["curl"]\n' >"$BAD/Dockerfile"
if "$HADOLINT" --failure-threshold warning "$BAD/Dockerfile" >/dev/null; then
  echo "hadolint passed a Dockerfile it must refuse" >&2; exit 1
fi
if "$CHECKOV" --quiet --compact --framework dockerfile --file "$BAD/Dockerfile" --skip-download >/dev/null; then
  echo "checkov passed a Dockerfile it must refuse" >&2; exit 1
fi
log "hadolint $HADOLINT_VERSION: deploy/Dockerfile"
"$HADOLINT" --failure-threshold warning deploy/Dockerfile
log "checkov $CHECKOV_VERSION: deploy/Dockerfile"
"$CHECKOV" --quiet --compact --framework dockerfile --file deploy/Dockerfile \
  --skip-download
