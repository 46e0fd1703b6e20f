// Whole-document initial sync (issue 11): a fresh stock client opening a
// document with a long history gets it from the server in about the size of
// the saved document (one V2 message: the compacted snapshot, then the
// changes logged after it), not as every change on its own.

import { test } from "node:test"
import assert from "node:assert/strict"
import { performance } from "node:perf_hooks"

import { A, scope, waitFor, serverAcked, findReady, repoConnected, handlesInSync, headsOf, typedDoc } from "./helpers.mjs"

const KEYSTROKES = Number(process.env.TANDEM_WHOLEDOC_KEYSTROKES ?? 20_000)

/** Count what the repo's WebSocket receives from now on. */
function countReceived(repo) {
  const c = { bytes: 0, frames: 0 }
  repo.adapter.socket.on("message", data => {
    c.bytes += data.byteLength ?? data.length
    c.frames++
  })
  return c
}

test("11. a fresh stock client gets a compacted 20,000-keystroke text in at most twice its saved size", async t => {
  const sc = scope(t)
  const srv = await sc.server()
  const t0 = performance.now()
  const typed = typedDoc(KEYSTROKES)
  const typeMs = performance.now() - t0
  const changeBytes = A.getAllChanges(typed).reduce((n, c) => n + c.byteLength, 0)

  // The writer uploads its history (more than --compact-changes: the
  // server compacts it, in the background, and the REST API shows the
  // snapshot once it is stored), then types a few keystrokes more, which
  // stay in the log after the snapshot.
  const a = sc.repo({ url: srv.url })
  await repoConnected(a)
  const h = a.import(A.save(typed))
  const t1 = performance.now()
  await serverAcked(a, h, 60_000)
  const uploadMs = performance.now() - t1
  const id = h.url.replace(/^automerge:/, "")
  await waitFor(
    async () => (await (await fetch(`${srv.httpUrl}/api/v1/docs/${id}`)).json()).snapshot_bytes > 0,
    30_000,
    { message: "the server to compact the uploaded history" }
  )
  for (let i = 0; i < 20; i++) h.change(d => A.splice(d, ["text"], d.text.length, 0, "!"))
  await serverAcked(a, h, 30_000)

  const c = sc.repo({ url: srv.url })
  await repoConnected(c)
  const got = countReceived(c)
  const t2 = performance.now()
  const hc = await findReady(c, h.url, 60_000)
  const readyMs = performance.now() - t2
  await waitFor(() => handlesInSync(h, hc), 30_000, { message: "the fresh client to converge" })
  const syncMs = performance.now() - t2
  assert.deepEqual(headsOf(hc), headsOf(h))
  assert.equal(hc.doc().text, h.doc().text)
  assert.equal(hc.doc().text.length, KEYSTROKES + 20)
  const saved = A.save(hc.doc()).byteLength
  t.diagnostic(
    `${KEYSTROKES} keystrokes (typed in ${typeMs.toFixed(0)} ms; ${changeBytes} B as changes, A.save = ${saved} B): ` +
      `upload+ack ${uploadMs.toFixed(0)} ms; fresh client received ${got.bytes} B in ${got.frames} frames, ` +
      `ready in ${readyMs.toFixed(0)} ms, in sync in ${syncMs.toFixed(0)} ms`
  )
  assert.ok(got.bytes <= 2 * saved, `the fresh client received ${got.bytes} B for a document that saves to ${saved} B`)
})
