package core

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/automerge/automerge-go"
)

// jsTrailerFixture is testdata/js-trailer/messages.json: sync messages that
// @automerge/automerge 3.5.0 (the interop suite's pin) generated, with
// the flags trailer it puts in every message. Regenerate it with
// TANDEM_UPDATE_JS_TRAILER=1 go test ./sync/core -run TestTrailer (needs
// node and clients/js/node_modules).
type jsTrailerFixture struct {
	Version string `json:"version"`
	// First is a fresh sync state's first message for a document with
	// changes: heads and a Bloom filter, no changes.
	First string `json:"first"`
	// WithChanges is the message that follows the server's V1 answer to
	// First: it carries every change.
	WithChanges string   `json:"withChanges"`
	Heads       []string `json:"heads"`
	// V2ReadOnly is what the client sends after a local edit once a
	// server message carried ReadOnlyTrailer: V2, without changes.
	V2ReadOnly string `json:"v2ReadOnly"`
	// ReadOnlyTrailer is the trailer the JS decoder reads as ReadOnly
	// ("read-only" in ReadOnlyDecoded).
	ReadOnlyTrailer string   `json:"readOnlyTrailer"`
	ReadOnlyDecoded []string `json:"readOnlyDecoded"`
}

const jsTrailerFile = "testdata/js-trailer/messages.json"

// jsTrailerGen writes the fixture; it runs in clients/js with the pinned
// @automerge/automerge.
const jsTrailerGen = `
import * as A from "@automerge/automerge"
import { readFileSync } from "node:fs"
const hex = b => Buffer.from(b).toString("hex")
const version = JSON.parse(readFileSync("node_modules/@automerge/automerge/package.json", "utf8")).version
// The server's side as Tandem's 0.5 core answers: V1, no trailer.
const v1 = (m, trailer = []) => {
  const d = A.decodeSyncMessage(m)
  const b = A.encodeSyncMessage({ heads: d.heads, need: d.need, have: d.have, changes: d.changes })
  return new Uint8Array([...b, ...trailer])
}
let client = A.change(A.from({ title: "trailer" }), d => { d.n = 1 })
let cs = A.initSyncState()
let first
;[cs, first] = A.generateSyncMessage(client, cs)
let server = A.init(), ss = A.initSyncState()
;[server, ss] = A.receiveSyncMessage(server, ss, first)
let reply
;[ss, reply] = A.generateSyncMessage(server, ss)
;[client, cs] = A.receiveSyncMessage(client, cs, v1(reply))
let withChanges
;[cs, withChanges] = A.generateSyncMessage(client, cs)
if (A.decodeSyncMessage(withChanges).changes.length !== 2) throw new Error("expected both changes")
const readOnlyTrailer = [0x02, 0x02, 0x82]
;[server, ss] = A.receiveSyncMessage(server, ss, withChanges)
;[ss, reply] = A.generateSyncMessage(server, ss)
const told = v1(reply, readOnlyTrailer)
const readOnlyDecoded = A.decodeSyncMessage(told).supportedCapabilities
;[client, cs] = A.receiveSyncMessage(client, cs, told)
client = A.change(client, d => { d.n = 2 })
let v2
;[cs, v2] = A.generateSyncMessage(client, cs)
process.stdout.write(JSON.stringify({
  version, first: hex(first), withChanges: hex(withChanges),
  heads: A.getHeads(A.load(A.save(server))), v2ReadOnly: hex(v2),
  readOnlyTrailer: hex(readOnlyTrailer), readOnlyDecoded,
}, null, 1) + "\n")
`

