// The package's typed REST client against the OpenAPI document the real
// binary serves at /api/v1/openapi.json:
//  - its operation table is exactly the document's operations (method, path,
//    query parameters, whether credentials are needed);
//  - its TypeScript types (read with the TypeScript compiler from
//    src/rest.ts) have the document's properties with the same kinds;
//  - every operation is called against the server and its answer validated
//    against the document's schema;
//  - error answers become TandemApiError with the server's code.

import { test, before, after } from "node:test"
import assert from "node:assert/strict"
import { createHmac, randomBytes } from "node:crypto"
import http from "node:http"
import path from "node:path"
import { fileURLToPath } from "node:url"

import ts from "typescript"

import { buildPackage } from "../scripts/build.mjs"
import { A, startServer, waitFor, scope, findReady } from "./helpers.mjs"

const HERE = path.dirname(fileURLToPath(import.meta.url))
const REST_TS = path.resolve(HERE, "..", "src", "rest.ts")
const SECRET = randomBytes(32).toString("hex")
const ADMIN_KEY = `admin-${randomBytes(16).toString("hex")}`
const nowS = () => Math.floor(Date.now() / 1000)
function jwt(claims) {
  const b64 = o => Buffer.from(JSON.stringify(o)).toString("base64url")
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`
  return `${body}.${createHmac("sha256", SECRET).update(body).digest("base64url")}`
}

/**
 * Properties the server sends that the served document does not list; each
 * must really be sent (checked below), so the list cannot go stale silently.
 */
const UNDOCUMENTED = {
  "fork 201": ["forked_from"], // README: 201 {id, url, forked_from, heads}; openapi.json says Created
}

/** The TypeScript type of each operation's success answer (and request body). */
const TYPES = {
  createDoc: { response: "Created" },
  listDocs: { response: "DocList", options: 0 },
  getDoc: { response: "DocMeta" },
  history: { response: "History", options: 1 },
  applyChange: { response: "ChangeResult", body: 1 },
  fork: { response: "Forked", body: 1 },
  importBinary: { response: "Created" },
  revokeDocPeers: { response: "PeersRevoked" },
  revokeToken: { response: "TokenRevoked", body: 0 },
  webhookDeliveries: { response: "DeliveryList", options: 0 },
  getContent: { options: 1 },
}

let pkg, srv, spec, hooks, hookUrl
const hookBodies = []
before(async () => {
  await buildPackage()
  pkg = await import("../dist/index.js")
  hooks = http.createServer((req, res) => {
    let b = ""
    req.on("data", c => (b += c))
    req.on("end", () => {
      hookBodies.push(b)
      res.writeHead(200).end("ok")
    })
  })
  await new Promise(r => hooks.listen(0, "127.0.0.1", r))
  hookUrl = `http://127.0.0.1:${hooks.address().port}/hook`
  srv = await startServer({
    args: [
      "--token-secret", SECRET, "--admin-key", ADMIN_KEY,
      "--webhook-urls", hookUrl, "--webhook-secret", "hook-secret-" + randomBytes(8).toString("hex"),
      "--webhook-debounce", "100ms",
    ],
  })
  const res = await fetch(`${srv.httpUrl}/api/v1/openapi.json`)
  assert.equal(res.status, 200)
  spec = await res.json()
})
after(async () => {
  await srv?.cleanup()
  await new Promise(r => (hooks ? hooks.close(r) : r()))
})

const METHODS = ["get", "put", "post", "delete", "patch"]

/** The served document's operations: "METHOD /path" → {op, params, security}. */
function specOperations() {
  const out = new Map()
  for (const [p, item] of Object.entries(spec.paths)) {
    for (const m of METHODS) {
      if (!item[m]) continue
      const params = [...(item.parameters ?? []), ...(item[m].parameters ?? [])].map(x => resolve(x))
      out.set(`${m.toUpperCase()} ${p}`, { op: item[m], params, path: p, method: m })
    }
  }
  return out
}

