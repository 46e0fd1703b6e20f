// Shared helpers for the tandem interop suite: start the real `tandem`
// binary, connect stock automerge-repo clients and raw-frame clients, and
// wait for conditions with bounded deadlines.
//
// Nothing in here sleeps for a fixed time as an assertion: every wait is a
// poll (or an event) with a deadline that fails loudly.
//
// Environment:
//   TANDEM_BIN  path of a prebuilt tandem binary (else `go build ./cmd/tandem`
//               from the repository root, once per test file process)
//   TANDEM_LOG  if set, echo the servers' stderr to this process's stderr

import { spawn, execFileSync } from "node:child_process"
import { mkdtempSync, rmSync, existsSync, mkdirSync } from "node:fs"
import { tmpdir } from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { randomBytes } from "node:crypto"

import * as A from "@automerge/automerge"
import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import WebSocket from "ws"
import { Encoder, decode as cborDecode } from "cbor-x"

const HERE = path.dirname(fileURLToPath(import.meta.url))
/** clients/js/test → repository root */
export const REPO_ROOT = path.resolve(HERE, "..", "..", "..")

// ---------------------------------------------------------------------------
// small utilities

export const sleep = ms => new Promise(r => setTimeout(r, ms))

/**
 * Poll `fn` until it returns a truthy value (or a promise of one); return it.
 * Throws after `timeoutMs` with `message` and the last error thrown by `fn`.
 */
export async function waitFor(fn, timeoutMs = 10_000, { interval = 20, message } = {}) {
  const deadline = Date.now() + timeoutMs
  let lastErr
  for (;;) {
    try {
      const v = await fn()
      if (v) return v
      lastErr = undefined
    } catch (e) {
      lastErr = e
    }
    if (Date.now() >= deadline) {
      const what = message ?? fn.toString().slice(0, 200)
      const err = new Error(
        `waitFor timed out after ${timeoutMs} ms: ${what}` +
          (lastErr ? ` (last error: ${lastErr.message ?? lastErr})` : "")
      )
      if (lastErr) err.cause = lastErr
      throw err
    }
    await sleep(interval)
  }
}

/** Reject if `promise` does not settle within `ms`. */
export async function withTimeout(promise, ms, what = "operation") {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** JSON-normalised copy of an automerge doc (ImmutableString etc. → plain). */
export function toJS(doc) {
  return JSON.parse(JSON.stringify(doc))
}

export function headsOf(handle) {
  return [...A.getHeads(handle.doc())].sort()
}

export function sameHeads(a, b) {
  if (a.length !== b.length) return false
  const sa = [...a].sort()
  const sb = [...b].sort()
  return sa.every((h, i) => h === sb[i])
}

/** True when both handles are ready and have identical heads. */
export function handlesInSync(...handles) {
  if (!handles.every(h => h.isReady())) return false
  const first = headsOf(handles[0])
  return handles.slice(1).every(h => sameHeads(first, headsOf(h)))
}

export function randomId(prefix = "p") {
  return `${prefix}-${randomBytes(5).toString("hex")}`
}

// ---------------------------------------------------------------------------
// the server binary

let builtBinary

/**
 * Path of the tandem binary: $TANDEM_BIN, or a one-off `go build` of
 * ./cmd/tandem from the repository root into a temp dir (once per process).
 */
export function tandemBinary() {
  if (process.env.TANDEM_BIN) return path.resolve(process.env.TANDEM_BIN)
  if (builtBinary) return builtBinary
  const dir = mkdtempSync(path.join(tmpdir(), "tandem-bin-"))
  const out = path.join(dir, "tandem")
  try {
    execFileSync("go", ["build", "-o", out, "./cmd/tandem"], {
      cwd: REPO_ROOT,
      stdio: ["ignore", "pipe", "pipe"],
      timeout: 300_000,
    })
  } catch (e) {
    throw new Error(
      `go build ./cmd/tandem failed (cwd ${REPO_ROOT}):\n${e.stderr?.toString() ?? e.message}`
    )
  }
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }))
  builtBinary = out
  return out
}

// never leave a server behind, even if the test process dies on an exception
const liveProcs = new Set()
process.on("exit", () => {
  for (const p of liveProcs) {
    try {
      p.kill("SIGKILL")
    } catch {
      // already gone
    }
  }
})

const LISTEN_RE = /msg="?listening"?.*?\baddr="?([0-9.]+|\[[^\]]+\]):(\d+)/

