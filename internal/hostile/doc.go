// Package hostile holds the hostile-client suite: attacks on a real tandem
// process over real sockets while two stock automerge-repo clients
// (clients/js/test/bystanders.mjs) keep editing one document through it.
// Every case checks that the server is alive, its memory bounded, and the
// bystanders never dropped and their edits delivered within seconds.
//
// The crafted changes it sends come from the sync/core rule tests
// (testdata/crafted.json, written by TestHostileFixtures there).
//
//	go test ./internal/hostile            # needs node and clients/js/node_modules
//	go test -v -run TestHostile ./internal/hostile   # with the measured costs
package hostile
