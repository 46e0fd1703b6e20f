// jspeer.mjs runs @automerge/automerge (the JS implementation, 3.x) peers
// for the Go tests of sync/engine (js_test.go). It reads one JSON command
// per line on stdin and answers each with one JSON line on stdout:
//
//   {"op":"new","id":N,"actor":HEX}        a new peer with an empty document
//                                          (replacing peer N if there is one)
//   {"op":"edit","id":N,"n":K,"seed":S}    K local changes → {"heads":[HEX…]}
//   {"op":"gen","id":N}                    → {"msg":HEX|null}: generateSyncMessage
//   {"op":"recv","id":N,"msg":HEX}         receiveSyncMessage
//   {"op":"reset","id":N}                  a fresh sync state (a reconnect)
//   {"op":"resume","id":N}                 the sync state a reconnect resumes
//                                          from: encodeSyncState, decodeSyncState
//   {"op":"heads","id":N}                  → {"heads":[HEX…]}
//   {"op":"has","id":N,"hashes":[HEX…]}    → {"heads":[HEX…]}: those the document has
//   {"op":"fpcands","id":N,"from":V,"n":K} → {"heads":[HEX…]}: the hashes of the
//                                          changes fpedit would make for V…V+K-1
//   {"op":"fpedit","id":N,"v":V}           one local change, whose hash is the
//                                          V-th of fpcands → {"heads":[HEX…]}
//   {"op":"save","id":N}                   → {"size":N}: save()'s length
//   {"op":"decode","msg":HEX}              → decodeSyncMessage's fields
//   {"op":"version"}                         → the package's version
//
// edit, recv and fpedit with "gen":true then answer gen's "msg" as well.
//
// Every change has a time one second after the peer's last (from
// 1700000000), so that the same commands make the same changes (and
// hashes) in every run. fpcands and fpedit let a test pick a change whose
// hash a Bloom filter happens to contain (a forced false positive).
//
// Errors answer {"err":"…"}. AM_JS_DIR is the directory whose
// node_modules hold @automerge/automerge (clients/js).
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";

const require = createRequire(join(process.env.AM_JS_DIR, "package.json"));
const A = require("@automerge/automerge");

const peers = new Map();
const hex = (b) => Buffer.from(b).toString("hex");
const bytes = (h) => new Uint8Array(Buffer.from(h, "hex"));

function handle(c) {
  const out = run(c);
  if (c.gen && ["edit", "recv", "fpedit"].includes(c.op)) {
    Object.assign(out, run({ op: "gen", id: c.id }));
  }
  return out;
}

function run(c) {
  const p = peers.get(c.id);
  switch (c.op) {
    case "version":
      return {
        version: JSON.parse(readFileSync(join(process.env.AM_JS_DIR, "node_modules/@automerge/automerge/package.json"))).version,
      };
    case "new":
      peers.set(c.id, { doc: A.init({ actor: c.actor }), actor: c.actor, state: A.initSyncState(), time: 1700000000 });
      return {};
    case "edit":
      for (let i = 0; i < c.n; i++) {
        p.time++;
        p.doc = A.change(p.doc, { time: p.time }, (d) => {
          d["k" + ((c.seed + i) % 7)] = `${c.seed}-${i}`;
        });
      }
      return { heads: A.getHeads(p.doc) };
    case "gen": {
      const [state, msg] = A.generateSyncMessage(p.doc, p.state);
      p.state = state;
      return { msg: msg ? hex(msg) : null };
    }
    case "recv": {
      const [doc, state] = A.receiveSyncMessage(p.doc, p.state, bytes(c.msg));
      p.doc = doc;
      p.state = state;
      return {};
    }
    case "reset":
      p.state = A.initSyncState();
      return {};
    case "resume":
      p.state = A.decodeSyncState(A.encodeSyncState(p.state));
      return {};
    case "heads":
      return { heads: A.getHeads(p.doc) };
    case "has":
      return { heads: c.hashes.filter((h) => A.hasHeads(p.doc, [h])) };
    case "fpcands": {
      // The change fpedit makes with v = 0, made on a copy, then its
      // message varied: encodeChange gives the chunk, whose hash is
      // SHA-256 of everything after the magic and the checksum.
      const copy = A.change(A.clone(p.doc, { actor: p.actor }), fpOptions(p, 0), fpEdit);
      const ch = A.decodeChange(A.getLastLocalChange(copy));
      const heads = [];
      for (let v = c.from; v < c.from + c.n; v++) {
        ch.message = fpOptions(p, v).message;
        heads.push(createHash("sha256").update(A.encodeChange(ch).subarray(8)).digest("hex"));
      }
      return { heads };
    }
    case "fpedit":
      p.doc = A.change(p.doc, fpOptions(p, c.v), fpEdit);
      p.time++;
      return { heads: A.getHeads(p.doc) };
    case "save":
      return { size: A.save(p.doc).byteLength };
    case "decode": {
      const m = A.decodeSyncMessage(bytes(c.msg));
      return { heads: m.heads, need: m.need, have: m.have.length, changes: m.changes.length };
    }
  }
  return { err: "unknown op " + c.op };
}

const fpOptions = (p, v) => ({ time: p.time + 1, message: `fp${v}` });
const fpEdit = (d) => {
  d.fp = (d.fp || 0) + 1;
};

const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  let out;
  try {
    out = handle(JSON.parse(line));
  } catch (e) {
    out = { err: String(e && e.stack ? e.stack : e) };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
});
