// One big text document through a sync server (issue 11): a writer types a
// text of SPLICES changes of SPLICE_KIB KiB splices each (default 21 x 256
// KiB = 5,505,024 characters), the first OFFLINE_SPLICES of them (default 17,
// 80 % of 21 rounded up from 16.8) while not connected, then connects, and
// types the rest online; then a fresh client fetches the document. Stock
// npm packages only (@automerge/automerge-repo and its WebSocket client
// adapter, bench/reference/node_modules), so it runs against the official
// automerge-repo sync server and Tandem alike.
//
//   node bench/bigdoc.mjs --url ws://127.0.0.1:PORT/ --pid SERVER_PID [--label NAME]
//
// Knobs (environment): SPLICES=21 SPLICE_KIB=256 OFFLINE_SPLICES=ceil(0.8*SPLICES)
// TIMEOUT_S=540 (the whole run) SETTLE_S=3 (wait before the settled RSS)
// NODE_MODULES=bench/reference/node_modules (where the npm packages are).
//
// What it measures:
//   ack_burst_s  from connecting the writer until the server tells it that
//                it has the offline burst: a sync message from the server
//                whose heads are the writer's heads (the writer's sync state
//                for the server peer, theirHeads, as the "sync-state" events
//                of the repo's synchronizer report it). A server answers
//                those heads only once it has applied (Tandem: committed)
//                every change of them.
//   ack_s        from connecting the writer until the server acknowledges
//                the final heads the same way (the burst, then the online
//                changes typed one after the other without waiting for
//                acknowledgements; their typing time, online_typing_s, is
//                the client's and is included).
//   fresh_fetch_s from creating a fresh client (new Repo, new connection)
//                until its copy of the document has the writer's final
//                heads and the same text (compared whole).
//   total_s      ack_s + fresh_fetch_s.
//   RSS          the server's VmRSS from /proc/PID/status, sampled every
//                100 ms in a worker thread (so that the client's own work
//                does not delay the samples); VmHWM, the kernel's own peak,
//                at the end.
//
// The result is one JSON object on stdout; progress goes to stderr. Exit
// status 2 when something went wrong (errors is not empty).

import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import { Worker } from "node:worker_threads"

const here = path.dirname(fileURLToPath(import.meta.url))
const args = parseArgs(process.argv.slice(2))
if (!args.url || !args.pid) {
  console.error("usage: node bench/bigdoc.mjs --url ws://HOST:PORT/ --pid SERVER_PID [--label NAME]")
  process.exit(64)
}
const SPLICES = int(process.env.SPLICES, 21)
const SPLICE_CHARS = int(process.env.SPLICE_KIB, 256) * 1024
const OFFLINE = Math.min(SPLICES, int(process.env.OFFLINE_SPLICES, Math.ceil(0.8 * SPLICES)))
const TIMEOUT_S = Number(process.env.TIMEOUT_S ?? 540)
const SETTLE_S = Number(process.env.SETTLE_S ?? 3)
const nodeModules = path.resolve(process.env.NODE_MODULES ?? path.join(here, "reference/node_modules"))
const mod = p => import(pathToFileURL(path.join(nodeModules, p)).href)
const { Repo, splice, encodeHeads, cbor } = await mod("@automerge/automerge-repo/dist/entrypoints/fullfat.js")
const { WebSocketClientAdapter } = await mod("@automerge/automerge-repo-network-websocket/dist/index.js")
const version = p => JSON.parse(fs.readFileSync(path.join(nodeModules, p, "package.json"), "utf8")).version

const pid = Number(args.pid)
const errors = []
const disconnects = []
const marks = {} // seconds since the start of the run at which each phase began
let phase = "start"
const mark = p => { phase = p; marks[p] = secs(performance.now() - t0) }
const result = {
  server: args.label ?? args.url,
  url: args.url,
  packages: {
    "automerge-repo": version("@automerge/automerge-repo"),
    "automerge-repo-network-websocket": version("@automerge/automerge-repo-network-websocket"),
    automerge: version("@automerge/automerge"),
  },
  splices: SPLICES,
  splice_chars: SPLICE_CHARS,
  offline_splices: OFFLINE,
  text_chars: SPLICES * SPLICE_CHARS,
  burst_ops: OFFLINE * SPLICE_CHARS + 2, // the splices' inserts, plus the create change's map put and makeText
  errors,
  disconnects,
  marks,
}
const log = (...a) => console.error(`[bigdoc ${result.server} ${((performance.now() - t0) / 1e3).toFixed(1)}s]`, ...a)
const t0 = performance.now()
const secs = ms => Math.round(ms) / 1e3
const mb = kb => Math.round(kb / 102.4) / 10 // kB (KiB) of /proc to MiB, one decimal

