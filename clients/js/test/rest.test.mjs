// Interop: tandem's REST API (/api/v1) against stock npm automerge-repo
// clients (@automerge/automerge-repo 2.5.6 + network-websocket 2.5.6 +
// @automerge/automerge 3.5.0). Edits made over HTTP must reach connected
// clients, and clients' edits must be visible over HTTP.

import { test, before, after } from "node:test"
import assert from "node:assert/strict"

import { generateAutomergeUrl, parseAutomergeUrl } from "@automerge/automerge-repo"

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
  headsOf,
  sameHeads,
  handlesInSync,
  toJS,
} from "./helpers.mjs"

/** One shared server for the whole file. */
let shared
before(async () => {
  shared = await startServer()
})
after(async () => {
  await shared?.cleanup()
})

/**
 * One REST call, bounded. `body`: a plain object is sent as JSON, a
 * Uint8Array as application/octet-stream. Returns {status, json, bytes, text}.
 */
async function api(method, path, body, { timeoutMs = 10_000 } = {}) {
  const init = { method, headers: {}, signal: AbortSignal.timeout(timeoutMs) }
  if (body instanceof Uint8Array) {
    init.body = body
    init.headers["content-type"] = "application/octet-stream"
  } else if (body !== undefined) {
    init.body = JSON.stringify(body)
    init.headers["content-type"] = "application/json"
  }
  const res = await fetch(`${shared.httpUrl}/api/v1${path}`, init)
  const bytes = new Uint8Array(await res.arrayBuffer())
  const text = new TextDecoder().decode(bytes)
  let json
  if ((res.headers.get("content-type") ?? "").includes("json") && text.length > 0) json = JSON.parse(text)
  return { status: res.status, json, bytes, text, headers: res.headers }
}

/** Assert a status, showing the response body on failure. */
function expectStatus(res, status, what) {
  assert.equal(res.status, status, `${what}: HTTP ${res.status} ${res.text.slice(0, 500)}`)
}

/** Poll GET /docs/{id} until it is 200 with exactly `heads`; return the metadata. */
async function serverHasHeads(id, heads, ms = 10_000) {
  let last
  await waitFor(
    async () => {
      last = await api("GET", `/docs/${id}`)
      return last.status === 200 && sameHeads(last.json.heads, heads)
    },
    ms,
    {
      interval: 50,
      message: `GET /docs/${id} to show heads ${heads}` + (last ? ` (last: ${last.status} ${last.text.slice(0, 300)})` : ""),
    }
  )
  return last.json
}

// ---------------------------------------------------------------------------

test("1. a POST /changes edit (set + splice) reaches a connected stock client", async t => {
  const sc = scope(t)
  const a = sc.repo({ url: shared.url })
  const h = a.create({ title: "rest edit", text: "hello" }) // JS strings are Text
  await serverAcked(a, h)
  const id = h.documentId
  const meta = await serverHasHeads(id, headsOf(h))
  assert.equal(meta.id, id)
  assert.equal(meta.url, h.url)
  // A is connected and has the document open: the server lists it as a live peer
  await waitFor(async () => (await api("GET", `/docs/${id}`)).json?.live_peers?.includes(a.peerId), 5000, {
    message: `live_peers of ${id} to include ${a.peerId}`,
  })

  const res = await api("POST", `/docs/${id}/changes`, {
    ops: [
      { op: "set", path: ["k"], value: 1 },
      { op: "splice", path: ["text"], index: 5, delete: 0, text: " world" },
    ],
    message: "from REST",
  })
  expectStatus(res, 200, "POST /changes")
  assert.match(res.json.hash, /^[0-9a-f]{64}$/)
  assert.deepEqual(res.json.heads, [res.json.hash], "one new change on top of A's heads")

  await waitFor(() => h.doc().k === 1 && h.doc().text === "hello world", 10_000, {
    message: "A to see the REST edit",
  })
  await waitFor(() => sameHeads(headsOf(h), res.json.heads), 5000, { message: "A's heads to equal the POST's heads" })
  assert.deepEqual(toJS(h.doc()), { title: "rest edit", text: "hello world", k: 1 })
  // the change A received is the REST one, with its message
  const restChange = A.getAllChanges(h.doc())
    .map(c => A.decodeChange(c))
    .find(c => c.hash === res.json.hash)
  assert.ok(restChange, "A has the change with the returned hash")
  assert.equal(restChange.message, "from REST")
})

