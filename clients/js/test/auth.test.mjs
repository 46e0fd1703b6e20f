// Access control: tokens on the WebSocket (?token=), refused tokens (the
// upgrade is accepted, then an error message and 4401/4403), read-only peers,
// expiry (4401), revocation (4403, persisted across restarts), and REST
// credentials, against the real binary with stock npm clients and raw CBOR
// frames.

import { test, before, after } from "node:test"
import assert from "node:assert/strict"
import { execFileSync, spawn } from "node:child_process"
import { createHmac, randomBytes } from "node:crypto"
import path from "node:path"
import { fileURLToPath } from "node:url"

import { generateAutomergeUrl, parseAutomergeUrl } from "@automerge/automerge-repo"

import {
  A, scope, startServer, tandemBinary, waitFor, withTimeout, findReady, repoConnected,
  rawDocSync, headsOf, sameHeads, handlesInSync, toJS, encode, decode, randomId, sleep, WebSocket,
} from "./helpers.mjs"

const SECRET = randomBytes(32).toString("hex") // 64 bytes
const ADMIN_KEY = `admin-${randomBytes(16).toString("hex")}`
const SERVER_ARGS = ["--token-secret", SECRET, "--admin-key", ADMIN_KEY]
const newDocId = () => parseAutomergeUrl(generateAutomergeUrl()).documentId
const nowS = () => Math.floor(Date.now() / 1000)

