package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
)

// ErrMalformed is wrapped by Decode's errors: the frame is not one
// well-formed CBOR map, its type is missing, empty or not a text string, or,
// in a message of a known type, a field has the wrong CBOR type.
var ErrMalformed = errors.New("malformed message")

// Decoder limits. Real messages nest at most 4 levels (remote-heads-changed).
const (
	maxNestedLevels  = 32
	maxArrayElements = 1 << 20
	maxMapPairs      = 1 << 20
)

var decMode = mustDecMode()

func mustDecMode() cbor.DecMode {
	dm, err := cbor.DecOptions{
		MaxNestedLevels:  maxNestedLevels,
		MaxArrayElements: maxArrayElements,
		MaxMapPairs:      maxMapPairs,
		// JS object keys are case-sensitive; fxamacker's default falls back
		// to case-insensitive matching.
		FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
		// The defaults already accept indefinite lengths, non-minimal heads,
		// duplicate keys (the first wins; JS keeps the last) and unknown
		// tags, and reject invalid UTF-8 in text strings.
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}

// wireMessage is the decoding target. CBOR null and undefined leave a field
// at its zero value; unknown keys are skipped.
type wireMessage struct {
	Type                      string          `cbor:"type"`
	SenderID                  PeerID          `cbor:"senderId"`
	TargetID                  PeerID          `cbor:"targetId"`
	DocumentID                DocID           `cbor:"documentId"`
	Data                      frameBytes      `cbor:"data"` // tag 64 (typed array) is skipped
	PeerMetadata              *wirePeerMeta   `cbor:"peerMetadata"`
	SupportedProtocolVersions []string        `cbor:"supportedProtocolVersions"`
	SelectedProtocolVersion   string          `cbor:"selectedProtocolVersion"`
	Message                   string          `cbor:"message"`
	SessionID                 string          `cbor:"sessionId"`
	Count                     cbor.RawMessage `cbor:"count"`
}

type wirePeerMeta struct {
	StorageID   string `cbor:"storageId"`
	IsEphemeral bool   `cbor:"isEphemeral"`
}

// Decode decodes one binary WebSocket frame, which must hold exactly one CBOR
// map. It is tolerant of what cbor-x and other encoders produce: non-minimal
// length headers (cbor-x writes map16), indefinite lengths, CBOR undefined
// and null as absent values, tags on data (cbor-x's tag 64), and count as a
// float. Unknown keys are ignored. A message of an unknown type decodes with
// Type set so the caller can ignore it; its other fields are best-effort (a
// known key holding a value of the wrong type is left zero rather than
// failing, as it does for the known types). Fields of
// remote-subscription-change and remote-heads-changed that Message has no
// room for (add, remove, newHeads) are skipped.
//
// Decode checks only the CBOR structure, not whether a message has the
// fields its type needs, and it does not validate DocumentID (see
// ParseDocID). Every error wraps ErrMalformed. The returned Message's Data
// aliases frame, so that a frame costs its size once, not twice: the caller
// must not change or reuse frame while the message is in use. (Its capacity
// is its length, so appending to Data never writes into frame.)
func Decode(frame []byte) (Message, error) {
	if len(frame) == 0 {
		return Message{}, fmt.Errorf("%w: empty frame", ErrMalformed)
	}
	if frame[0]>>5 != 5 { // major type 5: map
		return Message{}, fmt.Errorf("%w: top-level item is not a map (initial byte 0x%02x)", ErrMalformed, frame[0])
	}
	var w wireMessage
	err := decMode.Unmarshal(frame, &w)
	// fxamacker reports a field of the wrong type after decoding the rest
	// of the map, so a message of an unknown type can still be returned.
	if err != nil && !(isTypeError(err) && w.Type != "" && !knownType(w.Type)) {
		return Message{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if w.Type == "" {
		return Message{}, fmt.Errorf("%w: missing type", ErrMalformed)
	}
	count, err := decodeCount(w.Count)
	if err != nil && knownType(w.Type) {
		return Message{}, fmt.Errorf("%w: count: %w", ErrMalformed, err)
	}
	m := Message{
		Type:                      w.Type,
		SenderID:                  w.SenderID,
		TargetID:                  w.TargetID,
		DocumentID:                w.DocumentID,
		Data:                      []byte(w.Data),
		SupportedProtocolVersions: w.SupportedProtocolVersions,
		SelectedProtocolVersion:   w.SelectedProtocolVersion,
		ErrorMessage:              w.Message,
		SessionID:                 w.SessionID,
		Count:                     count,
	}
	if w.PeerMetadata != nil {
		m.PeerMetadata = &PeerMetadata{StorageID: w.PeerMetadata.StorageID, IsEphemeral: w.PeerMetadata.IsEphemeral}
	}
	return m, nil
}

// frameBytes is a byte string decoded without a copy: it aliases the
// frame it was decoded from (a sync message's data is most of its frame, so
// copying it would double what a frame costs). Tags (cbor-x writes tag 64,
// a typed array, around byte strings) are skipped; an indefinite-length
// byte string, made of chunks, is the one case that is copied.
type frameBytes []byte

// UnmarshalCBOR implements cbor.Unmarshaler. raw is one well-formed item
// (the decoder checked it), a slice of the frame.
func (b *frameBytes) UnmarshalCBOR(raw []byte) error {
	for len(raw) > 0 && raw[0]>>5 == 6 { // tag: skip its head
		n, _, err := head(raw)
		if err != nil {
			return err
		}
		raw = raw[n:]
	}
	if len(raw) == 0 {
		return errors.New("cbor: data: empty item")
	}
	switch {
	case raw[0] == 0xf6 || raw[0] == 0xf7: // null, undefined: absent
		*b = nil
		return nil
	case raw[0] == 0x5f: // indefinite length: concatenate the chunks
		var out []byte
		for rest := raw[1:]; len(rest) > 0 && rest[0] != 0xff; {
			n, l, err := head(rest)
			if err != nil || rest[0]>>5 != 2 || uint64(len(rest)-n) < l {
				return errors.New("cbor: data: bad byte string chunk")
			}
			out = append(out, rest[n:n+int(l)]...)
			rest = rest[n+int(l):]
		}
		*b = out
		return nil
	case raw[0]>>5 == 2:
		n, l, err := head(raw)
		if err != nil || uint64(len(raw)-n) < l {
			return errors.New("cbor: data: truncated byte string")
		}
		*b = raw[n : n+int(l) : n+int(l)]
		return nil
	}
	return &cbor.UnmarshalTypeError{CBORType: "non-byte-string", GoType: "[]byte"}
}

// head parses a CBOR item head: its length in bytes and its argument.
func head(b []byte) (n int, arg uint64, err error) {
	switch ai := b[0] & 0x1f; {
	case ai < 24:
		return 1, uint64(ai), nil
	case ai == 24 && len(b) >= 2:
		return 2, uint64(b[1]), nil
	case ai == 25 && len(b) >= 3:
		return 3, uint64(binary.BigEndian.Uint16(b[1:])), nil
	case ai == 26 && len(b) >= 5:
		return 5, uint64(binary.BigEndian.Uint32(b[1:])), nil
	case ai == 27 && len(b) >= 9:
		return 9, binary.BigEndian.Uint64(b[1:]), nil
	case ai == 31:
		return 1, 0, nil
	}
	return 0, 0, errors.New("cbor: bad item head")
}

// isTypeError is separate so that Decode's success path does not allocate.
func isTypeError(err error) bool {
	var typeErr *cbor.UnmarshalTypeError
	return errors.As(err, &typeErr)
}

func knownType(t string) bool {
	switch t {
	case TypeJoin, TypePeer, TypeError, TypeSync, TypeRequest, TypeDocUnavailable,
		TypeEphemeral, TypeRemoteSubscriptionChange, TypeRemoteHeadsChanged:
		return true
	}
	return false
}

// decodeCount interprets count's raw CBOR, which the decoder has already
// checked to be one well-formed item: an unsigned integer, or a float that
// is a non-negative integer below 2^64 (cbor-x writes numbers ≥ 2^32 as
// float64). Null, undefined and an absent field give 0.
func decodeCount(raw []byte) (uint64, error) {
	if len(raw) == 0 {
		return 0, nil
	}
	head, rest := raw[0], raw[1:]
	switch {
	case head <= 0x17:
		return uint64(head), nil
	case head == 0x18 && len(rest) >= 1:
		return uint64(rest[0]), nil
	case head == 0x19 && len(rest) >= 2:
		return uint64(binary.BigEndian.Uint16(rest)), nil
	case head == 0x1a && len(rest) >= 4:
		return uint64(binary.BigEndian.Uint32(rest)), nil
	case head == 0x1b && len(rest) >= 8:
		return binary.BigEndian.Uint64(rest), nil
	case head == 0xf6 || head == 0xf7:
		return 0, nil
	case head == 0xf9 || head == 0xfa || head == 0xfb:
		var f float64
		if err := decMode.Unmarshal(raw, &f); err != nil {
			return 0, err
		}
		// 2^64 is exactly representable; anything below it converts exactly.
		if !(f >= 0 && f < 1<<64) || f != math.Trunc(f) {
			return 0, fmt.Errorf("%v is not a non-negative integer", f)
		}
		return uint64(f), nil
	}
	return 0, fmt.Errorf("want an unsigned integer, got CBOR initial byte 0x%02x", head)
}

// Map keys with their CBOR text-string heads.
var (
	keyType         = textKey("type")
	keySenderID     = textKey("senderId")
	keyTargetID     = textKey("targetId")
	keyDocumentID   = textKey("documentId")
	keyData         = textKey("data")
	keyPeerMetadata = textKey("peerMetadata")
	keyStorageID    = textKey("storageId")
	keyIsEphemeral  = textKey("isEphemeral")
	keySupported    = textKey("supportedProtocolVersions")
	keySelected     = textKey("selectedProtocolVersion")
	keyMessage      = textKey("message")
	keySessionID    = textKey("sessionId")
	keyCount        = textKey("count")
)

func textKey(s string) []byte { return appendText(nil, s) }

// Encode encodes m as one CBOR map the way stock clients accept it:
// definite lengths, minimal heads, text keys, data as a plain byte string,
// no tags. It writes only the fields that belong to m.Type:
//
//	join            type senderId [peerMetadata] [supportedProtocolVersions]
//	peer            type senderId targetId [peerMetadata] selectedProtocolVersion
//	error           type senderId targetId message
//	sync, request   type senderId targetId documentId data
//	doc-unavailable type senderId targetId documentId
//	ephemeral       type senderId targetId documentId sessionId count data
//
// Bracketed fields are omitted when nil, and peerMetadata's storageId is
// omitted when empty. Values are written as given; Encode does not default
// selectedProtocolVersion or check that data is non-empty. A count of 2^32 or
// more is written as float64 (exact up to 2^53), as cbor-x does, so that JS
// reads a number and not a BigInt. Encode fails for any other type,
// including the remote-* types (Message cannot represent their payloads),
// and for strings that are not valid UTF-8.
func Encode(m Message) ([]byte, error) {
	var n uint64
	switch m.Type {
	case TypeJoin:
		n = 2
		if m.PeerMetadata != nil {
			n++
		}
		if m.SupportedProtocolVersions != nil {
			n++
		}
	case TypePeer:
		n = 4
		if m.PeerMetadata != nil {
			n++
		}
	case TypeError, TypeDocUnavailable:
		n = 4
	case TypeSync, TypeRequest:
		n = 5
	case TypeEphemeral:
		n = 7
	default:
		return nil, fmt.Errorf("wire: cannot encode message type %q", m.Type)
	}
	if err := checkUTF8(m); err != nil {
		return nil, err
	}

	size := 96 + len(m.Type) + len(m.SenderID) + len(m.TargetID) + len(m.DocumentID) +
		len(m.Data) + len(m.SessionID) + len(m.ErrorMessage) + len(m.SelectedProtocolVersion)
	for _, v := range m.SupportedProtocolVersions {
		size += len(v) + 9
	}
	if m.PeerMetadata != nil {
		size += 48 + len(m.PeerMetadata.StorageID)
	}
	b := make([]byte, 0, size)

	b = appendHead(b, 0xa0, n)
	b = appendText(append(b, keyType...), m.Type)
	b = appendText(append(b, keySenderID...), string(m.SenderID))
	if m.Type != TypeJoin {
		b = appendText(append(b, keyTargetID...), string(m.TargetID))
	}
	switch m.Type {
	case TypeJoin:
		b = appendPeerMetadata(b, m.PeerMetadata)
		if m.SupportedProtocolVersions != nil {
			b = appendHead(append(b, keySupported...), 0x80, uint64(len(m.SupportedProtocolVersions)))
			for _, v := range m.SupportedProtocolVersions {
				b = appendText(b, v)
			}
		}
	case TypePeer:
		b = appendPeerMetadata(b, m.PeerMetadata)
		b = appendText(append(b, keySelected...), m.SelectedProtocolVersion)
	case TypeError:
		b = appendText(append(b, keyMessage...), m.ErrorMessage)
	case TypeSync, TypeRequest:
		b = appendText(append(b, keyDocumentID...), string(m.DocumentID))
		b = appendBytes(append(b, keyData...), m.Data)
	case TypeDocUnavailable:
		b = appendText(append(b, keyDocumentID...), string(m.DocumentID))
	case TypeEphemeral:
		b = appendText(append(b, keyDocumentID...), string(m.DocumentID))
		b = appendText(append(b, keySessionID...), m.SessionID)
		b = appendNumber(append(b, keyCount...), m.Count)
		b = appendBytes(append(b, keyData...), m.Data)
	}
	return b, nil
}

func checkUTF8(m Message) error {
	ok := utf8.ValidString(m.Type) && utf8.ValidString(string(m.SenderID)) &&
		utf8.ValidString(string(m.TargetID)) && utf8.ValidString(string(m.DocumentID)) &&
		utf8.ValidString(m.SessionID) && utf8.ValidString(m.ErrorMessage) &&
		utf8.ValidString(m.SelectedProtocolVersion)
	for _, v := range m.SupportedProtocolVersions {
		ok = ok && utf8.ValidString(v)
	}
	if m.PeerMetadata != nil {
		ok = ok && utf8.ValidString(m.PeerMetadata.StorageID)
	}
	if !ok {
		return fmt.Errorf("wire: cannot encode %s message: string is not valid UTF-8", m.Type)
	}
	return nil
}

func appendPeerMetadata(b []byte, pm *PeerMetadata) []byte {
	if pm == nil {
		return b
	}
	b = append(b, keyPeerMetadata...)
	if pm.StorageID == "" {
		b = append(b, 0xa1)
	} else {
		b = appendText(append(append(b, 0xa2), keyStorageID...), pm.StorageID)
	}
	b = append(b, keyIsEphemeral...)
	if pm.IsEphemeral {
		return append(b, 0xf5)
	}
	return append(b, 0xf4)
}

// appendNumber writes u as cbor-x writes a JS number: a uint below 2^32,
// otherwise a float64.
func appendNumber(b []byte, u uint64) []byte {
	if u < 1<<32 {
		return appendHead(b, 0x00, u)
	}
	return binary.BigEndian.AppendUint64(append(b, 0xfb), math.Float64bits(float64(u)))
}

func appendText(b []byte, s string) []byte {
	return append(appendHead(b, 0x60, uint64(len(s))), s...)
}

func appendBytes(b []byte, p []byte) []byte {
	return append(appendHead(b, 0x40, uint64(len(p))), p...)
}

// appendHead writes a minimal CBOR head: major (already shifted, e.g. 0xa0
// for maps) and argument n.
func appendHead(b []byte, major byte, n uint64) []byte {
	switch {
	case n <= 0x17:
		return append(b, major|byte(n))
	case n <= math.MaxUint8:
		return append(b, major|0x18, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, major|0x19), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, major|0x1a), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, major|0x1b), n)
}
