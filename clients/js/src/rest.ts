import { ErrorCodes, type ErrorCode } from "./codes.js"

// ---------------------------------------------------------------------------
// Types of the /api/v1 API (api/openapi.json; a test checks them against the
// served document).

/** `201 {id, url, heads}`: a document created, imported or forked. */
export interface Created {
  /** The document ID (bs58check), as in `automerge:<id>`. */
  id: string
  /** The automerge URL, `automerge:<id>`. */
  url: string
  /** The document's heads (hex change hashes). */
  heads: string[]
}

/** A document in a listing. */
export interface DocSummary {
  id: string
  url: string
  /** Bytes stored: snapshot plus change log. */
  size_bytes: number
  snapshot_bytes: number
  /** The number of changes in the document's history. */
  change_count: number
  created_at: string
  updated_at: string
}

/** A page of documents. */
export interface DocList {
  docs: DocSummary[]
  /** Pass as `cursor` for the next page; absent or empty on the last. */
  next_cursor?: string
}

/** A document's metadata. */
export interface DocMeta extends DocSummary {
  heads: string[]
  /** Peer IDs connected to the document now. */
  live_peers: string[]
}

/** One JSON edit operation (the README's "Edit operations"). */
export type Op =
  | { op: "set"; path: PathElement[]; value: unknown }
  | { op: "delete"; path: PathElement[] }
  | { op: "insert"; path: PathElement[]; value: unknown; index?: number }
  | { op: "splice"; path: PathElement[]; index: number; delete?: number; text?: string }
  | { op: "increment"; path: PathElement[]; value: number }

/** A map key or a list index. */
export type PathElement = string | number

/** The body of POST /docs/{id}/changes. */
export interface ChangeRequest {
  ops: Op[]
  message?: string
}

/** The answer to POST /docs/{id}/changes. */
export interface ChangeResult {
  /** The new change's hash. */
  hash: string
  heads: string[]
}

/** One change of a document's history. */
export interface HistoryChange {
  hash: string
  actor: string
  seq: number
  time: string
  message?: string
  deps: string[]
}

/** A page of a document's history, in causal order. */
export interface History {
  changes: HistoryChange[]
  /** The number of changes in the whole history. */
  total: number
  next_cursor?: string
}

/** The answer to POST /docs/{id}/fork. */
export interface Forked extends Created {
  forked_from: string
}

/** The answer to PUT /docs/{id}/binary. */
export interface Imported extends Created {
  /** True when the import created the document (201), false when it merged (200). */
  created: boolean
}

/** The answer to POST /docs/{id}/peers/revoke. */
export interface PeersRevoked {
  disconnected: number
  revoked_tokens: string[]
}

/** The answer to POST /tokens/revoke. */
export interface TokenRevoked {
  jti: string
  disconnected: number
}

/** A webhook event with its delivery state. */
export interface Delivery {
  id: number
  type: "document.created" | "document.changed" | "document.deleted" | string
  document_id: string
  status: "pending" | "delivered" | "failed" | string
  created_at: string
  due_at?: string
  attempts: number
  next_attempt_at?: string
  last_error?: string
  delivered_at?: string
}

/** A page of the webhook delivery log. */
export interface DeliveryList {
  deliveries: Delivery[]
  next_cursor?: string
}

/** Paging parameters. */
export interface Page {
  /** 1 to 1000; default 100. */
  limit?: number
  /** `next_cursor` of the previous page. */
  cursor?: string
}

// ---------------------------------------------------------------------------
// The operations. Every method of TandemApi goes through one of these; the
// test checks that they are exactly the operations of the served OpenAPI
// document, with the same query parameters.

/** One operation of the REST API. */
export interface Operation {
  /** The TandemApi method. */
  name: string
  method: "GET" | "POST" | "PUT" | "DELETE"
  /** The path under /api/v1, with `{id}` for the document ID. */
  path: string
  /** The query parameters the method may send. */
  query: readonly string[]
  /** Whether it needs credentials when the server has some configured. */
  auth: boolean
}

