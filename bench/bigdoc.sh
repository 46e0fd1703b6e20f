#!/usr/bin/env bash
# One big text document (issue 11), the official automerge-repo sync server
# (bench/reference/server.mjs) and Tandem on SQLite one after the other, each
# fresh on a loopback port with a fresh data directory: bench/bigdoc.mjs
# types SPLICES changes of SPLICE_KIB KiB splices (the first 80 % offline,
# uploaded as one burst once it connects), measures the time until the
# server acknowledges them and the time a fresh client takes to fetch the
# document, and samples the server's RSS. Prints both results and Tandem's
# ratios to the official server.
#
#   bench/bigdoc.sh                          # 21 x 256 KiB = 5,505,024 characters
#   SPLICES=21 SPLICE_KIB=16 bench/bigdoc.sh # a quick run
#
# Knobs (environment):
#   SERVERS="reference sqlite"   which servers, in this order
#   SPLICES=21 SPLICE_KIB=256    the text: changes x KiB splices
#   OFFLINE_SPLICES=             how many of them offline (default: ceil(0.8 * SPLICES))
#   TANDEM_FLAGS=                more flags for Tandem (e.g. --log-level debug)
#   RETRY_FLAGS=                 when set and Tandem's run has errors (e.g. it refused
#                                the burst, 1007), it runs once more, fresh, with these
#                                flags too; both runs are reported
#   TANDEM_BIN=                  run this Tandem binary instead of building one
#                                (TANDEM_COMMIT= names what it was built from)
#   TIMEOUT=600                  longest run per server, in seconds
#   LINGER=0                     seconds the server keeps running after the run,
#                                before it is stopped (work it does in the background,
#                                e.g. Tandem's compaction, shows in hwm_at_stop_mb)
#   OUT=<temp dir>               where the JSON results and the servers' logs go
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

SERVERS=${SERVERS:-reference sqlite}
export SPLICES=${SPLICES:-21} SPLICE_KIB=${SPLICE_KIB:-256}
[ -n "${OFFLINE_SPLICES:-}" ] && export OFFLINE_SPLICES
TANDEM_FLAGS=${TANDEM_FLAGS:-}
RETRY_FLAGS=${RETRY_FLAGS:-}
TIMEOUT=${TIMEOUT:-600}
LINGER=${LINGER:-0}
export TIMEOUT_S=$((TIMEOUT - 60)) # bigdoc.mjs gives up (and reports) before it is killed
OUT=${OUT:-$(mktemp -d /tmp/tandem-bigdoc.XXXXXX)}
mkdir -p "$OUT"
work=$(mktemp -d /tmp/tandem-bigdoc-work.XXXXXX)

say() { printf '\n== %s\n' "$*" >&2; }

if [ -n "${TANDEM_BIN:-}" ]; then
	tandem=$(realpath "$TANDEM_BIN")
	commit="${TANDEM_COMMIT:-$tandem}"
else
	say "build tandem"
	# the run's own binary: a build of bin/tandem meanwhile cannot replace it
	tandem=$work/tandem
	go build -o "$tandem" ./cmd/tandem
	# what it was built from (other work may change the checkout between runs)
	commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
	git diff --quiet HEAD -- . ':(exclude)bench/bigdoc.*' 2>/dev/null || commit="$commit+uncommitted changes"
fi
if [ ! -d bench/reference/node_modules ] ||
	[ bench/reference/package-lock.json -nt bench/reference/node_modules/.package-lock.json ]; then
	say "install the reference server's packages"
	(cd bench/reference && npm install --no-audit --no-fund)
fi