/**
 * Start `tandem --addr 127.0.0.1:0 --data-dir <dir>`.
 * Resolves once the "msg=listening addr=…" log line appeared (20 s max).
 *
 * Returns { url, port, dataDir, proc, stderr(), stop(signal), restart() }.
 * `restart()` stops with SIGTERM (unless already stopped) and starts again on
 * the same port and data dir, so stock clients reconnect to the same URL.
 */
export async function startServer({ args = [], dataDir, port = 0, readyTimeoutMs = 20_000 } = {}) {
  const ownsDataDir = !dataDir
  dataDir ??= mkdtempSync(path.join(tmpdir(), "tandem-data-"))
  if (!existsSync(dataDir)) mkdirSync(dataDir, { recursive: true })
  const bin = tandemBinary()

  const server = {
    dataDir,
    port: undefined,
    url: undefined,
    proc: undefined,
    exit: undefined, // {code, signal} once exited
    log: [], // stderr lines of all runs, most recent last
    stderr() {
      return server.log.slice(-200).join("\n")
    },
  }

  async function launch(p) {
    const argv = ["--addr", `127.0.0.1:${p}`, "--data-dir", dataDir, ...args]
    const proc = spawn(bin, argv, { stdio: ["ignore", "pipe", "pipe"] })
    liveProcs.add(proc)
    proc.on("exit", () => liveProcs.delete(proc))
    server.proc = proc
    server.exit = undefined
    const exited = new Promise(resolve => {
      proc.on("exit", (code, signal) => {
        server.exit = { code, signal }
        resolve(server.exit)
      })
    })
    server.exited = exited
    let buf = ""
    let resolveReady
    const ready = new Promise(r => (resolveReady = r))
    const onData = chunk => {
      buf += chunk.toString()
      let i
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i)
        buf = buf.slice(i + 1)
        server.log.push(line)
        if (server.log.length > 5000) server.log.splice(0, 1000)
        if (process.env.TANDEM_LOG) process.stderr.write(`[tandem:${proc.pid}] ${line}\n`)
        const m = LISTEN_RE.exec(line)
        if (m) resolveReady(Number(m[2]))
      }
    }
    proc.stderr.on("data", onData)
    proc.stdout.on("data", onData)
    let timer
    try {
      const result = await Promise.race([
        ready,
        exited.then(e => {
          throw new Error(`tandem exited before listening (code ${e.code}, signal ${e.signal})`)
        }),
        new Promise((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`tandem did not log "msg=listening" within ${readyTimeoutMs} ms`)),
            readyTimeoutMs
          )
        }),
      ])
      server.port = result
      server.url = `ws://127.0.0.1:${result}`
      server.httpUrl = `http://127.0.0.1:${result}`
    } catch (e) {
      if (!server.exit) proc.kill("SIGKILL")
      e.message += `\n--- tandem ${argv.join(" ")} stderr ---\n${server.stderr()}`
      throw e
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * Send `signal` and wait (10 s) for the exit. Returns {code, signal}.
   * Escalates to SIGKILL (and throws) if a SIGTERM is not honoured in time.
   */
  server.stop = async (signal = "SIGTERM", timeoutMs = 10_000) => {
    const proc = server.proc
    if (!proc || server.exit) return server.exit
    proc.kill(signal)
    try {
      return await withTimeout(server.exited, timeoutMs, `tandem exit after ${signal}`)
    } catch (e) {
      proc.kill("SIGKILL")
      await server.exited
      e.message += `\n--- stderr ---\n${server.stderr()}`
      throw e
    }
  }

  server.restart = async ({ signal = "SIGTERM" } = {}) => {
    const result = await server.stop(signal)
    await launch(server.port)
    return result
  }

  server.cleanup = async () => {
    try {
      await server.stop("SIGKILL")
    } finally {
      if (ownsDataDir) rmSync(dataDir, { recursive: true, force: true })
    }
  }

  await launch(port)
  return server
}

// ---------------------------------------------------------------------------
// stock clients

/**
 * A stock Repo with one WebSocketClientAdapter and no storage.
 * `retryInterval` is the adapter's reconnect interval (stock default 5000).
 */
export function makeRepo({ url, peerId = randomId("peer"), retryInterval } = {}) {
  const adapter =
    retryInterval === undefined
      ? new WebSocketClientAdapter(url)
      : new WebSocketClientAdapter(url, retryInterval)
  const repo = new Repo({ network: [adapter], peerId })
  repo.adapter = adapter
  return repo
}