test("2. a stock client's edit shows in GET /content", async t => {
  const sc = scope(t)
  const a = sc.repo({ url: shared.url })
  const h = a.create({ items: ["a"], text: "abc", nested: { x: 1 } })
  await serverAcked(a, h)
  h.change(d => {
    d.items.push("b")
    A.splice(d, ["text"], 3, 0, "def")
    d.nested.y = { deep: true }
    d.flag = false
    d.counter = new A.Counter(7)
  })
  const want = toJS(h.doc())
  assert.deepEqual(want, {
    items: ["a", "b"],
    text: "abcdef",
    nested: { x: 1, y: { deep: true } },
    flag: false,
    counter: 7,
  })
  let last
  await waitFor(
    async () => {
      last = await api("GET", `/docs/${h.documentId}/content`)
      return last.status === 200 && last.json.flag === false
    },
    10_000,
    { interval: 50, message: "GET /content to show A's edit" }
  )
  assert.match(last.headers.get("content-type"), /application\/json/)
  assert.deepEqual(last.json, want)
  await serverHasHeads(h.documentId, headsOf(h), 5000)
})

test("3. DELETE makes the document unavailable to a fresh client", async t => {
  const sc = scope(t)
  const a = sc.repo({ url: shared.url })
  const h = a.create({ doomed: true })
  await serverAcked(a, h)
  const id = h.documentId
  expectStatus(await api("GET", `/docs/${id}`), 200, "GET before DELETE")
  // A still holds the document: if it stayed connected it could sync it
  // straight back to the server after the DELETE (that is not a bug: it is
  // a peer with the data). Shut A down first so the test is deterministic.
  await shutdownRepo(a)

  const del = await api("DELETE", `/docs/${id}`)
  expectStatus(del, 204, "DELETE")
  assert.equal(del.bytes.length, 0, "204 has no body")

  const got = await api("GET", `/docs/${id}`)
  expectStatus(got, 404, "GET /docs/{id} after DELETE")
  expectStatus(await api("GET", `/docs/${id}/content`), 404, "GET /content after DELETE")
  expectStatus(await api("GET", `/docs/${id}/binary`), 404, "GET /binary after DELETE")

  const b = sc.repo({ url: shared.url })
  await repoConnected(b)
  await assert.rejects(withTimeout(b.find(h.url), 5000, "B find after DELETE"), /unavailable/)
  // a second DELETE of the same document is 404
  expectStatus(await api("DELETE", `/docs/${id}`), 404, "second DELETE")
})

test("4. an exported binary loads in @automerge/automerge with equal heads and content", async t => {
  const sc = scope(t)
  const a = sc.repo({ url: shared.url })
  const h = a.create({ title: "export", text: "hello", list: [1, 2, 3], n: new A.Counter(5) })
  for (let i = 0; i < 5; i++) {
    h.change(d => {
      d.list.push(10 + i)
      A.splice(d, ["text"], d.text.length, 0, `!${i}`)
      d.n.increment(1)
    })
  }
  await serverAcked(a, h)
  const meta = await serverHasHeads(h.documentId, headsOf(h))

  const bin = await api("GET", `/docs/${h.documentId}/binary`)
  expectStatus(bin, 200, "GET /binary")
  assert.equal(bin.headers.get("content-type"), "application/octet-stream")
  assert.equal(Number(bin.headers.get("content-length")), bin.bytes.length)
  const loaded = A.load(bin.bytes)
  assert.deepEqual([...A.getHeads(loaded)].sort(), [...meta.heads].sort())
  assert.equal(A.getAllChanges(loaded).length, 6, "the whole history is exported")

  const content = await api("GET", `/docs/${h.documentId}/content`)
  expectStatus(content, 200, "GET /content")
  assert.deepEqual(toJS(loaded), content.json)
  assert.deepEqual(toJS(loaded), toJS(h.doc()))
  assert.equal(loaded.n.value, 10)
})

