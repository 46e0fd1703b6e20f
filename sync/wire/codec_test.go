package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// hx decodes hex that may contain spaces, newlines and "|" separators.
func hx(s string) []byte {
	s = strings.NewReplacer(" ", "", "\n", "", "\t", "", "|", "").Replace(s)
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

const testDocID = DocID("4NMNnkMhL8jXrdJ9jamS58PAVdXu")

// Frames produced by cbor-x 1.6.0 in node with automerge-repo's encoder
// options, new Encoder({tagUint8Array: false, useRecords: false}). Note the
// map16 heads (b9 00 NN) and CBOR undefined (f7).
var (
	// {type:'join', senderId:'peer-A', peerMetadata:{storageId:undefined,
	// isEphemeral:true}, supportedProtocolVersions:['1']}; identical to
	// PROTOCOL.md §1.10.
	cborxJoin = hx(`b90004 6474797065 646a6f696e 6873656e6465724964 66706565722d41
		6c706565724d65746164617461 b90002 6973746f726167654964 f7 6b6973457068656d6572616c f5
		7819737570706f7274656450726f746f636f6c56657273696f6e73 81 6131`)
	// {type:'peer', senderId:'storage-server-vm', targetId:'peer-A',
	// peerMetadata:{storageId:'e35c79ad-…', isEphemeral:false},
	// selectedProtocolVersion:'1'}
	cborxPeer = hx(`b90005 6474797065 6470656572 6873656e6465724964 7173746f726167652d7365727665722d766d
		68746172676574496466706565722d41 6c706565724d65746164617461 b90002 6973746f726167654964
		782465333563373961642d316332662d346334652d396135352d336634613362316532643130
		6b6973457068656d6572616c f4 7773656c656374656450726f746f636f6c56657273696f6e 6131`)
	// {type:'sync', senderId:'peer-A', targetId:'srv', documentId:testDocID,
	// data:Uint8Array[0x42,1,2,3]}
	cborxSync = hx(`b90005 6474797065 6473796e63 6873656e6465724964 66706565722d41
		687461726765744964 63737276 6a646f63756d656e744964 781c344e4d4e6e6b4d684c386a5872644a396a616d533538504156645875
		6464617461 4442010203`)
	// {type:'ephemeral', senderId:'peer-A', targetId:'srv', documentId:testDocID,
	// sessionId:'k3j4h5', count:1, data:Uint8Array[a1 61 78 01]}
	cborxEphemeral = hx(`b90007 6474797065 69657068656d6572616c 6873656e6465724964 66706565722d41
		687461726765744964 63737276 6a646f63756d656e744964 781c344e4d4e6e6b4d684c386a5872644a396a616d533538504156645875
		6973657373696f6e4964 666b336a346835 65636f756e74 01 6464617461 44a1617801`)
	// The same with count: 2**32, which cbor-x writes as float64.
	cborxEphemeralBigCount = hx(`b90007 6474797065 69657068656d6572616c 6873656e6465724964 66706565722d41
		687461726765744964 63737276 6a646f63756d656e744964 781c344e4d4e6e6b4d684c386a5872644a396a616d533538504156645875
		6973657373696f6e4964 666b336a346835 65636f756e74 fb41f0000000000000 6464617461 41f6`)
	// {type:'remote-subscription-change', senderId:'peer-A', targetId:'srv',
	// add:['e35c79ad-…'], remove:undefined}
	cborxRemoteSubs = hx(`b90005 6474797065 781a72656d6f74652d737562736372697074696f6e2d6368616e6765
		6873656e6465724964 66706565722d41 687461726765744964 63737276
		63616464 81 782465333563373961642d316332662d346334652d396135352d336634613362316532643130
		6672656d6f7665 f7`)
	// {type:'remote-heads-changed', senderId:'peer-A', targetId:'srv',
	// documentId:testDocID, newHeads:{'e35c79ad':{heads:['abc'],
	// timestamp:1764200000000}}}; the timestamp is float64 fb 4279ac283aa00000.
	cborxRemoteHeads = hx(`b90005 6474797065 7472656d6f74652d68656164732d6368616e676564
		6873656e6465724964 66706565722d41 687461726765744964 63737276
		6a646f63756d656e744964 781c344e4d4e6e6b4d684c386a5872644a396a616d533538504156645875
		686e65774865616473 b90001 686533356337396164 b90002 656865616473 81 63616263
		6974696d657374616d70 fb4279ac283aa00000`)
	// {type:'sync', data:Uint8Array[1,2,3]} from cbor-x with its default
	// tagUint8Array:true: data is tag 64 (d8 40) around the byte string.
	cborxTag64 = hx(`b90002 6474797065 6473796e63 6464617461 d840 43010203`)
)

// Hand-assembled frames.
var (
	// Indefinite-length map, array and byte string: join-like sync.
	indefSync = hx(`bf 6474797065 6473796e63 6873656e6465724964 66706565722d41
		6464617461 5f 420102 4103 ff
		6a646f63756d656e744964 6161
		65 6578747261 9f 01 bf ff ff
		ff`)
	// sync with null targetId, an unknown key holding a map, and undefined data.
	nullsSync = hx(`a5 6474797065 6473796e63 6873656e6465724964 6161 687461726765744964 f6
		65 6578747261 a1 6162 f7
		6464617461 f7`)
	// An ephemeral-like map with count as float64 1.0 / float16 1.0.
	floatCount   = hx(`a2 6474797065 69657068656d6572616c 65636f756e74 fb3ff0000000000000`)
	float16Count = hx(`a2 6474797065 69657068656d6572616c 65636f756e74 f93c00`)
)

func countFrame(v string) []byte {
	return hx(`a2 6474797065 69657068656d6572616c 65636f756e74` + v)
}

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		frame []byte
		want  Message
	}{
		{"cbor-x join (map16, undefined storageId)", cborxJoin, Message{
			Type: TypeJoin, SenderID: "peer-A",
			PeerMetadata:              &PeerMetadata{IsEphemeral: true},
			SupportedProtocolVersions: []string{"1"},
		}},
		{"cbor-x peer", cborxPeer, Message{
			Type: TypePeer, SenderID: "storage-server-vm", TargetID: "peer-A",
			PeerMetadata:            &PeerMetadata{StorageID: "e35c79ad-1c2f-4c4e-9a55-3f4a3b1e2d10"},
			SelectedProtocolVersion: "1",
		}},
		{"cbor-x sync", cborxSync, Message{
			Type: TypeSync, SenderID: "peer-A", TargetID: "srv", DocumentID: testDocID,
			Data: []byte{0x42, 1, 2, 3},
		}},
		{"cbor-x ephemeral count 1", cborxEphemeral, Message{
			Type: TypeEphemeral, SenderID: "peer-A", TargetID: "srv", DocumentID: testDocID,
			SessionID: "k3j4h5", Count: 1, Data: []byte{0xa1, 0x61, 0x78, 0x01},
		}},
		{"cbor-x ephemeral count 2^32 as float64", cborxEphemeralBigCount, Message{
			Type: TypeEphemeral, SenderID: "peer-A", TargetID: "srv", DocumentID: testDocID,
			SessionID: "k3j4h5", Count: 1 << 32, Data: []byte{0xf6},
		}},
		{"cbor-x remote-subscription-change remove undefined", cborxRemoteSubs, Message{
			Type: TypeRemoteSubscriptionChange, SenderID: "peer-A", TargetID: "srv",
		}},
		{"cbor-x remote-heads-changed float timestamp", cborxRemoteHeads, Message{
			Type: TypeRemoteHeadsChanged, SenderID: "peer-A", TargetID: "srv", DocumentID: testDocID,
		}},
		{"cbor-x tag 64 data", cborxTag64, Message{Type: TypeSync, Data: []byte{1, 2, 3}}},
		{"indefinite lengths", indefSync, Message{
			Type: TypeSync, SenderID: "peer-A", DocumentID: "a", Data: []byte{1, 2, 3},
		}},
		{"null and undefined are absent", nullsSync, Message{Type: TypeSync, SenderID: "a"}},
		{"count float64", floatCount, Message{Type: TypeEphemeral, Count: 1}},
		{"count float16", float16Count, Message{Type: TypeEphemeral, Count: 1}},
		{"count uint64 head", countFrame("1b0000000000000005"), Message{Type: TypeEphemeral, Count: 5}},
		{"count undefined", countFrame("f7"), Message{Type: TypeEphemeral}},
		{"count max float below 2^64", countFrame("fb43efffffffffffff"), Message{Type: TypeEphemeral, Count: 0xfffffffffffff800}},
		{"unknown type", hx(`a2 6474797065 656c65617665 6873656e6465724964 66706565722d41`),
			Message{Type: "leave", SenderID: "peer-A"}},
		{"unknown type, wrongly typed fields", hx(`a5 6474797065 696e6577666561747572 65 636f756e74 6131
			6873656e6465724964 66706565722d41 6464617461 a0 43 6b6579 01`),
			Message{Type: "newfeatur", SenderID: "peer-A"}},
		{"sync without documentId", hx(`a1 6474797065 6473796e63`), Message{Type: TypeSync}},
		{"documentId not validated", hx(`a2 6474797065 6473796e63 6a646f63756d656e744964 642e2e2f78`),
			Message{Type: TypeSync, DocumentID: "../x"}},
		{"empty peerMetadata and versions", hx(`a3 6474797065 646a6f696e 6c706565724d65746164617461 a0
			7819737570706f7274656450726f746f636f6c56657273696f6e73 80`),
			Message{Type: TypeJoin, PeerMetadata: &PeerMetadata{}, SupportedProtocolVersions: []string{}}},
		{"keys are case-sensitive", hx(`a2 6474797065 6473796e63 6853454e4445524944 6161`), Message{Type: TypeSync}},
		{"integer key ignored", hx(`a2 6474797065 6473796e63 01 6161`), Message{Type: TypeSync}},
		{"non-minimal heads", hx(`ba00000001 7a00000004 74797065 7b0000000000000004 73796e63`), Message{Type: TypeSync}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Decode(tt.frame)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Decode =\n%#v\nwant\n%#v", got, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	nested := append(hx(`a2 6474797065 6473796e63 6178`), bytes.Repeat([]byte{0x81}, 40)...)
	nested = append(nested, 0x00)
	tests := []struct {
		name  string
		frame []byte
	}{
		{"empty", nil},
		{"not CBOR", []byte("hello")},
		{"truncated", cborxSync[:len(cborxSync)-1]},
		{"truncated head", hx(`b900`)},
		{"unterminated indefinite map", hx(`bf 6474797065 6473796e63`)},
		{"reserved additional info", hx(`bc`)},
		{"trailing garbage", append(append([]byte(nil), cborxSync...), 0x00)},
		{"two maps", append(append([]byte(nil), cborxSync...), cborxSync...)},
		{"top-level array", hx(`81 a1 6474797065 6473796e63`)},
		{"top-level undefined", hx(`f7`)},
		{"top-level tag", hx(`d840 a1 6474797065 6473796e63`)},
		{"type missing", hx(`a1 6873656e6465724964 6161`)},
		{"type undefined", hx(`a1 6474797065 f7`)},
		{"type empty", hx(`a1 6474797065 60`)},
		{"type not a string", hx(`a1 6474797065 01`)},
		{"type bytes", hx(`a1 6474797065 4473796e63`)},
		{"senderId a number", hx(`a2 6474797065 6473796e63 6873656e6465724964 182a`)},
		{"data a text string", hx(`a2 6474797065 6473796e63 6464617461 63616263`)},
		{"peerMetadata a string", hx(`a2 6474797065 646a6f696e 6c706565724d65746164617461 6161`)},
		{"versions not strings", hx(`a2 6474797065 646a6f696e 7819737570706f7274656450726f746f636f6c56657273696f6e73 8101`)},
		{"invalid UTF-8", hx(`a2 6474797065 6473796e63 6873656e6465724964 61ff`)},
		{"count negative int", countFrame("20")},
		{"count negative float", countFrame("fbbff0000000000000")},
		{"count fractional", countFrame("fb3ff8000000000000")},
		{"count NaN", countFrame("f97e00")},
		{"count +Inf", countFrame("f97c00")},
		{"count 2^64", countFrame("fb43f0000000000000")},
		{"count string", countFrame("6131")},
		{"count bignum", countFrame("c24101")},
		{"nesting too deep", nested},
		{"huge array header", hx(`a2 6474797065 6473796e63 6178 9b ffffffffffffffff`)},
		{"byte string key", hx(`a1 4474797065 6473796e63`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := Decode(tt.frame)
			if err == nil {
				t.Fatalf("Decode succeeded: %#v", m)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
		})
	}
}

func TestDecodeAliasesData(t *testing.T) {
	t.Parallel()
	frame := append([]byte(nil), cborxSync...)
	m, err := Decode(frame)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(m.Data, []byte{0x42, 1, 2, 3}) || cap(m.Data) != len(m.Data) {
		t.Fatalf("data %x (cap %d), want 42010203 with no spare capacity", m.Data, cap(m.Data))
	}
	sender := m.SenderID
	for i := range frame {
		frame[i] = 0
	}
	if !bytes.Equal(m.Data, []byte{0, 0, 0, 0}) {
		t.Errorf("data %x was copied, want it to alias the frame", m.Data)
	}
	if m.SenderID != sender || sender != "peer-A" {
		t.Errorf("strings changed with the frame: %q", m.SenderID)
	}
	// Appending to Data never writes into the frame.
	_ = append(m.Data, 9)
	if frame[len(frame)-1] != 0 && bytes.Contains(frame, []byte{9}) {
		t.Error("append wrote into the frame")
	}
}

func TestDecodeDataForms(t *testing.T) {
	t.Parallel()
	// {"type":"sync","data":<form>}: definite, tagged (cbor-x's tag 64),
	// indefinite-length chunks, null.
	prefix := append([]byte{0xa2, 0x64}, "type"...)
	prefix = append(append(prefix, 0x64), "sync"...)
	prefix = append(append(prefix, 0x64), "data"...)
	for _, tt := range []struct {
		name string
		item []byte
		want []byte
	}{
		{"definite", []byte{0x43, 1, 2, 3}, []byte{1, 2, 3}},
		{"tag 64", []byte{0xd8, 0x40, 0x42, 4, 5}, []byte{4, 5}},
		{"chunks", []byte{0x5f, 0x41, 6, 0x42, 7, 8, 0xff}, []byte{6, 7, 8}},
		{"null", []byte{0xf6}, nil},
	} {
		m, err := Decode(append(append([]byte(nil), prefix...), tt.item...))
		if err != nil || !bytes.Equal(m.Data, tt.want) {
			t.Errorf("%s: data %x, %v; want %x", tt.name, m.Data, err, tt.want)
		}
	}
}

// sampleMessages has one message of every type Encode supports.
func sampleMessages() []Message {
	return []Message{
		{Type: TypeJoin, SenderID: "peer-A", PeerMetadata: &PeerMetadata{IsEphemeral: true},
			SupportedProtocolVersions: []string{ProtocolVersion}},
		{Type: TypeJoin, SenderID: "peer-B"},
		{Type: TypeJoin, SenderID: "peer-C", PeerMetadata: &PeerMetadata{StorageID: "s"}, SupportedProtocolVersions: []string{}},
		{Type: TypePeer, SenderID: "srv", TargetID: "peer-A", SelectedProtocolVersion: ProtocolVersion,
			PeerMetadata: &PeerMetadata{StorageID: "e35c79ad-1c2f-4c4e-9a55-3f4a3b1e2d10"}},
		{Type: TypePeer, SenderID: "srv", TargetID: "peer-A", SelectedProtocolVersion: ProtocolVersion},
		{Type: TypeError, SenderID: "srv", TargetID: "peer-A", ErrorMessage: "unsupported protocol version"},
		{Type: TypeSync, SenderID: "srv", TargetID: "peer-A", DocumentID: testDocID, Data: bytes.Repeat([]byte{7}, 300)},
		{Type: TypeRequest, SenderID: "peer-A", TargetID: "srv", DocumentID: testDocID, Data: []byte{0x42}},
		{Type: TypeDocUnavailable, SenderID: "srv", TargetID: "peer-A", DocumentID: testDocID},
		{Type: TypeEphemeral, SenderID: "peer-Ü", TargetID: "srv", DocumentID: testDocID, SessionID: "k3j4h5",
			Count: 1, Data: []byte{0xa0}},
		{Type: TypeEphemeral, SenderID: "peer-A", TargetID: "srv", DocumentID: testDocID, SessionID: "x",
			Count: 1<<32 - 1, Data: []byte{0xa0}},
		{Type: TypeEphemeral, SenderID: "peer-A", TargetID: "srv", DocumentID: testDocID, SessionID: "x",
			Count: 1 << 40, Data: make([]byte, 70000)},
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, m := range sampleMessages() {
		t.Run(m.Type, func(t *testing.T) {
			t.Parallel()
			b, err := Encode(m)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode(%x): %v", b, err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("round trip =\n%#v\nwant\n%#v", got, m)
			}
		})
	}
}

// strictMode rejects anything Encode must not produce.
var strictMode = func() cbor.DecMode {
	dm, err := cbor.DecOptions{
		IndefLength:      cbor.IndefLengthForbidden,
		TagsMd:           cbor.TagsForbidden,
		DupMapKey:        cbor.DupMapKeyEnforcedAPF,
		MaxArrayElements: 1 << 20,
	}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

func TestEncodeIsStrict(t *testing.T) {
	t.Parallel()
	for _, m := range sampleMessages() {
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode(%s): %v", m.Type, err)
		}
		var v map[string]any
		if err := strictMode.Unmarshal(b, &v); err != nil {
			t.Errorf("Encode(%s) = %x: %v", m.Type, b, err)
		}
		if v["type"] != m.Type {
			t.Errorf("Encode(%s): type = %v", m.Type, v["type"])
		}
	}
}

// minimalHeads rewrites cbor-x's map16 heads as minimal map heads.
func minimalHeads(b []byte) []byte {
	b = bytes.ReplaceAll(b, hx(`b90007`), hx(`a7`))
	b = bytes.ReplaceAll(b, hx(`b90005`), hx(`a5`))
	return bytes.ReplaceAll(b, hx(`b90002`), hx(`a2`))
}

// TestEncodeMatchesCborX checks that re-encoding cbor-x's frames gives the
// same bytes apart from the map heads: same key order, same number encoding.
func TestEncodeMatchesCborX(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		frame, want []byte
	}{
		{"peer", cborxPeer, minimalHeads(cborxPeer)},
		{"sync", cborxSync, minimalHeads(cborxSync)},
		{"ephemeral", cborxEphemeral, minimalHeads(cborxEphemeral)},
		{"ephemeral float count", cborxEphemeralBigCount, minimalHeads(cborxEphemeralBigCount)},
		// storageId undefined is omitted rather than written as f7.
		{"join", cborxJoin, hx(`a4 6474797065 646a6f696e 6873656e6465724964 66706565722d41
			6c706565724d65746164617461 a1 6b6973457068656d6572616c f5
			7819737570706f7274656450726f746f636f6c56657273696f6e73 81 6131`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := Decode(tt.frame)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Encode(m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("Encode =\n%x\nwant\n%x", got, tt.want)
			}
		})
	}
}

func TestEncodeOnlyTypeFields(t *testing.T) {
	t.Parallel()
	full := Message{
		SenderID: "a", TargetID: "b", DocumentID: testDocID, Data: []byte{1},
		PeerMetadata: &PeerMetadata{StorageID: "s"}, SupportedProtocolVersions: []string{"1"},
		SelectedProtocolVersion: "1", ErrorMessage: "e", SessionID: "x", Count: 3,
	}
	want := map[string][]string{
		TypeJoin:           {"type", "senderId", "peerMetadata", "supportedProtocolVersions"},
		TypePeer:           {"type", "senderId", "targetId", "peerMetadata", "selectedProtocolVersion"},
		TypeError:          {"type", "senderId", "targetId", "message"},
		TypeSync:           {"type", "senderId", "targetId", "documentId", "data"},
		TypeRequest:        {"type", "senderId", "targetId", "documentId", "data"},
		TypeDocUnavailable: {"type", "senderId", "targetId", "documentId"},
		TypeEphemeral:      {"type", "senderId", "targetId", "documentId", "sessionId", "count", "data"},
	}
	for typ, keys := range want {
		m := full
		m.Type = typ
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode(%s): %v", typ, err)
		}
		gotKeys := mapKeys(t, b)
		if !reflect.DeepEqual(gotKeys, keys) {
			t.Errorf("Encode(%s) keys = %v, want %v", typ, gotKeys, keys)
		}
	}
}

