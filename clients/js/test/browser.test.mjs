// The demo in a real browser: headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core; nothing downloads a browser) against the real
// binary, which serves the demo from api/web/dist.
//
//  - two browser contexts type into the same document at the same time and
//    end with identical text; each sees the other's presence and cursor;
//  - a reload (with the local IndexedDB copy gone) shows the text from the
//    server;
//  - with the server stopped one context keeps editing, and once it is back
//    the other receives those edits;
//  - the admin view lists a document a client created and shows its content
//    and its content at an earlier change;
//  - with tokens, a read-only token shows the document read-only, and a page
//    without one asks for it;
//  - no page errors or console errors (except the browser's own reports of
//    failed WebSocket connections while the server is down).
//
// A screenshot of the two-editor view goes to test-results/demo.png, and to
// docs/demo.png when TANDEM_UPDATE_SCREENSHOT=1 (or when that file is
// missing), so that ordinary runs leave the work tree alone.

import { test, before, after } from "node:test"
import assert from "node:assert/strict"
import { createHmac, randomBytes } from "node:crypto"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import path from "node:path"

import { chromium } from "playwright-core"

import { REPO_ROOT, startServer, waitFor } from "./helpers.mjs"

const CHROMIUM = process.env.TANDEM_CHROMIUM ?? "/usr/bin/chromium"
const LONG = 60_000 // the machine is shared: generous bounds, never tight timings
const SHOT_DOCS = path.join(REPO_ROOT, "docs", "demo.png")
const SHOT_OUT = path.join(REPO_ROOT, "clients", "js", "test-results", "demo.png")

