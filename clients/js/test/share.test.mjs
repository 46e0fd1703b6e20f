// Create, then share at once: client A creates a document and client B,
// another stock Repo on another connection, finds it by URL right away. The
// stock client delays A's first sync of a new document (its 100 ms sync
// throttle), so B's request usually reaches the server before A's upload;
// the server waits --unavailable-grace for the document before it answers
// doc-unavailable. A document that was never created is still answered
// unavailable, after the grace.

import { test, before, after } from "node:test"
import assert from "node:assert/strict"
import { performance } from "node:perf_hooks"

import { generateAutomergeUrl } from "@automerge/automerge-repo"

import { scope, startServer, withTimeout, repoConnected, toJS, randomId } from "./helpers.mjs"

const ROUNDS = 100
const DEFAULT_GRACE_MS = 250 // room.DefaultUnavailableGrace

let srv
before(async () => {
  srv = await startServer() // the default grace
})
after(async () => {
  await srv?.cleanup()
})

/** Two connected stock Repos on their own connections. */
async function pair(sc, url) {
  const a = sc.repo({ url, peerId: randomId("creator") })
  const b = sc.repo({ url, peerId: randomId("finder") })
  await Promise.all([repoConnected(a), repoConnected(b)])
  return { a, b }
}

/**
 * `rounds` times: A creates a document and B finds it at once (no await in
 * between). Returns the failures as {round, error}.
 */
async function createThenFind(a, b, rounds, label) {
  const failures = []
  for (let i = 0; i < rounds; i++) {
    const value = { label, round: i, items: [`item-${i}`] }
    const h = a.create(value)
    try {
      const found = await withTimeout(b.find(h.url), 10_000, `round ${i}: B find`)
      assert.deepEqual(toJS(found.doc()), value, `round ${i}: B's copy`)
    } catch (e) {
      failures.push({ round: i, error: e.message })
    }
  }
  return failures
}

test(`1. create, then find at once from another client: ${ROUNDS} of ${ROUNDS}`, async t => {
  const sc = scope(t)
  const { a, b } = await pair(sc, srv.url)
  const t0 = performance.now()
  const failures = await createThenFind(a, b, ROUNDS, "default-grace")
  t.diagnostic(`create-then-find ${ROUNDS - failures.length}/${ROUNDS} in ${(performance.now() - t0).toFixed(0)} ms`)
  assert.deepEqual(failures, [], `B's find failed in ${failures.length} of ${ROUNDS} rounds`)
})

test("2. a never-created document is unavailable once the grace has passed, within about grace + 1 s", async t => {
  const sc = scope(t)
  const r = sc.repo({ url: srv.url })
  await repoConnected(r)
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now()
    await assert.rejects(withTimeout(r.find(generateAutomergeUrl()), 10_000, "find of a missing doc"), /unavailable/)
    const ms = performance.now() - t0
    t.diagnostic(`never-created: unavailable after ${ms.toFixed(0)} ms (grace ${DEFAULT_GRACE_MS} ms)`)
    assert.ok(ms >= DEFAULT_GRACE_MS, `answered after ${ms.toFixed(0)} ms, before the grace`)
    assert.ok(ms < DEFAULT_GRACE_MS + 1000, `answered after ${ms.toFixed(0)} ms, not promptly after the grace`)
  }
})

test("3. --unavailable-grace sets the wait; 0 answers at once (and loses the race)", async t => {
  const sc = scope(t)
  const slow = await sc.server({ args: ["--unavailable-grace", "1500ms"] })
  const r = sc.repo({ url: slow.url })
  await repoConnected(r)
  const t0 = performance.now()
  await assert.rejects(withTimeout(r.find(generateAutomergeUrl()), 10_000, "find (1.5 s grace)"), /unavailable/)
  const ms = performance.now() - t0
  t.diagnostic(`--unavailable-grace 1500ms: unavailable after ${ms.toFixed(0)} ms`)
  assert.ok(ms >= 1500 && ms < 2500, `answered after ${ms.toFixed(0)} ms`)

  // Without a grace the requester is often told unavailable before the
  // creator's upload arrives: the race this fixes. Shown, not asserted (it
  // depends on timing); a never-created document is answered at once.
  const none = await sc.server({ args: ["--unavailable-grace", "0"] })
  const { a, b } = await pair(sc, none.url)
  const failures = await createThenFind(a, b, 20, "no-grace")
  t.diagnostic(`--unavailable-grace 0: create-then-find ${20 - failures.length}/20`)
  const t1 = performance.now()
  await assert.rejects(withTimeout(b.find(generateAutomergeUrl()), 10_000, "find (no grace)"), /unavailable/)
  const ms0 = performance.now() - t1
  t.diagnostic(`--unavailable-grace 0: never-created unavailable after ${ms0.toFixed(0)} ms`)
  assert.ok(ms0 < 1000, `answered after ${ms0.toFixed(0)} ms without a grace`)
})
