// The reference server: a stock automerge-repo sync server, set up as the
// official automerge-repo-sync-server is (a Repo with the WebSocket server
// adapter and the Node file-system storage, sharing nothing unasked). Tests
// use it to write a real data directory; benchmarks compare Tandem with it.
//
//   node server.mjs [port] [data-dir]     (or PORT, DATA_DIR; defaults 3030, ./.amrg)
//
// It listens on 127.0.0.1 only, prints "listening port=<port> dir=<dir>" once
// it accepts connections (port 0 picks a free one), and on SIGTERM or SIGINT
// writes every document's pending changes to disk before it exits.

import os from "node:os"
import path from "node:path"
import { WebSocketServer } from "ws"
import { Repo } from "@automerge/automerge-repo"
import { NodeWSServerAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"

const port = Number(process.argv[2] ?? process.env.PORT ?? 3030)
const dir = path.resolve(process.argv[3] ?? process.env.DATA_DIR ?? ".amrg")

const wss = new WebSocketServer({ host: "127.0.0.1", port })
const repo = new Repo({
  network: [new NodeWSServerAdapter(wss)],
  storage: new NodeFSStorageAdapter(dir),
  peerId: `storage-server-${os.hostname()}`,
  sharePolicy: async () => false,
})

wss.on("listening", () => console.log(`listening port=${wss.address().port} dir=${dir}`))

let stopping = false
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, async () => {
    if (stopping) process.exit(2)
    stopping = true
    // Save what is pending. Not repo.shutdown(): in 2.5.6 it rejects, before
    // every save has finished, when a client asked for a document nobody
    // has (its handle is not ready), so flush the ready documents only.
    const ready = Object.values(repo.handles).filter(h => h.isReady())
    await repo.flush(ready.map(h => h.documentId))
    wss.close()
    process.exit(0)
  })
}
