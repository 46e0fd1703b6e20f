// Everything the package exports, without initialising the Automerge core
// (see index.ts and slim.ts).

export {
  connect,
  closeAction,
  closeCodeName,
  socketUrl,
  TandemConnection,
  type CloseAction,
  type ConnectOptions,
  type ConnectionEvents,
  type ConnectionStatus,
  type StorageOption,
  type TandemCloseEvent,
  type TandemRepo,
  type TokenProvider,
  type TokenReason,
} from "./connect.js"
export * from "./rest.js"
export { CloseCode, ErrorCodes, type CloseCodeName, type CloseCodeValue, type ErrorCode } from "./codes.js"
export { accessTo, tokenClaims, tokenExpiresAt, type Access, type TokenClaims } from "./token.js"
export { TypedEmitter, type EventMap } from "./events.js"