function resolve(schema) {
  let s = schema
  while (s && s.$ref) {
    s = s.$ref
      .replace(/^#\//, "")
      .split("/")
      .reduce((o, k) => o?.[k.replace(/~1/g, "/").replace(/~0/g, "~")], spec)
    assert.ok(s, `unresolved ${schema.$ref}`)
  }
  return s
}

/** The properties of an object schema (allOf merged): name → schema. */
function specProps(schema) {
  const s = resolve(schema)
  const props = {}
  for (const part of s.allOf ?? []) Object.assign(props, specProps(part))
  Object.assign(props, s.properties ?? {})
  return props
}

function specKind(schema) {
  const s = resolve(schema)
  if (s.allOf || s.properties) return "object"
  switch (s.type) {
    case "integer":
    case "number":
      return "number"
    case "string":
      return "string"
    case "boolean":
      return "boolean"
    case "array":
      return "array"
    case "object":
      return "object"
    default:
      return "unknown"
  }
}

function successResponse(op) {
  const [status, r] = Object.entries(op.responses).find(([k]) => k.startsWith("2"))
  return { status, schema: resolve(r).content?.["application/json"]?.schema }
}

// ---------------------------------------------------------------------------

test("the client's operations are exactly the served document's operations", () => {
  const served = specOperations()
  const ours = new Map(Object.values(pkg.operations).map(o => [`${o.method} ${o.path}`, o]))
  assert.ok(served.size >= 14, `the document has ${served.size} operations`)
  assert.deepEqual([...ours.keys()].sort(), [...served.keys()].sort(), "same METHOD /path set")
  for (const [key, s] of served) {
    const o = ours.get(key)
    const query = s.params.filter(p => p.in === "query").map(p => p.name)
    assert.deepEqual([...o.query].sort(), query.sort(), `${key} (${o.name}) query parameters`)
    const pathParams = s.params.filter(p => p.in === "path").map(p => p.name)
    assert.deepEqual(pathParams, o.path.includes("{id}") ? ["id"] : [], `${key} path parameters`)
    const open = Array.isArray(s.op.security) && s.op.security.length === 0
    assert.equal(o.auth, !open, `${key} needs credentials: ${!open}`)
    assert.equal(typeof pkg.TandemApi.prototype[o.name], "function", `TandemApi.${o.name}`)
  }
})

// --- TypeScript types against the schemas -----------------------------------

function tsSetup() {
  const program = ts.createProgram([REST_TS], {
    strict: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    skipLibCheck: true,
    noEmit: true,
  })
  const diags = ts.getPreEmitDiagnostics(program).filter(d => d.file?.fileName === REST_TS)
  assert.deepEqual(diags.map(d => ts.flattenDiagnosticMessageText(d.messageText, "\n")), [], "src/rest.ts compiles")
  const checker = program.getTypeChecker()
  const sf = program.getSourceFile(REST_TS)
  const exports = new Map(checker.getExportsOfModule(checker.getSymbolAtLocation(sf)).map(s => [s.name, s]))
  return { checker, exports, sf }
}

/** The kind of a TS type, as specKind reports schemas. */
function tsKind(checker, type) {
  if (type.isUnion()) {
    const kinds = new Set(type.types.filter(t => !(t.flags & ts.TypeFlags.Undefined)).map(t => tsKind(checker, t)))
    return kinds.size === 1 ? [...kinds][0] : "unknown"
  }
  if (type.flags & (ts.TypeFlags.StringLike)) return "string"
  if (type.flags & ts.TypeFlags.NumberLike) return "number"
  if (type.flags & ts.TypeFlags.BooleanLike) return "boolean"
  if (type.flags & (ts.TypeFlags.Unknown | ts.TypeFlags.Any)) return "unknown"
  if (checker.isArrayType(type)) return "array"
  if (type.flags & ts.TypeFlags.Object) return "object"
  return "unknown"
}

/** The properties of a TS type (a union's members' properties together): name → type. */
function tsProps(checker, type, at) {
  const props = new Map()
  const members = type.isUnion() ? type.types : [type]
  for (const m of members) {
    for (const p of checker.getPropertiesOfType(m)) {
      if (!props.has(p.name)) props.set(p.name, checker.getTypeOfSymbolAtLocation(p, at))
    }
  }
  return props
}

/** Compare a TS type with an object schema, recursively. Returns mismatches. */
function compare(checker, type, schema, at, where, undocumented = []) {
  const out = []
  const sp = specProps(schema)
  const tp = tsProps(checker, type, at)
  for (const [name, s] of Object.entries(sp)) {
    if (!tp.has(name)) {
      out.push(`${where}.${name}: in the document, not in the TS type`)
      continue
    }
    const t = checker.getNonNullableType(tp.get(name))
    const sk = specKind(s)
    const tk = tsKind(checker, t)
    if (sk !== "unknown" && tk !== "unknown" && sk !== tk) out.push(`${where}.${name}: document ${sk}, TS ${tk}`)
    if (sk === "object" && tk === "object" && Object.keys(specProps(s)).length) {
      out.push(...compare(checker, t, s, at, `${where}.${name}`))
    }
    if (sk === "array" && tk === "array") {
      const items = resolve(s).items
      const el = checker.getTypeArguments(t)[0]
      if (items && specKind(items) === "object" && Object.keys(specProps(items)).length) {
        out.push(...compare(checker, el, items, at, `${where}.${name}[]`))
      } else if (items && specKind(items) !== "unknown" && tsKind(checker, el) !== "unknown" && specKind(items) !== tsKind(checker, el)) {
        out.push(`${where}.${name}[]: document ${specKind(items)}, TS ${tsKind(checker, el)}`)
      }
    }
  }
  for (const name of tp.keys()) {
    if (!(name in sp) && !undocumented.includes(name)) out.push(`${where}.${name}: in the TS type, not in the document`)
  }
  return out
}

test("the client's TypeScript types match the document's schemas", () => {
  const { checker, exports, sf } = tsSetup()
  const served = specOperations()
  const apiClass = checker.getDeclaredTypeOfSymbol(exports.get("TandemApi"))
  const problems = []
  let compared = 0
  for (const o of Object.values(pkg.operations)) {
    const want = TYPES[o.name]
    if (!want) continue
    const s = served.get(`${o.method} ${o.path}`)
    if (want.response) {
      const { status, schema } = successResponse(s.op)
      assert.ok(schema, `${o.name}: a JSON response schema`)
      const type = checker.getDeclaredTypeOfSymbol(exports.get(want.response))
      problems.push(...compare(checker, type, schema, sf, `${o.name} ${status} ${want.response}`, UNDOCUMENTED[`${o.name} ${status}`]))
      compared++
    }
    const method = checker.getPropertyOfType(apiClass, o.name)
    const sig = checker.getTypeOfSymbolAtLocation(method, sf).getCallSignatures()[0]
    const paramType = i => checker.getNonNullableType(checker.getTypeOfSymbolAtLocation(sig.parameters[i], sf))
    if (want.body !== undefined) {
      const schema = s.op.requestBody?.content?.["application/json"]?.schema
      assert.ok(schema, `${o.name}: a JSON request body`)
      problems.push(...compare(checker, paramType(want.body), schema, sf, `${o.name} request body`))
      compared++
    }
    if (want.options !== undefined) {
      const names = [...tsProps(checker, paramType(want.options), sf).keys()].sort()
      const query = s.params.filter(p => p.in === "query").map(p => p.name).sort()
      assert.deepEqual(names, query, `${o.name}: options are the query parameters`)
      compared++
    }
  }
  assert.ok(compared >= 15, `compared ${compared}`)
  assert.deepEqual(problems, [])
})

// --- every operation against the server --------------------------------------

/** Validate `value` against `schema`; returns a list of problems and the undocumented properties seen. */
function validate(value, schema, where = "$", extras = []) {
  const problems = []
  const s = resolve(schema ?? {})
  if (s.allOf) {
    const props = specProps(s)
    if (typeof value !== "object" || value === null || Array.isArray(value)) return [[`${where}: not an object`], extras]
    for (const [k, v] of Object.entries(value)) {
      if (k in props) problems.push(...validate(v, props[k], `${where}.${k}`, extras)[0])
      else extras.push(k)
    }
    return [problems, extras]
  }
  if (s.oneOf) {
    if (!s.oneOf.some(alt => validate(value, alt, where, [])[0].length === 0)) problems.push(`${where}: matches no oneOf`)
    return [problems, extras]
  }
  const type = s.type
  if (type === "object" || s.properties) {
    if (typeof value !== "object" || value === null || Array.isArray(value)) return [[`${where}: not an object`], extras]
    for (const r of s.required ?? []) if (!(r in value)) problems.push(`${where}.${r}: required`)
    if (s.properties) {
      for (const [k, v] of Object.entries(value)) {
        if (k in s.properties) problems.push(...validate(v, s.properties[k], `${where}.${k}`, extras)[0])
        else if (where === "$") extras.push(k)
        else problems.push(`${where}.${k}: not in the document`)
      }
    }
  } else if (type === "array") {
    if (!Array.isArray(value)) return [[`${where}: not an array`], extras]
    value.forEach((v, i) => problems.push(...validate(v, s.items ?? {}, `${where}[${i}]`, extras)[0]))
  } else if (type === "string") {
    if (typeof value !== "string") problems.push(`${where}: not a string`)
    else if (s.format === "date-time" && Number.isNaN(Date.parse(value))) problems.push(`${where}: not a date-time`)
    else if (s.enum && !s.enum.includes(value)) problems.push(`${where}: not one of ${s.enum}`)
  } else if (type === "integer") {
    if (!Number.isInteger(value)) problems.push(`${where}: not an integer`)
  } else if (type === "number") {
    if (typeof value !== "number") problems.push(`${where}: not a number`)
  } else if (type === "boolean") {
    if (typeof value !== "boolean") problems.push(`${where}: not a boolean`)
  }
  return [problems, extras]
}

/** A fetch that records each call and its answer, for coverage and validation. */
function recordingFetch(log) {
  return async (url, init = {}) => {
    const res = await fetch(url, init)
    const entry = { method: init.method ?? "GET", url: new URL(url), status: res.status, type: res.headers.get("content-type") }
    if (entry.type?.startsWith("application/json")) entry.json = await res.clone().json()
    log.push(entry)
    return res
  }
}

function matchOperation(entry) {
  const p = entry.url.pathname.replace(/^\/api\/v1/, "")
  for (const o of Object.values(pkg.operations)) {
    const re = new RegExp("^" + o.path.replace("{id}", "[^/]+").replace(/\./g, "\\.") + "$")
    if (o.method === entry.method && re.test(p)) return o
  }
  return undefined
}

test("every operation, called against the server, answers as the document says", async t => {
  const sc = scope(t)
  const log = []
  const api = new pkg.TandemApi({ baseUrl: srv.url, credentials: ADMIN_KEY, fetch: recordingFetch(log) })

  const doc = await api.createDoc({ title: "groceries", notes: { $text: "milk" }, items: [] })
  assert.match(doc.url, /^automerge:/)
  assert.equal(doc.id, doc.url.slice("automerge:".length))
  const page = await api.listDocs({ limit: 1000 })
  assert.ok(page.docs.some(d => d.id === doc.id))
  const all = []
  for await (const d of api.allDocs(1)) all.push(d.id)
  assert.ok(all.includes(doc.id), "allDocs pages through every document")

  const change = await api.applyChange(doc.id, {
    message: "from the test",
    ops: [
      { op: "splice", path: ["notes"], index: 4, text: ", bread" },
      { op: "insert", path: ["items"], value: { name: "eggs", qty: { $counter: 1 } } },
      { op: "increment", path: ["items", 0, "qty"], value: 2 },
    ],
  })
  assert.deepEqual(change.heads, [change.hash])
  const meta = await api.getDoc(doc.url) // an automerge: URL works as an ID
  assert.equal(meta.change_count, 2)
  assert.deepEqual(meta.heads, change.heads)
  assert.deepEqual(await api.getContent(doc.id), { title: "groceries", notes: "milk, bread", items: [{ name: "eggs", qty: 3 }] })
  assert.deepEqual((await api.getContent(doc.id, { heads: doc.heads })).notes, "milk")

  const hist = await api.history(doc.id, { limit: 1 })
  assert.equal(hist.total, 2)
  assert.equal(hist.changes.length, 1)
  const hist2 = await api.history(doc.id, { cursor: hist.next_cursor })
  assert.equal(hist2.changes[0].message, "from the test")

  const bytes = await api.exportBinary(doc.id)
  assert.deepEqual(JSON.parse(JSON.stringify(A.load(bytes))).notes, "milk, bread")
  const forked = await api.fork(doc.id, { heads: doc.heads })
  assert.equal(forked.forked_from, doc.id)
  assert.equal((await api.getContent(forked.id)).notes, "milk")

  // import into a new ID (201), then again (200)
  const target = A.from({ imported: true })
  const newId = (await api.createDoc()).id
  await api.deleteDoc(newId)
  const imp = await api.importBinary(newId, A.save(target))
  assert.equal(imp.created, true)
  const imp2 = await api.importBinary(newId, A.save(target))
  assert.equal(imp2.created, false)
  assert.deepEqual(await api.getContent(newId), { imported: true })

  // a live peer with a token, disconnected by revokeDocPeers
  const token = jwt({ docs: { "*": "write" }, exp: nowS() + 3600, jti: `j-${randomBytes(4).toString("hex")}` })
  const peer = sc.repo({ url: `${srv.url}/?token=${token}` })
  await findReady(peer, doc.url)
  await waitFor(async () => (await api.getDoc(doc.id)).live_peers.includes(peer.peerId), 20_000, { message: "live peer listed" })
  const rp = await api.revokeDocPeers(doc.id)
  assert.equal(rp.disconnected, 1)
  assert.equal(rp.revoked_tokens.length, 1)
  const rt = await api.revokeToken({ jti: "another-" + randomBytes(4).toString("hex") })
  assert.equal(rt.disconnected, 0)

  await waitFor(async () => (await api.webhookDeliveries({ status: "delivered", document_id: doc.id })).deliveries.length > 0, 30_000, {
    message: "a delivered webhook event",
  })
  const dl = await api.webhookDeliveries({ status: "all", limit: 5 })
  assert.ok(dl.deliveries.length > 0)
  await api.deleteDoc(forked.id)
  const served = await api.openapi()
  assert.equal(served.openapi, spec.openapi)

  // every operation was called, and each answer matches the document
  const covered = new Set()
  const extrasSeen = {}
  for (const e of log) {
    const o = matchOperation(e)
    assert.ok(o, `${e.method} ${e.url.pathname} is an operation`)
    const s = specOperations().get(`${o.method} ${o.path}`)
    const resp = s.op.responses[String(e.status)]
    assert.ok(resp, `${o.name}: status ${e.status} is in the document`)
    const schema = resolve(resp).content?.["application/json"]?.schema
    if (e.status >= 200 && e.status < 300) covered.add(o.name)
    if (schema && e.json !== undefined) {
      const [problems, extras] = validate(e.json, schema)
      assert.deepEqual(problems, [], `${o.name} ${e.status}`)
      const allowed = UNDOCUMENTED[`${o.name} ${e.status}`] ?? []
      for (const x of extras) {
        assert.ok(allowed.includes(x), `${o.name} ${e.status}: undocumented property ${x}`)
        ;(extrasSeen[`${o.name} ${e.status}`] ??= new Set()).add(x)
      }
    }
    if (o.name === "exportBinary") assert.equal(e.type, "application/octet-stream")
  }
  assert.deepEqual([...covered].sort(), Object.keys(pkg.operations).sort(), "every operation succeeded once")
  for (const [k, names] of Object.entries(UNDOCUMENTED)) {
    for (const n of names) assert.ok(extrasSeen[k]?.has(n), `${k}: ${n} is still sent (else drop it from UNDOCUMENTED)`)
  }
})

test("errors are TandemApiError with the server's code and status", async () => {
  const log = []
  const api = new pkg.TandemApi({ baseUrl: srv.httpUrl, credentials: () => ADMIN_KEY, fetch: recordingFetch(log) })
  const expectError = async (p, status, code) => {
    await assert.rejects(p, e => {
      assert.ok(e instanceof pkg.TandemApiError, `${e}`)
      assert.ok(pkg.isApiError(e, code))
      assert.equal(e.status, status)
      assert.equal(e.code, code)
      assert.ok(pkg.isErrorCode(e.code), `${code} is one of the Go error codes`)
      assert.ok(pkg.ErrorCodes[code].includes(status), `${code} is sent with ${status}`)
      assert.ok(e.serverMessage.length > 0)
      return true
    })
  }
  await expectError(api.getDoc("4NMNnkMhL8jXrdJ9jamS58PAVdXu"), 404, "document_not_found")
  await expectError(api.getDoc("not-an-id"), 400, "invalid_document_id")
  await expectError(api.listDocs({ limit: 0 }), 400, "invalid_limit")
  await expectError(api.listDocs({ cursor: "garbage" }), 400, "invalid_cursor")
  const d = await api.createDoc({ n: 1 })
  await expectError(api.applyChange(d.id, { ops: [{ op: "frobnicate", path: ["n"] }] }), 400, "invalid_operation")
  await expectError(api.applyChange(d.id, { ops: [{ op: "increment", path: ["n"], value: 1 }] }), 422, "wrong_type")
  await expectError(api.applyChange(d.id, { ops: [{ op: "delete", path: ["missing"] }] }), 422, "path_not_found")
  await expectError(api.getContent(d.id, { heads: ["zz"] }), 400, "invalid_heads")
  await expectError(api.importBinary(d.id, new Uint8Array([1, 2, 3])), 400, "invalid_binary")
  await expectError(api.webhookDeliveries({ status: "nope" }), 400, "invalid_status")
  await expectError(api.revokeToken({ jti: "" }), 400, "invalid_jti")

  const anonymous = new pkg.TandemApi({ baseUrl: srv.httpUrl, fetch: recordingFetch(log) })
  await expectError(anonymous.listDocs(), 401, "unauthorized")
  const reader = new pkg.TandemApi({
    baseUrl: srv.httpUrl,
    credentials: jwt({ docs: { "*": "read" }, exp: nowS() + 600 }),
    fetch: recordingFetch(log),
  })
  await expectError(reader.listDocs(), 403, "forbidden")
  // the spec needs no credentials
  assert.equal((await anonymous.openapi()).openapi, spec.openapi)

  // every error body matches the document's Error schema, with its status listed
  for (const e of log.filter(x => x.status >= 400)) {
    const o = matchOperation(e)
    const s = specOperations().get(`${o.method} ${o.path}`)
    assert.ok(s.op.responses[String(e.status)], `${o.name}: ${e.status} is in the document`)
    const [problems] = validate(e.json, spec.components.schemas.Error)
    assert.deepEqual(problems, [], `${o.name} ${e.status} body`)
  }

  // no answer at all
  const down = new pkg.TandemApi({ baseUrl: "http://127.0.0.1:9" })
  await assert.rejects(down.openapi(), e => e instanceof pkg.TandemApiError && e.code === "network_error" && e.status === 0)
})
