// Bad input over raw frames. Throughout, a stock client B and a stock client C
// share the document `live` through the server and must keep syncing after
// every bad input. A second document `frozen` is never legitimately written
// after setup; its heads and content must be exactly what they were before.

import { test, before, after } from "node:test"
import assert from "node:assert/strict"
import { randomBytes } from "node:crypto"

import { isValidDocumentId } from "@automerge/automerge-repo"

import {
  A,
  scope,
  startServer,
  waitFor,
  withTimeout,
  serverAcked,
  findReady,
  makeRepo,
  shutdownRepo,
  rawClient,
  rawDocSync,
  headsOf,
  sameHeads,
  handlesInSync,
  toJS,
  encode,
  randomId,
} from "./helpers.mjs"

const MAX_FRAME = 1_048_576

let srv
let env // { b, c, hb, hc, live, frozen, frozenHeads, frozenContent }
const setupScope = scope(null)

before(async () => {
  srv = await setupScope.server({ args: ["--max-frame-bytes", String(MAX_FRAME)] })
  const w = makeRepo({ url: srv.url })
  try {
    const frozen = w.create({ frozen: true, items: ["a", "b", "c"], nested: { k: 1 } })
    frozen.change(d => {
      d.items.push("d")
    })
    const live = w.create({ live: true, edits: 0 })
    await serverAcked(w, frozen)
    await serverAcked(w, live)
    env = { frozenUrl: frozen.url, liveUrl: live.url }
    env.frozenId = frozen.documentId
    env.liveId = live.documentId
  } finally {
    await shutdownRepo(w)
  }

  // record the frozen doc through a fresh client
  const f = makeRepo({ url: srv.url })
  try {
    const hf = await findReady(f, env.frozenUrl)
    env.frozenHeads = headsOf(hf)
    env.frozenContent = toJS(hf.doc())
  } finally {
    await shutdownRepo(f)
  }

  env.b = setupScope.repo({ url: srv.url, retryInterval: 500 })
  env.c = setupScope.repo({ url: srv.url, retryInterval: 500 })
  env.hb = await findReady(env.b, env.liveUrl)
  env.hc = await findReady(env.c, env.liveUrl)
  await waitFor(() => handlesInSync(env.hb, env.hc), 10_000)
})

after(async () => {
  await setupScope.dispose()
})

let edits = 0
/** C edits `live`; B must see it. Then B edits; C must see it. */
async function stillSyncing(tag) {
  const { hb, hc } = env
  assert.equal(srv.exit, undefined, `server exited: ${JSON.stringify(srv.exit)}\n${srv.stderr()}`)
  const n = ++edits
  hc.change(d => {
    d.edits = n
    d[`c_${tag}`] = n
  })
  await waitFor(() => handlesInSync(hb, hc) && hb.doc()[`c_${tag}`] === n, 10_000, {
    message: `B to see C's edit after "${tag}"`,
  })
  hb.change(d => {
    d[`b_${tag}`] = n
  })
  await waitFor(() => handlesInSync(hb, hc) && hc.doc()[`b_${tag}`] === n, 10_000, {
    message: `C to see B's edit after "${tag}"`,
  })
}

/** A request for `live` on rc gets a sync answer; returns the messages skipped before it. */
async function requestAnswered(rc, documentId = env.liveId) {
  const [, data] = A.generateSyncMessage(A.init(), A.initSyncState())
  rc.send({ type: "request", documentId, data })
  const { msg, skipped } = await rc.until(
    m => m.documentId === documentId && (m.type === "sync" || m.type === "doc-unavailable"),
    5000,
    `answer to a request for ${documentId}`
  )
  assert.equal(msg.type, "sync", `answer: ${JSON.stringify(msg)}`)
  assert.equal(msg.targetId, rc.peerId)
  return skipped
}

const strip = ms => ms.map(({ __at, __size, data, ...m }) => m)

// ---------------------------------------------------------------------------

test("malformed CBOR → close 1007 for that connection only", async t => {
  const sc = scope(t)
  const bystander = await sc.raw(srv.url)
  const cases = {
    "truncated map": Buffer.from("b90004647479", "hex"),
    "reserved additional info 0x1c": Buffer.from([0x1c]),
    "stray break 0xff": Buffer.from([0xff]),
    "text string longer than the frame": Buffer.from([0xa1, 0x78, 0xff, 0x61]),
  }
  for (const [name, bytes] of Object.entries(cases)) {
    const rc = await sc.raw(srv.url)
    rc.sendRaw(bytes)
    const { code } = await rc.closed(5000)
    assert.equal(code, 1007, `${name}: close code`)
    const replies = strip(rc.messages.slice(1))
    t.diagnostic(`${name}: close ${code}, messages before close: ${JSON.stringify(replies)}`)
  }
  // well-formed CBOR that is not a message map: the server may answer error or close 1007, but must survive
  for (const [name, bytes] of Object.entries({ "CBOR null": Buffer.from([0xf6]), "CBOR array": encode([1, 2]) })) {
    const rc = await sc.raw(srv.url)
    rc.sendRaw(bytes)
    await rc.wait(r => r.closeInfo || r.messages.length > 1, 5000, `reaction to ${name}`)
    const reaction = rc.closeInfo
      ? `close ${rc.closeInfo.code}`
      : `message ${JSON.stringify(strip([rc.messages[1]]))}`
    t.diagnostic(`${name}: ${reaction}`)
    assert.ok(
      rc.closeInfo?.code === 1007 || rc.messages[1]?.type === "error",
      `${name}: expected close 1007 or an error message, got ${reaction}`
    )
  }
  assert.ok(bystander.isOpen(), "bystander connection still open")
  assert.deepEqual(await requestAnswered(bystander), [])
  await stillSyncing("malformed")
})

