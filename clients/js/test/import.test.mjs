// Interop: `tandem import` against a data directory written by the real
// official server. Stock clients (@automerge/automerge-repo 2.5.6 +
// network-websocket 2.5.6) create documents through the reference server in
// bench/reference (a stock Repo with NodeWSServerAdapter and
// NodeFSStorageAdapter), which is then stopped; `bin/tandem import` copies
// its directory into a Tandem store, and stock clients find every document
// on Tandem with the same content and heads.

import { test } from "node:test"
import assert from "node:assert/strict"
import { spawn, execFile } from "node:child_process"
import { existsSync, mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import path from "node:path"
import { randomBytes } from "node:crypto"

import { generateAutomergeUrl, parseAutomergeUrl } from "@automerge/automerge-repo"

import {
  A,
  REPO_ROOT,
  scope,
  tandemBinary,
  waitFor,
  withTimeout,
  serverAcked,
  findReady,
  headsOf,
  sameHeads,
  handlesInSync,
  toJS,
} from "./helpers.mjs"

const REFERENCE = path.join(REPO_ROOT, "bench", "reference")
const newDocId = () => parseAutomergeUrl(generateAutomergeUrl()).documentId

/**
 * Start the reference server (bench/reference/server.mjs) on a free port
 * with its data in `dir`. Resolves once it printed "listening port=N".
 * Returns { url, stop() }; stop() sends SIGTERM, which flushes every
 * document to disk, and waits for the exit.
 */
async function startReference(sc, dir) {
  assert.ok(
    existsSync(path.join(REFERENCE, "node_modules", "@automerge", "automerge-repo-storage-nodefs")),
    "bench/reference has no node_modules: run `npm install --no-audit --no-fund` there (scripts/test.sh does)"
  )
  const proc = spawn(process.execPath, ["server.mjs", "0", dir], { cwd: REFERENCE, stdio: ["ignore", "pipe", "pipe"] })
  let log = ""
  const exited = new Promise(resolve => proc.on("exit", (code, signal) => resolve({ code, signal })))
  const port = await withTimeout(
    new Promise((resolve, reject) => {
      proc.stdout.on("data", d => {
        log += d
        const m = /listening port=(\d+)/.exec(log)
        if (m) resolve(Number(m[1]))
      })
      proc.stderr.on("data", d => (log += d))
      exited.then(e => reject(new Error(`reference server exited (${JSON.stringify(e)}):\n${log}`)))
    }),
    20_000,
    "reference server start"
  )
  const server = {
    url: `ws://127.0.0.1:${port}`,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM")
      const e = await withTimeout(exited, 15_000, "reference server exit")
      assert.equal(e.code, 0, `reference server exit ${JSON.stringify(e)}:\n${log}`)
    },
  }
  sc.defer(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL")
  })
  return server
}

/** Run `bin/tandem import`; resolves with {code, stdout, stderr, ms}. */
function tandemImport(args) {
  const start = performance.now()
  return new Promise(resolve => {
    execFile(tandemBinary(), ["import", ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr, ms: performance.now() - start })
    })
  })
}

const SUMMARY_RE = /^imported (\d+) documents \((\d+) changes\), (\d+) unchanged, (\d+) refused; read (\d+) chunk files \((\d+) bytes\)/

function summary(run) {
  const m = SUMMARY_RE.exec(run.stdout)
  assert.ok(m, `tandem import printed ${JSON.stringify(run.stdout)}; stderr:\n${run.stderr}`)
  const [imported, changes, unchanged, refused, files, bytes] = m.slice(1).map(Number)
  return { imported, changes, unchanged, refused, files, bytes }
}

/** Every file under dir, relative to it. */
function filesUnder(dir) {
  return readdirSync(dir, { recursive: true }).filter(f => statSync(path.join(dir, f)).isFile())
}

