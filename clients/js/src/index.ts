/**
 * @tandem-sync/client: connect stock automerge-repo clients to a Tandem sync
 * server, and call its REST API.
 *
 * This entry point loads the Automerge core the way `@automerge/automerge-repo`
 * does (its bundler, Node or base64 entry). To load the WebAssembly yourself,
 * import `@tandem-sync/client/slim` and call `initializeWasm` first.
 *
 * @packageDocumentation
 */
import "@automerge/automerge"

export * from "./client.js"
