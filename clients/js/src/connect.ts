import { Repo, cbor } from "@automerge/automerge-repo/slim"
import type {
  DocHandle,
  PeerId,
  PeerMetadata,
  RepoConfig,
  StorageAdapterInterface,
} from "@automerge/automerge-repo/slim"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { IndexedDBStorageAdapter } from "@automerge/automerge-repo-storage-indexeddb"

import { CloseCode, type CloseCodeValue } from "./codes.js"
import { TypedEmitter } from "./events.js"
import { tokenExpiresAt } from "./token.js"

/** Why a token is asked for. */
export type TokenReason =
  /** the first connection */
  | "initial"
  /** the server closed the connection with 4401 (or refused the token at the upgrade) */
  | "expired"
  /** the token in hand expires within a minute, or already has */
  | "expiring"

/**
 * Returns an access token for the next connection. Called before the first
 * connection and again whenever the token in hand has expired or is about to
 * (its `exp`), or the server said so (close 4401); a valid token is reused
 * across reconnects.
 */
export type TokenProvider = (info: { reason: TokenReason }) => string | Promise<string>

/** Where the Repo keeps documents locally. */
export type StorageOption =
  /** in memory only: nothing survives a reload (the default) */
  | "memory"
  /** IndexedDB (browsers): documents and edits survive reloads and offline periods */
  | "indexeddb"
  /** any automerge-repo storage adapter, e.g. NodeFSStorageAdapter */
  | StorageAdapterInterface

/** Options of {@link connect}. */
export interface ConnectOptions {
  /**
   * The Tandem server: `ws://host:3030`, `wss://host/sync`, or an `http(s)://`
   * URL of the same server (turned into `ws(s)://`).
   */
  url: string
  /** An access token, sent as `?token=` (the only thing a stock client can set). */
  token?: string
  /** Returns fresh tokens; see {@link TokenProvider}. Wins over `token`. */
  tokenProvider?: TokenProvider
  /** Local storage; default "memory". */
  storage?: StorageOption
  /** The IndexedDB database name with storage "indexeddb"; default "tandem". */
  indexedDBName?: string
  /** The Repo's peer ID; default a random one. */
  peerId?: PeerId | string
  /** Milliseconds between reconnect attempts; default 5000 (the stock adapter's). */
  retryInterval?: number
  /** Other Repo options (network and storage are set by connect). */
  repo?: Omit<RepoConfig, "network" | "storage" | "peerId">
}

/** What a connection is doing. */
export type ConnectionStatus =
  /** opening a WebSocket */
  | "connecting"
  /** the server answered the handshake: documents sync */
  | "online"
  /** the connection is down; it retries every retryInterval (edits are kept locally) */
  | "offline"
  /** the token expired or was refused and no provider can give a fresh one: call setToken */
  | "needs-token"
  /** the token or its access was revoked (4403): the connection stopped for good */
  | "revoked"
  /** stopped by stop() or repo.shutdown() */
  | "closed"

/** What a close code tells a client to do. */
export type CloseAction =
  /** nothing: a normal close */
  | "none"
  /** reconnect (the stock behaviour) */
  | "reconnect"
  /** reconnect with a fresh token (4401) */
  | "refresh-token"
  /** stop: reconnecting with the same token fails (4403) */
  | "stop"
  /** a newer connection with the same peer ID replaced this one (4002) */
  | "replaced"
  /** the client must change (1002, 1007, 4409): retrying fails the same way */
  | "fix-client"

/** The action a close code asks of a client (README, "Errors and close codes"). */
export function closeAction(code: number): CloseAction {
  switch (code) {
    case CloseCode.Normal:
      return "none"
    case CloseCode.TokenExpired:
      return "refresh-token"
    case CloseCode.Revoked:
      return "stop"
    case CloseCode.Replaced:
      return "replaced"
    case CloseCode.ProtocolError:
    case CloseCode.InvalidData:
    case CloseCode.PeerIDInUse:
      return "fix-client"
    default:
      return "reconnect"
  }
}

/** The name of a Tandem close code ("TokenExpired"), or undefined for others. */
export function closeCodeName(code: number): keyof typeof CloseCode | undefined {
  for (const [name, value] of Object.entries(CloseCode)) {
    if (value === code) return name as keyof typeof CloseCode
  }
  return undefined
}

