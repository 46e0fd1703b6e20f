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

step "postgres"
# The Postgres store's tests, the crash tests and the outage test need a
# real server; they fail, never skip, without one. Use TANDEM_TEST_DATABASE_URL
# when it is set; otherwise make sure the local server runs on
# 127.0.0.1:5432, starting it (and installing it, as root) when needed. The
# outage test starts a private server of its own from the same binaries.
if [ -z "${TANDEM_TEST_DATABASE_URL:-}" ]; then
	if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
		if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
		else
			echo "PostgreSQL is not installed: install it, or set TANDEM_TEST_DATABASE_URL"; exit 1
		fi
	fi
	if ! pg_isready -q -h 127.0.0.1 -p 5432; then
		for v in $(ls /etc/postgresql 2>/dev/null); do
			pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
		done
		for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
	fi
	pg_isready -h 127.0.0.1 -p 5432
fi

step "nats"
# The cluster tests in cmd/tandem need a NATS server; they fail, never
# skip, without one. Use TANDEM_TEST_NATS_URL when it is set; otherwise make
# sure the machine's nats-server runs on 127.0.0.1:4222, starting it (and
# installing Debian's nats-server, as root) when needed. The NATS restart
# test starts a private server of its own from the same binary.
nats_up() { (exec 3<>/dev/tcp/127.0.0.1/4222) 2>/dev/null; }
if [ -z "${TANDEM_TEST_NATS_URL:-}" ]; then
	if [ ! -x /usr/sbin/nats-server ]; then
		if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null
		else
			echo "nats-server is not installed: install Debian's nats-server, or set TANDEM_TEST_NATS_URL"; exit 1
		fi
	fi
	if ! nats_up; then
		mkdir -p /var/lib/nats-server
		start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
			-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
		for _ in $(seq 1 30); do nats_up && break; sleep 0.2; done
	fi
	nats_up || { echo "nats-server does not answer on 127.0.0.1:4222"; exit 1; }
	echo "nats-server on 127.0.0.1:4222"
fi

step "npm packages"
# The stock clients: the interop suite and the hostile-client suite's
# bystanders (internal/hostile) run them; the official server, whose data
# directory the import test brings along.
for d in clients/js bench/reference; do
	if [ ! -d $d/node_modules ] || [ $d/package-lock.json -nt $d/node_modules/.package-lock.json ]; then
		(cd $d && npm install --no-audit --no-fund)  # not `npm ci`: see .ci/run
	fi
done

step "build"
mkdir -p bin
go build -o bin/tandem ./cmd/tandem
export TANDEM_BIN="$root/bin/tandem" # the crash tests in cmd/tandem run it

step "go test"
go test -race -count=1 ./...

step "benchmarks (one iteration each: they keep compiling and running)"
go test -run '^$' -bench . -benchtime 1x ./...

step "fuzz targets (a few seconds each; docs/FUZZING.md has the long campaigns)"
for target in sync/core:FuzzReceive sync/core:FuzzReceiveChange sync/core:FuzzDocument sync/core:FuzzImport \
	sync/engine:FuzzReceive sync/wire:FuzzDecode api/docjson:FuzzApply api/docjson:FuzzParseHeads; do
	go test -run '^$' -fuzz "^${target#*:}\$" -fuzztime "${TANDEM_FUZZTIME:-4s}" "./${target%%:*}"
done

step "demo build (api/web/dist is what clients/js/src builds)"
scripts/check-demo-build.sh

step "chromium (the browser tests drive Debian's /usr/bin/chromium; nothing downloads a browser)"
if [ ! -x /usr/bin/chromium ]; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
	else
		echo "Chromium is not installed: install Debian's chromium package (/usr/bin/chromium)"; exit 1
	fi
fi
/usr/bin/chromium --version

step "interop suite (stock automerge-repo clients, the client package, and the demo in Chromium, against bin/tandem)"
cd clients/js
npm test
