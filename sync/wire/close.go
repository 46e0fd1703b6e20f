package wire

// CloseCode is a WebSocket close status code Tandem uses, with its meaning
// for a client. Stock automerge-repo clients reconnect after every close
// (every 5 s by default), whatever the code; the codes tell operators and
// custom clients why.
type CloseCode int

// Close codes. 1xxx are the standard codes of RFC 6455; 4xxx are Tandem's.
const (
	// CloseNormal: the connection ended normally.
	CloseNormal CloseCode = 1000
	// CloseGoingAway: the server is shutting down. Reconnect (to another
	// node, or to this one when it is back).
	CloseGoingAway CloseCode = 1001
	// CloseProtocolError: the peer broke the protocol handshake, for example
	// by asking only for an unsupported protocol version. Reconnecting with
	// the same client will fail the same way.
	CloseProtocolError CloseCode = 1002
	// CloseInvalidData: a frame was not valid CBOR, or a sync message's data
	// was not a valid Automerge sync message. Nothing from it was stored.
	CloseInvalidData CloseCode = 1007
	// ClosePolicyViolation: the peer kept exceeding a limit that is
	// otherwise enforced by dropping (ephemeral messages far over the rate
	// limit). Reconnecting is allowed; flooding again closes again.
	ClosePolicyViolation CloseCode = 1008
	// CloseTooBig: a frame exceeded the server's frame size limit.
	CloseTooBig CloseCode = 1009
	// CloseInternalError: the server failed unexpectedly.
	CloseInternalError CloseCode = 1011
	// CloseTryAgainLater: the server could not serve a document right now
	// (its store failed to load it); reconnecting later will retry.
	CloseTryAgainLater CloseCode = 1013
	// CloseSlowConsumer: the peer did not read its messages fast enough and
	// its outbound queue filled up. Reconnecting resyncs from scratch.
	CloseSlowConsumer CloseCode = 4001
	// CloseReplaced: another connection joined with the same peer ID; the
	// newest connection wins, as in the official server.
	CloseReplaced CloseCode = 4002
	// CloseDeadPeer: the peer did not answer keepalive pings in time.
	CloseDeadPeer CloseCode = 4003
	// ClosePeerIDInUse: the peer ID is connected already under another
	// principal's token; only the same token or subject may replace a
	// connection. Pick another peer ID.
	ClosePeerIDInUse CloseCode = 4409
	// CloseTokenExpired: the connection's access token expired. Reconnect
	// with a fresh token.
	CloseTokenExpired CloseCode = 4401
	// CloseRevoked: the connection's access token was revoked, or its
	// access to a document was. Reconnecting with the same token fails.
	CloseRevoked CloseCode = 4403
)
