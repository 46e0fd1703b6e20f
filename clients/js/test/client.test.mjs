// The @tandem-sync/client package's connect(), against the real binary:
// a stock Repo over the stock WebSocket adapter, the token in ?token=,
// refreshed from a provider on 4401, "needs-token" without one, and a stop on
// 4403. The package is built from src/ first (scripts/build.mjs).

import { test, before, after } from "node:test"
import assert from "node:assert/strict"
import { createHmac, randomBytes } from "node:crypto"

import { buildPackage } from "../scripts/build.mjs"
import {
  scope, startServer, waitFor, findReady, handlesInSync, sleep, Repo, shutdownRepo,
} from "./helpers.mjs"

const SECRET = randomBytes(32).toString("hex")
const ADMIN_KEY = `admin-${randomBytes(16).toString("hex")}`
const nowS = () => Math.floor(Date.now() / 1000)

/** An HS256 token the server accepts (its secret is SECRET). */
function jwt(claims, secret = SECRET) {
  const b64 = o => Buffer.from(JSON.stringify(o)).toString("base64url")
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`
  return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`
}
const writeToken = (ttlS = 3600, extra = {}) =>
  jwt({ docs: { "*": "write" }, exp: nowS() + ttlS, jti: randomBytes(8).toString("hex"), sub: "test", ...extra })

let pkg
let open // a server without credentials
let secured // a server with tokens and an admin key
before(async () => {
  await buildPackage()
  pkg = await import("../dist/index.js")
  open = await startServer()
  secured = await startServer({ args: ["--token-secret", SECRET, "--admin-key", ADMIN_KEY] })
})
after(async () => {
  await open?.cleanup()
  await secured?.cleanup()
})

/** connect() with cleanup, and a record of the connection's events. */
function client(sc, opts) {
  const repo = pkg.connect({ retryInterval: 300, ...opts })
  const events = []
  for (const name of ["status", "close", "expired", "revoked", "server-error", "token-error"]) {
    repo.tandem.on(name, e => events.push({ name, e }))
  }
  sc.defer(() => shutdownRepo(repo))
  return { repo, events, conn: repo.tandem }
}
const statuses = events => events.filter(x => x.name === "status").map(x => x.e)

test("connect() returns a stock Repo that syncs with stock clients through Tandem", async t => {
  const sc = scope(t)
  const { repo, conn, events } = client(sc, { url: open.httpUrl }) // http:// works too
  assert.ok(repo instanceof Repo, "a stock automerge-repo Repo")
  const h = repo.create({ text: "hello" })
  await waitFor(() => conn.status === "online", 20_000, { message: "online" })
  await waitFor(() => conn.isSaved(h), 20_000, { message: "server advertised our heads" })

  // a stock client (stock Repo and adapter, no package) finds it and edits
  const other = sc.repo({ url: open.url })
  const h2 = await findReady(other, h.url)
  assert.equal(h2.doc().text, "hello")
  h2.change(d => {
    d.text += ", world"
  })
  await waitFor(() => h.doc().text === "hello, world", 20_000, { message: "stock client's edit arrives" })
  await waitFor(() => handlesInSync(h, h2), 20_000)
  assert.ok(conn.serverPeerId, "the server's peer ID is known")
  assert.deepEqual(conn.serverHeads(h), h.heads())
  assert.deepEqual(statuses(events).slice(-1), ["online"])
  assert.equal(events.filter(x => x.name === "close").length, 0, "no close so far")

  await repo.shutdown()
  assert.equal(conn.status, "closed")
})

test("the package resolves by its name through package.json exports (ESM and types)", async () => {
  const byName = await import("@tandem-sync/client")
  assert.equal(byName.connect, pkg.connect, "the same module as dist/index.js")
  const slim = await import("@tandem-sync/client/slim")
  assert.equal(typeof slim.initializeWasm, "function")
  assert.equal(slim.TandemApi, pkg.TandemApi)
  const { readFileSync, existsSync } = await import("node:fs")
  const manifest = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
  assert.equal(manifest.name, "@tandem-sync/client")
  for (const entry of Object.values(manifest.exports).filter(e => typeof e === "object")) {
    assert.ok(existsSync(new URL(`../${entry.types}`, import.meta.url)), `${entry.types} is built`)
    assert.ok(existsSync(new URL(`../${entry.import}`, import.meta.url)), `${entry.import} is built`)
  }
})