test("a text frame → error message, connection still usable", async t => {
  const sc = scope(t)
  const rc = await sc.raw(srv.url)
  rc.sendRaw("hello, I am text")
  const m = await rc.next(5000)
  assert.equal(m.type, "error", `got ${JSON.stringify(strip([m]))}`)
  assert.equal(typeof m.message, "string")
  t.diagnostic(`error message: ${JSON.stringify(m.message)}`)
  assert.ok(rc.isOpen())
  assert.deepEqual(await requestAnswered(rc), [])
  assert.ok(rc.isOpen())
  await stillSyncing("text")
})

test("unknown message types are ignored, connection still usable", async t => {
  const sc = scope(t)
  const rc = await sc.raw(srv.url)
  rc.send({ type: "bogus-type", senderId: rc.peerId, targetId: rc.serverPeerId, documentId: env.liveId })
  rc.send({ type: "leave", senderId: rc.peerId })
  rc.send({ type: "subduction-connection", data: new Uint8Array([1, 2, 3]) })
  rc.send({ type: "remote-subscription-change", add: [crypto.randomUUID()], remove: undefined })
  rc.send({
    type: "remote-heads-changed",
    documentId: env.liveId,
    newHeads: { [crypto.randomUUID()]: { heads: [], timestamp: Date.now() } },
  })
  const skipped = await requestAnswered(rc)
  assert.deepEqual(strip(skipped), [], "no reply to any unknown type")
  assert.ok(rc.isOpen())
  await stillSyncing("unknown")
})

function badChecksumId(id) {
  const alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
  for (const ch of alphabet) {
    const cand = id.slice(0, -1) + ch
    if (cand !== id && !isValidDocumentId(cand)) return cand
  }
  throw new Error("could not build a bad-checksum id")
}

test("invalid document IDs → error message and nothing else", async t => {
  const sc = scope(t)
  const rc = await sc.raw(srv.url)
  const [, data] = A.generateSyncMessage(A.init(), A.initSyncState())
  const bad = ["not-a-doc-id!", badChecksumId(env.liveId)]
  assert.ok(!isValidDocumentId(bad[1]))
  for (const documentId of bad) {
    for (const type of ["request", "sync"]) {
      rc.send({ type, documentId, data })
      const m = await rc.next(5000)
      assert.equal(m.type, "error", `${type} ${documentId}: got ${JSON.stringify(strip([m]))}`)
      t.diagnostic(`${type} ${JSON.stringify(documentId)} → error ${JSON.stringify(m.message)}`)
      assert.ok(rc.isOpen())
    }
  }
  assert.deepEqual(await requestAnswered(rc), [], "nothing else was sent (no doc-unavailable, no sync)")
  await stillSyncing("badid")
})

test("garbage sync data for a real document → error then close 1007; doc unchanged", async t => {
  const sc = scope(t)
  const payloads = [
    ["random bytes on frozen", env.frozenId, randomBytes(64)],
    ["0x42 header + junk on frozen", env.frozenId, Buffer.concat([Buffer.from([0x42]), randomBytes(40)])],
    ["0x42 header + junk on live", env.liveId, Buffer.concat([Buffer.from([0x42, 0x01]), randomBytes(200)])],
  ]
  for (const [name, documentId, data] of payloads) {
    const rc = await sc.raw(srv.url)
    rc.send({ type: "sync", documentId, data })
    const { code } = await rc.closed(5000)
    const msgs = strip(rc.messages.slice(1))
    t.diagnostic(`${name}: messages ${JSON.stringify(msgs)}, close ${code}`)
    assert.equal(code, 1007, `${name}: close code`)
    assert.equal(msgs.length, 1, `${name}: exactly one message before the close`)
    assert.equal(msgs[0].type, "error")
  }
  await stillSyncing("garbage")
})

