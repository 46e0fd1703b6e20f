// Interop: the real `tandem` binary against stock npm automerge-repo clients
// (@automerge/automerge-repo 2.5.6 + network-websocket 2.5.6 + automerge 3.5.0).

import { test, before, after } from "node:test"
import assert from "node:assert/strict"
import { performance } from "node:perf_hooks"
import { randomBytes } from "node:crypto"

import { generateAutomergeUrl, parseAutomergeUrl, isValidDocumentId } from "@automerge/automerge-repo"

import {
  A,
  scope,
  startServer,
  waitFor,
  withTimeout,
  serverAcked,
  findReady,
  repoConnected,
  shutdownRepo,
  rawDocSync,
  headsOf,
  sameHeads,
  handlesInSync,
  toJS,
  encode,
  decode,
  randomId,
  sleep,
} from "./helpers.mjs"

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** One shared server for the tests that do not restart it. */
let shared
before(async () => {
  shared = await startServer()
})
after(async () => {
  if (!shared) return
  // a clean SIGTERM shutdown must exit 0
  let exit
  try {
    exit = await shared.stop("SIGTERM")
  } finally {
    await shared.cleanup()
  }
  assert.equal(exit?.code, 0, `tandem exit after SIGTERM: ${JSON.stringify(exit)}\n${shared.stderr()}`)
})

// ---------------------------------------------------------------------------

test("0. handshake: join → peer from a tandem- peer with storageId; GET / is 200", async t => {
  const sc = scope(t)
  const rc = await sc.raw(shared.url, { peerId: randomId("raw") })
  const p = rc.peerMessage
  assert.equal(p.type, "peer")
  assert.match(p.senderId, /^tandem-/)
  assert.equal(p.targetId, rc.peerId)
  assert.equal(p.selectedProtocolVersion, "1")
  assert.ok(p.peerMetadata, "peer has peerMetadata")
  assert.match(p.peerMetadata.storageId, UUID_RE)
  assert.equal(p.peerMetadata.isEphemeral, false)
  assert.deepEqual(rc.skippedBeforePeer, [], "nothing before peer")

  // a stock client without storage sends storageId: undefined (0xf7)
  const r = sc.repo({ url: shared.url })
  const serverPeer = await repoConnected(r)
  assert.equal(serverPeer, p.senderId)
  assert.equal(r.getStorageIdOfPeer(serverPeer), p.peerMetadata.storageId)

  const res = await withTimeout(fetch(shared.httpUrl + "/"), 5000, "GET /")
  assert.equal(res.status, 200)
  const body = await res.text()
  assert.ok(body.length > 0, "GET / has a text body")
})

test("1. a document created by A is found by B with equal heads and content", async t => {
  const sc = scope(t)
  const a = sc.repo({ url: shared.url })
  const b = sc.repo({ url: shared.url })
  const content = {
    title: "hello",
    n: 42,
    list: [1, 2, 3],
    nested: { ok: true, deeper: { s: "x" } },
  }
  const h = a.create(content)
  h.change(d => {
    d.more = "second change"
    d.list.push(4)
  })
  await serverAcked(a, h)

  const hb = await findReady(b, h.url)
  await waitFor(() => handlesInSync(h, hb), 10_000, { message: "B to have A's heads" })
  assert.deepEqual(headsOf(hb), headsOf(h))
  assert.deepEqual(hb.heads(), h.heads())
  assert.deepEqual(toJS(hb.doc()), {
    ...content,
    more: "second change",
    list: [1, 2, 3, 4],
  })
  assert.deepEqual(toJS(hb.doc()), toJS(h.doc()))
})

