// Child process of auth.test.mjs, test "0.": stock clients, one per
// credential, all in this one Node process, which must survive all of them.
// The stock WebSocketClientAdapter (network-websocket 2.5.6) rethrows a
// refused upgrade (HTTP 401) from its socket's error handler, an uncaught
// exception that ends the process; Tandem accepts the upgrade and closes
// with 4401/4403 instead. Nothing here catches uncaught exceptions: if one
// happens, this process dies and the parent test fails.
//
//   node auth-matrix-child.mjs '<json>'
//     {docUrl, settleMs, clients: [{name, url, edit}]}
//
// Prints one JSON line: {results: [{name, peer, closes, errors, find,
// content, edited}]} and exits 0.

import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { decode } from "cbor-x"

const { docUrl, settleMs = 1500, clients } = JSON.parse(process.argv[2])

const sleep = ms => new Promise(r => setTimeout(r, ms))
const withTimeout = (p, ms, what) =>
  Promise.race([p, sleep(ms).then(() => { throw new Error(`${what} timed out after ${ms} ms`) })])

/** A stock Repo; what its sockets see is recorded from outside the adapter. */
function stockClient({ name, url }) {
  const adapter = new WebSocketClientAdapter(url) // stock: 5 s reconnects, its own error handler
  const repo = new Repo({ network: [adapter], peerId: `matrix-${name.replace(/\W+/g, "-")}-${process.pid}` })
  const seen = { name, closes: [], errors: [], sockets: new Set() }
  // The adapter makes a new socket on every (re)connect: watch each one.
  const watch = setInterval(() => {
    const s = adapter.socket
    if (!s || seen.sockets.has(s)) return
    seen.sockets.add(s)
    s.addEventListener("close", ev => seen.closes.push({ code: ev.code, reason: String(ev.reason ?? "") }))
    s.addEventListener("message", ev => {
      try {
        const m = decode(new Uint8Array(ev.data))
        if (m?.type === "error") seen.errors.push(String(m.message))
      } catch {
        // not CBOR: not ours to judge here
      }
    })
  }, 1)
  return { repo, adapter, seen, watch }
}

const all = clients.map(c => ({ ...stockClient(c), spec: c }))
// Give every client time to connect, be refused or be served.
await sleep(settleMs)

const results = []
for (const c of all) {
  const r = {
    name: c.spec.name,
    peer: c.adapter.remotePeerId !== undefined,
    closes: c.seen.closes,
    errors: c.seen.errors,
  }
  try {
    const h = await withTimeout(c.repo.find(docUrl), 10_000, "find")
    r.find = "ready"
    r.content = JSON.parse(JSON.stringify(h.doc()))
    if (c.spec.edit) {
      h.change(d => { d[c.spec.edit] = c.spec.name })
      r.edited = c.spec.edit
    }
  } catch (e) {
    r.find = /unavailable/.test(e.message) ? "unavailable" : `error: ${e.message}`
  }
  results.push(r)
}
// Let edits reach the server before the repos shut down.
await sleep(settleMs)
for (const c of all) {
  clearInterval(c.watch)
  c.seen.sockets.clear()
}
for (const r of results) {
  const c = all.find(x => x.spec.name === r.name)
  r.closes = c.seen.closes
  r.errors = c.seen.errors
}
await Promise.all(all.map(c => withTimeout(c.repo.shutdown(), 10_000, "shutdown").catch(() => {})))
process.stdout.write(JSON.stringify({ results }) + "\n")
// A stock adapter whose socket closed on its own keeps a reconnect timer
// after shutdown (see shutdownRepo in helpers.mjs); do not wait for it.
process.exit(0)
