// /admin: documents with sizes, change counts and live peers; one document's
// JSON content, history (with the content at any change) and webhook
// deliveries; live numbers from /metrics. Everything comes from the REST API,
// which needs the admin key or an admin token once credentials are set.

import { isApiError, type DocMeta, type HistoryChange } from "../rest.js"
import { ago, bytes, h, replace, short } from "./dom.js"
import type { Session } from "./session.js"
import { adminForm } from "./tokenform.js"

/** Sum each metric family of a Prometheus text exposition over its labels. */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>()
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line)
    if (!m) continue
    const v = Number(m[3])
    if (!Number.isFinite(v)) continue
    out.set(m[1], (out.get(m[1]) ?? 0) + v)
  }
  return out
}

const CARDS: { key: string; label: string; rate?: boolean; fmt?: (n: number) => string }[] = [
  { key: "tandem_connections", label: "connections" },
  { key: "tandem_rooms", label: "documents in memory" },
  { key: "tandem_connections_total", label: "connections since start" },
  { key: "tandem_messages_in_total", label: "messages in /s", rate: true },
  { key: "tandem_messages_out_total", label: "messages out /s", rate: true },
  { key: "tandem_bytes_in_total", label: "received", fmt: bytes },
  { key: "tandem_bytes_out_total", label: "sent", fmt: bytes },
  { key: "tandem_disconnects_total", label: "disconnects" },
  { key: "tandem_store_append_failures_total", label: "store failures" },
]

/**
 * A change's time as an ISO string. JavaScript Automerge records seconds
 * where the format (and the server) expects milliseconds, so a time in the
 * first months of 1970 is read as seconds.
 */
export function changeTime(iso: string | undefined): string | undefined {
  if (!iso) return undefined
  const ms = Date.parse(iso)
  if (Number.isNaN(ms)) return undefined
  return ms > 0 && ms < 1e10 ? new Date(ms * 1000).toISOString() : iso
}