test("2. concurrent edits from A and B converge", async t => {
  const sc = scope(t)
  const a = sc.repo({ url: shared.url })
  const b = sc.repo({ url: shared.url })
  const ha = a.create({ text: "hello world", same: "init" })
  await serverAcked(a, ha)
  const hb = await findReady(b, ha.url)
  await waitFor(() => handlesInSync(ha, hb), 10_000)

  const N = 12
  ha.change(d => A.splice(d, ["text"], 0, 5, "HOWDY"))
  for (let i = 0; i < N; i++) {
    ha.change(d => {
      A.splice(d, ["text"], 0, 0, `[A${i}]`)
      d[`a${i}`] = i
      d.same = `A${i}`
    })
    hb.change(d => {
      A.splice(d, ["text"], d.text.length, 0, `[B${i}]`)
      d[`b${i}`] = i
      d.same = `B${i}`
    })
    // let some edits cross on the wire while others are still local
    if (i % 4 === 3) await sleep(30)
  }
  await waitFor(() => handlesInSync(ha, hb), 20_000, { message: "A and B to converge" })

  const da = toJS(ha.doc())
  const db = toJS(hb.doc())
  assert.deepEqual(da, db)
  assert.deepEqual(headsOf(ha), headsOf(hb))
  assert.ok(da.text.includes("HOWDY world"), `text: ${da.text}`)
  assert.ok(!da.text.includes("hello"), "A's delete applied on both sides")
  for (let i = 0; i < N; i++) {
    assert.ok(da.text.includes(`[A${i}]`), `text has [A${i}]: ${da.text}`)
    assert.ok(da.text.includes(`[B${i}]`), `text has [B${i}]: ${da.text}`)
    assert.equal(da[`a${i}`], i)
    assert.equal(da[`b${i}`], i)
  }
  assert.ok([`A${N - 1}`, `B${N - 1}`].includes(da.same), `same = ${da.same}`)
  // both concurrent values of "same" are known as a conflict on both sides
  const conflicts = A.getConflicts(ha.doc(), "same")
  assert.ok(conflicts && Object.keys(conflicts).length === 2, "the concurrent sets of 'same' conflict")
})

async function restartScenario(t, signal) {
  const sc = scope(t)
  const srv = await sc.server()
  const a = sc.repo({ url: srv.url })
  const b = sc.repo({ url: srv.url })
  const h = a.create({ title: `restart ${signal}`, items: [] })
  for (let i = 0; i < 5; i++) h.change(d => d.items.push(`item ${i}`))
  await serverAcked(a, h)
  const hb = await findReady(b, h.url)
  await waitFor(() => handlesInSync(h, hb), 10_000)

  // the last change: "acknowledged" = B, connected through the server, has it
  h.change(d => {
    d.last = "written just before the stop"
  })
  await waitFor(() => handlesInSync(h, hb), 10_000, { message: "B to see A's last change" })
  const heads = headsOf(h)
  const content = toJS(h.doc())

  let exit
  if (signal === "SIGKILL") {
    // crash while the clients are still connected
    exit = await srv.stop("SIGKILL")
    assert.equal(exit.signal, "SIGKILL")
    await shutdownRepo(a)
    await shutdownRepo(b)
  } else {
    // every writer disconnects, then a clean shutdown; a raw client that is
    // still connected sees close 1001
    const watcher = await sc.raw(srv.url)
    await shutdownRepo(a)
    await shutdownRepo(b)
    exit = await srv.stop("SIGTERM")
    assert.equal(exit.code, 0, `exit after SIGTERM: ${JSON.stringify(exit)}\n${srv.stderr()}`)
    const { code } = await watcher.closed(5000)
    assert.equal(code, 1001, "connected peers see 1001 on shutdown")
  }
  await srv.restart()

  const c = sc.repo({ url: srv.url })
  const t0 = performance.now()
  const hc = await findReady(c, h.url)
  t.diagnostic(`fresh client found the doc after ${signal}+restart in ${(performance.now() - t0).toFixed(0)} ms`)
  assert.deepEqual(headsOf(hc), heads)
  assert.deepEqual(toJS(hc.doc()), content)
}

