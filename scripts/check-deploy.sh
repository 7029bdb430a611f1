#!/usr/bin/env bash
# The deployment files checked by linters nobody here wrote (issue 18): the image's Dockerfile
# with hadolint (any warning fails; each ignored rule is in the Dockerfile with its reason) and
# checkov's Dockerfile checks (each skipped check in the file with its reason); the
# CloudFormation template with cfn-lint, checkov and the project's own rules. Run by
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

# The CloudFormation template: cfn-lint (errors and warnings fail), checkov (each skipped check
# is in the template with its reason) and the project's own rules (scripts/check-template.py),
# each first shown a template it must refuse.
cat >"$BAD/bad.yaml" <<'YAML'
AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketNme: misspelt
YAML
if "$CFN_LINT" --non-zero-exit-code warning "$BAD/bad.yaml" >/dev/null; then
  echo "cfn-lint passed a template it must refuse" >&2; exit 1
fi
if "$CHECKOV" --quiet --compact --framework cloudformation --file "$BAD/bad.yaml" --skip-download >/dev/null; then
  echo "checkov passed a template it must refuse" >&2; exit 1
fi
log "cfn-lint $CFN_LINT_VERSION: deploy/syncsphere.yaml"
"$CFN_LINT" --non-zero-exit-code warning deploy/syncsphere.yaml
log "checkov $CHECKOV_VERSION: deploy/syncsphere.yaml"
"$CHECKOV" --quiet --compact --framework cloudformation --file deploy/syncsphere.yaml \
  --skip-download
log "project rules: deploy/syncsphere.yaml (scripts/check-template.py)"
"$CFN_PYTHON" scripts/check-template.py --self-test deploy/syncsphere.yaml
"$CFN_PYTHON" scripts/check-template.py deploy/syncsphere.yaml

# moto smoke deployment (scripts/cfn-smoke.py)
# The template's part that moto's CloudFormation creates (moto 5.2.5's own model map, read at
# run time), deployed into moto, and then every kept resource described through its service:
# a resource moto accepted but left blank or wrong fails. First the self-test: a mutated
# template must fail exactly the checks it breaks. What moto cannot model (Cognito, WebSocket
# API, ElastiCache, secrets, many properties) is printed as a gap, never passed.
start_moto
# One EXIT trap for all: moto's stop, then whatever was set before (the linters' temp dir).
moto_exit_trap() { local prev; eval "prev=( $(trap -p EXIT) )"; trap "stop_moto; ${prev[2]:-}" EXIT; }
moto_exit_trap
MOTO_PYTHON="$(dirname "$MOTO_SERVER")/python"
log "moto $MOTO_VERSION: cfn-smoke.py self-test (a mutated template must fail)"
"$MOTO_PYTHON" scripts/cfn-smoke.py --endpoint "$MOTO_URL_TEST" --self-test deploy/syncsphere.yaml
log "moto $MOTO_VERSION: smoke deployment of deploy/syncsphere.yaml"
"$MOTO_PYTHON" scripts/cfn-smoke.py --endpoint "$MOTO_URL_TEST" deploy/syncsphere.yaml