/** HS256 JWT minted in JS (for tokens the CLI will not make, e.g. expired). */
function jwt(claims, secret = SECRET) {
  const b64 = o => Buffer.from(JSON.stringify(o)).toString("base64url")
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`
}
/** A token minted by `tandem token` (HS256 via TANDEM_TOKEN_SECRET). */
function cliToken(...args) {
  const out = execFileSync(tandemBinary(), ["token", ...args], {
    env: { ...process.env, TANDEM_TOKEN_SECRET: SECRET }, timeout: 10_000,
  })
  return out.toString().trim()
}

let srv
before(async () => {
  srv = await startServer({ args: SERVER_ARGS })
})
after(async () => {
  await srv?.cleanup()
})

const wsUrl = (s, token) => (token ? `${s.url}/?token=${encodeURIComponent(token)}` : `${s.url}/`)

/** One REST call, bounded: {status, json, text}. auth: bearer credential or null. */
async function api(s, method, path, { body, auth = ADMIN_KEY } = {}) {
  const headers = {}
  if (auth) headers.authorization = `Bearer ${auth}`
  if (body !== undefined) headers["content-type"] = "application/json"
  const res = await fetch(`${s.httpUrl}${path}`, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(10_000),
  })
  const text = await res.text()
  let json
  try { json = JSON.parse(text) } catch { /* not JSON */ }
  return { status: res.status, json, text, headers: res.headers }
}
const content = async (s, id) => api(s, "GET", `/api/v1/docs/${id}/content`)
async function createDoc(s, value) {
  const r = await api(s, "POST", "/api/v1/docs", { body: value })
  assert.equal(r.status, 201, `POST /docs: ${r.text}`)
  return r.json // {id, url, heads}
}

/**
 * Open a WebSocket, send nothing, and report what the server did:
 * {status: 101, code, reason, messages} once it closed the connection, or
 * {status, text} if it refused the upgrade. A connection the server keeps
 * open (the token was accepted) times out.
 */
function refusal(url, ms = 5000) {
  return withTimeout(new Promise((resolve, reject) => {
    const ws = new WebSocket(url)
    const messages = []
    ws.on("unexpected-response", (req, res) => {
      let text = ""
      res.on("data", c => (text += c))
      res.on("end", () => { resolve({ status: res.statusCode, text }); req.destroy() })
    })
    ws.on("message", data => messages.push(decode(Buffer.from(data))))
    ws.on("close", (code, reason) => resolve({ status: 101, code, reason: reason.toString(), messages }))
    ws.on("error", e => reject(e))
  }), ms, `refusal of ${url.slice(0, 60)}`)
}

/** Assert that url's token is refused with one error message, then close code / reason. */
async function assertRefused(url, code, reason, what) {
  const r = await refusal(url)
  assert.equal(r.status, 101, `${what}: the upgrade is accepted (HTTP ${r.status} ${r.text ?? ""})`)
  assert.equal(r.code, code, `${what}: close ${r.code} ${r.reason}`)
  assert.equal(r.reason, reason, `${what}: close reason`)
  assert.equal(r.messages.length, 1, `${what}: one message before the close: ${JSON.stringify(r.messages)}`)
  assert.equal(r.messages[0].type, "error", JSON.stringify(r.messages[0]))
  return r.messages[0].message
}

/** Barrier: after the answer to a request for a fresh doc, everything sent before was processed. */
async function roundTrip(rc) {
  const id = newDocId()
  rc.send({ type: "request", documentId: id, data: A.generateSyncMessage(A.init(), A.initSyncState())[1] })
  await rc.wait(r => r.messages.some(m => m.documentId === id), 5000, `round trip ${id}`)
}

/** A V1 sync message that carries all of doc's changes (a peer that pushes unasked). */
function msgWithChanges(doc) {
  const first = A.decodeSyncMessage(A.generateSyncMessage(doc, A.initSyncState())[1])
  return A.encodeSyncMessage({ ...first, changes: A.getAllChanges(doc) })
}

/** Run auth-matrix-child.mjs with cfg; resolve {code, signal, stdout, stderr}. */
function runChild(cfg, ms = 60_000) {
  const child = spawn(process.execPath, [path.join(HERE, "auth-matrix-child.mjs"), JSON.stringify(cfg)], {
    stdio: ["ignore", "pipe", "pipe"],
  })
  let stdout = ""
  let stderr = ""
  child.stdout.on("data", c => (stdout += c))
  child.stderr.on("data", c => (stderr += c))
  return withTimeout(new Promise(resolve => {
    child.on("exit", (code, signal) => resolve({ code, signal, stdout, stderr }))
  }), ms, "auth matrix child").finally(() => child.kill("SIGKILL"))
}
const HERE = path.dirname(fileURLToPath(import.meta.url))

let ephCount = 0
const sendEph = (rc, documentId, payload) =>
  rc.send({ type: "ephemeral", documentId, sessionId: `s-${rc.peerId}`, count: ++ephCount, data: encode(payload) })
const ephsFrom = (rc, from, documentId) =>
  rc.messages.filter(m => m.type === "ephemeral" && m.senderId === from && m.documentId === documentId)

// ---------------------------------------------------------------------------
// 0. stock clients with every kind of credential, in a Node process of their own

test("0. authorization matrix of stock clients in a child process: it survives, refused ones see 4401/4403 and why", async t => {
  const doc = await createDoc(srv, { title: "matrix", n: 1 })
  const D = doc.id
  const revokedJti = randomId("rev")
  const revoked = cliToken("--doc", `${D}=write`, "--jti", revokedJti, "--ttl", "10m")
  const rv = await api(srv, "POST", "/api/v1/tokens/revoke", { body: { jti: revokedJti } })
  assert.equal(rv.status, 200, rv.text)
  const rows = [
    { name: "missing", token: null, close: 4401, reason: "token required", says: /token_required/ },
    { name: "malformed", token: "not-a-jwt", close: 4401, reason: "invalid token", says: /malformed/ },
    { name: "wrong signature", token: jwt({ docs: { [D]: "write" }, exp: nowS() + 3600 }, randomBytes(32).toString("hex")), close: 4401, reason: "invalid token", says: /signature/ },
    { name: "expired", token: jwt({ docs: { [D]: "write" }, exp: nowS() - 3600, jti: randomId("j") }), close: 4401, reason: "token expired", says: /expired/ },
    { name: "revoked", token: revoked, close: 4403, reason: "token revoked", says: /revoked/ },
    { name: "read", token: cliToken("--doc", `${D}=read`, "--sub", "matrix-reader"), edit: "byReader" },
    { name: "write", token: cliToken("--doc", `${D}=write`, "--sub", "matrix-writer"), edit: "byWriter" },
  ]
  const run = await runChild({
    docUrl: doc.url,
    clients: rows.map(r => ({ name: r.name, url: wsUrl(srv, r.token), edit: r.edit })),
  })
  t.diagnostic(`child exit ${run.code} ${run.signal ?? ""}; stdout ${run.stdout.trim()}`)
  assert.equal(run.signal, null, `the child was killed: ${run.stderr}`)
  assert.equal(run.code, 0, `the child process died (exit ${run.code}):\n${run.stderr}`)
  const { results } = JSON.parse(run.stdout.trim().split("\n").at(-1))
  assert.equal(results.length, rows.length)
  for (const row of rows) {
    const r = results.find(x => x.name === row.name)
    assert.ok(r, `no result for ${row.name}`)
    if (row.close) {
      assert.equal(r.peer, false, `${row.name}: the stock client was never served`)
      assert.equal(r.find, "unavailable", `${row.name}: find ${r.find}`)
      assert.ok(r.closes.length >= 1, `${row.name}: a close: ${JSON.stringify(r)}`)
      for (const c of r.closes) assert.deepEqual(c, { code: row.close, reason: row.reason }, `${row.name}: every close`)
      assert.ok(r.errors.length >= 1 && r.errors.every(m => row.says.test(m)), `${row.name}: the error message says why: ${JSON.stringify(r.errors)}`)
    } else {
      assert.equal(r.peer, true, `${row.name}: connected`)
      assert.deepEqual(r.closes, [], `${row.name}: not closed`)
      assert.equal(r.find, "ready", `${row.name}: find ${r.find}`)
      assert.deepEqual(r.content, { title: "matrix", n: 1 }, `${row.name}: the document`)
    }
  }
  // The writer's edit is stored; the reader's is not.
  await waitFor(async () => (await content(srv, D)).json?.byWriter === "write", 10_000, { message: "the writer's edit stored" })
  assert.equal((await content(srv, D)).json.byReader, undefined, "the reader's edit was not stored")
})

// ---------------------------------------------------------------------------
// 1. the matrix

const MATRIX = [
  // connect: upgrade accepted; read: may receive D; write: edits to D stored; create: new docs stored
  { name: "no token", token: () => null, connect: false, close: 4401, reason: "token required", says: /token_required/ },
  { name: "expired token", token: D => jwt({ docs: { [D]: "write" }, exp: nowS() - 3600, jti: randomId("j") }), connect: false, close: 4401, reason: "token expired", says: /expired/ },
  { name: "wrong-signature token", token: D => jwt({ docs: { [D]: "write" }, exp: nowS() + 3600 }, randomBytes(32).toString("hex")), connect: false, close: 4401, reason: "invalid token", says: /signature/ },
  { name: "other-doc token", token: () => cliToken("--doc", `${newDocId()}=write`), connect: true, read: false, write: false, create: false },
  { name: "read token", token: D => cliToken("--doc", `${D}=read`, "--sub", "reader"), connect: true, read: true, write: false, create: false },
  { name: "write token", token: D => cliToken("--doc", `${D}=write`), connect: true, read: true, write: true, create: false },
  { name: "wildcard write", token: () => cliToken("--doc", "*=write"), connect: true, read: true, write: true, create: true },
  { name: "wildcard read", token: () => cliToken("--doc", "*=read"), connect: true, read: true, write: false, create: false },
]

test("1. authorization matrix: credentials × {connect, request, edit/create, ephemeral}, raw frames + stock smoke", async t => {
  const watcherToken = cliToken("--doc", "*=write", "--sub", "watcher")
  for (const cred of MATRIX) {
    await t.test(cred.name, async t => {
      const sc = scope(t)
      const tag = cred.name.replace(/\W+/g, "_")
      const doc = await createDoc(srv, { title: `secret ${tag}`, n: 1 })
      const D = doc.id
      const original = (await content(srv, D)).json
      const token = cred.token(D)
      const url = wsUrl(srv, token)
      const unchanged = async what => assert.deepEqual((await content(srv, D)).json, original, `${cred.name}: ${what}: D unchanged`)

      // a write peer L on D watches for leaks of edits and ephemerals
      const L = await sc.raw(wsUrl(srv, watcherToken), { peerId: randomId("watch") })
      const ls = rawDocSync(L, D)
      sc.defer(() => ls.stop())
      ls.start("request")
      await ls.waitHeads(doc.heads, 10_000)

      // --- connect
      if (!cred.connect) {
        const said = await assertRefused(url, cred.close, cred.reason, cred.name)
        assert.match(said, cred.says)
        // stock smoke (a stock adapter, in this process: test 0. runs them
        // in a process of their own): the Repo never connects, never gets D
        const r = sc.repo({ url, retryInterval: 60_000 })
        await assert.rejects(findReady(r, doc.url, 5000), /unavailable|timed out/)
        assert.equal(r.adapter.remotePeerId, undefined, "stock repo never received peer")
        await unchanged("refused client")
        assert.ok(sameHeads(A.getHeads(ls.doc), doc.heads), "L unchanged")
        return
      }
      const rc = await sc.raw(url, { peerId: randomId(tag) })
      assert.equal(rc.peerMessage.type, "peer")

      // --- request D (existing) and M (missing)
      const s = rawDocSync(rc, D)
      sc.defer(() => s.stop())
      s.start("request")
      const M = newDocId()
      rc.send({ type: "request", documentId: M, data: A.generateSyncMessage(A.init(), A.initSyncState())[1] })
      if (cred.read) {
        await s.waitHeads(doc.heads, 10_000)
        assert.deepEqual(toJS(s.doc), original)
      } else {
        const { msg } = await rc.until(m => m.documentId === D, 5000, "answer for D")
        assert.equal(msg.type, "doc-unavailable", JSON.stringify(msg))
        const { msg: mm } = await rc.until(m => m.documentId === M, 5000, "answer for M")
        const shape = m => Object.keys(m).filter(k => !k.startsWith("__") && k !== "documentId").sort()
          .map(k => `${k}=${k === "targetId" || k === "senderId" ? typeof m[k] : JSON.stringify(m[k])}`)
        assert.deepEqual(shape(msg), shape(mm), "existing and missing doc answered alike")
      }

      // --- ephemeral both ways
      sendEph(rc, D, { from: tag })
      await roundTrip(rc)
      sendEph(L, D, { from: "watcher" })
      await roundTrip(L)
      await roundTrip(rc)
      assert.equal(ephsFrom(L, rc.peerId, D).length, cred.read ? 1 : 0, "L got rc's ephemeral iff rc may read D")
      assert.equal(ephsFrom(rc, L.peerId, D).length, cred.read ? 1 : 0, "rc got L's ephemeral iff rc may read D")

      // --- edit D
      const errorsBefore = rc.messages.filter(m => m.type === "error").length
      const gotError = () => rc.messages.filter(m => m.type === "error").length > errorsBefore
      if (cred.read && !cred.write) {
        // The server's sync messages tell the peer it is read-only (a flags
        // trailer, which the 3.5 core of rawDocSync understands): its core
        // then sends no changes at all.
        const toldReadOnly = rc.messages.filter(m => m.type === "sync" && m.documentId === D)
          .map(m => A.decodeSyncMessage(m.data).supportedCapabilities ?? [])
        assert.ok(toldReadOnly.length > 0 && toldReadOnly.every(c => c.includes("read-only")),
          `every sync message for D says read-only: ${JSON.stringify(toldReadOnly)}`)
        s.doc = A.change(s.doc, d => { d.edited = tag })
        const [state, m] = A.generateSyncMessage(s.doc, s.state)
        s.state = state
        if (m) {
          assert.equal(A.decodeSyncMessage(m).changes.length, 0, "a peer told it is read-only sends no changes")
          rc.send({ type: "sync", documentId: D, data: m })
        }
        await roundTrip(rc)
        assert.ok(!gotError(), "nothing dropped, nothing to warn about")
        // A core that ignores the flags (older ones do) sends its changes
        // anyway: they are dropped, and the peer is told once.
        rc.send({ type: "sync", documentId: D, data: msgWithChanges(s.doc) })
      } else if (cred.read) {
        s.doc = A.change(s.doc, d => { d.edited = tag })
        s.sendNext("sync")
      } else {
        rc.send({ type: "sync", documentId: D, data: msgWithChanges(A.change(A.init(), d => { d.edited = tag })) })
      }
      if (cred.write) {
        await waitFor(async () => (await content(srv, D)).json?.edited === tag, 5000, { message: "edit stored" })
        await waitFor(() => ls.doc.edited === tag, 5000, { message: "edit relayed to L" })
      } else {
        if (cred.read) {
          await rc.wait(r => r.messages.filter(m => m.type === "error").length > errorsBefore, 5000, "read-only error")
          const err = rc.messages.filter(m => m.type === "error").at(-1)
          assert.match(err.message, /read-only/)
          assert.ok(err.message.includes(D), err.message)
        } else {
          await rc.wait(r => r.messages.filter(m => m.documentId === D).length >= 2, 5000, "second doc-unavailable")
        }
        await roundTrip(rc)
        await roundTrip(L)
        await unchanged("denied edit")
        assert.ok(sameHeads(A.getHeads(ls.doc), doc.heads), "denied edit not relayed to L")
        assert.equal(ls.doc.edited, undefined)
      }

      // --- create N with changes
      const N = newDocId()
      rc.send({ type: "sync", documentId: N, data: msgWithChanges(A.from({ created: tag })) })
      await rc.wait(r => r.messages.some(m => m.documentId === N || (m.type === "error" && m.message?.includes(N))), 5000, "answer for N")
      await roundTrip(rc)
      if (cred.create) {
        await waitFor(async () => (await content(srv, N)).json?.created === tag, 5000, { message: "created doc stored" })
      } else {
        const r = await content(srv, N)
        assert.equal(r.status, 404, `denied create of N stored? ${r.status} ${r.text}`)
      }

      // --- nothing about D leaked to a peer that may not read it
      if (!cred.read) {
        const leaks = rc.messages.filter(m => m.documentId === D && m.type !== "doc-unavailable")
        assert.deepEqual(leaks.map(m => m.type), [], "no sync/ephemeral for D")
        assert.equal(A.getHeads(s.doc).length, 0)
      }

      // --- stock smoke
      const r = sc.repo({ url, retryInterval: 60_000 })
      await repoConnected(r)
      const want = (await content(srv, D)).json
      if (!cred.read) {
        await assert.rejects(withTimeout(r.find(doc.url), 5000, "stock find"), /unavailable/)
      } else {
        const h = await findReady(r, doc.url, 10_000)
        assert.deepEqual(toJS(h.doc()), want)
        if (cred.write) {
          h.change(d => { d.stock = tag })
          await waitFor(async () => (await content(srv, D)).json?.stock === tag, 5000, { message: "stock edit stored" })
        }
      }
      const hc = r.create({ stockCreated: tag })
      if (cred.create) {
        await waitFor(async () => (await content(srv, hc.documentId)).status === 200, 5000, { message: "stock create stored" })
      } else {
        await sleep(750) // grace window: absence cannot be awaited
        assert.equal((await content(srv, hc.documentId)).status, 404, "denied stock create not stored")
      }
      if (!cred.write) await unchanged("end of row")
      t.diagnostic(`raw ${cred.name} received: ${rc.messages.map(m => m.type + (m.documentId === D ? "(D)" : m.documentId === N ? "(N)" : "")).join(", ")}`)
    })
  }
})

// ---------------------------------------------------------------------------

test("2. read-only stock peer: told so by the flags trailer, it never sends its edits; nothing is stored or relayed, the exchange is bounded; it still gets others' edits", async t => {
  const sc = scope(t)
  const doc = await createDoc(srv, { title: "ro", n: 1 })
  const D = doc.id
  const W = sc.repo({ url: wsUrl(srv, cliToken("--doc", `${D}=write`)) })
  const X = sc.repo({ url: wsUrl(srv, cliToken("--doc", "*=write")) })
  const R = sc.repo({ url: wsUrl(srv, cliToken("--doc", `${D}=read`, "--sub", "reader")) })
  const [hw, hx, hr] = [await findReady(W, doc.url), await findReady(X, doc.url), await findReady(R, doc.url)]
  await waitFor(() => handlesInSync(hw, hx, hr), 10_000)

  // count frames both ways on R's socket
  const sock = R.adapter.socket
  const frames = { in: [], out: 0, sent: [] }
  sock.on("message", data => frames.in.push({ at: Date.now(), msg: decode(Buffer.from(data)) }))
  const origSend = sock.send.bind(sock)
  sock.send = (data, ...a) => {
    frames.out++
    frames.sent.push(decode(Buffer.from(data)))
    return origSend(data, ...a)
  }
  await sleep(300) // let any trailing traffic of the initial sync finish

  const window = async (label, edit) => {
    const [in0, out0, t0] = [frames.in.length, frames.out, Date.now()]
    edit()
    await sleep(2000)
    const got = frames.in.slice(in0)
    const res = { in: got.length, out: frames.out - out0, types: got.map(f => f.msg.type) }
    t.diagnostic(`${label}: 2 s after the read-only edit: ${res.in} frames in ${JSON.stringify(res.types)}, ${res.out} out (t0=${t0})`)
    assert.ok(res.in + res.out < 10, `exchange with the read-only peer is bounded: ${JSON.stringify(res)}`)
    return res
  }
  await window("edit 1", () => hr.change(d => { d.byReader = "x" }))
  await window("edit 2", () => hr.change(d => { d.byReader2 = "y" }))
  // The stock 3.5 core, told it is read-only, sent no change: nothing was
  // dropped, so there was nothing to warn about either.
  const sentSyncs = frames.sent.filter(m => m.type === "sync")
  assert.ok(sentSyncs.length > 0, "R kept syncing")
  assert.deepEqual(sentSyncs.map(m => A.decodeSyncMessage(m.data).changes.length).filter(n => n > 0), [], "R sent no changes")
  const errors = frames.in.filter(f => f.msg.type === "error")
  assert.deepEqual(errors.map(f => f.msg.message), [], "no read-only error: nothing was dropped")
  assert.equal(R.adapter.socket, sock, "R was not disconnected")

  assert.deepEqual((await content(srv, D)).json, { title: "ro", n: 1 }, "server did not store the read peer's edit")
  assert.ok(sameHeads(headsOf(hw), doc.heads) && sameHeads(headsOf(hx), doc.heads), "W and X did not get it")
  assert.equal(hw.doc().byReader, undefined)
  assert.equal(hx.doc().byReader, undefined)

  // R still receives others' edits
  hw.change(d => { d.n = 2 })
  await waitFor(() => hr.doc().n === 2 && hx.doc().n === 2, 10_000, { message: "R and X to get W's edit" })
  const told = frames.in.filter(f => f.msg.type === "sync").map(f => A.decodeSyncMessage(f.msg.data).supportedCapabilities ?? [])
  assert.ok(told.length > 0 && told.every(c => c.includes("read-only")), `every sync message to R says read-only: ${JSON.stringify(told)}`)
  assert.equal(hr.doc().byReader, "x", "R keeps its local (unshared) edit")
  await waitFor(async () => (await content(srv, D)).json?.n === 2, 5000)
  assert.deepEqual((await content(srv, D)).json, { title: "ro", n: 2 })
  assert.equal(hx.doc().byReader, undefined)
})

// ---------------------------------------------------------------------------

test("3a. expiry closes the connection with 4401 at exp", async t => {
  const sc = scope(t)
  const doc = await createDoc(srv, { exp: true })
  const exp = nowS() + 3 // at least 2 s ahead
  const token = jwt({ docs: { [doc.id]: "write" }, exp, jti: randomId("j") })
  const rc = await sc.raw(wsUrl(srv, token))
  const s = rawDocSync(rc, doc.id)
  sc.defer(() => s.stop())
  s.start("request")
  await s.waitHeads(doc.heads, 5000)
  const { code, at } = await rc.closed(8000)
  const delta = at - exp * 1000
  t.diagnostic(`close ${code} at exp${delta >= 0 ? "+" : ""}${delta} ms`)
  assert.equal(code, 4401)
  assert.ok(delta >= -500 && delta <= 1500, `closed at exp${delta} ms`)
  assert.ok(rc.messages.some(m => m.type === "error" && /expired/.test(m.message)), "an error says why")

})

// The verifier has 30 s of leeway for REST calls; a connection cannot start
// at or after exp, so a token that expired seconds ago is refused at once.
test("3b. a token that expired 2 s ago is refused at once: error, then 4401", async () => {
  const doc = await createDoc(srv, { exp: "b" })
  const token = jwt({ docs: { [doc.id]: "write" }, exp: nowS() - 2, jti: randomId("j") })
  const said = await assertRefused(wsUrl(srv, token), 4401, "token expired", "token expired 2 s ago")
  assert.match(said, /expired/)
})

test("3c. a revoked token stays refused after its exp, once revocations are pruned", async () => {
  const exp = nowS() + 1
  const jti = randomId("short")
  const token = jwt({ docs: { "*": "write" }, exp, jti })
  const rv = await api(srv, "POST", "/api/v1/tokens/revoke", { body: { jti, expires_at: new Date(exp * 1000).toISOString() } })
  assert.equal(rv.status, 200, rv.text)
  await assertRefused(wsUrl(srv, token), 4403, "token revoked", "right after the revocation")
  await sleep(exp * 1000 - Date.now() + 500)
  // any later revocation prunes records whose expires_at has passed
  assert.equal((await api(srv, "POST", "/api/v1/tokens/revoke", { body: { jti: randomId("other") } })).status, 200)
  // refused still: as revoked, or (the revocation pruned) as expired
  const r = await refusal(wsUrl(srv, token))
  assert.equal(r.status, 101)
  assert.ok([4401, 4403].includes(r.code), `revoked token accepted again ${Date.now() - exp * 1000} ms after exp (close ${r.code} ${r.reason})`)
  assert.equal(r.messages[0]?.type, "error")
})

// ---------------------------------------------------------------------------

test("4. revocation: by document (4403 at once, persisted across restart) and by jti", async t => {
  const sc = scope(t)
  const s4 = await sc.server({ args: SERVER_ARGS })
  const doc = await createDoc(s4, { rev: 1 })
  const D = doc.id
  const tok1 = cliToken("--doc", `${D}=write`, "--jti", "jti-doc", "--ttl", "10m")
  const tok2 = cliToken("--doc", "*=read", "--jti", "jti-two", "--ttl", "10m")
  const tok3 = cliToken("--doc", `${D}=write`, "--jti", "jti-idle", "--ttl", "10m") // never live: stays valid

  const c1 = await sc.raw(wsUrl(s4, tok1))
  const s1 = rawDocSync(c1, D)
  sc.defer(() => s1.stop())
  s1.start("request")
  await s1.waitHeads(doc.heads, 5000)
  const c2 = await sc.raw(wsUrl(s4, tok2)) // connected, not in D's room

  const t0 = Date.now()
  const rv = await api(s4, "POST", `/api/v1/docs/${D}/peers/revoke`)
  assert.equal(rv.status, 200, rv.text)
  assert.deepEqual(rv.json, { disconnected: 1, revoked_tokens: ["jti-doc"] })
  const { code } = await c1.closed(1000)
  t.diagnostic(`doc revoke: close ${code} ${c1.closeInfo.at - t0} ms after the POST`)
  assert.equal(code, 4403)
  assert.ok(c2.isOpen(), "a peer outside the document stays connected")
  assert.match(await assertRefused(wsUrl(s4, tok1), 4403, "token revoked", "jti-doc"), /revoked/)

  // by jti
  const expiresAt = new Date(Date.now() + 10 * 60_000).toISOString()
  const rj = await api(s4, "POST", "/api/v1/tokens/revoke", { body: { jti: "jti-two", expires_at: expiresAt } })
  assert.equal(rj.status, 200, rj.text)
  assert.equal(rj.json.disconnected, 1)
  assert.equal((await c2.closed(1000)).code, 4403)
  await assertRefused(wsUrl(s4, tok2), 4403, "token revoked", "jti-two")

  // both revocations survive a restart; an unrelated token still works
  await s4.restart()
  for (const [name, tok] of [["jti-doc", tok1], ["jti-two", tok2]]) {
    assert.match(await assertRefused(wsUrl(s4, tok), 4403, "token revoked", `${name} after restart`), /token_revoked/)
  }
  const c3 = await sc.raw(wsUrl(s4, tok3))
  const s3 = rawDocSync(c3, D)
  sc.defer(() => s3.stop())
  s3.start("request")
  await s3.waitHeads(doc.heads, 5000)
})

// ---------------------------------------------------------------------------

test("5. REST credentials: 401 / 403 / 200; /healthz and /readyz open", async t => {
  const doc = await createDoc(srv, { rest: 1 })
  const routes = [["GET", "/api/v1/docs"], ["GET", `/api/v1/docs/${doc.id}/content`]]
  const cases = [
    ["no header", null, 401, "unauthorized"],
    ["wrong key", "not-the-key", 401, "unauthorized"],
    ["expired admin token", jwt({ admin: true, exp: nowS() - 3600 }), 401, "unauthorized"],
    ["non-admin token", cliToken("--doc", "*=write"), 403, "forbidden"],
    ["admin key", ADMIN_KEY, 200],
    ["admin token", cliToken("--admin", "--ttl", "5m"), 200],
  ]
  for (const [method, path] of routes) {
    for (const [name, auth, status, code] of cases) {
      const r = await api(srv, method, path, { auth })
      assert.equal(r.status, status, `${name} ${method} ${path}: ${r.status} ${r.text}`)
      if (code) {
        assert.equal(r.json?.error?.code, code, `${name}: ${r.text}`)
        assert.match(r.headers.get("content-type"), /application\/json/)
      }
    }
  }
  // a revoked admin token is refused
  const revokedAdmin = cliToken("--admin", "--ttl", "5m", "--jti", randomId("adm"))
  const jti = JSON.parse(Buffer.from(revokedAdmin.split(".")[1], "base64url")).jti
  assert.equal((await api(srv, "GET", "/api/v1/docs", { auth: revokedAdmin })).status, 200)
  assert.equal((await api(srv, "POST", "/api/v1/tokens/revoke", { body: { jti } })).status, 200)
  const r = await api(srv, "GET", "/api/v1/docs", { auth: revokedAdmin })
  assert.equal(r.status, 401, `revoked admin token: ${r.status} ${r.text}`)
  for (const path of ["/healthz", "/readyz"]) {
    const r = await api(srv, "GET", path, { auth: null })
    assert.equal(r.status, 200, `${path}: ${r.text}`)
  }
})