test("3a. a fresh client gets the doc after writers left and the server restarted (SIGTERM)", async t => {
  await restartScenario(t, "SIGTERM")
})

test("3b. a fresh client gets the doc after a SIGKILL once the change was acknowledged", async t => {
  await restartScenario(t, "SIGKILL")
})

test("4a. a never-created document is unavailable within 5 s", async t => {
  const sc = scope(t)
  const r = sc.repo({ url: shared.url })
  await repoConnected(r)
  const url = generateAutomergeUrl()
  const t0 = performance.now()
  await assert.rejects(withTimeout(r.find(url), 5000, "repo.find of a missing doc"), /unavailable/)
  const ms = performance.now() - t0
  t.diagnostic(`unavailable latency (connected client): ${ms.toFixed(1)} ms`)
  assert.ok(ms < 5000)

  // and from a cold start (connect + request)
  const r2 = sc.repo({ url: shared.url })
  const url2 = generateAutomergeUrl()
  const t1 = performance.now()
  await assert.rejects(withTimeout(r2.find(url2), 5000, "repo.find (cold)"), /unavailable/)
  t.diagnostic(`unavailable latency (cold start incl. connect): ${(performance.now() - t1).toFixed(1)} ms`)
})

test("4b. unavailable, then available: raw requester and stock handle get the doc pushed later (stock writer via import)", async t => {
  const sc = scope(t)
  const url = generateAutomergeUrl()
  const { documentId } = parseAutomergeUrl(url)

  // raw client asks first → doc-unavailable, keeps the connection open
  const rc = await sc.raw(shared.url)
  const rs = rawDocSync(rc, documentId)
  sc.defer(() => rs.stop())
  rs.start("request")
  const { msg: unav, skipped } = await rc.until(m => m.documentId === documentId, 5000, "doc-unavailable")
  assert.equal(unav.type, "doc-unavailable", `first answer: ${JSON.stringify(unav)}`)
  assert.equal(unav.targetId, rc.peerId)
  assert.deepEqual(skipped, [])

  // a stock client also finds it unavailable; its handle stays cached
  const u = sc.repo({ url: shared.url })
  await assert.rejects(withTimeout(u.find(url), 5000, "find"), /unavailable/)
  const hu = await withTimeout(u.find(url, { allowableStates: ["unavailable", "ready"] }), 5000, "find cached")
  assert.equal(hu.state, "unavailable")

  // a writer creates the document under exactly that ID
  const w = sc.repo({ url: shared.url })
  await repoConnected(w)
  const original = A.from({ created: "later", n: [1, 2, 3] })
  const hw = w.import(A.save(original), { docId: documentId })
  // 2.5.6: import({docId}) leaves the handle "loading"; doneLoading() marks it ready
  hw.doneLoading()
  await withTimeout(hw.whenReady(), 5000, "writer handle ready")
  const expected = headsOf(hw)

  // the raw requester gets a sync for the doc without asking again
  const { msg: pushed } = await rc.until(
    m => m.documentId === documentId && m.type === "sync",
    10_000,
    "sync pushed after the doc appeared"
  )
  assert.ok(pushed.data.length > 0)
  await rs.waitHeads(expected, 10_000)
  assert.equal(rs.arrivals[0].type, "sync")
  assert.equal(rs.arrivals[0].framesSentBefore, 1, "when the first sync arrived, only the original request had been sent")
  assert.deepEqual(toJS(rs.doc), { created: "later", n: [1, 2, 3] })

  // the stock handle goes unavailable → ready
  await withTimeout(hu.whenReady(["ready"]), 10_000, "stock handle unavailable → ready")
  await waitFor(() => sameHeads(headsOf(hu), expected), 10_000)
  assert.deepEqual(toJS(hu.doc()), toJS(hw.doc()))
})

