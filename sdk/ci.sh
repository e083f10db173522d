#!/usr/bin/env bash
# CI for the player SDK, run by .ci/run before the Go tests (which include the
# browser end-to-end tests in sdk/e2e_test.go and the read-API client test,
# both needing node_modules/ and Chromium):
#   1. install exactly the locked dependencies;
#   2. regenerate the API types from api/openapi.json and rebuild dist/:
#      fail when the committed files differ from what the sources make;
#   3. typecheck (sources and examples/*.ts) and run the unit tests.
set -euo pipefail
cd "$(dirname "$0")"
command -v node >/dev/null || { echo "FATAL: node is needed by the SDK's CI"; exit 1; }
command -v chromium >/dev/null || command -v chromium-browser >/dev/null ||
  { echo "FATAL: chromium is needed by the SDK's end-to-end tests (apt-get install -y chromium)"; exit 1; }
node --version
npm ci --no-audit --no-fund
# go test ./... walks sdk/node_modules too: a dependency shipping .go files
# would become a package of this module.
if [ -n "$(find node_modules -name '*.go' -print -quit)" ]; then
  echo "FATAL: sdk/node_modules holds .go files, which go test ./... would build:"; find node_modules -name '*.go' | head
  exit 1
fi
npm run gen
npm run build
if [ -n "$(git status --porcelain -- src/openapi.ts dist/)" ]; then
  git status --short -- src/openapi.ts dist/
  git diff --stat -- src/openapi.ts dist/
  echo "FATAL: sdk/dist or sdk/src/openapi.ts differs from its sources (src/, ../api/openapi.json): run 'npm run gen && npm run build' in sdk/ and commit"
  exit 1
fi
npm run typecheck
npm test