// The RSS sampler: a worker thread writes into shared memory, in KiB:
// [0] the latest VmRSS, [1] its peak over the run, [2] its peak since the
// main thread last reset it (the phases' peaks), [3] samples taken, [4] the
// time it started (ms since the epoch); then, from [8], a timeline of
// [ms since it started, VmRSS] pairs, every 100 ms (at most 10,000).
const TIMELINE = 10000
const shared = new Float64Array(new SharedArrayBuffer(8 * (8 + 2 * TIMELINE)))
const sampler = new Worker(
  `const { workerData } = require("node:worker_threads")
   const fs = require("node:fs")
   const s = workerData.shared
   s[4] = Date.now()
   const read = () => {
     try {
       const m = /VmRSS:\\s+(\\d+)/.exec(fs.readFileSync("/proc/" + workerData.pid + "/status", "utf8"))
       if (!m) return
       const kb = Number(m[1])
       s[0] = kb; if (kb > s[1]) s[1] = kb; if (kb > s[2]) s[2] = kb
       const i = s[3]
       if (i < ${TIMELINE}) { s[8 + 2 * i] = Date.now() - s[4]; s[9 + 2 * i] = kb }
       s[3]++
     } catch {}
   }
   read(); setInterval(read, 100)`,
  { eval: true, workerData: { shared, pid } },
)
sampler.unref()
const status = () => {
  try {
    const t = fs.readFileSync(`/proc/${pid}/status`, "utf8")
    const f = k => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(t)?.[1] ?? NaN)
    return { rss: f("VmRSS"), hwm: f("VmHWM") }
  } catch (e) {
    return { rss: NaN, hwm: NaN }
  }
}
const cpuSeconds = () => { // the server's user + system CPU time
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ")
    return (Number(f[11]) + Number(f[12])) / 100
  } catch {
    return NaN
  }
}
const phasePeak = () => { const v = shared[2]; shared[2] = shared[0]; return mb(v) }

// A WebSocket client adapter that counts what it receives and notes how
// the server closes it or which error messages it sends.
function adapter(name, stats) {
  const a = new WebSocketClientAdapter(args.url, 5000)
  const onMessage = a.onMessage, onClose = a.onClose, receive = a.receiveMessage.bind(a), send = a.send.bind(a)
  a.onMessage = ev => {
    stats.bytes_received += ev.data.byteLength ?? 0
    stats.frames_received++
    stats.last_at = performance.now()
    if (stats.frames.length < 20) stats.frames.push([secs(performance.now() - stats.since), ev.data.byteLength ?? 0])
    onMessage(ev)
  }
  a.onClose = ev => {
    // Noted, not fatal: the adapter reconnects after 5 s and syncs again
    // (and a refused message comes with an error message, which is fatal).
    if (!stats.closing) {
      const d = `${name}: the server closed the connection at ${secs(performance.now() - t0)} s (${phase}): code ${ev.code}${ev.reason ? ` reason "${ev.reason}"` : ""}`
      log(d)
      disconnects.push(d)
    }
    onClose(ev)
  }
  a.receiveMessage = bytes => {
    if (bytes.byteLength < 65536) { // an error message from the server ({type: "error", message}) is small
      try {
        const m = cbor.decode(new Uint8Array(bytes))
        if (m?.type === "error") {
          // fatal, a second later: long enough to note how the server closes the connection
          const e = `${name}: error message from the server at ${secs(performance.now() - t0)} s (${phase}): ${m.message}`
          log(e)
          setTimeout(() => fail(e), 1000)
        }
      } catch {}
    }
    receive(bytes)
  }
  a.send = msg => {
    if (msg.data?.byteLength) stats.bytes_sent += msg.data.byteLength
    send(msg)
  }
  return a
}