test("4c. unavailable → ready on a stock handle when a raw client pushes the doc", async t => {
  const sc = scope(t)
  const url = generateAutomergeUrl()
  const { documentId } = parseAutomergeUrl(url)
  assert.ok(isValidDocumentId(documentId))

  const u = sc.repo({ url: shared.url })
  await assert.rejects(withTimeout(u.find(url), 5000, "find"), /unavailable/)
  const hu = await withTimeout(u.find(url, { allowableStates: ["unavailable", "ready"] }), 5000, "find cached")
  assert.equal(hu.state, "unavailable")

  const doc = A.change(A.from({ pushedBy: "raw" }), d => {
    d.second = 2
  })
  const rc = await sc.raw(shared.url)
  const rs = rawDocSync(rc, documentId, doc)
  sc.defer(() => rs.stop())
  rs.start("sync")
  await rs.waitTheyHaveOurs(10_000)

  await withTimeout(hu.whenReady(["ready"]), 10_000, "stock handle unavailable → ready")
  await waitFor(() => sameHeads(headsOf(hu), A.getHeads(doc)), 10_000)
  assert.deepEqual(toJS(hu.doc()), { pushedBy: "raw", second: 2 })
})

test("5a. ephemeral messages are relayed to other peers, not echoed to the sender", async t => {
  const sc = scope(t)
  const a = sc.repo({ url: shared.url })
  const b = sc.repo({ url: shared.url })
  const ha = a.create({ presence: true })
  await serverAcked(a, ha)
  const hb = await findReady(b, ha.url)
  await waitFor(() => handlesInSync(ha, hb), 10_000)

  const atA = []
  const atB = []
  ha.on("ephemeral-message", p => atA.push(p))
  hb.on("ephemeral-message", p => atB.push(p))

  ha.broadcast({ cursor: 5 })
  await waitFor(() => atB.length >= 1, 5000, { message: "B to receive A's ephemeral" })
  assert.equal(atB[0].senderId, a.peerId)
  assert.deepEqual(atB[0].message, { cursor: 5 })

  ha.broadcast({ cursor: 6 })
  await waitFor(() => atB.length >= 2, 5000, { message: "B to receive A's second ephemeral" })
  assert.deepEqual(atB[1].message, { cursor: 6 })

  // B answers; once A has B's message, any echo of A's own would have come too
  hb.broadcast({ from: "B" })
  await waitFor(() => atA.length >= 1, 5000, { message: "A to receive B's ephemeral" })
  assert.equal(atA.length, 1, `A got: ${JSON.stringify(atA.map(p => [p.senderId, p.message]))}`)
  assert.equal(atA[0].senderId, b.peerId)
  assert.deepEqual(atA[0].message, { from: "B" })
  assert.equal(atB.length, 2, "B got each of A's messages exactly once")
})