// mapKeys returns the keys of the top-level map b in order.
func mapKeys(t *testing.T, b []byte) []string {
	t.Helper()
	var pairs map[string]cbor.RawMessage
	if err := strictMode.Unmarshal(b, &pairs); err != nil {
		t.Fatal(err)
	}
	var keys []string
	rest := b[1:] // every sample map has fewer than 24 pairs
	for range pairs {
		var k string
		var v cbor.RawMessage
		var err error
		if rest, err = strictMode.UnmarshalFirst(rest, &k); err != nil {
			t.Fatal(err)
		}
		if rest, err = strictMode.UnmarshalFirst(rest, &v); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	return keys
}

func TestEncodeErrors(t *testing.T) {
	t.Parallel()
	for _, m := range []Message{
		{},
		{Type: "leave", SenderID: "a"},
		{Type: TypeRemoteSubscriptionChange, SenderID: "a"},
		{Type: TypeRemoteHeadsChanged, SenderID: "a"},
		{Type: TypeSync, SenderID: "\xff"},
		{Type: TypeJoin, SupportedProtocolVersions: []string{"\xc3"}},
		{Type: TypePeer, PeerMetadata: &PeerMetadata{StorageID: "\x80"}},
	} {
		if b, err := Encode(m); err == nil {
			t.Errorf("Encode(%#v) = %x, want error", m, b)
		}
	}
}
