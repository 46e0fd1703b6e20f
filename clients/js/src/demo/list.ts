// /: the documents on the server (REST API) and a "new document" button.

import { isValidAutomergeUrl, isValidDocumentId, parseAutomergeUrl } from "@automerge/automerge-repo/slim"

import { isApiError, type DocSummary } from "../rest.js"
import { ago, bytes, h, replace } from "./dom.js"
import type { TextDoc } from "./editor.js"
import type { Session } from "./session.js"
import { adminForm, tokenForm } from "./tokenform.js"

/** Render the home page into `root`; `go` navigates inside the app. Returns its cleanup. */
export function listPage(root: HTMLElement, session: Session, go: (path: string) => void): () => void {
  const rows = h("tbody", {})
  const message = h("div", { class: "notice", hidden: true })
  const empty = h("p", { class: "hint", hidden: true }, "No documents yet: make the first one.")
  const newDoc = h(
    "button",
    {
      "data-testid": "new-doc",
      onclick: () => {
        if (session.needsToken) {
          replace(message, tokenForm(session, "This server needs an access token to create documents.", () => location.reload()))
          message.hidden = false
          return
        }
        // Created locally (works offline too) and synced to the server.
        const handle = session.repo.create<TextDoc>({ text: "" })
        go(`/d/${handle.documentId}`)
      },
    },
    "New document"
  )
  const openInput = h("input", { placeholder: "automerge:… or a document ID", "aria-label": "Document URL or ID" })
  const openForm = h(
    "form",
    {
      class: "row",
      onsubmit: (e: Event) => {
        e.preventDefault()
        let v = openInput.value.trim()
        const m = /\/d\/([^/?#]+)/.exec(v)
        if (m) v = m[1]
        if (isValidAutomergeUrl(v)) v = parseAutomergeUrl(v).documentId
        if (isValidDocumentId(v)) go(`/d/${v}`)
        else openInput.setCustomValidity("not a document URL or ID")
        openInput.reportValidity()
      },
    },
    openInput,
    h("button", { class: "secondary", type: "submit" }, "Open")
  )
  openInput.addEventListener("input", () => openInput.setCustomValidity(""))

  replace(
    root,
    h(
      "section",
      { class: "card" },
      h("div", { class: "doc-head" }, h("h1", {}, "Documents"), newDoc),
      h("p", { class: "hint" }, "Every document is an Automerge document that stock automerge-repo clients sync through this server. Open one in two windows and type in both."),
      openForm,
      message,
      h(
        "table",
        { class: "docs", "data-testid": "doc-list" },
        h("thead", {}, h("tr", {}, h("th", {}, "Document"), h("th", {}, "Text"), h("th", { class: "num" }, "Size"), h("th", { class: "num" }, "Changes"), h("th", {}, "Updated"))),
        rows
      ),
      empty
    )
  )

  const previews = new Map<string, string>()
  let destroyed = false
  const row = (d: DocSummary) =>
    h(
      "tr",
      { "data-testid": "doc-row", "data-doc-id": d.id },
      h("td", {}, h("a", { href: `/d/${d.id}`, "data-link": "", "data-testid": "doc-link" }, h("code", {}, d.id))),
      h("td", { class: "preview" }, previews.get(d.id) ?? ""),
      h("td", { class: "num" }, bytes(d.size_bytes)),
      h("td", { class: "num" }, String(d.change_count)),
      h("td", {}, ago(d.updated_at))
    )

  const load = async () => {
    try {
      const page = await session.api.listDocs({ limit: 100 })
      if (destroyed) return
      message.hidden = true
      const docs = [...page.docs].sort((a, b) => b.updated_at.localeCompare(a.updated_at))
      rows.replaceChildren(...docs.map(row))
      empty.hidden = docs.length > 0
      // the first line of each document's text, for the list
      await Promise.all(
        docs.slice(0, 30).map(async d => {
          try {
            const c = await session.api.getContent<Partial<TextDoc>>(d.id)
            const t = typeof c?.text === "string" ? c.text : JSON.stringify(c)
            previews.set(d.id, t.split("\n")[0].slice(0, 80))
          } catch {
            // deleted meanwhile
          }
        })
      )
      if (!destroyed) rows.replaceChildren(...docs.map(row))
    } catch (e) {
      if (destroyed) return
      if (isApiError(e, "unauthorized", "forbidden")) {
        replace(
          message,
          adminForm(
            session,
            e.code === "forbidden"
              ? "That credential is not admin-scoped: listing documents needs the admin key or an admin token."
              : "Listing documents needs the admin key or an admin token (you can still create and open documents).",
            () => void load()
          )
        )
      } else {
        replace(message, h("p", {}, `Could not list documents: ${e instanceof Error ? e.message : String(e)}`))
      }
      message.hidden = false
    }
  }
  void load()
  const timer = setInterval(() => void load(), 5000)
  return () => {
    destroyed = true
    clearInterval(timer)
  }
}
