#!/usr/bin/env bash
# Runs Tandem's whole test suite: formatting and static checks, the Go tests
# (with the race detector), and the interop suite that drives the real
# binary with the stock npm automerge-repo client. It installs what it needs
# (staticcheck, the pinned npm packages) on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export GOFLAGS=${GOFLAGS:--mod=mod}

step() { printf '\n== %s\n' "$*"; }

step "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './clients/*'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

step "go vet"
go vet ./...

step "staticcheck"
staticcheck="$(go env GOPATH)/bin/staticcheck"
if ! "$staticcheck" -version 2>/dev/null | grep -q '(0.8.2)'; then
	go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
"$staticcheck" ./...

step "build"
mkdir -p bin
go build -o bin/tandem ./cmd/tandem
export TANDEM_BIN="$root/bin/tandem" # the crash tests in cmd/tandem run it

step "go test"
go test -race -count=1 ./...

step "interop suite (stock automerge-repo client against bin/tandem)"
cd clients/js
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
	npm install --no-audit --no-fund  # not `npm ci`: see .ci/run
fi
npm test