test("5b. raw ephemeral: duplicates delivered once, echo with a foreign senderId dropped", async t => {
  const sc = scope(t)
  const w = sc.repo({ url: shared.url })
  const hw = w.create({ eph: 1 })
  await serverAcked(w, hw)
  const documentId = hw.documentId
  const expected = headsOf(hw)

  const r1 = await sc.raw(shared.url, { peerId: randomId("rawA") })
  const r2 = await sc.raw(shared.url, { peerId: randomId("rawB") })
  for (const rc of [r1, r2]) {
    const s = rawDocSync(rc, documentId)
    sc.defer(() => s.stop())
    s.start("request")
    await s.waitHeads(expected, 10_000)
  }

  const eph = (rc, { sessionId, count, payload, senderId = rc.peerId }) =>
    rc.send({
      type: "ephemeral",
      senderId,
      targetId: rc.serverPeerId,
      documentId,
      sessionId,
      count,
      data: encode(payload),
    })
  const ephsAt = (rc, from) => rc.messages.filter(m => m.type === "ephemeral" && (!from || m.senderId === from))

  eph(r1, { sessionId: "sess-1", count: 1, payload: { n: 1 } })
  eph(r1, { sessionId: "sess-1", count: 1, payload: { n: 1 } }) // duplicate
  eph(r1, { sessionId: "sess-1", count: 2, payload: { n: 2 } })
  eph(r1, { sessionId: "sess-1", count: 1, payload: { n: 1 } }) // stale
  eph(r1, { sessionId: "sess-1", count: 3, payload: { n: 3 } }) // marker
  await r2.wait(() => ephsAt(r2, r1.peerId).some(m => m.count === 3), 5000, "marker ephemeral at r2")
  const got = ephsAt(r2, r1.peerId)
  assert.deepEqual(
    got.map(m => m.count),
    [1, 2, 3],
    "each (senderId, sessionId, count) delivered once, in order"
  )
  for (const m of got) {
    assert.equal(m.senderId, r1.peerId, "relay keeps the original senderId")
    assert.equal(m.sessionId, "sess-1")
    assert.equal(m.documentId, documentId)
    assert.equal(m.targetId, r2.peerId, "relay rewrites targetId")
    assert.deepEqual(decode(m.data), { n: m.count })
  }

  // r2 echoes r1's message with senderId = r1: must not reach r1
  eph(r2, { senderId: r1.peerId, sessionId: "sess-1", count: 4, payload: { echo: true } })
  // then a legitimate message from r2 serves as the marker
  eph(r2, { sessionId: "sess-2", count: 1, payload: { fromB: true } })
  await r1.wait(() => ephsAt(r1, r2.peerId).length >= 1, 5000, "r2's ephemeral at r1")
  assert.deepEqual(
    ephsAt(r1).map(m => [m.senderId, m.count]),
    [[r2.peerId, 1]],
    "r1 received only r2's own message, never an echo of its own"
  )
  assert.ok(r1.isOpen() && r2.isOpen())
})

test("6. one connection, 200 documents", async t => {
  const sc = scope(t)
  const a = sc.repo({ url: shared.url })
  const b = sc.repo({ url: shared.url })
  await repoConnected(a)
  const N = 200
  const t0 = performance.now()
  const handles = []
  for (let i = 0; i < N; i++) handles.push(a.create({ i, title: `doc ${i}`, tags: ["x", `t${i % 7}`] }))
  await Promise.all(handles.map(h => serverAcked(a, h, 60_000)))
  const upload = performance.now() - t0

  const t1 = performance.now()
  const found = await Promise.all(handles.map(h => findReady(b, h.url, 60_000)))
  const fetchMs = performance.now() - t1
  for (let i = 0; i < N; i++) {
    assert.deepEqual(headsOf(found[i]), headsOf(handles[i]), `heads of doc ${i}`)
    assert.deepEqual(toJS(found[i].doc()), { i, title: `doc ${i}`, tags: ["x", `t${i % 7}`] })
  }
  t.diagnostic(`200 docs: A create+upload (server acked) ${upload.toFixed(0)} ms; B find all ${fetchMs.toFixed(0)} ms`)
})