/** Render the admin view into `root`; returns its cleanup. */
export function adminPage(root: HTMLElement, session: Session): () => void {
  const notice = h("div", { class: "notice", hidden: true })
  const metrics = h("div", { class: "metrics", "data-testid": "metrics" })
  const docsBody = h("tbody", {})
  const detail = h("section", { class: "card detail", "data-testid": "admin-detail", hidden: true })
  const signOut = h(
    "button",
    {
      class: "secondary",
      hidden: !session.adminCredential,
      onclick: () => {
        session.setAdminCredential(undefined)
        location.reload()
      },
    },
    "Sign out"
  )
  replace(
    root,
    h(
      "div",
      { class: "admin" },
      h(
        "section",
        { class: "card" },
        h("div", { class: "doc-head" }, h("h1", {}, "Admin"), h("div", { class: "doc-tools" }, h("span", { class: "hint" }, `Tandem ${session.config.version}`), signOut)),
        notice,
        h("h2", {}, "Live"),
        metrics,
        h("h2", {}, "Documents"),
        h(
          "table",
          { class: "docs", "data-testid": "admin-docs" },
          h(
            "thead",
            {},
            h("tr", {}, h("th", {}, "Document"), h("th", { class: "num" }, "Size"), h("th", { class: "num" }, "Snapshot"), h("th", { class: "num" }, "Changes"), h("th", { class: "num" }, "Live peers"), h("th", {}, "Updated"))
          ),
          docsBody
        )
      ),
      detail
    )
  )

  let destroyed = false
  let selected = new URLSearchParams(location.search).get("doc") ?? undefined
  let viewHeads: string | undefined // the change being viewed, or undefined for now
  let authOK = true

  const needAuth = (e: unknown): boolean => {
    if (!isApiError(e, "unauthorized", "forbidden")) return false
    authOK = false
    replace(
      notice,
      adminForm(
        session,
        e.code === "forbidden" ? "That token is not admin-scoped." : "The admin view needs the server's admin key or an admin token.",
        () => {
          authOK = true
          notice.hidden = true
          signOut.hidden = false
          void refresh()
        }
      )
    )
    notice.hidden = false
    return true
  }

  // --- metrics ----------------------------------------------------------------
  let last: { at: number; values: Map<string, number> } | undefined
  const loadMetrics = async () => {
    if (!session.config.metrics) {
      replace(metrics, h("p", { class: "hint" }, "This server serves no /metrics."))
      return
    }
    const headers: Record<string, string> = {}
    if (session.adminCredential) headers.Authorization = `Bearer ${session.adminCredential}`
    try {
      const res = await fetch("/metrics", { headers })
      if (!res.ok) {
        replace(metrics, h("p", { class: "hint" }, `/metrics answered ${res.status}`))
        return
      }
      const values = parseMetrics(await res.text())
      const now = Date.now()
      const prev = last
      last = { at: now, values }
      if (destroyed) return
      metrics.replaceChildren(
        ...CARDS.map(c => {
          let v = values.get(c.key) ?? 0
          if (c.rate) {
            const dt = prev ? (now - prev.at) / 1000 : 0
            v = prev && dt > 0 ? Math.max(0, (v - (prev.values.get(c.key) ?? 0)) / dt) : 0
          }
          const shown = c.fmt ? c.fmt(v) : c.rate ? v.toFixed(1) : String(Math.round(v))
          return h("div", { class: "metric", "data-metric": c.key }, h("b", {}, shown), h("span", {}, c.label))
        })
      )
    } catch {
      replace(metrics, h("p", { class: "hint" }, "The server does not answer."))
    }
  }

  // --- documents --------------------------------------------------------------
  const loadDocs = async () => {
    const page = await session.api.listDocs({ limit: 100 })
    const metas = await Promise.all(
      page.docs.map(d => session.api.getDoc(d.id).catch(() => ({ ...d, heads: [], live_peers: [] }) as DocMeta))
    )
    if (destroyed) return
    metas.sort((a, b) => b.updated_at.localeCompare(a.updated_at))
    docsBody.replaceChildren(
      ...metas.map(d =>
        h(
          "tr",
          {
            "data-testid": "admin-doc",
            "data-doc-id": d.id,
            class: d.id === selected ? "selected" : "",
            onclick: () => select(d.id),
          },
          h("td", {}, h("code", {}, d.id)),
          h("td", { class: "num" }, bytes(d.size_bytes)),
          h("td", { class: "num" }, bytes(d.snapshot_bytes)),
          h("td", { class: "num", "data-testid": "change-count" }, String(d.change_count)),
          h("td", { class: "num", "data-testid": "live-peers", title: d.live_peers.join("\n") }, String(d.live_peers.length)),
          h("td", {}, ago(d.updated_at))
        )
      )
    )
    if (page.next_cursor) docsBody.appendChild(h("tr", {}, h("td", { colspan: "6", class: "hint" }, "Showing the first 100 documents.")))
  }

  // --- one document -------------------------------------------------------------
  const content = h("pre", { class: "json", "data-testid": "admin-content" })
  const contentLabel = h("span", { class: "hint", "data-testid": "admin-content-label" })
  const historyList = h("ol", { class: "history", "data-testid": "admin-history" })
  const deliveries = h("div", { "data-testid": "admin-deliveries" })
  const peersLine = h("p", { class: "hint", "data-testid": "admin-live-peers" })

  const select = (id: string) => {
    selected = id
    viewHeads = undefined
    history.replaceState(history.state, "", `/admin?doc=${encodeURIComponent(id)}`)
    void refresh()
  }

  const loadDetail = async (id: string) => {
    const [meta, hist] = await Promise.all([session.api.getDoc(id), loadHistory(id)])
    const body = await session.api.getContent(id, viewHeads ? { heads: [viewHeads] } : {})
    let dl: HTMLElement
    if (!session.config.webhooks) {
      dl = h("p", { class: "hint" }, "Webhooks are off (no --webhook-urls).")
    } else {
      const page = await session.api.webhookDeliveries({ document_id: id, status: "all", limit: 50 })
      dl = page.deliveries.length
        ? h(
            "table",
            { class: "docs" },
            h("thead", {}, h("tr", {}, h("th", {}, "Event"), h("th", {}, "Type"), h("th", {}, "Status"), h("th", { class: "num" }, "Attempts"), h("th", {}, "When"), h("th", {}, "Last error"))),
            h(
              "tbody",
              {},
              page.deliveries.map(d =>
                h(
                  "tr",
                  { "data-testid": "delivery", "data-status": d.status },
                  h("td", {}, String(d.id)),
                  h("td", {}, d.type),
                  h("td", {}, h("span", { class: `pill ${d.status}` }, d.status)),
                  h("td", { class: "num" }, String(d.attempts)),
                  h("td", {}, ago(d.delivered_at ?? d.created_at)),
                  h("td", { class: "err" }, d.last_error ?? "")
                )
              )
            )
          )
        : h("p", { class: "hint" }, "No webhook events for this document yet.")
    }
    if (destroyed || selected !== id) return
    replace(peersLine, meta.live_peers.length ? `Live peers: ${meta.live_peers.join(", ")}` : "No live peers.")
    const json = JSON.stringify(body, null, 2)
    if (content.textContent !== json) content.textContent = json
    const at = viewHeads ? hist.find(c => c.hash === viewHeads) : undefined
    contentLabel.textContent = at ? `as of change ${hist.indexOf(at) + 1} of ${hist.length} (${short(at.hash, 12)})` : `now (${meta.change_count} changes)`
    historyList.replaceChildren(
      h(
        "li",
        { class: viewHeads ? "" : "current" },
        h("button", { class: "link", "data-testid": "history-now", onclick: () => ((viewHeads = undefined), void refresh()) }, "Now")
      ),
      ...hist
        .slice()
        .reverse()
        .map((c, i) =>
          h(
            "li",
            { class: c.hash === viewHeads ? "current" : "", "data-testid": "history-change", "data-hash": c.hash },
            h(
              "button",
              { class: "link", onclick: () => ((viewHeads = c.hash), void refresh()) },
              `#${hist.length - i} `,
              h("code", {}, short(c.hash, 10))
            ),
            h("small", {}, ` ${short(c.actor, 8)} seq ${c.seq}${c.message ? ` · ${c.message}` : ""} · ${ago(changeTime(c.time))}`)
          )
        )
    )
    replace(deliveries, dl)
  }

  const historyCache = new Map<string, { total: number; changes: HistoryChange[] }>()
  const loadHistory = async (id: string): Promise<HistoryChange[]> => {
    // whole history, page by page; cached while the total does not change
    const first = await session.api.history(id, { limit: 1 })
    const cached = historyCache.get(id)
    if (cached && cached.total === first.total) return cached.changes
    const changes: HistoryChange[] = []
    let cursor: string | undefined
    do {
      const page = await session.api.history(id, { limit: 1000, cursor })
      changes.push(...page.changes)
      cursor = page.next_cursor || undefined
    } while (cursor && changes.length < 20_000)
    historyCache.set(id, { total: first.total, changes })
    return changes
  }

  const showDetail = (id: string) => {
    replace(
      detail,
      h("div", { class: "doc-head" }, h("h2", {}, "Document ", h("code", {}, id)), h("a", { href: `/d/${id}`, "data-link": "" }, "Open in the editor")),
      peersLine,
      h(
        "div",
        { class: "detail-grid" },
        h("div", {}, h("h3", {}, "Content ", contentLabel), content),
        h("div", {}, h("h3", {}, "History"), historyList)
      ),
      h("h3", {}, "Webhook deliveries"),
      deliveries
    )
    detail.hidden = false
  }

  let shownDetail: string | undefined
  let busy = false
  let again = false
  const refresh = async (): Promise<void> => {
    if (destroyed) return
    if (busy) {
      again = true
      return
    }
    busy = true
    try {
      await loadMetrics()
      if (!authOK) return
      await loadDocs()
      if (selected) {
        if (shownDetail !== selected) {
          showDetail(selected)
          shownDetail = selected
        }
        await loadDetail(selected)
      }
      notice.hidden = true
    } catch (e) {
      if (!needAuth(e) && !destroyed) {
        replace(notice, h("p", {}, `The server did not answer: ${e instanceof Error ? e.message : String(e)}`))
        notice.hidden = false
      }
    } finally {
      busy = false
      if (again) {
        again = false
        void refresh()
      }
    }
  }
  void refresh()
  const timer = setInterval(() => void refresh(), 2000)
  return () => {
    destroyed = true
    clearInterval(timer)
  }
}