/** Wait until the adapter has received the server's `peer` message. */
export async function repoConnected(repo, timeoutMs = 10_000) {
  await waitFor(() => repo.adapter.remotePeerId, timeoutMs, {
    message: `repo ${repo.peerId} to receive peer from the server`,
  })
  return repo.adapter.remotePeerId
}

/**
 * Wait until the server has acknowledged the handle's current heads: the
 * server's sync state as seen by this client (its last advertised heads,
 * tracked by the Repo per server storageId) equals our heads.
 */
export async function serverAcked(repo, handle, timeoutMs = 15_000) {
  const serverPeer = await repoConnected(repo, timeoutMs)
  await waitFor(
    () => {
      const storageId = repo.getStorageIdOfPeer(serverPeer)
      if (!storageId) return false
      const info = handle.getSyncInfo(storageId)
      if (!info) return false
      return sameHeads(info.lastHeads, handle.heads())
    },
    timeoutMs,
    { message: `server to acknowledge heads of ${handle.documentId} (repo ${repo.peerId})` }
  )
}

// ---------------------------------------------------------------------------
// raw frames

const encoder = new Encoder({ tagUint8Array: false, useRecords: false })
export const encode = obj => encoder.encode(obj)
export const decode = buf => cborDecode(buf)

/**
 * A raw WebSocket client speaking CBOR frames.
 *
 *   const rc = await rawClient(url, { peerId })        // does join → peer
 *   rc.send({type: "request", documentId, data})      // fills senderId/targetId
 *   const m = await rc.next()                           // next decoded message
 *   const {msg, skipped} = await rc.until(m => m.type === "sync")
 *   const {code} = await rc.closed()
 *
 * Every received frame is decoded (undecodable ones are recorded as
 * {type: "<undecodable>"}); `rc.messages` holds all of them in order and
 * `rc.bytesReceived` counts payload bytes.
 */