let browser
let srv
before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install -y chromium (scripts/test.sh does it as root)`)
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    timeout: LONG,
  })
  srv = await startServer()
  // the binary must serve the committed build (else rebuild bin/tandem)
  const served = Buffer.from(await (await fetch(`${srv.httpUrl}/assets/app.js`)).arrayBuffer())
  const committed = readFileSync(path.join(REPO_ROOT, "api", "web", "dist", "app.js"))
  assert.ok(served.equals(committed), "the binary serves another demo build than api/web/dist: rebuild it (go build -o bin/tandem ./cmd/tandem)")
})
after(async () => {
  await browser?.close()
  await srv?.cleanup()
})

/**
 * A browser context with one page, recording page errors and console errors.
 * `allowConsole` lists patterns of console errors that are expected.
 */
async function person(t, { allowConsole = [] } = {}) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 680 } })
  t.after(() => context.close())
  const page = await context.newPage()
  page.setDefaultTimeout(LONG)
  const problems = []
  page.on("pageerror", e => problems.push(`pageerror: ${e.message}`))
  page.on("console", m => {
    if (m.type() !== "error") return
    const text = m.text()
    if (allowConsole.some(re => re.test(text))) return
    problems.push(`console.error: ${text}`)
  })
  return { context, page, problems }
}

const editor = page => page.locator('[data-testid="editor"]')
const editorValue = page => editor(page).inputValue()
const statusOf = async page => (await page.locator('[data-testid="status"]').textContent()).trim()

/** Wait until the page's editor is loaded (enabled). */
async function editorReady(page) {
  await page.locator('[data-testid="editor"]:not([disabled])').waitFor({ timeout: LONG })
}

/** Wait until the page's status says the server has saved its edits. */
async function saved(page) {
  await page.waitForFunction(() => document.querySelector('[data-testid="status"]')?.textContent.trim() === "saved", null, {
    timeout: LONG,
  })
}

/** Create a document from the home page; returns its ID. */
async function newDocument(page, name) {
  await page.goto(`${srv.httpUrl}/?name=${encodeURIComponent(name)}`)
  await page.locator('[data-testid="new-doc"]').click()
  await page.waitForURL(/\/d\/[^/]+$/)
  await editorReady(page)
  return new URL(page.url()).pathname.slice(3)
}

/** The names in the page's peer list. */
async function peerNames(page) {
  return page.locator('[data-testid="peers"] [data-testid="peer"]').evaluateAll(els => els.map(e => e.dataset.name))
}

/** Whether `sub`'s characters appear in `s` in order. */
function isSubsequence(sub, s) {
  let i = 0
  for (const ch of s) if (ch === sub[i]) i++
  return i === sub.length
}

async function restContent(id) {
  const res = await fetch(`${srv.httpUrl}/api/v1/docs/${id}/content`)
  return res.ok ? res.json() : undefined
}

function noProblems(...people) {
  assert.deepEqual(people.flatMap(p => p.problems), [], "no page or console errors")
}

// ---------------------------------------------------------------------------

let sharedDoc // the document of the first test, reused by the next ones

test("two people type at the same time and end with the same text; each sees the other", { timeout: 240_000 }, async t => {
  const ada = await person(t)
  const ben = await person(t)
  const id = await newDocument(ada.page, "Ada")
  sharedDoc = id
  await saved(ada.page) // the new document reached the server
  await ben.page.goto(`${srv.httpUrl}/d/${id}?name=Ben`)
  await editorReady(ben.page)

  // presence: each lists the other
  await waitFor(async () => (await peerNames(ada.page)).includes("Ben"), LONG, { message: "Ada sees Ben" })
  await waitFor(async () => (await peerNames(ben.page)).includes("Ada"), LONG, { message: "Ben sees Ada" })
  assert.equal((await peerNames(ada.page)).length, 2, "one peer entry per person")

  // both type at once, into the same (empty) text
  const adaText = "Ada types this line. "
  const benText = "Ben writes here too! "
  await editor(ada.page).click()
  await editor(ben.page).click()
  await Promise.all([
    ada.page.keyboard.type(adaText, { delay: 35 }),
    ben.page.keyboard.type(benText, { delay: 35 }),
  ])
  let final
  await waitFor(
    async () => {
      const [a, b] = [await editorValue(ada.page), await editorValue(ben.page)]
      if (a === b && a.length === adaText.length + benText.length) final = a
      return final
    },
    LONG,
    { message: "both editors show the same merged text" }
  )
  assert.ok(isSubsequence(adaText, final), `Ada's characters in order in ${JSON.stringify(final)}`)
  assert.ok(isSubsequence(benText, final), `Ben's characters in order in ${JSON.stringify(final)}`)
  await saved(ada.page)
  await saved(ben.page)
  await waitFor(async () => (await restContent(id))?.text === final, LONG, { message: "the server has the merged text" })

  // each sees the other's cursor on the text
  await ada.page.locator('.mirror .caret[data-name="Ben"]').waitFor({ state: "attached" })
  await ben.page.locator('.mirror .caret[data-name="Ada"]').waitFor({ state: "attached" })

  // the share link is this document's page
  assert.equal(await ada.page.locator('[data-testid="share-link"]').inputValue(), `${srv.httpUrl}/d/${id}`)

  // a screenshot of the two editors side by side
  await ada.page.keyboard.press("End")
  await ben.page.keyboard.press("Home")
  await ada.page.waitForTimeout(500) // let the cursors' presence settle for the picture (not an assertion)
  const shots = [await ada.page.screenshot(), await ben.page.screenshot()]
  const board = await browser.newPage({ viewport: { width: 2240, height: 760 } })
  t.after(() => board.close())
  await board.setContent(
    `<body style="margin:0;background:#dfe3ec;display:flex;gap:40px;padding:40px 20px 0;font:14px system-ui">` +
      shots
        .map(
          (s, i) =>
            `<figure style="margin:0"><figcaption style="margin:0 0 6px;color:#444">${["Ada", "Ben"][i]}'s browser</figcaption>` +
            `<img style="width:1060px;border-radius:8px;box-shadow:0 4px 18px #0003" src="data:image/png;base64,${s.toString("base64")}"></figure>`
        )
        .join("") +
      `</body>`
  )
  const png = await board.screenshot()
  mkdirSync(path.dirname(SHOT_OUT), { recursive: true })
  writeFileSync(SHOT_OUT, png)
  if (process.env.TANDEM_UPDATE_SCREENSHOT || !existsSync(SHOT_DOCS)) writeFileSync(SHOT_DOCS, png)
  noProblems(ada, ben)
})