server_pid=""
hwm_kb="" rss_kb="" cpu_ticks=""
proc_status() { # reads the server's VmHWM, VmRSS (KiB) and CPU ticks, while it exists
	local s h
	s=$(cat "/proc/$server_pid/status" 2>/dev/null) || return 0
	h=$(awk '/^VmHWM:/ { print $2 }' <<<"$s")
	[ -n "$h" ] || return 0 # exiting: its memory is gone
	hwm_kb=$h
	rss_kb=$(awk '/^VmRSS:/ { print $2 }' <<<"$s")
	cpu_ticks=$(awk '{ s = $0; sub(/^.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$server_pid/stat" 2>/dev/null || echo "$cpu_ticks")
}
stop_server() {
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		proc_status
		kill -TERM "$server_pid" 2>/dev/null || true
		# its peak through the drain: the last VmHWM read before it exits
		for _ in $(seq 1 300); do kill -0 "$server_pid" 2>/dev/null || break; proc_status; sleep 0.2; done
		kill -KILL "$server_pid" 2>/dev/null || true
		wait "$server_pid" 2>/dev/null || true
	fi
	server_pid=""
}
cleanup() {
	stop_server
	rm -rf "$work"
}
trap cleanup EXIT

# start_server KIND LOG [tandem flags...]: starts a fresh server on a free
# loopback port with a fresh data directory; sets server_pid and url.
start_server() {
	local kind=$1 log=$2; shift 2
	stop_server
	local dir="$work/$kind-data.$RANDOM"
	rm -rf "$dir"
	url=""
	case $kind in
	reference)
		node bench/reference/server.mjs 0 "$dir" >"$log" 2>&1 &
		server_pid=$!
		for _ in $(seq 1 100); do grep -q '^listening port=' "$log" && break; sleep 0.1; done
		local port
		port=$(sed -n 's/^listening port=\([0-9]*\).*/\1/p' "$log" | head -1)
		[ -n "$port" ] && url="ws://127.0.0.1:$port/"
		;;
	sqlite)
		"$tandem" --addr 127.0.0.1:0 --data-dir "$dir" "$@" 2>"$log" &
		server_pid=$!
		for _ in $(seq 1 100); do grep -q 'msg=listening addr=' "$log" && break; sleep 0.1; done
		local addr
		addr=$(sed -n 's/.*msg=listening addr=\([^ ]*\).*/\1/p' "$log" | head -1)
		[ -n "$addr" ] && url="ws://$addr/"
		;;
	esac
	if [ -z "$url" ]; then
		echo "the $kind server did not start:" >&2; cat "$log" >&2; exit 1
	fi
	sleep 1 # let it settle before its RSS is the baseline
}

# run NAME KIND [tandem flags...]: one fresh server, one bigdoc.mjs run;
# the result goes to $OUT/NAME.json, the server's log to $OUT/NAME.log.
# Returns 1 when the run had errors.
run() {
	local name=$1 kind=$2; shift 2
	say "$name: $SPLICES x $SPLICE_KIB KiB splices${*:+ (tandem $*)}"
	start_server "$kind" "$OUT/$name.log" "$@"
	local rc=0
	timeout -k 10 "$TIMEOUT" node bench/bigdoc.mjs --url "$url" --pid "$server_pid" --label "$name" \
		>"$OUT/$name.json" || rc=$?
	if [ "$rc" = 124 ] || [ "$rc" = 137 ] || [ ! -s "$OUT/$name.json" ]; then
		echo "{\"server\": \"$name\", \"errors\": [\"bigdoc.mjs was killed or wrote nothing (exit $rc, timeout ${TIMEOUT}s)\"]}" >"$OUT/$name.json"
		rc=2
	fi
	[ "$LINGER" != 0 ] && { say "$name: the server runs $LINGER s more"; sleep "$LINGER"; }
	proc_status
	local rss_stop=$rss_kb hwm_stop=$hwm_kb
	hwm_kb="" rss_kb="" cpu_ticks=""
	stop_server
	echo "{\"tandem_commit\": \"$commit\", \"linger_s\": $LINGER, \"rss_at_stop_mb\": $(( ${rss_stop:-0} / 1024 )), \"hwm_at_stop_mb\": $(( ${hwm_stop:-0} / 1024 )), \"hwm_after_drain_mb\": $(( ${hwm_kb:-0} / 1024 )), \"cpu_s_total\": ${cpu_ticks:-0}e-2}" >"$OUT/$name.server.json"
	echo "$name: exit $rc; result $OUT/$name.json, server log $OUT/$name.log" >&2
	return $((rc != 0))
}