/** Every operation of /api/v1. */
export const operations = {
  openapi: { name: "openapi", method: "GET", path: "/openapi.json", query: [], auth: false },
  createDoc: { name: "createDoc", method: "POST", path: "/docs", query: [], auth: true },
  listDocs: { name: "listDocs", method: "GET", path: "/docs", query: ["cursor", "limit"], auth: true },
  getDoc: { name: "getDoc", method: "GET", path: "/docs/{id}", query: [], auth: true },
  deleteDoc: { name: "deleteDoc", method: "DELETE", path: "/docs/{id}", query: [], auth: true },
  getContent: { name: "getContent", method: "GET", path: "/docs/{id}/content", query: ["heads"], auth: true },
  exportBinary: { name: "exportBinary", method: "GET", path: "/docs/{id}/binary", query: [], auth: true },
  importBinary: { name: "importBinary", method: "PUT", path: "/docs/{id}/binary", query: [], auth: true },
  applyChange: { name: "applyChange", method: "POST", path: "/docs/{id}/changes", query: [], auth: true },
  history: { name: "history", method: "GET", path: "/docs/{id}/history", query: ["cursor", "limit"], auth: true },
  fork: { name: "fork", method: "POST", path: "/docs/{id}/fork", query: [], auth: true },
  revokeDocPeers: { name: "revokeDocPeers", method: "POST", path: "/docs/{id}/peers/revoke", query: [], auth: true },
  revokeToken: { name: "revokeToken", method: "POST", path: "/tokens/revoke", query: [], auth: true },
  webhookDeliveries: {
    name: "webhookDeliveries",
    method: "GET",
    path: "/webhooks/deliveries",
    query: ["status", "document_id", "cursor", "limit"],
    auth: true,
  },
} as const satisfies Record<string, Operation>

/** The name of a TandemApi operation. */
export type OperationName = keyof typeof operations

// ---------------------------------------------------------------------------
// Errors

/**
 * An error answer of the REST API, `{"error": {"code", "message"}}`, or a
 * request that failed before any answer (code "network_error").
 */
export class TandemApiError extends Error {
  /** The HTTP status; 0 when no answer came. */
  readonly status: number
  /** The server's stable error code ("document_not_found", …). */
  readonly code: ErrorCode | "network_error" | "unexpected_response"
  /** The operation that failed. */
  readonly operation: OperationName
  /** The server's message, for people. */
  readonly serverMessage: string

  constructor(opts: {
    status: number
    code: ErrorCode | "network_error" | "unexpected_response"
    message: string
    operation: OperationName
    cause?: unknown
  }) {
    super(`${opts.operation}: ${opts.code}: ${opts.message}`, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = "TandemApiError"
    this.status = opts.status
    this.code = opts.code
    this.operation = opts.operation
    this.serverMessage = opts.message
  }
}

/** Whether `e` is a {@link TandemApiError}, optionally with one of `codes`. */
export function isApiError(e: unknown, ...codes: (ErrorCode | "network_error" | "unexpected_response")[]): e is TandemApiError {
  return e instanceof TandemApiError && (codes.length === 0 || codes.includes(e.code))
}

/** Whether `code` is an error code the server uses. */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && Object.prototype.hasOwnProperty.call(ErrorCodes, code)
}

// ---------------------------------------------------------------------------
// The client

/** Options of {@link TandemApi}. */
export interface ApiOptions {
  /**
   * The server, `http://127.0.0.1:3030` (ws:// and wss:// are turned into
   * http:// and https://); "/api/v1" is added. In a page served by Tandem,
   * `location.origin`.
   */
  baseUrl: string
  /**
   * The admin key or an admin-scoped token, sent as `Authorization: Bearer`;
   * a function is called for every request.
   */
  credentials?: string | (() => string | undefined | Promise<string | undefined>)
  /** A fetch implementation; default the global one. */
  fetch?: typeof fetch
}

type Query = Record<string, string | number | undefined>

/** A typed client for Tandem's REST API (/api/v1). */
export class TandemApi {
  readonly baseUrl: string
  #credentials: ApiOptions["credentials"]
  #fetch: typeof fetch

  constructor(options: ApiOptions) {
    const u = new URL(options.baseUrl)
    if (u.protocol === "ws:") u.protocol = "http:"
    if (u.protocol === "wss:") u.protocol = "https:"
    u.search = ""
    u.hash = ""
    this.baseUrl = u.toString().replace(/\/+$/, "") + "/api/v1"
    this.#credentials = options.credentials
    this.#fetch = options.fetch ?? ((...args) => globalThis.fetch(...args))
  }

  /** The OpenAPI 3 document the server serves. */
  openapi(): Promise<Record<string, unknown>> {
    return this.#json("openapi", {})
  }

  /** Create a document; `content` becomes its content (see the README's JSON mapping, e.g. `{"$text": "…"}`). */
  createDoc(content?: Record<string, unknown>): Promise<Created> {
    return this.#json("createDoc", { body: content })
  }

  /** One page of documents, in ID order. */
  listDocs(page: Page = {}): Promise<DocList> {
    return this.#json("listDocs", { query: { ...page } })
  }

  /** Every document, page after page. */
  async *allDocs(pageSize = 100): AsyncGenerator<DocSummary> {
    let cursor: string | undefined
    do {
      const page = await this.listDocs({ limit: pageSize, cursor })
      yield* page.docs
      cursor = page.next_cursor || undefined
    } while (cursor)
  }

  /** A document's metadata, with its heads and live peers. */
  getDoc(id: string): Promise<DocMeta> {
    return this.#json("getDoc", { id })
  }

  /** Delete a document: connected peers receive doc-unavailable. */
  async deleteDoc(id: string): Promise<void> {
    await this.#send("deleteDoc", { id })
  }