test("a reload shows the text from the server, not only from the local cache", { timeout: 180_000 }, async t => {
  assert.ok(sharedDoc, "the first test made a document")
  const want = (await restContent(sharedDoc)).text
  assert.ok(want.length > 0)
  const cara = await person(t)
  await cara.page.goto(`${srv.httpUrl}/d/${sharedDoc}?name=Cara`)
  await editorReady(cara.page)
  await waitFor(async () => (await editorValue(cara.page)) === want, LONG, { message: "the text arrives" })
  await saved(cara.page)

  // a plain reload
  await cara.page.reload()
  await editorReady(cara.page)
  await waitFor(async () => (await editorValue(cara.page)) === want, LONG, { message: "the text after a reload" })

  // the same with the local copy deleted: only the server can provide it
  await cara.page.goto(`${srv.httpUrl}/healthz`) // same origin, no Repo holding the database
  const deleted = await cara.page.evaluate(
    () =>
      new Promise(resolve => {
        const req = indexedDB.deleteDatabase("tandem-demo")
        req.onsuccess = () => resolve("deleted")
        req.onerror = () => resolve("error")
        req.onblocked = () => resolve("blocked")
      })
  )
  assert.equal(deleted, "deleted")
  assert.deepEqual(await cara.page.evaluate(async () => (await indexedDB.databases()).map(d => d.name)), [])
  await cara.page.goto(`${srv.httpUrl}/d/${sharedDoc}?name=Cara`)
  await editorReady(cara.page)
  await waitFor(async () => (await editorValue(cara.page)) === want, LONG, { message: "the text from the server" })
  noProblems(cara)
})

test("with the server stopped a context keeps editing; the other receives the edits after the restart", { timeout: 300_000 }, async t => {
  // while the server is down the browser itself reports the failed reconnects
  const allowConsole = [/WebSocket connection to .* failed/, /ERR_CONNECTION_REFUSED/]
  const dana = await person(t, { allowConsole })
  const eli = await person(t, { allowConsole })
  const id = await newDocument(dana.page, "Dana")
  await editor(dana.page).click()
  await dana.page.keyboard.type("before the outage.", { delay: 10 })
  await saved(dana.page)
  await eli.page.goto(`${srv.httpUrl}/d/${id}?name=Eli`)
  await editorReady(eli.page)
  await waitFor(async () => (await editorValue(eli.page)) === "before the outage.", LONG, { message: "Eli has the text" })

  await srv.stop("SIGTERM", 30_000)
  await dana.page.waitForFunction(() => document.querySelector('[data-testid="status"]')?.dataset.state === "offline", null, {
    timeout: LONG,
  })
  await editor(dana.page).click()
  await dana.page.keyboard.press("End")
  await dana.page.keyboard.type(" Typed while the server was down.", { delay: 10 })
  const danaText = await editorValue(dana.page)
  assert.equal(danaText, "before the outage. Typed while the server was down.")
  assert.notEqual(await statusOf(dana.page), "saved")
  assert.equal(await editorValue(eli.page), "before the outage.", "Eli cannot have it yet")

  await srv.restart()
  await waitFor(async () => (await editorValue(eli.page)) === danaText, 120_000, { message: "Eli receives Dana's offline edits" })
  await saved(dana.page)
  await saved(eli.page)
  await waitFor(async () => (await restContent(id))?.text === danaText, LONG, { message: "the server stored them" })
  // presence comes back too
  await waitFor(async () => (await peerNames(eli.page)).includes("Dana"), LONG, { message: "Eli sees Dana again" })
  noProblems(dana, eli)
})

