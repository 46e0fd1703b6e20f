// jspeer.mjs runs @automerge/automerge (the JS implementation, 3.x) peers
// for the Go tests of sync/engine (js_test.go). It reads one JSON command
// per line on stdin and answers each with one JSON line on stdout:
//
//   {"op":"new","id":N,"actor":HEX}        a new peer with an empty document
//   {"op":"edit","id":N,"n":K,"seed":S}    K local changes
//   {"op":"gen","id":N}                    → {"msg":HEX|null}: generateSyncMessage
//   {"op":"recv","id":N,"msg":HEX}         receiveSyncMessage
//   {"op":"reset","id":N}                  a fresh sync state (a reconnect)
//   {"op":"heads","id":N}                  → {"heads":[HEX…]}
//   {"op":"save","id":N}                   → {"size":N}: save()'s length
//   {"op":"decode","msg":HEX}              → decodeSyncMessage's fields
//   {"op":"version"}                         → the package's version
//
// Errors answer {"err":"…"}. AM_JS_DIR is the directory whose
// node_modules hold @automerge/automerge (clients/js).
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { readFileSync } from "node:fs";

const require = createRequire(join(process.env.AM_JS_DIR, "package.json"));
const A = require("@automerge/automerge");

const peers = new Map();
const hex = (b) => Buffer.from(b).toString("hex");
const bytes = (h) => new Uint8Array(Buffer.from(h, "hex"));

function handle(c) {
  const p = peers.get(c.id);
  switch (c.op) {
    case "version":
      return {
        version: JSON.parse(readFileSync(join(process.env.AM_JS_DIR, "node_modules/@automerge/automerge/package.json"))).version,
      };
    case "new":
      peers.set(c.id, { doc: A.init({ actor: c.actor }), state: A.initSyncState(), time: 1700000000 });
      return {};
    case "edit":
      for (let i = 0; i < c.n; i++) {
        p.time++;
        p.doc = A.change(p.doc, { time: p.time }, (d) => {
          d["k" + ((c.seed + i) % 7)] = `${c.seed}-${i}`;
        });
      }
      return {};
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
    case "heads":
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
