/**
 * Reading (never verifying) Tandem access tokens on the client: the server
 * verifies them; a client only looks at its own token to know when it expires
 * and what it grants, for example to show a document as read-only.
 */

/** What a Tandem access token grants for one document. */
export type Access = "none" | "read" | "write"

/** The claims of a Tandem access token (see the README's access control section). */
export interface TokenClaims {
  /** Document ID (bare, as in `automerge:<ID>`) or "*" → "read" or "write". */
  docs?: Record<string, "read" | "write">
  /** True grants the REST API. */
  admin?: boolean
  /** Expiry, seconds since the epoch. */
  exp?: number
  nbf?: number
  iat?: number
  /** The token's ID, for revocation. */
  jti?: string
  /** The principal. */
  sub?: string
  [claim: string]: unknown
}

function base64UrlDecode(s: string): string {
  const b64 = s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4)
  const bin = atob(b64)
  const bytes = Uint8Array.from(bin, c => c.charCodeAt(0))
  return new TextDecoder().decode(bytes)
}

/**
 * The claims of a compact JWT, or undefined when `token` is not one. The
 * signature is not checked: only the server can do that.
 */
export function tokenClaims(token: string | undefined): TokenClaims | undefined {
  if (!token) return undefined
  const parts = token.split(".")
  if (parts.length !== 3) return undefined
  try {
    const claims = JSON.parse(base64UrlDecode(parts[1]))
    return claims && typeof claims === "object" && !Array.isArray(claims) ? (claims as TokenClaims) : undefined
  } catch {
    return undefined
  }
}

/** When the token expires (its `exp`), or undefined when it has none or is not a JWT. */
export function tokenExpiresAt(token: string | undefined): Date | undefined {
  const exp = tokenClaims(token)?.exp
  return typeof exp === "number" ? new Date(exp * 1000) : undefined
}

/**
 * What the token grants for `documentId` (bare ID or `automerge:` URL), by
 * the server's rule: an explicit ID wins over "*". Without a token the
 * answer is "write" (an open server, or one that allows anonymous clients).
 */
export function accessTo(token: string | undefined, documentId: string): Access {
  if (!token) return "write"
  const docs = tokenClaims(token)?.docs
  if (!docs || typeof docs !== "object") return "none"
  const id = documentId.replace(/^automerge:/, "")
  const v = Object.prototype.hasOwnProperty.call(docs, id) ? docs[id] : docs["*"]
  return v === "read" || v === "write" ? v : "none"
}