  /** The document as JSON, or as it was at `heads` (hex or bs58check change hashes). */
  getContent<T = unknown>(id: string, opts: { heads?: string[] } = {}): Promise<T> {
    return this.#json("getContent", { id, query: { heads: opts.heads?.join(",") } })
  }

  /** Export: the document's `save()` bytes. */
  async exportBinary(id: string): Promise<Uint8Array> {
    const res = await this.#send("exportBinary", { id })
    return new Uint8Array(await res.arrayBuffer())
  }

  /** Import Automerge bytes (a saved document or changes), merged into the document or creating it. */
  async importBinary(id: string, bytes: Uint8Array): Promise<Imported> {
    const res = await this.#send("importBinary", { id, binary: bytes })
    const body = (await this.#parse("importBinary", res)) as Created
    return { ...body, created: res.status === 201 }
  }

  /** Apply a server-side edit: all operations become one Automerge change, or none does. */
  applyChange(id: string, change: ChangeRequest): Promise<ChangeResult> {
    return this.#json("applyChange", { id, body: change })
  }

  /** One page of the document's changes, in causal order. */
  history(id: string, page: Page = {}): Promise<History> {
    return this.#json("history", { id, query: { ...page } })
  }

  /** A new document from this one as of `heads` (default: now). */
  fork(id: string, opts: { heads?: string[] } = {}): Promise<Forked> {
    return this.#json("fork", { id, body: opts.heads ? { heads: opts.heads } : {} })
  }

  /** Close the document's live connections (4403) and revoke their tokens. */
  revokeDocPeers(id: string): Promise<PeersRevoked> {
    return this.#json("revokeDocPeers", { id })
  }

  /** Revoke one token by its `jti` and close its connections. */
  revokeToken(req: { jti: string; expires_at?: string }): Promise<TokenRevoked> {
    return this.#json("revokeToken", { body: req })
  }

  /** One page of the webhook delivery log. */
  webhookDeliveries(
    opts: Page & { status?: "pending" | "delivered" | "failed" | "all"; document_id?: string } = {}
  ): Promise<DeliveryList> {
    return this.#json("webhookDeliveries", { query: { ...opts } })
  }

  // -------------------------------------------------------------------------

  async #json<T>(name: OperationName, req: Req): Promise<T> {
    const res = await this.#send(name, req)
    return (await this.#parse(name, res)) as T
  }

  async #parse(name: OperationName, res: Response): Promise<unknown> {
    try {
      return await res.json()
    } catch (e) {
      throw new TandemApiError({
        status: res.status,
        code: "unexpected_response",
        message: "the answer is not JSON",
        operation: name,
        cause: e,
      })
    }
  }

  async #send(name: OperationName, req: Req): Promise<Response> {
    const op: Operation = operations[name]
    let path: string = op.path
    if (path.includes("{id}")) {
      if (!req.id) throw new TypeError(`${name}: a document ID is required`)
      path = path.replace("{id}", encodeURIComponent(req.id.replace(/^automerge:/, "")))
    }
    const url = new URL(this.baseUrl + path)
    for (const [k, v] of Object.entries(req.query ?? {})) {
      if (!op.query.includes(k)) throw new TypeError(`${name}: unknown query parameter ${k}`)
      if (v !== undefined && v !== "") url.searchParams.set(k, String(v))
    }
    const headers: Record<string, string> = { Accept: "application/json" }
    let body: BodyInit | undefined
    if (req.binary) {
      headers["Content-Type"] = "application/octet-stream"
      body = req.binary as unknown as BodyInit
    } else if (req.body !== undefined) {
      headers["Content-Type"] = "application/json"
      body = JSON.stringify(req.body)
    }
    if (op.auth) {
      const c = typeof this.#credentials === "function" ? await this.#credentials() : this.#credentials
      if (c) headers.Authorization = `Bearer ${c}`
    }
    let res: Response
    try {
      res = await this.#fetch(url.toString(), { method: op.method, headers, body })
    } catch (e) {
      throw new TandemApiError({
        status: 0,
        code: "network_error",
        message: e instanceof Error ? e.message : String(e),
        operation: name,
        cause: e,
      })
    }
    if (res.ok) return res
    let code: TandemApiError["code"] = "unexpected_response"
    let message = `HTTP ${res.status}`
    try {
      const j = (await res.json()) as { error?: { code?: unknown; message?: unknown } }
      // the server's code, even one this client does not know yet
      if (typeof j?.error?.code === "string") code = j.error.code as ErrorCode
      if (typeof j?.error?.message === "string") message = j.error.message
    } catch {
      // not a JSON error body
    }
    throw new TandemApiError({ status: res.status, code, message, operation: name })
  }
}

interface Req {
  id?: string
  query?: Query
  body?: unknown
  binary?: Uint8Array
}
