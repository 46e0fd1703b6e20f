package core

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// The hostile-client suite (internal/hostile) sends crafted changes to a
// real server over real sockets. It cannot build them itself (the change
// encoder lives in this package's tests), so this test writes them out:
//
//	TANDEM_UPDATE_FIXTURES=1 go test -run TestHostileFixtures ./sync/core
//
// Without the variable it fails when the checked-in file is stale, so the
// suite always sends what the rules above refuse.

const hostileFixtures = "../../internal/hostile/testdata/crafted.json"

// craftedFile is the fixture file's layout (hex-encoded chunks).
type craftedFile struct {
	// Base is actor A's valid first change (see baseChange); every
	// crafted change depends on it.
	Base string `json:"base"`
	// Refused are changes a server must refuse, each with a part of the
	// reason it gives.
	Refused []craftedChange `json:"refused"`
	// Held are valid changes whose dependencies are missing: a server
	// holds them back, and the connection stays open.
	Held []craftedChange `json:"held"`
}

type craftedChange struct {
	Name  string `json:"name"`
	Chunk string `json:"chunk"`
	Want  string `json:"want,omitempty"`
}

func craftedFixtures(t *testing.T) craftedFile {
	f := craftedFile{Base: hex.EncodeToString(baseChange().chunk())}
	add := func(name, want string, chunk []byte) {
		f.Refused = append(f.Refused, craftedChange{Name: name, Chunk: hex.EncodeToString(chunk), Want: want})
	}
	for _, tc := range append(changeRuleCases(), columnRuleCases()...) {
		if tc.want != "" {
			add(tc.name, tc.want, tc.c.chunk())
		}
	}
	add("a run of 2^25 ops in a few bytes", "limit exceeded", opBomb().chunk())
	add("a million writes to one key in a few bytes", "limit exceeded", keyBomb().chunk())

	ok := changeB(changeOp{key: prop("a"), action: actSet, val: vInt(1)})
	bad := ok.chunk()
	bad[5] ^= 1
	add("bad checksum", "bad chunk checksum", bad)
	add("compressed change", "only uncompressed change chunks", ok.compressed(t))
	add("document chunk", "only uncompressed change chunks", baseDoc(t).Save())
	add("trailing bytes", "bytes after the change", append(ok.chunk(), 0))
	add("not a chunk", "not an Automerge chunk", []byte("hello"))

	missing := changeB(changeOp{key: prop("held"), action: actSet, val: vInt(1)})
	missing.deps = []Hash{{1, 2, 3}}
	f.Held = append(f.Held, craftedChange{Name: "a dependency that never arrives", Chunk: hex.EncodeToString(missing.chunk())})
	return f
}

func TestHostileFixtures(t *testing.T) {
	f := craftedFixtures(t)
	// Every refused case is refused here, with its reason, and every held
	// one is held: the file says what this package does.
	base, _ := hex.DecodeString(f.Base)
	for _, c := range f.Refused {
		chunk, _ := hex.DecodeString(c.Chunk)
		t.Run(c.Name, func(t *testing.T) {
			d := baseDoc(t)
			before := d.Heads()
			_, err := d.NewSyncState().Receive(messageOf(chunk))
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(c.Want)) {
				t.Fatalf("got %v, want an error saying %q", err, c.Want)
			}
			if len(d.Heads()) != len(before) {
				t.Fatal("a refused change changed the document")
			}
		})
	}
	for _, c := range f.Held {
		chunk, _ := hex.DecodeString(c.Chunk)
		d, err := Load(nil, [][]byte{base})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.NewSyncState().Receive(messageOf(chunk)); err != nil {
			t.Fatalf("%s: refused: %v", c.Name, err)
		}
		if d.Pending() != 1 {
			t.Fatalf("%s: %d changes held", c.Name, d.Pending())
		}
	}

	want, err := json.MarshalIndent(f, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	if os.Getenv("TANDEM_UPDATE_FIXTURES") != "" {
		if err := os.MkdirAll(filepath.Dir(hostileFixtures), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(hostileFixtures, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	got, err := os.ReadFile(hostileFixtures)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s is stale or missing (%v): run TANDEM_UPDATE_FIXTURES=1 go test -run TestHostileFixtures ./sync/core", hostileFixtures, err)
	}
}