export async function rawClient(
  url,
  {
    peerId = randomId("raw"),
    join = true,
    supportedProtocolVersions = ["1"],
    peerMetadata = { isEphemeral: true },
    timeoutMs = 10_000,
    maxPayload,
  } = {}
) {
  const ws = new WebSocket(url, maxPayload ? { maxPayload } : {})
  const rc = {
    ws,
    peerId,
    serverPeerId: undefined,
    peerMessage: undefined,
    messages: [],
    framesReceived: 0,
    bytesReceived: 0,
    cursor: 0,
    closeInfo: undefined,
    errors: [],
    listeners: new Set(),
  }
  const waiters = new Set()
  const notify = () => waiters.forEach(w => w())
  let resolveClosed
  rc.closedPromise = new Promise(r => (resolveClosed = r))

  ws.on("message", (data, isBinary) => {
    const buf = Buffer.isBuffer(data) ? data : Buffer.concat(data)
    rc.framesReceived++
    rc.bytesReceived += buf.length
    let msg
    if (!isBinary) {
      msg = { type: "<text>", text: buf.toString() }
    } else {
      try {
        msg = decode(buf)
      } catch (e) {
        msg = { type: "<undecodable>", error: e.message, bytes: buf.length }
      }
    }
    if (msg === null || typeof msg !== "object") msg = { type: "<non-map>", value: msg }
    msg.__at = Date.now()
    msg.__size = buf.length
    rc.messages.push(msg)
    for (const l of rc.listeners) {
      try {
        l(msg)
      } catch (e) {
        rc.errors.push(e)
      }
    }
    notify()
  })
  ws.on("close", (code, reason) => {
    rc.closeInfo = { code, reason: reason.toString(), at: Date.now() }
    resolveClosed(rc.closeInfo)
    notify()
  })
  ws.on("error", e => {
    rc.errors.push(e)
    notify()
  })

  await withTimeout(
    new Promise((resolve, reject) => {
      ws.once("open", resolve)
      ws.once("error", reject)
    }),
    timeoutMs,
    "raw websocket open"
  )

  /** Send an object as one binary CBOR frame; fills senderId/targetId. */
  rc.send = obj => {
    const msg = { ...obj }
    if (!("senderId" in msg)) msg.senderId = rc.peerId
    if (!("targetId" in msg) && rc.serverPeerId) msg.targetId = rc.serverPeerId
    rc.sendRaw(encode(msg))
  }
  /** Send raw bytes (binary frame) or a string (text frame). */
  rc.sendRaw = data => {
    if (typeof data === "string") ws.send(data, { binary: false })
    else ws.send(data, { binary: true })
  }

  /** Wait until pred(rc) is true (event driven, bounded). */
  rc.wait = (pred, ms = timeoutMs, what = "condition") =>
    new Promise((resolve, reject) => {
      const check = () => {
        let v
        try {
          v = pred(rc)
        } catch (e) {
          cleanup()
          reject(e)
          return
        }
        if (v) {
          cleanup()
          resolve(v)
        }
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(
          new Error(
            `raw client ${rc.peerId}: timed out after ${ms} ms waiting for ${what}; ` +
              `received ${rc.messages.length} messages ` +
              `[${rc.messages.map(m => m.type).join(", ")}], close=${JSON.stringify(rc.closeInfo)}`
          )
        )
      }, ms)
      const cleanup = () => {
        clearTimeout(timer)
        waiters.delete(check)
      }
      waiters.add(check)
      check()
    })

  /** The next unconsumed message (FIFO). Rejects if the socket closes first. */
  rc.next = async (ms = timeoutMs) => {
    await rc.wait(r => r.messages.length > r.cursor || r.closeInfo, ms, "next message")
    if (rc.messages.length > rc.cursor) return rc.messages[rc.cursor++]
    throw new Error(
      `raw client ${rc.peerId}: socket closed (${JSON.stringify(rc.closeInfo)}) while waiting for a message`
    )
  }

  /**
   * Consume messages until one matches `pred`. Returns {msg, skipped}.
   * Rejects on timeout or if the socket closes first.
   */
  rc.until = async (pred, ms = timeoutMs, what = "matching message") => {
    const skipped = []
    const deadline = Date.now() + ms
    for (;;) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`raw client ${rc.peerId}: timed out waiting for ${what}`)
      await rc.wait(r => r.messages.length > r.cursor || r.closeInfo, left, what)
      while (rc.messages.length > rc.cursor) {
        const m = rc.messages[rc.cursor++]
        if (pred(m)) return { msg: m, skipped }
        skipped.push(m)
      }
      if (rc.closeInfo && rc.messages.length <= rc.cursor) {
        throw new Error(
          `raw client ${rc.peerId}: socket closed (${JSON.stringify(rc.closeInfo)}) while waiting for ${what}; ` +
            `skipped [${skipped.map(m => m.type).join(", ")}]`
        )
      }
    }
  }

  /** Resolves with {code, reason} once the socket is closed (bounded). */
  rc.closed = (ms = timeoutMs) => withTimeout(rc.closedPromise, ms, `raw client ${rc.peerId} close`)

  rc.isOpen = () => ws.readyState === WebSocket.OPEN

  rc.close = async (code = 1000) => {
    if (ws.readyState === WebSocket.CLOSED) return
    try {
      ws.close(code)
      await withTimeout(rc.closedPromise, 3000, "raw close")
    } catch {
      ws.terminate()
    }
  }

  rc.join = async ({ versions = supportedProtocolVersions, metadata = peerMetadata } = {}) => {
    rc.send({
      type: "join",
      senderId: rc.peerId,
      peerMetadata: metadata,
      supportedProtocolVersions: versions,
    })
    const { msg, skipped } = await rc.until(m => m.type === "peer" || m.type === "error", timeoutMs, "peer")
    if (msg.type !== "peer") {
      throw new Error(`join answered with ${JSON.stringify(msg)}`)
    }
    rc.skippedBeforePeer = skipped
    rc.peerMessage = msg
    rc.serverPeerId = msg.senderId
    return msg
  }

  if (join) {
    try {
      await rc.join()
    } catch (e) {
      ws.terminate()
      throw e
    }
  }
  return rc
}

/**
 * Drive the automerge sync protocol for one document over a raw client.
 * Keeps a local doc and sync state; answers every inbound `sync` for the
 * document with generateSyncMessage until there is nothing more to say.
 *
 *   const s = rawDocSync(rc, docId, A.init())
 *   s.start("request")                  // or "sync"
 *   await s.waitHeads(expectedHeads)
 */
