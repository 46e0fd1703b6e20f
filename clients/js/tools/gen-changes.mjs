// gen-changes.mjs writes a corpus of Automerge changes and saved documents
// made by @automerge/automerge (the JS implementation, 3.x) for the Go
// validator in sync/core to accept (sync/core/js_test.go).
//
// Usage (from clients/js, after npm install):
//
//   node tools/gen-changes.mjs [output.json] [traces]
//
// The default output is ../../sync/core/testdata/js-changes/corpus.json.
// Each trace is a set of actors editing maps, lists, text with marks and
// blocks, counters, dates, bytes, numbers of every kind, with conflicting
// writes, deletes and merges. For each trace the file holds every change
// in the order getAllChanges returns them (an order the core can apply),
// hex encoded, and the saved document. The generator is deterministic: a
// trace's randomness comes from its seed, and actor IDs and timestamps are
// fixed.

import * as A from "@automerge/automerge";
import { writeFileSync, mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? resolve(here, "../../../sync/core/testdata/js-changes/corpus.json"));
const numTraces = Number(process.argv[3] ?? 24);

// mulberry32: a small seeded PRNG.
function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    float: next,
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
  };
}

const hex = (b) => Buffer.from(b).toString("hex");
const actorID = (trace, i) => (trace * 16 + i + 1).toString(16).padStart(32, "0");

const KEYS = ["a", "b", "c", "title", "ünï", "list", "text", "n", "🙂"];
const ALPHABET = ["a", "b", "é", "日本", "🙂", " ", "\n", "z"];

function text(r, n) {
  let s = "";
  for (let i = 0; i < n; i++) s += r.pick(ALPHABET);
  return s;
}

function scalar(r) {
  switch (r.int(13)) {
    case 0: return null;
    case 1: return r.int(2) === 0;
    case 2: return r.int(200) - 100;
    case 3: return new A.Int(-(2 ** 40) + r.int(1000));
    case 4: return new A.Uint(2 ** 45 + r.int(1000));
    case 5: return new A.Float64(r.int(10));
    case 6: return r.pick([0.5, -1.25, Math.PI, 1e300]);
    case 7: return new A.ImmutableString(text(r, r.int(6)));
    case 8: return new Uint8Array(r.int(12)).map(() => r.int(256));
    case 9: return new Date(1700000000000 + r.int(1e9));
    case 10: return new A.Counter(r.int(10));
    case 11: return Number.MAX_SAFE_INTEGER - r.int(10);
  }
  return text(r, r.int(4));
}

function value(r) {
  switch (r.int(9)) {
    case 0: return {};
    case 1: return [];
    case 2: return text(r, r.int(6)); // strings are text objects
    case 3: return { x: scalar(r), y: [scalar(r)] };
  }
  return scalar(r);
}

// targets lists the paths of editable things in doc.
function targets(doc) {
  const out = [];
  const walk = (v, path, depth) => {
    if (depth > 3 || v === null || typeof v !== "object") {
      if (typeof v === "string") out.push({ kind: "text", path });
      return;
    }
    if (Array.isArray(v)) { // first: isCounter is true of list proxies
      out.push({ kind: "list", path });
      v.forEach((c, i) => walk(c, [...path, i], depth + 1));
      return;
    }
    if (A.isCounter(v)) return out.push({ kind: "counter", path });
    if (v instanceof Uint8Array || v instanceof Date || A.isImmutableString(v)) return;
    out.push({ kind: "map", path });
    for (const k of Object.keys(v).sort()) walk(v[k], [...path, k], depth + 1);
  };
  walk(doc, [], 0);
  return out;
}

function at(d, path) {
  let v = d;
  for (const p of path) v = v[p];
  return v;
}

