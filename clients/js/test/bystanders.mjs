// Two stock automerge-repo clients that keep editing one document through a
// server, for the hostile-client suite (internal/hostile): it runs this
// script beside its attacks and reads what the two see.
//
//   node bystanders.mjs ws://127.0.0.1:PORT [editIntervalMs]
//
// Client A creates the document and client B finds it, each on its own
// WebSocket connection. Each then writes its own key every interval
// (doc.a / doc.b = {n, t}: a sequence number and the send time) and watches
// the other's. Every 250 ms a JSON line goes to stdout:
//
//   {"doc":"automerge:…","a":{…},"b":{…}}
//
// with, per client: sent (edits made), seen (the other's latest n seen),
// maxLatencyMs (the longest delivery since the last line), closes (close
// codes of its connections so far). The script exits when stdin closes.

import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

const url = process.argv[2]
const interval = Number(process.argv[3] ?? 100)
if (!url) {
  console.error("usage: node bystanders.mjs ws://host:port [editIntervalMs]")
  process.exit(2)
}

function client(name) {
  const adapter = new WebSocketClientAdapter(url, 1000)
  const st = { sent: 0, seen: 0, maxLatencyMs: 0, closes: [] }
  const watched = new WeakSet()
  // The adapter opens a new socket on every (re)connect; record how each
  // one ends.
  const watch = () => {
    const s = adapter.socket
    if (!s || watched.has(s)) return
    watched.add(s)
    s.addEventListener("close", ev => st.closes.push(ev.code))
  }
  adapter.on("peer-candidate", watch)
  const timer = setInterval(watch, 50)
  timer.unref()
  const repo = new Repo({ network: [adapter], peerId: `bystander-${name}-${process.pid}` })
  return { name, repo, st }
}

const a = client("a")
const b = client("b")
const ha = a.repo.create({ a: { n: 0, t: 0 }, b: { n: 0, t: 0 } })
const hb = await b.repo.find(ha.url)

function observe(c, h, other) {
  h.on("change", ({ doc }) => {
    const v = doc[other]
    if (v && v.n > c.st.seen) {
      c.st.seen = v.n
      c.st.maxLatencyMs = Math.max(c.st.maxLatencyMs, Date.now() - v.t)
    }
  })
}
observe(a, ha, "b")
observe(b, hb, "a")

setInterval(() => {
  for (const [c, h, key] of [[a, ha, "a"], [b, hb, "b"]]) {
    c.st.sent++
    const n = c.st.sent
    h.change(d => {
      d[key] = { n, t: Date.now() }
    })
  }
}, interval)

setInterval(() => {
  process.stdout.write(JSON.stringify({ doc: ha.url, a: a.st, b: b.st }) + "\n")
  a.st.maxLatencyMs = 0
  b.st.maxLatencyMs = 0
}, 250)

process.stdin.on("end", () => process.exit(0))
process.stdin.on("close", () => process.exit(0))
process.stdin.resume()