test("5. a binary made by @automerge/automerge imports (PUT) and syncs to stock clients", async t => {
  const sc = scope(t)
  const { documentId: id } = parseAutomergeUrl(generateAutomergeUrl())
  let doc = A.from({ title: "imported", items: ["one"], text: "made in JS" })
  doc = A.change(doc, { message: "second" }, d => {
    d.items.push("two")
    d.score = 3.5
  })

  const put1 = await api("PUT", `/docs/${id}/binary`, A.save(doc))
  expectStatus(put1, 201, "first PUT /binary (new document)")
  assert.equal(put1.json.id, id)
  assert.equal(put1.json.url, `automerge:${id}`)
  assert.deepEqual([...put1.json.heads].sort(), [...A.getHeads(doc)].sort())

  const b = sc.repo({ url: shared.url })
  const hb = await findReady(b, `automerge:${id}`)
  assert.deepEqual(headsOf(hb), [...A.getHeads(doc)].sort())
  assert.deepEqual(toJS(hb.doc()), toJS(doc))

  // a further change, imported into the existing document: merged, 200,
  // and pushed live to the connected client
  doc = A.change(doc, d => {
    A.splice(d, ["text"], 0, 0, "[v2] ")
    d.items.push("three")
  })
  const put2 = await api("PUT", `/docs/${id}/binary`, A.save(doc))
  expectStatus(put2, 200, "second PUT /binary (merge)")
  assert.deepEqual([...put2.json.heads].sort(), [...A.getHeads(doc)].sort())
  await waitFor(() => sameHeads(headsOf(hb), A.getHeads(doc)), 10_000, {
    message: "the connected client to receive the imported change",
  })
  assert.deepEqual(toJS(hb.doc()), {
    title: "imported",
    items: ["one", "two", "three"],
    text: "[v2] made in JS",
    score: 3.5,
  })
  const content = await api("GET", `/docs/${id}/content`)
  assert.deepEqual(content.json, toJS(doc))
})

test("6. a POST /docs document ($text, $counter) is editable by a stock client", async t => {
  const sc = scope(t)
  const created = await api("POST", "/docs", { title: "x", notes: { $text: "hello" }, n: { $counter: 1 } })
  expectStatus(created, 201, "POST /docs")
  const { id, url, heads } = created.json
  assert.equal(url, `automerge:${id}`)
  assert.equal(heads.length, 1)

  const c = sc.repo({ url: shared.url })
  const h = await findReady(c, url)
  assert.deepEqual(headsOf(h), [...heads].sort())
  const d0 = h.doc()
  assert.deepEqual(toJS(d0), { title: "x", notes: "hello", n: 1 })
  // the documented type mapping: a JSON string is a scalar string, $text a
  // Text, $counter a Counter
  assert.ok(A.isImmutableString(d0.title), "title is a scalar (immutable) string")
  assert.equal(typeof d0.notes, "string", "notes is Text (a JS string in automerge 3)")
  assert.ok(d0.n instanceof A.Counter, "n is a Counter")

  h.change(d => {
    A.splice(d, ["notes"], 5, 0, " world")
    d.n.increment(2)
  })
  await serverAcked(c, h)
  let last
  await waitFor(
    async () => {
      last = await api("GET", `/docs/${id}/content`)
      return last.status === 200 && last.json.n === 3
    },
    10_000,
    { interval: 50, message: "GET /content to show the client's edit" }
  )
  assert.deepEqual(last.json, { title: "x", notes: "hello world", n: 3 })
  await serverHasHeads(id, headsOf(h), 5000)

  // and a second client converges on the same document
  const c2 = sc.repo({ url: shared.url })
  const h2 = await findReady(c2, url)
  await waitFor(() => handlesInSync(h, h2), 10_000)
  assert.deepEqual(toJS(h2.doc()), { title: "x", notes: "hello world", n: 3 })
})