/** A closed connection, as the `close` event reports it. */
export interface TandemCloseEvent {
  /**
   * The WebSocket close code: one of {@link CloseCode}, 1006 when the
   * connection dropped or could not be opened.
   */
  code: number
  /** The close reason the server sent (may be empty). */
  reason: string
  /** The Tandem name of the code, when it is one of Tandem's. */
  name?: keyof typeof CloseCode
  /** What the code asks the client to do. */
  action: CloseAction
  /**
   * The HTTP status when the server refused the upgrade (Node only: browsers
   * do not expose it).
   */
  httpStatus?: number
}

/** The events of a {@link TandemConnection}. */
export type ConnectionEvents = {
  /** the status changed */
  status: (status: ConnectionStatus) => void
  /** a WebSocket connection closed */
  close: (event: TandemCloseEvent) => void
  /**
   * the token expired (4401, or refused at the upgrade): with a provider a
   * fresh token is asked for at once; without one the status becomes
   * "needs-token" until setToken
   */
  expired: (event: TandemCloseEvent & { willRefresh: boolean }) => void
  /** the token or its access was revoked (4403): the connection stopped */
  revoked: (event: TandemCloseEvent) => void
  /** the server sent an `error` message (its text is for people, not for parsing) */
  "server-error": (event: { message: string }) => void
  /** the token provider failed; it is asked again on the next attempt */
  "token-error": (error: unknown) => void
}

/** A Repo from {@link connect}: a stock automerge-repo Repo, plus its connection. */
export type TandemRepo = Repo & {
  /** The connection to the Tandem server: status, typed close events, tokens. */
  readonly tandem: TandemConnection
}

/** The WebSocket URL for `base` carrying `token` as `?token=`. */
export function socketUrl(base: string, token?: string): string {
  const u = new URL(base)
  if (u.protocol === "http:") u.protocol = "ws:"
  else if (u.protocol === "https:") u.protocol = "wss:"
  if (u.protocol !== "ws:" && u.protocol !== "wss:") {
    throw new TypeError(`connect: url must be ws://, wss://, http:// or https://, not ${base}`)
  }
  if (token) u.searchParams.set("token", token)
  return u.toString()
}

const EXPIRY_MARGIN_MS = 60_000

/**
 * The state of one Tandem connection: status, token, and typed events for
 * close codes. Get it as `repo.tandem` from {@link connect}.
 */
export class TandemConnection extends TypedEmitter<ConnectionEvents> {
  #status: ConnectionStatus = "connecting"
  #token: string | undefined
  #provider: TokenProvider | undefined
  #needFresh: TokenReason | undefined
  #lastClose: TandemCloseEvent | undefined
  /** @internal */
  readonly adapter: TandemSocketAdapter
  /** @internal */
  repo!: Repo