test("a frame over --max-frame-bytes (2 MB vs 1 MiB) → close 1009", async t => {
  const sc = scope(t)
  const bystander = await sc.raw(srv.url)
  const rc = await sc.raw(srv.url)
  rc.send({ type: "sync", documentId: env.liveId, data: randomBytes(2 * 1024 * 1024) })
  const { code } = await rc.closed(10_000)
  assert.equal(code, 1009)
  assert.deepEqual(await requestAnswered(bystander), [])
  // a frame just under the limit is not rejected for its size
  const ok = await sc.raw(srv.url)
  ok.send({ type: "bogus-type", pad: randomBytes(MAX_FRAME - 1024) })
  assert.deepEqual(await requestAnswered(ok), [])
  assert.ok(ok.isOpen())
  await stillSyncing("oversize")
})

test("a message before join is dropped, and a later join works", async t => {
  const sc = scope(t)
  const rc = await sc.raw(srv.url, { join: false })
  const [, data] = A.generateSyncMessage(A.init(), A.initSyncState())
  rc.send({ type: "sync", senderId: rc.peerId, targetId: "anyone", documentId: env.liveId, data })
  rc.send({ type: "request", senderId: rc.peerId, targetId: "anyone", documentId: env.liveId, data })
  const peer = await rc.join()
  assert.equal(peer.type, "peer")
  assert.deepEqual(strip(rc.skippedBeforePeer), [], "no reply to the pre-join messages")
  assert.deepEqual(strip(await requestAnswered(rc)), [])
  await stillSyncing("prejoin")
})

test('join with supportedProtocolVersions ["2"] → error then close', async t => {
  const sc = scope(t)
  const rc = await sc.raw(srv.url, { join: false })
  rc.send({
    type: "join",
    senderId: rc.peerId,
    peerMetadata: { isEphemeral: true },
    supportedProtocolVersions: ["2"],
  })
  const m = await rc.next(5000)
  assert.equal(m.type, "error", `got ${JSON.stringify(strip([m]))}`)
  const { code, reason } = await rc.closed(5000)
  t.diagnostic(`error ${JSON.stringify(m.message)}; close ${code} ${JSON.stringify(reason)}`)
  assert.ok(!rc.messages.some(x => x.type === "peer"), "no peer message")
  await stillSyncing("version")
})

test("a sync whose senderId is not the connection's peer is dropped", async t => {
  const sc = scope(t)
  const rc = await sc.raw(srv.url)
  const rs = rawDocSync(rc, env.liveId)
  rs.start("request")
  await rs.waitHeads(headsOf(env.hb), 10_000)
  rs.stop() // never answer again: the evil change must not leave under rc's own ID

  const evil = A.change(A.clone(rs.doc), d => {
    d.evil = true
  })
  const [, msg] = A.generateSyncMessage(evil, rs.state)
  assert.ok(msg, "a sync message carrying the evil change")
  assert.equal(A.decodeSyncMessage(msg).changes.length, 1, "the message carries the change")

  // impersonate B (connected), then a peer that is not connected at all
  for (const senderId of [env.b.peerId, randomId("nobody")]) {
    rc.send({ type: "sync", senderId, targetId: rc.serverPeerId, documentId: env.liveId, data: msg })
  }
  // ordering marker: a legitimate request on the same connection
  const skipped = await requestAnswered(rc, env.frozenId)
  assert.deepEqual(
    strip(skipped).filter(m => m.documentId !== env.liveId),
    [],
    "no reply to the spoofed messages"
  )
  await stillSyncing("spoof")
  assert.equal(env.hb.doc().evil, undefined, "B never saw the spoofed change")
  assert.equal(env.hc.doc().evil, undefined, "C never saw the spoofed change")
  // the server's copy: a fresh raw fetch has B's heads exactly
  const rc2 = await sc.raw(srv.url)
  const rs2 = rawDocSync(rc2, env.liveId)
  sc.defer(() => rs2.stop())
  rs2.start("request")
  await rs2.waitHeads(headsOf(env.hb), 10_000)
  assert.equal(rs2.doc.evil, undefined)
})

test("nothing stored changed: fresh clients see the same docs, also after a restart", async t => {
  const sc = scope(t)
  const check = async label => {
    const f = sc.repo({ url: srv.url })
    const hf = await findReady(f, env.frozenUrl)
    assert.deepEqual(headsOf(hf), env.frozenHeads, `${label}: frozen heads`)
    assert.deepEqual(toJS(hf.doc()), env.frozenContent, `${label}: frozen content`)
    const hl = await findReady(f, env.liveUrl)
    await waitFor(() => sameHeads(headsOf(hl), liveHeads), 10_000, { message: `${label}: live heads` })
    assert.deepEqual(toJS(hl.doc()), liveContent, `${label}: live content`)
    assert.equal(hl.doc().evil, undefined)
    await shutdownRepo(f)
  }
  await waitFor(() => handlesInSync(env.hb, env.hc), 10_000)
  const liveHeads = headsOf(env.hb)
  const liveContent = toJS(env.hb.doc())
  await check("before restart")

  await shutdownRepo(env.b)
  await shutdownRepo(env.c)
  const exit = await srv.restart({ signal: "SIGTERM" })
  assert.equal(exit.code, 0, `SIGTERM exit: ${JSON.stringify(exit)}\n${srv.stderr()}`)
  await check("after restart")
})