// edit makes one random edit inside a change callback.
function edit(r, d, tg) {
  const v = at(d, tg.path);
  switch (tg.kind) {
    case "map": {
      const keys = Object.keys(v);
      if (keys.length > 0 && r.int(5) === 0) {
        delete v[r.pick(keys)];
      } else {
        v[r.pick(KEYS)] = value(r);
      }
      return;
    }
    case "list": {
      const n = v.length;
      const op = r.int(5);
      if (n > 0 && op === 0) v.deleteAt(r.int(n), 1 + r.int(Math.min(2, n)));
      else if (n > 0 && op === 1) v[r.int(n)] = value(r);
      else if (op === 2) v.push(scalar(r), scalar(r));
      else v.insertAt(r.int(n + 1), value(r));
      return;
    }
    case "text": {
      const n = v.length;
      const pos = r.int(n + 1);
      switch (r.int(7)) {
        case 0:
          if (n > 1) {
            const start = r.int(n - 1);
            const end = start + 1 + r.int(n - start - 1);
            A.mark(d, tg.path, { start, end, expand: r.pick(["before", "after", "both", "none"]) },
              r.pick(["bold", "em", "link"]), r.pick([true, "https://x.test", 7, null]));
          }
          return;
        case 1:
          if (n > 1) A.unmark(d, tg.path, { start: 0, end: 1 + r.int(n - 1), expand: "none" }, "bold");
          return;
        case 2:
          A.splitBlock(d, tg.path, pos, { type: r.pick(["paragraph", "heading"]), parents: [], attrs: {} });
          return;
        case 3:
          A.updateText(d, tg.path, text(r, r.int(10)));
          return;
      }
      const del = n > pos && r.int(3) === 0 ? r.int(n - pos + 1) : 0;
      A.splice(d, tg.path, pos, del, text(r, r.int(8)));
      return;
    }
    case "counter":
      v.increment(r.int(21) - 10);
      return;
  }
}

function trace(seed) {
  const r = rng(seed + 1);
  const actors = 1 + (seed % 4);
  let docs = [];
  let base = A.change(A.init({ actor: actorID(seed, 0) }), { time: 1700000000 }, (d) => {
    d.title = "trace " + seed;
    d.text = "hello world";
    d.list = [1, "two", { three: 3 }];
    d.n = new A.Counter(0);
  });
  docs.push(base);
  for (let i = 1; i < actors; i++) docs.push(A.clone(base, { actor: actorID(seed, i) }));
  const steps = 25 + (seed % 5) * 10;
  for (let step = 0; step < steps; step++) {
    const i = r.int(docs.length);
    const opts = { time: 1700000000 + step };
    if (r.int(2) === 0) opts.message = "step " + step;
    if (r.int(15) === 0) {
      docs[i] = A.emptyChange(docs[i], opts);
    } else {
      docs[i] = A.change(docs[i], opts, (d) => {
        for (let k = 0; k < 1 + r.int(4); k++) {
          const ts = targets(d);
          edit(r, d, r.pick(ts));
        }
      });
    }
    if (docs.length > 1 && r.int(4) === 0) {
      const j = r.int(docs.length);
      if (j !== i) docs[i] = A.merge(docs[i], docs[j]);
    }
  }
  let all = docs[0];
  for (const d of docs.slice(1)) all = A.merge(all, d);
  return {
    seed,
    actors,
    changes: A.getAllChanges(all).map(hex),
    doc: hex(A.save(all)),
  };
}

// big makes changes of more than 10,000 ops (where the Rust core switches
// from column-wise to row-wise encoding): a long paste, many list items, a
// mark over most of the text, and a long deletion.
function big() {
  const r = rng(999);
  let d = A.change(A.init({ actor: actorID(999, 0) }), { time: 1700000000 }, (d) => {
    d.text = "";
    d.list = [];
  });
  d = A.change(d, { time: 1700000001 }, (d) => A.splice(d, ["text"], 0, 0, text(r, 15000)));
  d = A.change(d, { time: 1700000002 }, (d) => {
    for (let i = 0; i < 11000; i++) d.list.push(i % 7 === 0 ? "x" + i : i);
  });
  d = A.change(d, { time: 1700000003 }, (d) => {
    A.mark(d, ["text"], { start: 10, end: 14000, expand: "both" }, "bold", true);
    A.splice(d, ["text"], 100, 12000);
    d.list.deleteAt(5, 10500);
  });
  return { seed: 999, actors: 1, changes: A.getAllChanges(d).map(hex), doc: hex(A.save(d)) };
}

const traces = [];
for (let s = 0; s < numTraces; s++) traces.push(trace(s));
traces.push(big());
mkdirSync(dirname(out), { recursive: true });
const pkg = "@automerge/automerge";
writeFileSync(out, JSON.stringify({ generator: "clients/js/tools/gen-changes.mjs", package: pkg, traces }, null, 0) + "\n");
const n = traces.reduce((s, t) => s + t.changes.length, 0);
console.log(`wrote ${traces.length} traces, ${n} changes to ${out}`);