  /** @internal use {@link connect} */
  constructor(readonly url: string, opts: { token?: string; tokenProvider?: TokenProvider; retryInterval: number }) {
    super()
    socketUrl(url) // validate early
    this.#token = opts.token
    this.#provider = opts.tokenProvider
    if (this.#provider) this.#needFresh = "initial"
    this.adapter = new TandemSocketAdapter(this, opts.retryInterval)
  }

  /** What the connection is doing now. */
  get status(): ConnectionStatus {
    return this.#status
  }

  /** The token the current (or next) connection uses. */
  get token(): string | undefined {
    return this.#token
  }

  /** The last close, if any. */
  get lastClose(): TandemCloseEvent | undefined {
    return this.#lastClose
  }

  /** The server's peer ID while online. */
  get serverPeerId(): PeerId | undefined {
    return this.#status === "online" ? this.adapter.remotePeerId : undefined
  }

  /** Resolves once the status is "online" (at once if it is). */
  whenOnline(): Promise<void> {
    if (this.#status === "online") return Promise.resolve()
    return new Promise(resolve => {
      const off = this.on("status", s => {
        if (s === "online") {
          off()
          resolve()
        }
      })
    })
  }

  /**
   * Use `token` from now on and reconnect with it (also after "needs-token"
   * or "revoked").
   */
  setToken(token: string): void {
    this.#token = token
    this.#needFresh = undefined
    this.reconnect()
  }

  /** Reconnect now (after "needs-token", "revoked" or stop(), or to pick up a new token). */
  reconnect(): void {
    const a = this.adapter
    a.halt()
    if (!a.peerId) return // the Repo has not started the adapter yet: it will
    this.#setStatus("connecting")
    a.connect(a.peerId, a.peerMetadata)
  }

  /** Close the connection and stop reconnecting (the Repo keeps working offline). */
  stop(): void {
    this.adapter.halt()
    this.#setStatus("closed")
  }

  /**
   * Whether the server has advertised exactly this handle's heads, i.e. it
   * has stored every local edit (Tandem advertises heads only after a durable
   * write).
   */
  isSaved(handle: DocHandle<unknown>): boolean {
    const remote = this.serverHeads(handle)
    if (!remote) return false
    const local = handle.heads()
    return remote.length === local.length && local.every(h => remote.includes(h))
  }

  /** The heads the server last advertised for this handle, if known. */
  serverHeads(handle: DocHandle<unknown>): string[] | undefined {
    const peer = this.adapter.remotePeerId
    if (!peer) return undefined
    const storageId = this.repo.getStorageIdOfPeer(peer)
    if (!storageId) return undefined
    return handle.getSyncInfo(storageId)?.lastHeads as string[] | undefined
  }

  // --- called by the adapter -------------------------------------------------

  /** @internal may the adapter open a socket now? */
  get halted(): boolean {
    return this.#status === "revoked" || this.#status === "closed" || this.#status === "needs-token"
  }

  /**
   * @internal the URL of the next attempt, or a promise of it when a fresh
   * token must be fetched first.
   */
  nextUrl(): string | Promise<string> {
    if (this.#provider) {
      const exp = tokenExpiresAt(this.#token)
      if (!this.#needFresh && exp && exp.getTime() - Date.now() < EXPIRY_MARGIN_MS) this.#needFresh = "expiring"
      const reason = this.#needFresh
      if (reason) {
        const provider = this.#provider
        return Promise.resolve()
          .then(() => provider({ reason }))
          .then(token => {
            if (typeof token !== "string" || token === "") throw new TypeError("tokenProvider returned no token")
            this.#token = token
            this.#needFresh = undefined
            return socketUrl(this.url, token)
          })
          .catch(err => {
            this.emit("token-error", err)
            throw err
          })
      }
    }
    return socketUrl(this.url, this.#token)
  }

  /** @internal */
  attemptStarted(): void {
    if (!this.halted) this.#setStatus("connecting")
  }

  /** @internal */
  online(): void {
    this.#setStatus("online")
  }

  /** @internal a socket closed; returns whether the adapter may reconnect */
  closed(code: number, reason: string, httpStatus?: number): boolean {
    let action = closeAction(code)
    if (httpStatus === 401) action = "refresh-token"
    const event: TandemCloseEvent = { code, reason, action, name: closeCodeName(code), httpStatus }
    this.#lastClose = event
    this.emit("close", event)
    if (this.halted) return false
    if (action === "stop") {
      this.#setStatus("revoked")
      this.emit("revoked", event)
      return false
    }
    if (action === "refresh-token") {
      const willRefresh = !!this.#provider
      if (willRefresh) this.#needFresh = "expired"
      this.emit("expired", { ...event, willRefresh })
      if (!willRefresh) {
        this.#setStatus("needs-token")
        return false
      }
    }
    this.#setStatus("offline")
    return true
  }

  /** @internal */
  serverError(message: string): void {
    this.emit("server-error", { message })
  }

  /** @internal the Repo shut down */
  shutDown(): void {
    this.#setStatus("closed")
  }

  #setStatus(s: ConnectionStatus): void {
    if (s === this.#status) return
    this.#status = s
    this.emit("status", s)
  }
}

interface CloseEventLike {
  code?: number
  reason?: string | { toString(): string }
}

/**
 * The stock WebSocketClientAdapter, with the URL (and so the token) worked
 * out again before each connection attempt, close codes reported to the
 * {@link TandemConnection}, no reconnecting once halted, and a refused
 * upgrade reported instead of thrown (the stock adapter rethrows it in Node).
 * @internal
 */
export class TandemSocketAdapter extends WebSocketClientAdapter {
  #conn: TandemConnection
  #pending: Promise<void> | undefined
  #httpStatus: number | undefined
  #generation = 0

  constructor(conn: TandemConnection, retryInterval: number) {
    super(socketUrl(conn.url), retryInterval)
    this.#conn = conn
    const stockClose = this.onClose
    this.onClose = ((ev?: CloseEventLike) => {
      const code = typeof ev?.code === "number" ? ev.code : 1006
      const reason = ev?.reason ? String(ev.reason) : ""
      const httpStatus = this.#httpStatus
      this.#httpStatus = undefined
      if (this.#conn.closed(code, reason, httpStatus)) {
        stockClose()
      } else {
        this.halt()
      }
    }) as () => void
    this.onError = (ev => {
      // Node's ws reports a refused upgrade as "Unexpected server response: 401";
      // browsers say nothing. Never throw (the stock adapter does in Node).
      const err = (ev as { error?: { message?: string } }).error
      const m = /Unexpected server response: (\d+)/.exec(err?.message ?? "")
      if (m) this.#httpStatus = Number(m[1])
    }) as WebSocketClientAdapter["onError"]
    this.on("peer-candidate", () => this.#conn.online())
  }

  override connect(peerId: PeerId, peerMetadata?: PeerMetadata): void {
    // The Repo's first call, the stock retry interval and the stock
    // reconnect after a close all come through here.
    this.peerId ??= peerId
    this.peerMetadata ??= peerMetadata
    if (this.#conn.halted || this.#pending) return
    const next = this.#conn.nextUrl()
    if (typeof next === "string") {
      this.#open(next, peerId, peerMetadata)
      return
    }
    const gen = this.#generation
    this.#pending = next.then(
      url => {
        this.#pending = undefined
        if (gen === this.#generation && !this.#conn.halted) this.#open(url, peerId, peerMetadata)
      },
      () => {
        this.#pending = undefined
        // try again later, as after a failed connection
        setTimeout(() => {
          if (gen === this.#generation && !this.#conn.halted) this.connect(peerId, peerMetadata)
        }, this.retryInterval)
      }
    )
  }

  #open(url: string, peerId: PeerId, peerMetadata?: PeerMetadata) {
    ;(this as { url: string }).url = url
    this.#conn.attemptStarted()
    super.connect(peerId, peerMetadata)
  }

  override receiveMessage(messageBytes: Uint8Array): void {
    // `error` messages are small; peek at those only.
    if (messageBytes.byteLength < 4096) {
      try {
        const msg = cbor.decode(new Uint8Array(messageBytes)) as { type?: unknown; message?: unknown }
        if (msg && msg.type === "error") this.#conn.serverError(String(msg.message ?? ""))
      } catch {
        // the stock adapter logs undecodable frames
      }
    }
    super.receiveMessage(messageBytes)
  }

  /** Close the socket, cancel pending retries and token fetches. */
  halt(): void {
    this.#generation++
    this.#pending = undefined
    if (this.socket && this.peerId) super.disconnect()
  }

  override disconnect(): void {
    // Repo.shutdown(): stop for good, even if a reconnect was scheduled.
    this.#conn.shutDown()
    this.halt()
  }
}

/**
 * Connect to a Tandem server: returns a stock automerge-repo Repo that syncs
 * through it over the stock WebSocketClientAdapter, with the access token in
 * the URL (`?token=`), refreshed from `tokenProvider` when it expires, and
 * the server's close codes as typed events on `repo.tandem`.
 *
 * ```ts
 * const repo = connect({ url: "ws://127.0.0.1:3030", storage: "indexeddb" })
 * const handle = repo.create({ text: "hello" })
 * repo.tandem.on("revoked", () => alert("access revoked"))
 * ```
 */
export function connect(options: ConnectOptions): TandemRepo {
  const conn = new TandemConnection(options.url, {
    token: options.token,
    tokenProvider: options.tokenProvider,
    retryInterval: options.retryInterval ?? 5000,
  })
  let storage: StorageAdapterInterface | undefined
  const s = options.storage ?? "memory"
  if (s === "indexeddb") {
    if (typeof indexedDB === "undefined") {
      throw new Error('connect: storage "indexeddb" needs a browser (indexedDB is not defined here)')
    }
    storage = new IndexedDBStorageAdapter(options.indexedDBName ?? "tandem")
  } else if (s !== "memory") {
    storage = s
  }
  const repo = new Repo({
    ...options.repo,
    peerId: options.peerId as PeerId | undefined,
    network: [conn.adapter],
    storage,
  })
  conn.repo = repo
  Object.defineProperty(repo, "tandem", { value: conn, enumerable: false })
  return repo as TandemRepo
}

export type { CloseCodeValue }
