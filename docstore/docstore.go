// Package docstore is where Tandem keeps documents: one package per store,
// each an implementation of room.Store (and of webhook.Outbox and the API's
// catalog and revocation list):
//
//   - docstore/sqlite: an embedded SQLite database in a directory, the
//     zero-configuration default;
//   - docstore/postgres: PostgreSQL through pgx, with group commit, for
//     production and for several nodes sharing one database.
//
// Every store passes the conformance suite in docstore/storetest. This
// package holds only what callers of any store may test for.
package docstore

import "errors"

// ErrClosed is returned by a store's methods after Close.
var ErrClosed = errors.New("docstore: store is closed")
