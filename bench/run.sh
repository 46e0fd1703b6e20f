#!/usr/bin/env bash
# Runs the same load against the official automerge-repo sync server
# (bench/reference/server.mjs), Tandem on SQLite and Tandem on Postgres, one
# after the other, on loopback ports, and prints each one's numbers and
# their ratios to the official server's (bench/summary.mjs). Tandem runs
# with its defaults (durability on: every change committed before it is
# advertised); the official server as automerge-repo-sync-server sets it up
# (share policy off).
#
#   bench/run.sh            # short: about 2 minutes
#   FULL=1 bench/run.sh     # what docs/BENCHMARKS.md reports: about 35 minutes
#
# Knobs (environment):
#   SERVERS="reference sqlite postgres"   which servers, in this order
#   DOCS=50 CLIENTS=4                     documents × clients per document
#   RATES="500 1000"                      total edit rates (edits/s), one run each
#   DURATION=5s WARMUP=2s                 measured time and warm-up per rate
#   IDLE="2000"                           idle connection counts, each without
#                                         and with one small document per connection
#   IDLE_SETTLE=3s                        wait before reading the RSS after opening
#   IDLE_OPEN_TIMEOUT=3m                  longest time to open them; a server that takes
#                                         longer is measured with the connections it took
#   RELEASE=0                             with RELEASE=1, the last idle count with
#                                         documents then closes its connections and
#   RELEASE_WAIT=180s                     watches the RSS this long (past the Go
#                                         runtime's forced GC every 2 minutes), Tandem
#   EVICT_IDLE_TIMEOUT=5s                 started with --idle-timeout this short
#   SKIP_SATURATED=1                      skip a server's higher rates once one saturated it
#   SPLIT_RATE=                           also run this rate on Tandem SQLite from two
#                                         load processes at once (half the documents and
#                                         half the rate each), to show the generator is
#                                         not what limits it
#   DATABASE_URL=postgres://postgres@127.0.0.1:5432/test
#                                         where to create the run's fresh database
#   OUT=<temp dir>                        where the JSON reports go
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ "${FULL:-0}" = 1 ]; then
	: "${RATES:=100 250 500 1000 1500 2000 3000}" "${DURATION:=20s}" "${WARMUP:=3s}"
	: "${IDLE:=2000 10000}" "${IDLE_SETTLE:=5s}" "${RELEASE:=1}" "${SPLIT_RATE:=1000}"
fi
SERVERS=${SERVERS:-reference sqlite postgres}
DOCS=${DOCS:-50}
CLIENTS=${CLIENTS:-4}
RATES=${RATES:-500 1000}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-2s}
IDLE=${IDLE:-2000}
IDLE_SETTLE=${IDLE_SETTLE:-3s}
IDLE_OPEN_TIMEOUT=${IDLE_OPEN_TIMEOUT:-3m}
RELEASE=${RELEASE:-0}
RELEASE_WAIT=${RELEASE_WAIT:-180s}
EVICT_IDLE_TIMEOUT=${EVICT_IDLE_TIMEOUT:-5s}
SPLIT_RATE=${SPLIT_RATE:-}
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
OUT=${OUT:-$(mktemp -d /tmp/tandem-bench.XXXXXX)}
mkdir -p "$OUT"
work=$(mktemp -d /tmp/tandem-bench-work.XXXXXX)

say() { printf '\n== %s\n' "$*" >&2; }

# The run's own binary, so that a build of bin/tandem meanwhile cannot
# replace it between two server starts.
say "build tandem"
bench=$work/tandem
go build -o "$bench" ./cmd/tandem
if [[ " $SERVERS " == *" reference "* ]] && { [ ! -d bench/reference/node_modules ] ||
	[ bench/reference/package-lock.json -nt bench/reference/node_modules/.package-lock.json ]; }; then
	say "install the reference server's packages"
	(cd bench/reference && npm install --no-audit --no-fund)
fi

# The run's own Postgres database, dropped at the end.
pgdb=""
pg_base=${DATABASE_URL%/*}
if [[ " $SERVERS " == *" postgres "* ]]; then
	pgdb="tandem_bench_$(date +%s)_$$"
	psql -q "$DATABASE_URL" -c "CREATE DATABASE $pgdb" >/dev/null
fi

server_pid=""
stop_server() {
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in $(seq 1 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	server_pid=""
}
cleanup() {
	stop_server
	if [ -n "$pgdb" ]; then
		psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $pgdb WITH (FORCE)" >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# start_server KIND [tandem flags...]: starts a fresh server on a free
# loopback port; sets server_pid and url.
start_server() {
	local kind=$1; shift
	stop_server
	local log="$work/$kind.log" dir="$work/$kind-data.$RANDOM"
	rm -rf "$dir"
	case $kind in
	reference)
		node bench/reference/server.mjs 0 "$dir" >"$log" 2>&1 &
		server_pid=$!
		for _ in $(seq 1 100); do grep -q '^listening port=' "$log" && break; sleep 0.1; done
		url="ws://127.0.0.1:$(sed -n 's/^listening port=\([0-9]*\).*/\1/p' "$log" | head -1)/"
		;;
	sqlite | postgres)
		local store=(--data-dir "$dir")
		[ "$kind" = postgres ] && store=(--database-url "$pg_base/$pgdb")
		"$bench" --addr 127.0.0.1:0 "${store[@]}" "$@" 2>"$log" &
		server_pid=$!
		for _ in $(seq 1 100); do grep -q 'msg=listening addr=' "$log" && break; sleep 0.1; done
		url="ws://$(sed -n 's/.*msg=listening addr=\([^ ]*\).*/\1/p' "$log" | head -1)/"
		;;
	esac
	if [ "$url" = "ws://127.0.0.1:/" ] || [ "$url" = "ws:///" ]; then
		echo "the $kind server did not start:" >&2; cat "$log" >&2; exit 1
	fi
	sleep 1 # let it settle before its RSS is the baseline
}