test("the admin view lists a document a client created and shows its content and history", { timeout: 180_000 }, async t => {
  const fay = await person(t)
  const id = await newDocument(fay.page, "Fay")
  await editor(fay.page).click()
  await fay.page.keyboard.type("first words", { delay: 10 })
  await saved(fay.page)
  await fay.page.keyboard.type(", then more", { delay: 10 })
  await saved(fay.page)

  const admin = await person(t)
  await admin.page.goto(`${srv.httpUrl}/admin`)
  const row = admin.page.locator(`[data-testid="admin-doc"][data-doc-id="${id}"]`)
  await row.waitFor()
  assert.ok(Number(await row.locator('[data-testid="change-count"]').textContent()) >= 2)
  await waitFor(async () => Number(await row.locator('[data-testid="live-peers"]').textContent()) >= 1, LONG, {
    message: "Fay is a live peer",
  })
  await row.click()
  const content = admin.page.locator('[data-testid="admin-content"]')
  await waitFor(async () => JSON.parse((await content.textContent()) || "null")?.text === "first words, then more", LONG, {
    message: "the admin view shows the content",
  })
  // the content at the first change with text in it is a prefix of the text
  const changes = admin.page.locator('[data-testid="history-change"]')
  await waitFor(async () => (await changes.count()) >= 2, LONG)
  await changes.last().locator("button").click() // the oldest change
  await waitFor(async () => /as of change 1 of/.test(await admin.page.locator('[data-testid="admin-content-label"]').textContent()), LONG)
  const early = JSON.parse(await content.textContent())
  assert.ok(early.text === undefined || "first words, then more".startsWith(early.text), JSON.stringify(early))
  assert.notEqual(early.text, "first words, then more")
  // live numbers from /metrics
  await admin.page.locator('[data-testid="metrics"] [data-metric="tandem_connections"] b').waitFor()
  assert.ok(Number(await admin.page.locator('[data-metric="tandem_connections"] b').textContent()) >= 1)
  noProblems(fay, admin)
})

test("with tokens: a read-only token shows the document read-only; without a token the page asks for one", { timeout: 180_000 }, async t => {
  const secret = randomBytes(32).toString("hex")
  const adminKey = `admin-${randomBytes(8).toString("hex")}`
  const secured = await startServer({ args: ["--token-secret", secret, "--admin-key", adminKey] })
  t.after(() => secured.cleanup())
  const jwt = claims => {
    const b64 = o => Buffer.from(JSON.stringify(o)).toString("base64url")
    const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`
    return `${body}.${createHmac("sha256", secret).update(body).digest("base64url")}`
  }
  const exp = Math.floor(Date.now() / 1000) + 3600
  const res = await fetch(`${secured.httpUrl}/api/v1/docs`, {
    method: "POST",
    headers: { Authorization: `Bearer ${adminKey}`, "Content-Type": "application/json" },
    body: JSON.stringify({ text: { $text: "read me" } }),
  })
  assert.equal(res.status, 201)
  const { id } = await res.json()

  // read-only, token from the URL fragment
  const reader = await person(t)
  await reader.page.goto(`${secured.httpUrl}/d/${id}?name=Gus#token=${jwt({ docs: { [id]: "read" }, exp, sub: "gus" })}`)
  await editorReady(reader.page)
  await waitFor(async () => (await editorValue(reader.page)) === "read me", LONG, { message: "the reader gets the text" })
  assert.equal((await reader.page.locator('[data-testid="access"]').textContent()).trim(), "read-only")
  assert.ok(await reader.page.locator('[data-testid="access"]').isVisible())
  assert.equal(await editor(reader.page).getAttribute("readonly"), "")
  assert.ok(!reader.page.url().includes("token="), "the token is taken out of the address bar")
  await editor(reader.page).click()
  await reader.page.keyboard.type("nope")
  assert.equal(await editorValue(reader.page), "read me")

  // no token: the page asks for one; a write token from the form edits
  const writer = await person(t)
  await writer.page.goto(`${secured.httpUrl}/d/${id}?name=Hal`)
  await writer.page.locator('[data-testid="token-form"]').waitFor()
  await writer.page.locator('[data-testid="token-input"]').fill(jwt({ docs: { "*": "write" }, exp, sub: "hal" }))
  await writer.page.locator('[data-testid="token-form"] button[type="submit"]').click()
  await editorReady(writer.page)
  await waitFor(async () => (await editorValue(writer.page)) === "read me", LONG)
  assert.ok(await writer.page.locator('[data-testid="access"]').isHidden())
  await editor(writer.page).click()
  await writer.page.keyboard.press("End")
  await writer.page.keyboard.type(", please", { delay: 10 })
  await saved(writer.page)
  // the reader sees the writer's edit (and the writer's presence)
  await waitFor(async () => (await editorValue(reader.page)) === "read me, please", LONG, { message: "the reader receives edits" })
  await waitFor(async () => (await peerNames(reader.page)).includes("Hal"), LONG, { message: "the reader sees Hal" })
  noProblems(reader, writer)
})