export function rawDocSync(rc, documentId, doc = A.init()) {
  const s = {
    documentId,
    doc,
    state: A.initSyncState(),
    syncsReceived: 0,
    syncBytesReceived: 0,
    framesSent: 0,
    unavailable: 0,
    arrivals: [],
    errors: [],
  }
  let seen = rc.messages.length // only messages from now on

  function pump() {
    while (seen < rc.messages.length) {
      const m = rc.messages[seen++]
      if (m.documentId !== documentId) continue
      if (m.type === "doc-unavailable") s.unavailable++
      if (m.type !== "sync" && m.type !== "request") continue
      // what we had sent for this doc when this message arrived
      s.arrivals.push({ type: m.type, framesSentBefore: s.framesSent, size: m.__size })
      s.syncsReceived++
      s.syncBytesReceived += m.__size
      try {
        ;[s.doc, s.state] = A.receiveSyncMessage(s.doc, s.state, m.data)
        s.sendNext("sync")
      } catch (e) {
        s.errors.push(e)
      }
    }
  }

  s.sendNext = (type = "sync") => {
    const [state, msg] = A.generateSyncMessage(s.doc, s.state)
    s.state = state
    if (msg) {
      rc.send({ type, documentId, data: msg })
      s.framesSent++
    }
    return !!msg
  }

  s.start = (type = "sync") => {
    s.sendNext(type)
  }

  s.pump = pump
  const listener = () => pump()
  rc.listeners.add(listener)
  s.stop = () => rc.listeners.delete(listener)

  /** Wait until the local doc has exactly `heads`. */
  s.waitHeads = async (heads, ms = 30_000) => {
    try {
      await rc.wait(
        () => {
          pump()
          if (s.errors.length) throw s.errors[0]
          return sameHeads(A.getHeads(s.doc), heads)
        },
        ms,
        `doc ${documentId} to reach heads ${heads.join(",").slice(0, 40)}…`
      )
    } finally {
      pump()
    }
  }

  /** Wait until the peer's advertised heads equal our heads (they have everything). */
  s.waitTheyHaveOurs = async (ms = 30_000) => {
    await rc.wait(
      () => {
        pump()
        if (s.errors.length) throw s.errors[0]
        const theirs = s.state.theirHeads
        return theirs && sameHeads(theirs, A.getHeads(s.doc))
      },
      ms,
      `server to acknowledge heads of ${documentId}`
    )
  }

  return s
}

// ---------------------------------------------------------------------------
// resource scopes: everything created through a scope is torn down (LIFO) in
// an after hook, even when the test fails.

export function scope(t) {
  const cleanups = []
  const sc = {
    defer(fn) {
      cleanups.push(fn)
    },
    async server(opts) {
      const s = await startServer(opts)
      cleanups.push(() => s.cleanup())
      return s
    },
    repo(opts) {
      const r = makeRepo(opts)
      cleanups.push(() => shutdownRepo(r))
      return r
    },
    async raw(url, opts) {
      const rc = await rawClient(url, opts)
      cleanups.push(() => rc.close())
      return rc
    },
    async dispose() {
      while (cleanups.length) {
        const fn = cleanups.pop()
        try {
          await withTimeout(Promise.resolve().then(fn), 15_000, "cleanup")
        } catch (e) {
          // cleanup problems must not mask the real failure
          process.stderr.write(`cleanup error: ${e.message}\n`)
        }
      }
    },
  }
  if (t) t.after(() => sc.dispose())
  return sc
}

const shutDown = new WeakSet()
export async function shutdownRepo(repo) {
  if (shutDown.has(repo)) return
  shutDown.add(repo)
  try {
    await withTimeout(repo.shutdown(), 10_000, `repo ${repo.peerId} shutdown`)
  } finally {
    // Stock client quirk (network-websocket 2.5.6): when the socket closed
    // on its own (server killed/restarted), onClose schedules
    // setTimeout(connect, retryInterval); disconnect() does not cancel it,
    // so a shut-down repo reconnects later and keeps the process alive.
    // Neutralise the pending reconnect.
    const adapter = repo.adapter
    if (adapter) {
      adapter.connect = () => {}
      try {
        adapter.socket?.terminate?.()
      } catch {
        // already gone
      }
    }
  }
}

/** Find a doc with a stock repo and wait until it is ready, bounded. */
export async function findReady(repo, url, ms = 15_000) {
  const handle = await withTimeout(repo.find(url), ms, `repo.find(${url})`)
  await withTimeout(handle.whenReady(), ms, `whenReady(${url})`)
  return handle
}

/** A text typed one keystroke (one change) at a time, as an editor would. */
export function typedDoc(n) {
  let doc = A.from({ text: "" })
  let seed = 1
  const letters = "abcdefghijklmnopqrstuvwxyz      .,\n"
  for (let i = 0; i < n; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    const pos = seed % 10 === 0 ? Math.floor(i / 2) : i // mostly at the end, sometimes in the middle
    doc = A.change(doc, d => A.splice(d, ["text"], pos, 0, letters[seed % letters.length]))
  }
  return doc
}

export { A, Repo, WebSocketClientAdapter, WebSocket }
