/**
 * @tandem-sync/client without loading the Automerge core: call
 * `initializeWasm(fetch(wasmUrl))` (or `initializeBase64Wasm`) and await it
 * before using a Repo.
 *
 * @packageDocumentation
 */
export * from "./client.js"
export { initializeWasm, initializeBase64Wasm } from "@automerge/automerge/slim"
