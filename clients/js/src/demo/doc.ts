// /d/<documentId>: the shared text editor, who is here, and whether the
// server has saved the local edits.

import { Presence, type DocHandle } from "@automerge/automerge-repo/slim"
import { isValidDocumentId, stringifyAutomergeUrl } from "@automerge/automerge-repo/slim"
import type { AutomergeUrl, DocumentId } from "@automerge/automerge-repo/slim"

import { accessTo } from "../token.js"
import { h, replace } from "./dom.js"
import { TextBinding, type StableSelection, type TextDoc } from "./editor.js"
import { colorFor, type Session } from "./session.js"
import { tokenForm } from "./tokenform.js"

/** What each tab broadcasts about its person. */
interface PeerPresence extends Record<string, unknown> {
  name: string
  color: string
  selection: StableSelection | null
}

function lineCol(text: string, pos: number): string {
  const before = text.slice(0, pos)
  const line = before.split("\n").length
  const col = pos - before.lastIndexOf("\n")
  return `line ${line}, col ${col}`
}

/** Render the document page into `root`; returns its cleanup. */
export function docPage(root: HTMLElement, session: Session, id: string): () => void {
  if (!isValidDocumentId(id)) {
    replace(root, h("section", { class: "card" }, h("h1", {}, "Not a document ID"), h("p", {}, id)))
    return () => {}
  }
  const url = stringifyAutomergeUrl({ documentId: id as DocumentId }) as AutomergeUrl
  const status = h("span", { class: "status", "data-testid": "status", "data-state": "connecting" }, "connecting…")
  const access = h("span", { class: "badge", "data-testid": "access", hidden: true })
  const share = `${location.origin}/d/${id}`
  const shareInput = h("input", { class: "share", readOnly: true, value: share, "data-testid": "share-link", onfocus: (e: Event) => (e.target as HTMLInputElement).select() })
  const copy = h(
    "button",
    {
      class: "secondary",
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(share)
          copy.textContent = "Copied"
        } catch {
          shareInput.select()
        }
        setTimeout(() => (copy.textContent = "Copy link"), 1500)
      },
    },
    "Copy link"
  )
  const notice = h("div", { class: "notice", hidden: true })
  const textarea = h("textarea", {
    "data-testid": "editor",
    spellcheck: "false",
    placeholder: "Loading the document…",
    disabled: true,
    "aria-label": "Shared text",
  })
  const mirror = h("div", { class: "mirror", "aria-hidden": "true" })
  const peers = h("ul", { class: "peers", "data-testid": "peers" })
  const nameInput = h("input", { value: session.name, "aria-label": "Your name", maxlength: "40" })
  replace(
    root,
    h(
      "section",
      { class: "doc" },
      h(
        "div",
        { class: "doc-head" },
        h("div", {}, h("h1", {}, "Shared text"), h("code", { class: "doc-id" }, id)),
        h("div", { class: "doc-tools" }, access, status)
      ),
      h("div", { class: "share-row" }, h("label", {}, "Share ", shareInput), copy),
      session.config.tokens
        ? h("p", { class: "hint" }, "Everyone opening the link needs a token of their own for this document (append #token=… to the link).")
        : null,
      notice,
      h(
        "div",
        { class: "doc-body" },
        h("div", { class: "editor-wrap" }, textarea, mirror),
        h("aside", {}, h("h2", {}, "Here now"), peers, h("label", { class: "name" }, "Your name ", nameInput))
      )
    )
  )

  if (session.needsToken) {
    replace(notice, tokenForm(session, "This server needs an access token to open documents.", () => location.reload()))
    notice.hidden = false
    status.textContent = "token needed"
    status.dataset.state = "needs-token"
    return () => {}
  }

  const repo = session.repo
  const conn = repo.tandem
  let handle: DocHandle<TextDoc> | undefined
  let binding: TextBinding | undefined
  let presence: Presence<PeerPresence, TextDoc> | undefined
  let readOnly = accessTo(session.token, id) === "read"
  let noAccess = accessTo(session.token, id) === "none"
  let unavailable = false
  let destroyed = false
  const cleanups: (() => void)[] = []

  const showAccess = () => {
    access.hidden = !readOnly && !noAccess
    access.textContent = noAccess ? "no access" : "read-only"
    textarea.readOnly = readOnly || noAccess
    if (readOnly) textarea.title = "Your token gives read-only access: your edits are not sent"
  }
  showAccess()

  const updateStatus = () => {
    let text: string
    let state: string
    if (conn.status === "needs-token") {
      text = "token needed"
      state = "needs-token"
    } else if (conn.status === "revoked") {
      text = "access revoked"
      state = "revoked"
    } else if (conn.status !== "online") {
      text = handle ? "offline: edits are kept on this device" : "connecting…"
      state = handle ? "offline" : "connecting"
    } else if (!handle) {
      text = unavailable ? "not found yet" : "loading…"
      state = unavailable ? "unavailable" : "loading"
    } else if (readOnly) {
      text = conn.isSaved(handle) ? "up to date (read-only)" : "syncing…"
      state = conn.isSaved(handle) ? "read-only" : "syncing"
    } else if (conn.isSaved(handle)) {
      text = "saved"
      state = "saved"
    } else {
      text = "saving…"
      state = "saving"
    }
    if (status.textContent !== text) status.textContent = text
    status.dataset.state = state
  }
  const timer = setInterval(updateStatus, 250)
  cleanups.push(() => clearInterval(timer))
  cleanups.push(conn.on("status", updateStatus))
  cleanups.push(
    conn.on("server-error", ({ message }) => {
      if (/read-only/.test(message)) {
        readOnly = true
        showAccess()
      }
    })
  )
  const showTokenNotice = (why: string) => {
    replace(notice, tokenForm(session, why, () => (notice.hidden = true)))
    notice.hidden = false
  }
  cleanups.push(conn.on("expired", e => !e.willRefresh && showTokenNotice("The access token expired or was refused: paste a fresh one.")))
  cleanups.push(
    conn.on("revoked", () => {
      replace(notice, h("p", {}, "Access was revoked: this page stopped syncing. Edits stay on this device."))
      notice.hidden = false
    })
  )

  // --- presence ---------------------------------------------------------------
  const renderPeers = () => {
    if (!presence || !binding) return
    const me = repo.peerId
    const text = textarea.value
    const items: HTMLElement[] = []
    const local = presence.getLocalState()
    items.push(
      h(
        "li",
        { "data-testid": "peer", "data-peer-id": me, "data-self": "true", "data-name": local.name },
        h("span", { class: "dot", style: `--c:${local.color}` }),
        h("span", { class: "peer-name" }, local.name, h("small", {}, " (you)")),
        h("small", { class: "where" }, lineCol(text, textarea.selectionEnd))
      )
    )
    const cursors = []
    const states = presence.getPeerStates().value
    for (const [peerId, st] of Object.entries(states)) {
      if (peerId === me) continue
      const v = st.value as Partial<PeerPresence>
      const name = typeof v.name === "string" ? v.name : "someone"
      const color = typeof v.color === "string" ? v.color : colorFor(peerId)
      const pos = binding.resolve(v.selection ?? null)
      if (pos) cursors.push({ name, color, start: pos.start, end: pos.end })
      items.push(
        h(
          "li",
          { "data-testid": "peer", "data-peer-id": peerId, "data-name": name },
          h("span", { class: "dot", style: `--c:${color}` }),
          h("span", { class: "peer-name" }, name),
          h("small", { class: "where" }, pos ? lineCol(text, pos.end) : "")
        )
      )
    }
    peers.replaceChildren(...items)
    binding.setCursors(cursors)
  }

  let selTimer: ReturnType<typeof setTimeout> | undefined
  const broadcastSelection = () => {
    if (selTimer) return
    selTimer = setTimeout(() => {
      selTimer = undefined
      if (presence?.running && binding) {
        presence.broadcast("selection", binding.stableSelection() ?? null)
        renderPeers()
      }
    }, 80)
  }
  cleanups.push(() => selTimer && clearTimeout(selTimer))

  nameInput.addEventListener("change", () => {
    const n = nameInput.value.trim() || session.name
    session.name = n
    presence?.broadcast("name", n)
    renderPeers()
  })

  // --- the document -----------------------------------------------------------
  const open = async () => {
    for (let attempt = 0; !destroyed; attempt++) {
      try {
        const hd = await repo.find<TextDoc>(url)
        if (destroyed) return
        handle = hd
        break
      } catch {
        unavailable = true
        updateStatus()
        await new Promise(r => setTimeout(r, Math.min(5000, 1000 + attempt * 500)))
      }
    }
    if (!handle || destroyed) return
    unavailable = false
    const hd = handle
    if (typeof hd.doc()?.text !== "string" && !readOnly && !noAccess) {
      hd.change(d => {
        d.text = ""
      })
    }
    textarea.disabled = false
    textarea.placeholder = readOnly ? "Nothing here yet." : "Start typing. Everyone with the link sees it as you type."
    binding = new TextBinding(textarea, mirror, hd, () => broadcastSelection())
    cleanups.push(() => binding?.destroy())
    presence = new Presence<PeerPresence, TextDoc>({ handle: hd })
    const name = session.name
    presence.start({
      initialState: { name, color: colorFor(name + repo.peerId), selection: null },
      heartbeatMs: 2000,
      peerTtlMs: 7000,
    })
    // The stock Presence sends its whole state only when it sees a new peer,
    // so two peers that both forgot each other (a long outage) could stay
    // unaware of each other: restate ours every few seconds instead of bare
    // heartbeats (three small messages, far below the server's rate limit).
    const restate = () => {
      if (!presence?.running) return
      const st = presence.getLocalState()
      presence.broadcast("name", st.name)
      presence.broadcast("color", st.color)
      presence.broadcast("selection", st.selection)
    }
    const restateTimer = setInterval(restate, 5000)
    cleanups.push(() => clearInterval(restateTimer))
    cleanups.push(conn.on("status", s => s === "online" && setTimeout(restate, 1000)))
    for (const ev of ["update", "snapshot", "heartbeat", "goodbye", "pruning"] as const) {
      presence.on(ev, renderPeers)
    }
    const onChange = () => renderPeers()
    hd.on("change", onChange)
    cleanups.push(() => hd.off("change", onChange))
    const stop = () => presence?.stop()
    window.addEventListener("pagehide", stop)
    cleanups.push(() => {
      window.removeEventListener("pagehide", stop)
      stop()
    })
    renderPeers()
    updateStatus()
    if (!readOnly && !noAccess && document.activeElement === document.body) textarea.focus()
  }
  void open()

  return () => {
    destroyed = true
    for (const fn of cleanups.reverse()) fn()
  }
}
