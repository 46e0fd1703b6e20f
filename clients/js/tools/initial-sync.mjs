// initial-sync.mjs measures a fresh stock client opening a document with a
// long history: a text typed one keystroke (one change) at a time is
// uploaded by a writer, then fresh clients (each a new Repo and
// connection) find it. For each server it prints the bytes the fresh
// client's WebSocket received and the time from find() to a ready handle
// (and to the writer's heads), median of the runs.
//
// Usage (from clients/js, after npm install; bench/reference after its
// npm install for the official server):
//
//   TANDEM_BIN=../../bin/tandem node tools/initial-sync.mjs [keystrokes] [runs]
//
// Servers: the official automerge-repo sync server setup
// (bench/reference/server.mjs) and Tandem with its defaults, one after the
// other on loopback ports. For Tandem, the fresh clients come once the
// uploaded history is compacted (it prints how long that took).

import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { performance } from "node:perf_hooks"

import {
  A, startServer, makeRepo, repoConnected, serverAcked, findReady, waitFor, handlesInSync, shutdownRepo, typedDoc,
} from "../test/helpers.mjs"

const HERE = path.dirname(fileURLToPath(import.meta.url))
const keystrokes = Number(process.argv[2] ?? 20_000)
const runs = Number(process.argv[3] ?? 5)

async function reference() {
  const dir = mkdtempSync(path.join(tmpdir(), "amrg-"))
  // Run from its directory, as bench/run.sh does (from elsewhere, stock
  // clients never hear its peer message).
  const proc = spawn(process.execPath, ["server.mjs", "0", dir], {
    cwd: path.join(HERE, "../../../bench/reference"),
    stdio: ["ignore", "pipe", "inherit"],
  })
  const port = await new Promise((resolve, reject) => {
    proc.stdout.on("data", d => {
      const m = /listening port=(\d+)/.exec(d.toString())
      if (m) resolve(Number(m[1]))
    })
    proc.on("exit", code => reject(new Error(`reference server exited ${code}`)))
  })
  return { url: `ws://127.0.0.1:${port}`, stop: () => { proc.kill("SIGKILL"); rmSync(dir, { recursive: true, force: true }) } }
}

async function tandem() {
  const s = await startServer()
  // Tandem compacts in the background, paced (a quarter of a core): a
  // fresh client that comes before the snapshot is stored gets the changes.
  // Measure a document that exists, as the interop test does.
  const compacted = async id => {
    const t0 = performance.now()
    await waitFor(
      async () => (await (await fetch(`${s.httpUrl}/api/v1/docs/${id}`)).json()).snapshot_bytes > 0,
      60_000,
      { message: "the server to compact the uploaded history" }
    )
    return performance.now() - t0
  }
  return { url: s.url, compacted, stop: () => s.cleanup() }
}

const median = xs => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

async function measure(name, srv, saved) {
  const a = makeRepo({ url: srv.url })
  await repoConnected(a)
  const h = a.import(saved)
  await serverAcked(a, h, 120_000)
  if (srv.compacted) {
    const ms = await srv.compacted(h.url.replace(/^automerge:/, ""))
    console.log(`${name}: the snapshot was stored ${ms.toFixed(0)} ms after the upload was acknowledged`)
  }
  const bytes = [], ready = [], inSync = []
  for (let i = 0; i < runs; i++) {
    const c = makeRepo({ url: srv.url })
    await repoConnected(c)
    let got = 0
    c.adapter.socket.on("message", d => (got += d.byteLength ?? d.length))
    const t0 = performance.now()
    const hc = await findReady(c, h.url, 120_000)
    ready.push(performance.now() - t0)
    await waitFor(() => handlesInSync(h, hc), 60_000)
    inSync.push(performance.now() - t0)
    bytes.push(got)
    await shutdownRepo(c)
  }
  await shutdownRepo(a)
  console.log(
    `${name}: received ${median(bytes)} B, ready ${median(ready).toFixed(0)} ms, in sync ${median(inSync).toFixed(0)} ms ` +
      `(median of ${runs}; ready ms: ${ready.map(x => x.toFixed(0)).join(" ")})`
  )
}

const doc = typedDoc(keystrokes)
const saved = A.save(doc)
const changeBytes = A.getAllChanges(doc).reduce((n, c) => n + c.byteLength, 0)
console.log(`${keystrokes} keystrokes: A.save = ${saved.byteLength} B, changes = ${changeBytes} B`)
for (const [name, start] of [["official", reference], ["tandem", tandem]]) {
  const srv = await start()
  try {
    await measure(name, srv, saved)
  } finally {
    await srv.stop()
  }
}
process.exit(0)