test("socketUrl puts the token in ?token= and keeps the path", () => {
  assert.equal(pkg.socketUrl("http://127.0.0.1:3030", "a.b.c"), "ws://127.0.0.1:3030/?token=a.b.c")
  assert.equal(pkg.socketUrl("https://sync.example.com/sync?x=1", "t+/="), "wss://sync.example.com/sync?x=1&token=t%2B%2F%3D")
  assert.equal(pkg.socketUrl("ws://h:1/"), "ws://h:1/")
  assert.throws(() => pkg.socketUrl("ftp://h/"), TypeError)
})

test("close codes map to actions; the codes are the Go ones", () => {
  const C = pkg.CloseCode
  assert.equal(C.TokenExpired, 4401)
  assert.equal(C.Revoked, 4403)
  assert.equal(pkg.closeAction(C.TokenExpired), "refresh-token")
  assert.equal(pkg.closeAction(C.Revoked), "stop")
  assert.equal(pkg.closeAction(C.Replaced), "replaced")
  assert.equal(pkg.closeAction(C.ProtocolError), "fix-client")
  assert.equal(pkg.closeAction(C.PeerIDInUse), "fix-client")
  for (const code of [C.GoingAway, C.SlowConsumer, C.DeadPeer, C.TryAgainLater, 1006]) {
    assert.equal(pkg.closeAction(code), "reconnect", `code ${code}`)
  }
  assert.equal(pkg.closeCodeName(4401), "TokenExpired")
  assert.equal(pkg.closeCodeName(1006), undefined)
})

test("with a token, the client syncs on a server that requires one", async t => {
  const sc = scope(t)
  const { repo, conn } = client(sc, { url: secured.url, token: writeToken() })
  const h = repo.create({ text: "with a token" })
  await waitFor(() => conn.isSaved(h), 20_000, { message: "saved on the secured server" })
  const api = new pkg.TandemApi({ baseUrl: secured.httpUrl, credentials: ADMIN_KEY })
  assert.deepEqual(await api.getContent(h.documentId), { text: "with a token" })
  assert.equal(pkg.accessTo(conn.token, h.documentId), "write")
})

test("a token provider is asked again after 4401 and the client keeps syncing", async t => {
  const sc = scope(t)
  const reasons = []
  const { repo, conn, events } = client(sc, {
    url: secured.url,
    // short-lived tokens: the server closes each connection at exp with 4401
    tokenProvider: async ({ reason }) => {
      reasons.push(reason)
      return writeToken(4)
    },
  })
  const h = repo.create({ text: "a" })
  await waitFor(() => conn.isSaved(h), 20_000, { message: "first save" })
  await waitFor(() => events.some(x => x.name === "expired"), 30_000, { message: "a 4401 close" })
  const expired = events.find(x => x.name === "expired").e
  assert.equal(expired.code, 4401)
  assert.equal(expired.action, "refresh-token")
  assert.equal(expired.name, "TokenExpired")
  assert.equal(expired.willRefresh, true)
  await waitFor(() => reasons.includes("expired") && conn.status === "online", 30_000, {
    message: "reconnected with a fresh token",
  })
  assert.equal(reasons[0], "initial")

  // edits still flow both ways after the refresh
  h.change(d => {
    d.text += "b"
  })
  await waitFor(() => conn.isSaved(h), 30_000, { message: "saved after the refresh" })
  const api = new pkg.TandemApi({ baseUrl: secured.httpUrl, credentials: ADMIN_KEY })
  await waitFor(async () => (await api.getContent(h.documentId)).text === "ab", 30_000)
  assert.ok(!events.some(x => x.name === "revoked"))
})

