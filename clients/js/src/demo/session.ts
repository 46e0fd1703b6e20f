// What one browser tab holds: the server's demo configuration, the access
// token and admin credential (from the URL fragment or a form), one Repo
// (IndexedDB storage, so edits survive reloads and offline periods), and a
// REST client.

import { connect, TandemApi, type TandemRepo } from "../client.js"

/** GET /config.json: what the server asks of clients (api/web.go). */
export interface ServerConfig {
  version: string
  /** Access tokens are configured: WebSocket clients need one unless anonymous is true. */
  tokens: boolean
  /** Clients without a token get in (with write access to everything). */
  anonymous: boolean
  /** The REST API (and so the document list and the admin view) needs credentials. */
  admin_auth: boolean
  /** /metrics is served. */
  metrics: boolean
  /** Webhooks are configured (the delivery log is served). */
  webhooks: boolean
}

const TOKEN_KEY = "tandem.token"
const ADMIN_KEY = "tandem.admin"
const NAME_KEY = "tandem.name"

function store(): Storage | undefined {
  try {
    return window.sessionStorage
  } catch {
    return undefined
  }
}

/** The tab's state, shared by the pages. */
export class Session {
  readonly config: ServerConfig
  #repo: TandemRepo | undefined
  readonly api: TandemApi

  constructor(config: ServerConfig) {
    this.config = config
    this.api = new TandemApi({ baseUrl: location.origin, credentials: () => this.adminCredential })
    this.#takeFragment()
    const name = new URLSearchParams(location.search).get("name")
    if (name) localStorage.setItem(NAME_KEY, name)
  }

  /**
   * Read `#token=…` and `#admin=…` from the URL fragment into session storage
   * and remove them from the address bar (so a copied link carries no secret).
   */
  #takeFragment(): void {
    const frag = new URLSearchParams(location.hash.replace(/^#/, ""))
    let took = false
    const token = frag.get("token")
    if (token) {
      store()?.setItem(TOKEN_KEY, token)
      took = true
    }
    const admin = frag.get("admin")
    if (admin) {
      store()?.setItem(ADMIN_KEY, admin)
      took = true
    }
    if (took) history.replaceState(history.state, "", location.pathname + location.search)
  }

  /** The access token for the WebSocket, if any. */
  get token(): string | undefined {
    return store()?.getItem(TOKEN_KEY) || undefined
  }

  /** Whether this tab must get a token before it can connect. */
  get needsToken(): boolean {
    return this.config.tokens && !this.config.anonymous && !this.token
  }

  /** Use a token from now on (and reconnect with it). */
  setToken(token: string): void {
    store()?.setItem(TOKEN_KEY, token)
    if (this.#repo) this.#repo.tandem.setToken(token)
  }

  /** The admin key or admin token for the REST API, if any. */
  get adminCredential(): string | undefined {
    return store()?.getItem(ADMIN_KEY) || undefined
  }

  setAdminCredential(value: string | undefined): void {
    if (value) store()?.setItem(ADMIN_KEY, value)
    else store()?.removeItem(ADMIN_KEY)
  }

  /** The person's display name. */
  get name(): string {
    let n = localStorage.getItem(NAME_KEY)
    if (!n) {
      const animals = ["Otter", "Heron", "Lynx", "Puffin", "Gecko", "Marten", "Ibex", "Wren"]
      n = `${animals[Math.floor(Math.random() * animals.length)]} ${Math.floor(100 + Math.random() * 900)}`
      localStorage.setItem(NAME_KEY, n)
    }
    return n
  }

  set name(n: string) {
    localStorage.setItem(NAME_KEY, n)
  }

  /** The tab's Repo, connected on first use. */
  get repo(): TandemRepo {
    if (!this.#repo) {
      this.#repo = connect({
        url: location.origin,
        token: this.token,
        storage: typeof indexedDB === "undefined" ? "memory" : "indexeddb",
        indexedDBName: "tandem-demo",
        retryInterval: 1000,
      })
    }
    return this.#repo
  }

  /** Whether the Repo exists yet. */
  get connected(): boolean {
    return this.#repo !== undefined
  }
}

/** Fetch the server's demo configuration. */
export async function loadConfig(): Promise<ServerConfig> {
  const res = await fetch("/config.json", { headers: { Accept: "application/json" } })
  if (!res.ok) throw new Error(`GET /config.json: HTTP ${res.status}`)
  return (await res.json()) as ServerConfig
}

/** A stable colour for a peer. */
export function colorFor(key: string): string {
  let hash = 0
  for (let i = 0; i < key.length; i++) hash = (hash * 31 + key.charCodeAt(i)) | 0
  const hue = Math.abs(hash) % 360
  return `hsl(${hue} 70% 45%)`
}