let failed = null
const failure = new Promise((_, reject) => { failed = reject })
failure.catch(() => {})
function fail(msg) {
  log("ERROR", msg)
  errors.push(msg)
  failed(new Error(msg))
}
const overall = setTimeout(() => fail(`timeout: the run took longer than ${TIMEOUT_S} s`), TIMEOUT_S * 1000)
overall.unref()
// race: a promise against the first failure
const race = p => Promise.race([p, failure])
const sleep = ms => new Promise(r => setTimeout(r, ms))
const headsKey = h => [...h].sort().join(",")

// Deterministic pseudo-random lowercase text: words of 1-10 letters
// between single spaces (xorshift32, fixed seed), not one letter repeated.
function text(n, seed = 0x2545f491) {
  const b = Buffer.allocUnsafe(n)
  let x = seed, word = 0
  for (let i = 0; i < n; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0
    if (word === 0) { b[i] = 32; word = 1 + (x % 10); continue }
    b[i] = 97 + ((x >>> 8) % 26)
    word--
  }
  return b.toString("latin1")
}

async function main() {
  result.machine = { cpus: os.cpus().length, loadavg_start: os.loadavg().map(v => Math.round(v * 100) / 100) }
  const base = status()
  result.base_rss_mb = mb(base.rss)
  const cpu0 = cpuSeconds()
  log(`text: ${SPLICES} splices of ${SPLICE_CHARS} characters, the first ${OFFLINE} offline`)
  mark("offline typing")
  const all = text(SPLICES * SPLICE_CHARS)
  const chunk = i => all.slice(i * SPLICE_CHARS, (i + 1) * SPLICE_CHARS)

  // The writer, offline: a Repo without network or storage.
  const wstats = { bytes_received: 0, frames_received: 0, bytes_sent: 0, closing: false, frames: [], since: 0 }
  const writer = new Repo({ network: [] })
  const handle = writer.create({ text: "" })
  let t = performance.now()
  for (let i = 0; i < OFFLINE; i++) {
    handle.change(d => splice(d, ["text"], i * SPLICE_CHARS, 0, chunk(i)))
  }
  result.offline_typing_s = secs(performance.now() - t)
  result.url_doc = handle.url
  log(`typed ${OFFLINE} splices offline in ${result.offline_typing_s} s: ${handle.url}`)

  // The server's acknowledgements: its heads in the writer's sync state.
  let serverHeads = ""
  const waiters = []
  writer.synchronizer.on("sync-state", ({ documentId, syncState }) => {
    if (documentId !== handle.documentId || !syncState.theirHeads) return
    serverHeads = headsKey(encodeHeads(syncState.theirHeads))
    for (const w of waiters.splice(0)) if (!w(serverHeads)) waiters.push(w)
  })
  const acked = heads => {
    const want = headsKey(heads)
    return race(new Promise(resolve => {
      if (serverHeads === want) return resolve()
      waiters.push(h => (h === want ? (resolve(), true) : false))
    }))
  }

  // Connect, and wait for the burst's acknowledgement.
  shared[2] = shared[0]
  const connectAt = performance.now()
  wstats.since = connectAt
  mark("burst upload")
  const wa = adapter("writer", wstats)
  writer.networkSubsystem.addNetworkAdapter(wa)
  const burstHeads = handle.heads()
  await acked(burstHeads)
  result.ack_burst_s = secs(performance.now() - connectAt)
  log(`the server acknowledged the burst after ${result.ack_burst_s} s`)

  // The rest, online, one change after the other.
  mark("online typing")
  t = performance.now()
  for (let i = OFFLINE; i < SPLICES; i++) {
    handle.change(d => splice(d, ["text"], i * SPLICE_CHARS, 0, chunk(i)))
    await sleep(0)
  }
  result.online_typing_s = secs(performance.now() - t)
  const finalHeads = handle.heads()
  mark("final ack")
  await acked(finalHeads)
  result.ack_s = secs(performance.now() - connectAt)
  result.ack_peak_rss_mb = phasePeak()
  result.writer_bytes_sent = wstats.bytes_sent
  log(`the server acknowledged the final heads after ${result.ack_s} s (${SPLICES - OFFLINE} online changes typed in ${result.online_typing_s} s)`)
  const want = handle.doc().text
  if (want.length !== result.text_chars) fail(`the writer's text has ${want.length} characters, not ${result.text_chars}`)

  // A fresh client fetches it.
  mark("fresh fetch")
  const fetchAt = performance.now()
  const fstats = { bytes_received: 0, frames_received: 0, bytes_sent: 0, closing: false, frames: [], since: fetchAt }
  const fresh = new Repo({ network: [adapter("fresh", fstats)] })
  const fh = await race(fresh.find(handle.url))
  result.fresh_ready_s = secs(performance.now() - fetchAt)
  const key = headsKey(finalHeads)
  await race(new Promise(resolve => {
    const check = () => {
      if (headsKey(fh.heads()) !== key) return
      fh.off("change", check)
      clearInterval(iv)
      resolve()
    }
    const iv = setInterval(check, 10)
    fh.on("change", check)
    check()
  }))
  result.fresh_fetch_s = secs(performance.now() - fetchAt)
  result.fetch_peak_rss_mb = phasePeak()
  const got = fh.doc().text
  result.fresh_text_chars = got.length
  if (got !== want) fail(`the fresh client's text differs from the writer's (${got.length} vs ${want.length} characters)`)
  result.bytes_received_fresh = fstats.bytes_received
  result.frames_received_fresh = fstats.frames_received
  result.fresh_last_frame_s = secs(fstats.last_at - fetchAt) // the last byte arrived; the rest is the client applying it
  result.fresh_frames = fstats.frames // [seconds since the fresh client was created, bytes], the first 20
  result.writer_frames = wstats.frames // [seconds since the writer connected, bytes], the first 20
  result.total_s = secs((result.ack_s + result.fresh_fetch_s) * 1e3)
  log(`the fresh client had it after ${result.fresh_fetch_s} s (ready after ${result.fresh_ready_s} s), ${fstats.bytes_received} bytes in ${fstats.frames_received} frames`)

  mark("settle")
  const end = status()
  result.end_rss_mb = mb(end.rss)
  result.server_cpu_s = Math.round((cpuSeconds() - cpu0) * 100) / 100
  await sleep(SETTLE_S * 1000)
  const settled = status()
  result.settled_rss_mb = mb(settled.rss)
  result.settle_s = SETTLE_S
  result.machine.loadavg_end = os.loadavg().map(v => Math.round(v * 100) / 100)
  wstats.closing = fstats.closing = true
  mark("done")
}