func loadJSTrailer(t *testing.T) jsTrailerFixture {
	t.Helper()
	if os.Getenv("TANDEM_UPDATE_JS_TRAILER") != "" {
		cmd := exec.Command("node", "--input-type=module", "-e", jsTrailerGen)
		cmd.Dir = filepath.Join("..", "..", "clients", "js")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("node: %v\n%s", err, stderr.String())
		}
		if err := os.WriteFile(jsTrailerFile, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(jsTrailerFile)
	if err != nil {
		t.Fatal(err)
	}
	var f jsTrailerFixture
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestTrailerFromJS checks messages of a current JS core, which end in a
// flags trailer, against every entry point: they are accepted with and
// without the trailer, and the trailer is read.
func TestTrailerFromJS(t *testing.T) {
	f := loadJSTrailer(t)
	if f.Version != "3.5.0" {
		t.Fatalf("fixture made by @automerge/automerge %s, want the interop pin 3.5.0", f.Version)
	}
	first, withChanges := unhex(t, f.First), unhex(t, f.WithChanges)
	jsFlags := []byte{0x02, 0x02, 0x80 | byte(FlagSupportsSyncReset)}
	for name, msg := range map[string][]byte{"first": first, "withChanges": withChanges} {
		if !bytes.HasSuffix(msg, jsFlags) {
			t.Fatalf("%s does not end in the 3.x flags trailer % x: % x", name, jsFlags, msg[max(0, len(msg)-8):])
		}
		tr, err := ReadTrailer(msg)
		if err != nil {
			t.Fatal(err)
		}
		want := Trailer{Present: true, HasFlags: true, Flags: FlagSupportsSyncReset}
		if tr != want {
			t.Fatalf("%s: trailer %+v, want %+v", name, tr, want)
		}
		lim := DefaultLimits()
		m, err := parseSyncMessage(msg, &lim)
		if err != nil || m.trailer != want {
			t.Fatalf("%s: parse %+v, %v", name, m.trailer, err)
		}
	}

	var heads []Hash
	for _, h := range f.Heads {
		heads = append(heads, Hash(unhex(t, h)))
	}
	slices.SortFunc(heads, func(a, b Hash) int { return bytes.Compare(a[:], b[:]) })
	stripped := withChanges[:len(withChanges)-len(jsFlags)]
	caps := append(slices.Clone(stripped), 0x02, 0x01, 0x02) // 0.5.4–0.8: capabilities, no flags
	junk := append(slices.Clone(withChanges), 0xff, 0x00, 0x13)
	for name, msg := range map[string][]byte{
		"flags trailer":        withChanges,
		"no trailer":           stripped,
		"capabilities trailer": caps,
		"junk after trailer":   junk,
	} {
		t.Run(name, func(t *testing.T) {
			d := NewDoc()
			s := d.NewSyncState()
			if _, err := s.Receive(first); err != nil {
				t.Fatal(err)
			}
			got, err := s.Receive(msg)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || !slices.Equal(d.Heads(), heads) {
				t.Fatalf("applied %d changes, heads %x, want 2 and %x", len(got), d.Heads(), heads)
			}
			// A read-only peer's copy is dropped, as without a trailer.
			ro := NewDoc().NewSyncState()
			dropped, err := ro.ReceiveReadOnly(msg)
			if err != nil || !dropped {
				t.Fatalf("read-only: dropped %v, %v", dropped, err)
			}
		})
	}
	tr, err := ReadTrailer(caps)
	if err != nil || tr != (Trailer{Present: true}) {
		t.Fatalf("capabilities trailer read as %+v, %v", tr, err)
	}
	if tr, err := ReadTrailer(stripped); err != nil || tr.Present {
		t.Fatalf("no trailer read as %+v, %v", tr, err)
	}
}

// TestReadOnlyFlags checks the server's side: the trailer that tells a peer
// it is read-only is the one the JS core reads as such, the 0.5 core still
// reads a message carrying it, and the V2 message a told JS peer sends then
// is taken for a read-only peer only, without changes.
func TestReadOnlyFlags(t *testing.T) {
	f := loadJSTrailer(t)
	if !slices.Equal(f.ReadOnlyDecoded, []string{"read-only"}) {
		t.Fatalf("JS decodes %s as %v", f.ReadOnlyTrailer, f.ReadOnlyDecoded)
	}
	d := NewDoc()
	if err := d.Automerge().RootMap().Set("k", "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Automerge().Commit("k"); err != nil {
		t.Fatal(err)
	}
	s := d.NewSyncState()
	msg, ok := s.Generate()
	if !ok {
		t.Fatal("no message")
	}
	told := WithFlags(msg, FlagReadOnly)
	if !bytes.HasSuffix(told, unhex(t, f.ReadOnlyTrailer)) || !bytes.Equal(told[:len(msg)], msg) {
		t.Fatalf("WithFlags wrote % x, want the message and % s", told[len(msg):], f.ReadOnlyTrailer)
	}
	if len(msg) != cap(msg) && &msg[:cap(msg)][len(msg)] == &told[len(msg)] {
		t.Fatal("WithFlags wrote into the message's spare capacity")
	}
	tr, err := ReadTrailer(told)
	if err != nil || tr != (Trailer{Present: true, HasFlags: true, Flags: FlagReadOnly}) {
		t.Fatalf("read back %+v, %v", tr, err)
	}
	// A 0.5 peer (automerge-go) ignores the trailer.
	peer := automerge.New()
	if _, err := automerge.NewSyncState(peer).ReceiveMessage(told); err != nil {
		t.Fatalf("automerge-go refuses a message with flags: %v", err)
	}

	v2 := unhex(t, f.V2ReadOnly)
	if v2[0] != msgV2 {
		t.Fatalf("the told JS peer sent type 0x%02x, want V2", v2[0])
	}
	if _, err := NewDoc().NewSyncState().Receive(v2); !errors.Is(err, ErrBadSyncMessage) || !strings.Contains(err.Error(), "V2") {
		t.Fatalf("a writer's V2 message: %v, want refused", err)
	}
	v1, had, err := ReadOnlyV1(v2)
	if err != nil || had {
		t.Fatalf("ReadOnlyV1: had changes %v, %v", had, err)
	}
	if v1[0] != msgV1 {
		t.Fatalf("ReadOnlyV1 gave type 0x%02x", v1[0])
	}
	ro := NewDoc().NewSyncState()
	if dropped, err := ro.ReceiveReadOnly(v1); err != nil || dropped {
		t.Fatalf("ReceiveReadOnly(V1 of V2): dropped %v, %v", dropped, err)
	}
	// A V1 message goes through as it is; changes are reported.
	wc := unhex(t, f.WithChanges)
	same, had, err := ReadOnlyV1(wc)
	if err != nil || !had || !bytes.Equal(same, wc) {
		t.Fatalf("ReadOnlyV1 of a V1 message with changes: had %v, same %v, %v", had, bytes.Equal(same, wc), err)
	}
	// A V2 message with changes loses them (and says so).
	withV2 := slices.Clone(wc)
	withV2[0] = msgV2
	stripped, had, err := ReadOnlyV1(withV2)
	if err != nil || !had {
		t.Fatalf("ReadOnlyV1 of V2 with changes: had %v, %v", had, err)
	}
	lim := DefaultLimits()
	if m, err := parseSyncMessage(stripped, &lim); err != nil || len(m.changes) != 0 {
		t.Fatalf("stripped: %d changes, %v", len(m.changes), err)
	}
	if _, _, err := ReadOnlyV1([]byte{0x44, 0}); !errors.Is(err, ErrBadSyncMessage) {
		t.Fatalf("an unknown type: %v", err)
	}
}

// TestReadTrailerEdges covers trailers no core writes.
func TestReadTrailerEdges(t *testing.T) {
	for _, tc := range []struct {
		name string
		rest []byte
		want Trailer
	}{
		{"none", nil, Trailer{}},
		{"empty trailer", []byte{0x00}, Trailer{Present: true}},
		{"length past the end", []byte{0x05, 0x82}, Trailer{}},
		{"overlong length", []byte{0x82, 0x00, 0x82}, Trailer{}},
		{"capabilities only", []byte{0x02, 0x01, 0x02}, Trailer{Present: true}},
		{"flags bytes are or'ed", []byte{0x03, 0x02, 0x81, 0x84}, Trailer{Present: true, HasFlags: true, Flags: FlagSyncReset | FlagSupportsSyncReset}},
		{"junk after the trailer", []byte{0x02, 0x02, 0x82, 0xff}, Trailer{Present: true, HasFlags: true, Flags: FlagReadOnly}},
	} {
		if got := readTrailer(tc.rest); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