test("tandem import brings every document of the official server's data directory along", async t => {
  const sc = scope(t)
  const work = mkdtempSync(path.join(tmpdir(), "tandem-import-"))
  sc.defer(() => rmSync(work, { recursive: true, force: true }))
  const repoDir = path.join(work, "automerge-repo-data")
  const dataDir = path.join(work, "tandem-data")

  // 1. Stock clients create documents through the official server.
  const ref = await startReference(sc, repoDir)
  const alice = sc.repo({ url: ref.url })
  const bob = sc.repo({ url: ref.url })
  const docs = {}

  docs.map = alice.create({ title: "Groceries", done: false, count: 3, nested: { deep: { x: 1.5 } } })
  docs.text = alice.create({ text: "" })
  for (const word of ["Hello", ", ", "world", "!"]) {
    docs.text.change(d => A.splice(d, ["text"], d.text.length, 0, word))
  }
  docs.list = alice.create({ items: [] })
  docs.list.change(d => d.items.push("a", "b", "c", { name: "d" }))
  docs.list.change(d => d.items.splice(1, 1))
  docs.list.change(d => d.items.insertAt(0, "first"))

  // A long history in many saves: its snapshot is over 1 KiB, so the
  // server writes incrementals between compactions.
  docs.long = alice.create({ blob: Array.from({ length: 200 }, () => randomBytes(8).toString("hex")), log: [], text: "" })
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 50; i++) {
      docs.long.change(d => {
        d.log.push(round * 50 + i)
        A.splice(d, ["text"], d.text.length, 0, String(i % 10))
      })
    }
    await serverAcked(alice, docs.long)
  }
  for (let i = 0; i < 10; i++) {
    docs.long.change(d => (d.last = i)) // small saves: incrementals that stay
    await serverAcked(alice, docs.long)
  }

  // Two clients editing one document at the same time: two heads.
  docs.shared = alice.create({ by: {}, text: "shared" })
  await serverAcked(alice, docs.shared)
  const bobShared = await findReady(bob, docs.shared.url)
  docs.shared.change(d => {
    d.by.alice = true
    A.splice(d, ["text"], 0, 0, "alice: ")
  })
  bobShared.change(d => {
    d.by.bob = true
    A.splice(d, ["text"], d.text.length, 0, " :bob")
  })
  await waitFor(() => handlesInSync(docs.shared, bobShared), 15_000, { message: "alice and bob to converge" })

  const want = {}
  for (const [name, h] of Object.entries(docs)) {
    await serverAcked(alice, h)
    want[name] = { id: h.documentId, url: h.url, content: toJS(h.doc()), heads: headsOf(h) }
  }
  assert.equal(want.shared.heads.length, 2, "the two clients' concurrent edits leave two heads")
  assert.ok(A.getAllChanges(docs.long.doc()).length > 1000, "the long document has over 1000 changes")
  const totalChanges = Object.values(docs).reduce((n, h) => n + A.getAllChanges(h.doc()).length, 0)
  await ref.stop()

  const written = filesUnder(repoDir)
  const longDir = path.join(repoDir, want.long.id.slice(0, 2), want.long.id.slice(2))
  t.diagnostic(
    `official server wrote ${written.length} files; the long document: ${filesUnder(longDir).join(", ").slice(0, 300)}`
  )
  for (const w of Object.values(want)) {
    assert.ok(existsSync(path.join(repoDir, w.id.slice(0, 2), w.id.slice(2), "snapshot")), `${w.id} has a snapshot/ directory`)
  }

  // 2. Two damaged documents beside them: a snapshot that is not Automerge,
  // and a real snapshot cut short (a write interrupted by a crash).
  const garbage = newDocId()
  const truncated = newDocId()
  const plant = (id, name, bytes) => {
    const dir = path.join(repoDir, id.slice(0, 2), id.slice(2), "snapshot")
    mkdirSync(dir, { recursive: true })
    writeFileSync(path.join(dir, name), bytes)
  }
  plant(garbage, "0".repeat(64), Buffer.from("this is not an automerge document"))
  const snapDir = path.join(longDir, "snapshot")
  const snap = readFileSync(path.join(snapDir, readdirSync(snapDir)[0]))
  plant(truncated, "1".repeat(64), snap.subarray(0, Math.floor(snap.length / 2)))
  const refused = [garbage, truncated].sort()

  // 3. Import: the good documents are imported, the damaged ones refused.
  const first = await tandemImport(["--automerge-repo-dir", repoDir, "--data-dir", dataDir])
  const s1 = summary(first)
  t.diagnostic(
    `import: ${s1.imported} documents, ${s1.changes} changes, ${s1.files} chunk files, ${s1.bytes} bytes in ${first.ms.toFixed(0)} ms`
  )
  assert.deepEqual(
    { imported: s1.imported, changes: s1.changes, unchanged: s1.unchanged, refused: s1.refused },
    { imported: 5, changes: totalChanges, unchanged: 0, refused: 2 },
    first.stdout
  )
  assert.equal(first.code, 1, "a refused document makes the import fail")
  const lines = first.stderr.split("\n").filter(l => l.startsWith("refused "))
  assert.equal(lines.length, 2, `one stderr line per refused document:\n${first.stderr}`)
  refused.forEach((id, i) => assert.match(lines[i], new RegExp(`^refused ${id}: \\S`)))

  // 4. Again: nothing changes.
  const second = await tandemImport(["--automerge-repo-dir", repoDir, "--data-dir", dataDir])
  const s2 = summary(second)
  assert.deepEqual([s2.imported, s2.changes, s2.unchanged, s2.refused], [0, 0, 5, 2], second.stdout)
  assert.equal(second.code, 1)
  // Without the damaged documents it succeeds, still changing nothing.
  for (const id of refused) rmSync(path.join(repoDir, id.slice(0, 2), id.slice(2)), { recursive: true })
  const third = await tandemImport(["--automerge-repo-dir", repoDir, "--data-dir", dataDir])
  assert.deepEqual(Object.values(summary(third)).slice(0, 4), [0, 0, 5, 0], third.stdout)
  assert.equal(third.code, 0, third.stderr)
  assert.equal(third.stderr, "", "nothing on stderr when nothing is refused")

  // 5. Tandem serves every document, as it was, to stock clients.
  const tandem = await sc.server({ dataDir })
  const carol = sc.repo({ url: tandem.url })
  for (const [name, w] of Object.entries(want)) {
    const h = await findReady(carol, w.url)
    assert.ok(sameHeads(headsOf(h), w.heads), `${name}: heads ${headsOf(h)} on Tandem, want ${w.heads}`)
    assert.deepEqual(toJS(h.doc()), w.content, `${name}: content on Tandem`)
  }
  for (const id of refused) {
    const res = await fetch(`${tandem.httpUrl}/api/v1/docs/${id}`)
    assert.equal(res.status, 404, `refused document ${id} is not on Tandem`)
  }
  // and the imported documents are live: an edit syncs to another client
  const dave = sc.repo({ url: tandem.url })
  const carolShared = await findReady(carol, want.shared.url)
  const daveShared = await findReady(dave, want.shared.url)
  carolShared.change(d => (d.by.carol = true))
  await waitFor(() => daveShared.doc().by?.carol === true, 10_000, { message: "dave to see carol's edit" })
})