test("without a provider, 4401 means needs-token until setToken", async t => {
  const sc = scope(t)
  const { repo, conn, events } = client(sc, { url: secured.url, token: writeToken(3) })
  const h = repo.create({ text: "x" })
  await waitFor(() => conn.isSaved(h), 20_000, { message: "saved" })
  await waitFor(() => conn.status === "needs-token", 30_000, { message: "needs-token after exp" })
  const expired = events.find(x => x.name === "expired").e
  assert.equal(expired.code, 4401)
  assert.equal(expired.willRefresh, false)
  // it does not reconnect with the dead token (many retry intervals later)
  await sleep(2000)
  assert.equal(conn.status, "needs-token")
  assert.equal(conn.adapter.socket, undefined, "no socket while waiting for a token")
  assert.equal(events.filter(x => x.name === "close").length, 1, "one close only")

  h.change(d => {
    d.text = "x, edited offline"
  })
  conn.setToken(writeToken())
  await waitFor(() => conn.status === "online", 20_000, { message: "online with the new token" })
  await waitFor(() => conn.isSaved(h), 20_000, { message: "the offline edit is saved" })
})

test("a refused token does not throw (in Node) and asks for a new one", async t => {
  const sc = scope(t)
  const uncaught = []
  const onUncaught = e => uncaught.push(e)
  process.on("uncaughtException", onUncaught)
  t.after(() => process.off("uncaughtException", onUncaught))

  const bad = jwt({ docs: { "*": "write" }, exp: nowS() + 3600 }, "not-the-secret-" + randomBytes(16).toString("hex"))
  const { conn, events } = client(sc, { url: secured.url, token: bad })
  await waitFor(() => conn.status === "needs-token", 30_000, { message: "needs-token for a refused token" })
  const e = events.find(x => x.name === "expired").e
  // today's server refuses at the upgrade (HTTP 401); a server that accepts
  // the upgrade and closes with 4401 gives the same outcome
  assert.ok(e.code === 4401 || e.httpStatus === 401, JSON.stringify(e))
  assert.deepEqual(uncaught, [])

  conn.setToken(writeToken())
  await waitFor(() => conn.status === "online", 20_000, { message: "online once a good token is set" })
})

test("4403 (revoked) stops the connection for good; the provider is not asked again", async t => {
  const sc = scope(t)
  const jti = `jti-${randomBytes(6).toString("hex")}`
  let calls = 0
  const { repo, conn, events } = client(sc, {
    url: secured.url,
    tokenProvider: () => {
      calls++
      return writeToken(3600, { jti })
    },
  })
  const h = repo.create({ text: "to be revoked" })
  await waitFor(() => conn.isSaved(h), 20_000, { message: "saved" })
  const api = new pkg.TandemApi({ baseUrl: secured.httpUrl, credentials: ADMIN_KEY })
  const r = await api.revokeToken({ jti })
  assert.equal(r.jti, jti)
  assert.equal(r.disconnected, 1)
  await waitFor(() => conn.status === "revoked", 20_000, { message: "revoked" })
  const rev = events.find(x => x.name === "revoked").e
  assert.equal(rev.code, 4403)
  assert.equal(rev.action, "stop")
  assert.ok(events.some(x => x.name === "server-error" && /revoked/.test(x.e.message)), "the server's error message is reported")
  await sleep(2000) // several retry intervals
  assert.equal(conn.status, "revoked")
  assert.equal(calls, 1, "the provider was not asked again")
  const meta = await api.getDoc(h.documentId)
  assert.ok(!meta.live_peers.includes(repo.peerId), `still connected: ${meta.live_peers}`)
})

test('storage "indexeddb" outside a browser fails clearly', () => {
  assert.throws(() => pkg.connect({ url: open.url, storage: "indexeddb" }), /indexedDB/)
})

test("tokenClaims and accessTo read the token as the server does", () => {
  const id = "4NMNnkMhL8jXrdJ9jamS58PAVdXu"
  const tok = jwt({ docs: { [id]: "read", "*": "write" }, exp: 2_000_000_000, sub: "alice" })
  assert.equal(pkg.tokenClaims(tok).sub, "alice")
  assert.equal(pkg.accessTo(tok, id), "read", "an explicit ID wins over *")
  assert.equal(pkg.accessTo(tok, `automerge:${id}`), "read")
  assert.equal(pkg.accessTo(tok, "2j9Yy8QwHmRrxvJfBjXyBfVJkD3v"), "write")
  assert.equal(pkg.accessTo(jwt({ exp: 1 }), id), "none")
  assert.equal(pkg.accessTo(undefined, id), "write")
  assert.equal(pkg.tokenExpiresAt(tok).getTime(), 2_000_000_000_000)
  assert.equal(pkg.tokenClaims("not a jwt"), undefined)
})