names=()
for kind in $SERVERS; do
	case $kind in
	reference)
		run official reference || true
		names+=(official)
		;;
	sqlite)
		# shellcheck disable=SC2086
		if run tandem-sqlite sqlite $TANDEM_FLAGS; then
			names+=(tandem-sqlite)
		else
			names+=(tandem-sqlite)
			if [ -n "$RETRY_FLAGS" ]; then
				# shellcheck disable=SC2086
				run tandem-sqlite-retry sqlite $TANDEM_FLAGS $RETRY_FLAGS || true
				names+=(tandem-sqlite-retry)
			fi
		fi
		;;
	*) echo "unknown server $kind (reference, sqlite)" >&2; exit 2 ;;
	esac
done

say "results in $OUT"
RETRY_FLAGS="$RETRY_FLAGS" node - "$OUT" "${names[@]}" <<'EOF'
const fs = require("node:fs"), path = require("node:path")
const [dir, ...names] = process.argv.slice(2)
const read = f => { try { return JSON.parse(fs.readFileSync(path.join(dir, f), "utf8")) } catch { return {} } }
const r = Object.fromEntries(names.map(n => [n, { ...read(n + ".json"), after_run: read(n + ".server.json") }]))
for (const x of Object.values(r)) Object.assign(x, { hwm_at_stop_mb: x.after_run.hwm_at_stop_mb, hwm_after_drain_mb: x.after_run.hwm_after_drain_mb })
for (const n of names) console.log(`${n}:\n${JSON.stringify(r[n], null, 2).replace(/\[\s+(-?[\d.]+),\s+(-?[\d.]+)\s+\]/g, "[$1, $2]")}\n`)
const built = Object.values(r).find(x => x.after_run.tandem_commit)?.after_run.tandem_commit
if (built) console.log(`tandem built from ${built}; SPLICES=${process.env.SPLICES} SPLICE_KIB=${process.env.SPLICE_KIB}; ${require("node:os").cpus().length} CPUs\n`)
const f = (v, d = 2) => (typeof v === "number" ? v.toFixed(d) : "-")
const cols = ["ack_burst_s", "ack_s", "fresh_fetch_s", "total_s", "peak_rss_mb", "vm_hwm_mb", "end_rss_mb", "hwm_at_stop_mb", "hwm_after_drain_mb", "server_cpu_s", "bytes_received_fresh"]
console.log(["server".padEnd(20), ...cols.map(c => c.padStart(c.length + 1)), "  errors"].join(""))
for (const n of names) {
  const x = r[n]
  console.log([n.padEnd(20), ...cols.map(c => f(x[c], c === "bytes_received_fresh" ? 0 : c.endsWith("_mb") ? 1 : 2).padStart(c.length + 1)),
    "  " + (x.errors?.length ? x.errors.join("; ") : "none")].join(""))
}
for (const n of names) for (const d of r[n].disconnects ?? []) console.log(`${n}: disconnect: ${d}`)
const ok = x => x && !x.errors?.length
const off = r.official
const tandem = names.filter(n => n.startsWith("tandem")).reverse().find(n => ok(r[n]))
if (!ok(off) || !tandem) {
  console.log("\nno ratios: a run failed (see errors above)")
  process.exit(1)
}
const t = r[tandem]
const q = (a, b) => (a / b).toFixed(2)
const peak = x => Math.max(x.peak_rss_mb, x.vm_hwm_mb) // VmHWM: the kernel's peak, which 100 ms samples can miss
console.log(`\nratios ${tandem} / official (target: <= 0.50 each)${tandem.endsWith("retry") ? ` (Tandem with ${process.env.RETRY_FLAGS})` : ""}:`)
console.log(`  ack + fresh fetch: ${f(t.total_s)} s / ${f(off.total_s)} s = ${q(t.total_s, off.total_s)}` +
  `  (ack ${q(t.ack_s, off.ack_s)}, fresh fetch ${q(t.fresh_fetch_s, off.fresh_fetch_s)})`)
console.log(`  peak RSS:          ${f(peak(t), 1)} MiB / ${f(peak(off), 1)} MiB = ${q(peak(t), peak(off))}  (during the run: the sampled peak or VmHWM at its end, whichever is higher)`)
if (t.hwm_after_drain_mb && off.hwm_after_drain_mb)
  console.log(`  VmHWM by the end of the drain (LINGER=${t.after_run.linger_s} s after the run): ${t.hwm_after_drain_mb} MiB / ${off.hwm_after_drain_mb} MiB = ${q(t.hwm_after_drain_mb, off.hwm_after_drain_mb)}`)
EOF