test("7. a 5 MB document", async t => {
  const sc = scope(t)
  const a = sc.repo({ url: shared.url })
  const b = sc.repo({ url: shared.url })
  await repoConnected(a)
  // 500 immutable strings × 10,240 chars of random base64 ≈ 5 MB of payload
  const items = []
  for (let i = 0; i < 500; i++) items.push(new A.ImmutableString(randomBytes(7680).toString("base64")))
  const t0 = performance.now()
  const h = a.create({ title: "big", items })
  const saved = A.save(h.doc()).length
  await serverAcked(a, h, 60_000)
  const upload = performance.now() - t0

  const t1 = performance.now()
  const hb = await findReady(b, h.url, 60_000)
  await waitFor(() => handlesInSync(h, hb), 60_000)
  const fetchMs = performance.now() - t1
  assert.deepEqual(headsOf(hb), headsOf(h))
  const want = toJS(h.doc())
  assert.deepEqual(toJS(hb.doc()), want)
  assert.equal(want.items.length, 500)
  assert.equal(want.items[0].length, 10240)

  // a fresh raw fetch: count the bytes of every frame received for it
  const rc = await sc.raw(shared.url)
  const framesBefore = rc.framesReceived
  const bytesBefore = rc.bytesReceived
  const rs = rawDocSync(rc, h.documentId)
  sc.defer(() => rs.stop())
  const t2 = performance.now()
  rs.start("request")
  await rs.waitHeads(headsOf(h), 60_000)
  const rawMs = performance.now() - t2
  assert.deepEqual(toJS(rs.doc), want)
  const frames = rc.framesReceived - framesBefore
  const bytes = rc.bytesReceived - bytesBefore
  t.diagnostic(
    `5 MB doc (5,120,000 B of strings, A.save = ${saved} B): upload+ack ${upload.toFixed(0)} ms, ` +
      `stock find ${fetchMs.toFixed(0)} ms, raw fetch ${rawMs.toFixed(0)} ms, ` +
      `${frames} frames / ${bytes} B received, ${rs.framesSent} frames sent`
  )
})

test("8a. a client reconnecting with the same peer ID keeps syncing", async t => {
  const sc = scope(t)
  const a1 = sc.repo({ url: shared.url, peerId: "peer-fixed" })
  const b = sc.repo({ url: shared.url })
  const h1 = a1.create({ v: 1 })
  await serverAcked(a1, h1)
  const hb = await findReady(b, h1.url)
  await waitFor(() => handlesInSync(h1, hb), 10_000)
  await shutdownRepo(a1)

  const a2 = sc.repo({ url: shared.url, peerId: "peer-fixed" })
  const h2 = await findReady(a2, h1.url)
  await waitFor(() => handlesInSync(h2, hb), 10_000)
  h2.change(d => {
    d.v = 2
    d.by = "a2"
  })
  await waitFor(() => handlesInSync(h2, hb) && hb.doc().v === 2, 10_000, { message: "B to see a2's edit" })
  hb.change(d => {
    d.fromB = true
  })
  await waitFor(() => handlesInSync(h2, hb) && h2.doc().fromB === true, 10_000, {
    message: "a2 to see B's edit",
  })
  assert.deepEqual(toJS(h2.doc()), { v: 2, by: "a2", fromB: true })
  assert.deepEqual(toJS(hb.doc()), toJS(h2.doc()))
})

test("8b. a second connection with the same peer ID replaces the first (4002) and syncs", async t => {
  const sc = scope(t)
  const w = sc.repo({ url: shared.url })
  const hw = w.create({ dup: 0 })
  await serverAcked(w, hw)

  const peerId = randomId("peer-dup")
  const rc = await sc.raw(shared.url, { peerId })
  const rs = rawDocSync(rc, hw.documentId)
  sc.defer(() => rs.stop())
  rs.start("request")
  await rs.waitHeads(headsOf(hw), 10_000)

  const d = sc.repo({ url: shared.url, peerId })
  const { code } = await rc.closed(10_000)
  assert.equal(code, 4002, "old connection closed with 4002")

  const hd = await findReady(d, hw.url)
  await waitFor(() => handlesInSync(hd, hw), 10_000)
  hd.change(x => {
    x.dup = 1
  })
  await waitFor(() => handlesInSync(hd, hw) && hw.doc().dup === 1, 10_000, { message: "writer sees the new connection's edit" })
  hw.change(x => {
    x.back = true
  })
  await waitFor(() => handlesInSync(hd, hw) && hd.doc().back === true, 10_000, {
    message: "new connection sees the writer's edit",
  })
  assert.deepEqual(toJS(hd.doc()), { dup: 1, back: true })
})