try {
  await race(main())
} catch (e) {
  if (!errors.includes(e.message)) errors.push(String(e?.stack ?? e))
}
const last = status()
result.peak_rss_mb = mb(Math.max(shared[1], shared[0]))
result.vm_hwm_mb = mb(last.hwm)
result.rss_samples = shared[3]
// The timeline, thinned to one [seconds since the run began, MiB] pair a
// second (the peak of that second), on the run's clock (marks).
{
  const offset = shared[4] - (Date.now() - (performance.now() - t0)) // sampler start on the run's clock, ms
  const per = new Map()
  for (let i = 0; i < Math.min(shared[3], TIMELINE); i++) {
    const sec = Math.floor((shared[8 + 2 * i] + offset) / 1000)
    per.set(sec, Math.max(per.get(sec) ?? 0, shared[9 + 2 * i]))
  }
  result.rss_timeline = [...per].map(([t, kb]) => [t, mb(kb)])
}
// pretty, with the [seconds, bytes] pairs one a line
console.log(JSON.stringify(result, null, 2).replace(/\[\s+(-?[\d.]+),\s+(-?[\d.]+)\s+\]/g, "[$1, $2]"))
process.exit(errors.length ? 2 : 0)

function parseArgs(argv) {
  const o = {}
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i])
    if (!m) continue
    o[m[1]] = m[2] ?? argv[++i]
  }
  return o
}
function int(v, d) {
  const n = Number.parseInt(v ?? "", 10)
  return Number.isFinite(n) ? n : d
}
