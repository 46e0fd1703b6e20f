#!/usr/bin/env bash
# Checks that the demo the binary embeds (api/web/dist, committed) is what its
# sources build: type-checks clients/js (the package and the demo), rebuilds
# the demo into a temporary directory with the pinned npm packages, and fails
# when a file differs. The build is deterministic (esbuild, no source maps,
# no timestamps), so any difference means the committed build is stale:
#   (cd clients/js && npm run build:demo) and commit api/web/dist.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d clients/js/node_modules/esbuild ]; then
	echo "clients/js has no node_modules: run (cd clients/js && npm install --no-audit --no-fund)"; exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

(cd clients/js && node node_modules/typescript/bin/tsc -p tsconfig.json --noEmit && node node_modules/typescript/bin/tsc -p src/demo/tsconfig.json)
(cd clients/js && node scripts/build.mjs demo --outdir "$tmp/dist" >/dev/null)

if ! diff -r "$tmp/dist" api/web/dist >/dev/null; then
	echo "api/web/dist differs from a fresh build of clients/js/src:"
	diff -rq "$tmp/dist" api/web/dist || true
	echo "rebuild it with (cd clients/js && npm run build:demo) and commit api/web/dist"
	exit 1
fi
echo "api/web/dist matches a fresh build of its sources"
