// The demo served by Tandem at /, /d/<documentId> and /admin. It loads the
// Automerge core from /assets/automerge.wasm, asks the server what it needs
// (GET /config.json), and routes inside the page.

import "./style.css"

import { initializeWasm } from "@automerge/automerge/slim"

import { adminPage } from "./admin.js"
import { docPage } from "./doc.js"
import { h, replace } from "./dom.js"
import { listPage } from "./list.js"
import { loadConfig, Session } from "./session.js"

async function main() {
  const app = document.getElementById("app")!
  const [config] = await Promise.all([loadConfig(), initializeWasm("/assets/automerge.wasm")])
  const session = new Session(config)

  const pill = h("span", { class: "conn", "data-testid": "connection", "data-state": "idle" }, "")
  const navLink = (href: string, label: string) => h("a", { href, "data-link": "" }, label)
  const nav = h("nav", {}, navLink("/", "Documents"), navLink("/admin", "Admin"))
  const main = h("main", {})
  replace(
    app,
    h("header", {}, h("a", { class: "brand", href: "/", "data-link": "" }, h("span", { class: "logo" }), "Tandem"), nav, pill),
    main,
    h("footer", {}, `Tandem ${config.version} · an Automerge sync server · `, h("a", { href: "/api/v1/openapi.json" }, "API"))
  )

  const showConnection = () => {
    if (!session.connected) return
    const s = session.repo.tandem.status
    pill.dataset.state = s
    pill.textContent = { connecting: "connecting…", online: "online", offline: "offline", "needs-token": "token needed", revoked: "revoked", closed: "closed" }[s]
  }

  let cleanup: () => void = () => {}
  const route = () => {
    cleanup()
    const path = location.pathname
    for (const a of nav.querySelectorAll("a")) a.classList.toggle("active", a.getAttribute("href") === (path.startsWith("/admin") ? "/admin" : path === "/" ? "/" : ""))
    if (path === "/" || path === "") {
      document.title = "Tandem"
      cleanup = listPage(main, session, go)
    } else if (path.startsWith("/d/")) {
      const id = decodeURIComponent(path.slice(3).split("/")[0])
      document.title = `Tandem · ${id.slice(0, 8)}`
      cleanup = docPage(main, session, id)
    } else if (path === "/admin" || path.startsWith("/admin/")) {
      document.title = "Tandem admin"
      cleanup = adminPage(main, session)
    } else {
      replace(main, h("section", { class: "card" }, h("h1", {}, "Not found"), h("a", { href: "/", "data-link": "" }, "Documents")))
      cleanup = () => {}
    }
    if (session.connected) {
      showConnection()
      offStatus?.()
      offStatus = session.repo.tandem.on("status", showConnection)
    }
  }
  let offStatus: (() => void) | undefined
  const go = (path: string) => {
    history.pushState(null, "", path)
    route()
  }
  document.addEventListener("click", e => {
    const a = (e.target as Element).closest?.("a[data-link]")
    if (!a || e.defaultPrevented || (e as MouseEvent).button !== 0 || (e as MouseEvent).metaKey || (e as MouseEvent).ctrlKey) return
    e.preventDefault()
    go(a.getAttribute("href")!)
  })
  window.addEventListener("popstate", route)
  route()
}

main().catch(e => {
  const app = document.getElementById("app")
  if (app) replace(app, h("section", { class: "card" }, h("h1", {}, "Tandem could not start"), h("pre", {}, String(e?.stack ?? e))))
  console.error(e)
})
