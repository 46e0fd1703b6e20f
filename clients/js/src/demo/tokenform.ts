import { h } from "./dom.js"
import type { Session } from "./session.js"

/** An in-page prompt for an access token (the URL fragment #token=… works too). */
export function tokenForm(session: Session, why: string, done: () => void): HTMLElement {
  const input = h("input", { type: "password", placeholder: "eyJhbGciOi…", "aria-label": "Access token", "data-testid": "token-input", autocomplete: "off" })
  return h(
    "form",
    {
      class: "token-form",
      "data-testid": "token-form",
      onsubmit: (e: Event) => {
        e.preventDefault()
        const t = input.value.trim()
        if (!t) return
        session.setToken(t)
        done()
      },
    },
    h("p", {}, why),
    h("p", { class: "hint" }, "Mint one with ", h("code", {}, "tandem token --doc '*=write' --ttl 1h"), ", or open this page with #token=… in its URL."),
    h("div", { class: "row" }, input, h("button", { type: "submit" }, "Use token"))
  )
}

/** An in-page prompt for the admin key (or an admin-scoped token). */
export function adminForm(session: Session, why: string, done: () => void): HTMLElement {
  const input = h("input", { type: "password", placeholder: "admin key or admin token", "aria-label": "Admin key", "data-testid": "admin-key-input", autocomplete: "off" })
  return h(
    "form",
    {
      class: "token-form",
      "data-testid": "admin-key-form",
      onsubmit: (e: Event) => {
        e.preventDefault()
        const v = input.value.trim()
        if (!v) return
        session.setAdminCredential(v)
        done()
      },
    },
    h("p", {}, why),
    h("p", { class: "hint" }, "The server's --admin-key, or a token minted with ", h("code", {}, "tandem token --admin"), "; or open this page with #admin=… in its URL."),
    h("div", { class: "row" }, input, h("button", { type: "submit" }, "Sign in"))
  )
}
