// Package wire holds the automerge-repo WebSocket protocol's messages and
// their CBOR codec, plus document ID validation.
//
// The format is described in docs/PROTOCOL.md §2: one CBOR map per binary
// WebSocket frame, no envelope. Decoding is tolerant (CBOR undefined and null
// are treated as absent, numbers may arrive as floats, map16 headers are
// accepted); encoding writes definite-length maps with text keys and byte
// strings, as stock clients expect.
package wire

// Message types of protocol version "1".
const (
	TypeJoin                     = "join"
	TypePeer                     = "peer"
	TypeError                    = "error"
	TypeSync                     = "sync"
	TypeRequest                  = "request"
	TypeDocUnavailable           = "doc-unavailable"
	TypeEphemeral                = "ephemeral"
	TypeRemoteSubscriptionChange = "remote-subscription-change"
	TypeRemoteHeadsChanged       = "remote-heads-changed"
)

// ProtocolVersion is the only protocol version automerge-repo speaks.
const ProtocolVersion = "1"

// PeerID identifies a peer (a Repo instance); stock clients use
// "peer-<random>". It is an arbitrary string.
type PeerID string

// PeerMetadata is the metadata a peer sends in join and peer messages.
type PeerMetadata struct {
	// StorageID identifies the peer's persistent store; empty when the peer
	// sent none (stock clients without storage send CBOR undefined).
	StorageID string
	// IsEphemeral is true for peers without storage.
	IsEphemeral bool
}

// Message is one protocol message. Which fields are meaningful depends on
// Type; absent fields are zero values.
type Message struct {
	Type       string
	SenderID   PeerID
	TargetID   PeerID
	DocumentID DocID
	// Data is the Automerge sync message (sync, request) or the
	// application's CBOR payload (ephemeral).
	Data []byte

	// PeerMetadata is set on join and peer messages when present.
	PeerMetadata *PeerMetadata
	// SupportedProtocolVersions is join's version list; nil when the field
	// was missing (which means "1").
	SupportedProtocolVersions []string
	// SelectedProtocolVersion is peer's chosen version.
	SelectedProtocolVersion string

	// ErrorMessage is the "message" field of an error message.
	ErrorMessage string

	// SessionID and Count identify an ephemeral message for deduplication.
	SessionID string
	Count     uint64
}