test("9. a presence flood at a stalled peer does not disconnect it; others are unaffected", async t => {
  const sc = scope(t)
  const srv = await sc.server({ args: ["--queue-bytes", "1048576"] })
  const w0 = sc.repo({ url: srv.url })
  const hw0 = w0.create({ slow: true })
  await serverAcked(w0, hw0)
  const documentId = hw0.documentId
  const heads0 = headsOf(hw0)
  // stock peers re-forward relayed ephemerals; keep them out of the flood
  await shutdownRepo(w0)

  const fast = await sc.raw(srv.url, { peerId: randomId("fast") })
  const slow = await sc.raw(srv.url, { peerId: randomId("slow") })
  for (const rc of [fast, slow]) {
    const s = rawDocSync(rc, documentId)
    sc.defer(() => s.stop())
    s.start("request")
    await s.waitHeads(heads0, 10_000)
  }
  // stop reading on the slow peer: TCP buffers fill, then the server's queue
  slow.ws._socket.pause()
  const payload = randomBytes(64 * 1024)
  let count = 0
  const flood = async () => {
    for (let i = 0; i < 100; i++) {
      fast.send({ type: "ephemeral", documentId, sessionId: "flood", count: ++count, data: encode({ payload }) })
    }
    // let the fast socket drain before sending more
    await waitFor(() => fast.ws.bufferedAmount === 0, 10_000)
  }
  const t0 = performance.now()
  // flood until the server says it gave up on the slow peer, or at most
  // ~40 MB (far more than loopback socket buffers plus an 8-message queue)
  await waitFor(
    async () => {
      await flood()
      return srv.log.some(l => /too slow|write timed out/.test(l)) || count >= 600
    },
    60_000,
    { interval: 0, message: "flooding the slow peer" }
  )
  const detectMs = performance.now() - t0
  slow.ws._socket.resume()
  t.diagnostic(`presence flood at a stalled peer: ${count} ephemerals of 64 KiB sent in ${detectMs.toFixed(0)} ms`)
  // Presence is lossy: it is rate limited at the sender and dropped for a
  // backed-up recipient, never a reason to disconnect it (the Go hub tests
  // cover the 4001 close for a sync backlog).
  await waitFor(() => slow.framesReceived > 0, 10_000, { message: "the stalled peer reads again" })
  assert.ok(slow.isOpen(), "the stalled peer is still connected")
  // the fast peer and stock clients carry on
  assert.ok(fast.isOpen(), "fast peer still connected")
  const w = sc.repo({ url: srv.url })
  const b = sc.repo({ url: srv.url })
  const hw = await findReady(w, hw0.url)
  const hb = await findReady(b, hw0.url)
  hw.change(d => {
    d.after = 1
  })
  await waitFor(() => handlesInSync(hw, hb) && hb.doc().after === 1, 10_000)
})

test("10. an idle room is evicted and reloaded from storage", async t => {
  const sc = scope(t)
  const srv = await sc.server({ args: ["--idle-timeout", "300ms", "--log-level", "debug"] })
  const a = sc.repo({ url: srv.url })
  const h = a.create({ idle: "evict me" })
  h.change(d => {
    d.second = true
  })
  await serverAcked(a, h)
  const heads = headsOf(h)
  const content = toJS(h.doc())
  await shutdownRepo(a)
  const evictions = () => srv.log.filter(l => /evict/i.test(l)).length
  await waitFor(() => evictions() >= 1, 10_000, { message: "server to log the room eviction (debug)" })
  const b = sc.repo({ url: srv.url })
  const hb = await findReady(b, h.url)
  assert.deepEqual(headsOf(hb), heads)
  assert.deepEqual(toJS(hb.doc()), content)
  // and it keeps syncing after the reload
  const c = sc.repo({ url: srv.url })
  const hc = await findReady(c, h.url)
  hb.change(d => {
    d.afterReload = 1
  })
  await waitFor(() => handlesInSync(hb, hc) && hc.doc().afterReload === 1, 10_000)
})