# pg_ticks: CPU ticks (1/100 s) of the Postgres backends serving the run's
# database (their process titles name it).
pg_ticks() {
	local total=0 p t
	for p in /proc/[0-9]*; do
		if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q "^postgres: .* $pgdb "; then
			t=$(awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "$p/stat" 2>/dev/null || echo 0)
			total=$((total + t))
		fi
	done
	echo "$total"
}

failed=()
run_bench() { # label json args...: a failed run is noted, and the others go on
	local label=$1 json=$2; shift 2
	if ! "$bench" bench --url "$url" --server-pid "$server_pid" --label "$label" --json "$OUT/$json" "$@" >&2; then
		failed+=("$json")
		rm -f "$OUT/$json"
	fi
}

for kind in $SERVERS; do
	# Idle connections, each count on a fresh server, without and with a
	# small document per connection.
	set -- $IDLE
	for n in "$@"; do
		for docs in no yes; do
			extra=() release=()
			if [ "$docs" = yes ] && [ "$RELEASE" = 1 ] && [ "$n" = "${!#}" ]; then
				extra=(--idle-timeout "$EVICT_IDLE_TIMEOUT")
				release=(--idle-release "$RELEASE_WAIT")
			fi
			[ "$kind" = reference ] && extra=()
			say "$kind: $n idle connections, documents: $docs"
			start_server "$kind" "${extra[@]}"
			flags=(--idle "$n" --idle-settle "$IDLE_SETTLE" --idle-open-timeout "$IDLE_OPEN_TIMEOUT" "${release[@]}")
			[ "$docs" = yes ] && flags+=(--idle-docs)
			run_bench "$kind" "$kind-idle-$n-$docs.json" "${flags[@]}"
		done
	done

	# The load: every rate on a fresh server. Once a rate saturates the
	# server (something lost, p99 over 2 s, or the rate not reached),
	# higher rates are skipped for it.
	saturated=""
	for rate in $RATES; do
		if [ -n "$saturated" ]; then
			say "$kind: $rate edits/s skipped (saturated at $saturated edits/s)"
			continue
		fi
		say "$kind: $DOCS documents × $CLIENTS clients at $rate edits/s"
		start_server "$kind"
		before=0; [ "$kind" = postgres ] && before=$(pg_ticks)
		run_bench "$kind" "$kind-load-$rate.json" --docs "$DOCS" --clients "$CLIENTS" --rate "$rate" \
			--duration "$DURATION" --warmup "$WARMUP"
		if [ "$kind" = postgres ]; then
			echo "{\"postgres_cpu_s\": $(( $(pg_ticks) - before ))e-2}" >"$OUT/$kind-load-$rate.pg.json"
		fi
		if [ ! -f "$OUT/$kind-load-$rate.json" ]; then
			saturated=$rate
		elif [ "${SKIP_SATURATED:-1}" = 1 ] && node -e '
			const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).load
			process.exit(r.lost > 0 || r.fanout.p99_ms > 2000 || r.edit_rate < 0.9 * r.rate_target ? 0 : 1)' "$OUT/$kind-load-$rate.json"; then
			saturated=$rate
		fi
	done

	# Two load processes at once, each with half the documents and half
	# the rate: the same server load as one process at SPLIT_RATE.
	if [ "$kind" = sqlite ] && [ -n "$SPLIT_RATE" ]; then
		say "$kind: $SPLIT_RATE edits/s from two load processes"
		start_server "$kind"
		half=$((SPLIT_RATE / 2)) hdocs=$((DOCS / 2))
		pids=()
		for i in 1 2; do
			run_bench "$kind" "$kind-split-$SPLIT_RATE-$i.json" --docs "$hdocs" --clients "$CLIENTS" --rate "$half" \
				--duration "$DURATION" --warmup "$WARMUP" --quiet &
			pids+=($!)
		done
		for p in "${pids[@]}"; do wait "$p"; done
	fi
	stop_server
done

say "results in $OUT"
node bench/summary.mjs "$OUT"
if [ ${#failed[@]} -gt 0 ]; then
	echo "runs that failed (see the log above): ${failed[*]}"
	exit 1
fi
