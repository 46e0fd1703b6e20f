package engine

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/automerge/automerge-go"
)

// jsPeers drives testdata/jspeer.mjs: peers running @automerge/automerge
// from clients/js/node_modules. Tests that need it skip without node or
// the installed packages (scripts/test.sh installs them).
type jsPeers struct {
	t   testing.TB
	in  io.WriteCloser
	out *bufio.Scanner
	cmd *exec.Cmd
}

func startJS(t testing.TB) *jsPeers {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	dir, err := filepath.Abs("../../clients/js")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules/@automerge/automerge")); err != nil {
		t.Skip("clients/js/node_modules has no @automerge/automerge (npm install)")
	}
	cmd := exec.Command(node, "testdata/jspeer.mjs")
	cmd.Env = append(os.Environ(), "AM_JS_DIR="+dir)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	js := &jsPeers{t: t, in: in, out: bufio.NewScanner(out), cmd: cmd}
	js.out.Buffer(nil, 64<<20)
	t.Cleanup(func() {
		in.Close()
		cmd.Wait()
	})
	return js
}

type jsReply struct {
	Err     string   `json:"err"`
	Msg     *string  `json:"msg"`
	Heads   []string `json:"heads"`
	Need    []string `json:"need"`
	Have    int      `json:"have"`
	Changes int      `json:"changes"`
	Version string   `json:"version"`
	Size    int      `json:"size"`
}

func (js *jsPeers) call(cmd map[string]any) jsReply {
	js.t.Helper()
	b, _ := json.Marshal(cmd)
	if _, err := js.in.Write(append(b, '\n')); err != nil {
		js.t.Fatal(err)
	}
	if !js.out.Scan() {
		js.t.Fatalf("jspeer: no answer to %s: %v", b, js.out.Err())
	}
	var r jsReply
	if err := json.Unmarshal(js.out.Bytes(), &r); err != nil {
		js.t.Fatal(err)
	}
	return r
}

func hexHashes(hs []Hash) []string {
	out := make([]string, len(hs))
	for i, h := range hs {
		out[i] = hex.EncodeToString(h[:])
	}
	return out
}

// TestJSDecodesEngineMessages hands every message the engine sent in a few
// differential sessions, and the reset message, to the JS implementation's
// decodeSyncMessage, and compares what it read with what was written.
func TestJSDecodesEngineMessages(t *testing.T) {
	js := startJS(t)
	t.Logf("@automerge/automerge %s", js.call(map[string]any{"op": "version"}).Version)
	var msgs [][]byte
	for seed := uint64(1); seed <= 6; seed++ {
		eng := &engineServer{doc: NewDocument(Options{}), states: make([]*SyncState, 4)}
		w, err := runSession(t, seed, eng, seed%2 == 0)
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, w.sent...)
	}
	msgs = append(msgs, resetMessage([]Hash{{1}, {2}}))
	kinds := map[string]int{}
	for _, b := range msgs {
		m, err := DecodeMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		r := js.call(map[string]any{"op": "decode", "msg": hex.EncodeToString(b)})
		if r.Err != "" {
			t.Fatalf("JS could not decode %x: %s", b, r.Err)
		}
		if !slices.Equal(r.Heads, hexHashes(m.Heads)) || !slices.Equal(r.Need, hexHashes(m.Need)) ||
			r.Have != len(m.Have) || r.Changes != len(m.Changes) {
			t.Fatalf("JS read %+v from %x", r, b)
		}
		switch {
		case len(m.Have) == 1 && len(m.Have[0].LastSync) == 0 && m.Have[0].Bloom.Len() == 0 && len(m.Heads) > 1:
			kinds["reset"]++
		case len(m.Changes) > 0:
			kinds["changes"]++
		case len(m.Need) > 0:
			kinds["need"]++
		default:
			kinds["heads and have"]++
		}
	}
	t.Logf("%d engine messages decoded by JS: %v", len(msgs), kinds)
}

// TestJSSession syncs JS peers and an automerge-go peer through the engine:
// random edits, deliveries in order, reconnects, and everyone ends with
// the same heads. The JS peers' messages carry the current core's trailer.
func TestJSSession(t *testing.T) {
	js := startJS(t)
	sessions := 12
	if testing.Short() {
		sessions = 3
	}
	for seed := uint64(1); seed <= uint64(sessions); seed++ {
		jsSession(t, js, seed)
	}
}

func jsSession(t *testing.T, js *jsPeers, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 9))
	doc := NewDocument(Options{})
	const nJS = 2
	ids := []int{int(seed)*10 + 0, int(seed)*10 + 1}
	states := make([]*SyncState, nJS+1)
	var up, down [nJS + 1][][]byte
	am := newAMPeer(t, int(seed)*10+2)
	amState := automerge.NewSyncState(am.doc)
	for i, id := range ids {
		js.call(map[string]any{"op": "new", "id": id, "actor": fmt.Sprintf("%032x", 0x5000+id)})
		states[i] = NewSyncState()
	}
	states[nJS] = NewSyncState()
	peerGen := func(p int) {
		if p == nJS {
			if m, ok := amState.GenerateMessage(); ok {
				up[p] = append(up[p], m.Bytes())
			}
			return
		}
		if r := js.call(map[string]any{"op": "gen", "id": ids[p]}); r.Msg != nil {
			b, _ := hex.DecodeString(*r.Msg)
			up[p] = append(up[p], b)
		} else if r.Err != "" {
			t.Fatal(r.Err)
		}
	}
	serverGen := func(p int) {
		if m, ok := states[p].Generate(doc); ok {
			down[p] = append(down[p], m)
		}
	}
	toServer := func(p int) {
		m := up[p][0]
		up[p] = up[p][1:]
		res, err := states[p].Receive(doc, m)
		if err != nil {
			t.Fatalf("seed %d: engine refused %x: %v", seed, m, err)
		}
		serverGen(p)
		if len(res.Added) > 0 {
			for q := range states {
				if q != p {
					serverGen(q)
				}
			}
		}
	}
	toPeer := func(p int) {
		m := down[p][0]
		down[p] = down[p][1:]
		if p == nJS {
			if _, err := amState.ReceiveMessage(m); err != nil {
				t.Fatal(err)
			}
		} else if r := js.call(map[string]any{"op": "recv", "id": ids[p], "msg": hex.EncodeToString(m)}); r.Err != "" {
			t.Fatalf("seed %d: JS refused %x: %s", seed, m, r.Err)
		}
		peerGen(p)
	}
	for p := range states {
		peerGen(p)
	}
	for range 80 {
		p := r.IntN(nJS + 1)
		switch a := r.IntN(100); {
		case a < 25:
			if p == nJS {
				am.edit(t, r, 1+r.IntN(2))
			} else {
				js.call(map[string]any{"op": "edit", "id": ids[p], "n": 1 + r.IntN(3), "seed": r.IntN(1000)})
			}
			peerGen(p)
		case a < 55:
			if len(up[p]) > 0 {
				toServer(p)
			}
		case a < 90:
			if len(down[p]) > 0 {
				toPeer(p)
			}
		default: // reconnect
			up[p], down[p] = nil, nil
			states[p] = NewSyncState()
			if p == nJS {
				amState = automerge.NewSyncState(am.doc)
			} else {
				js.call(map[string]any{"op": "reset", "id": ids[p]})
			}
			peerGen(p)
		}
	}
	for range 200 {
		busy := false
		for p := range states {
			for len(up[p]) > 0 {
				busy = true
				toServer(p)
			}
			for len(down[p]) > 0 {
				busy = true
				toPeer(p)
			}
		}
		if !busy {
			break
		}
	}
	want := hexHashes(doc.Heads())
	for p := range nJS {
		if got := js.call(map[string]any{"op": "heads", "id": ids[p]}).Heads; !slices.Equal(got, want) {
			t.Fatalf("seed %d: JS peer %d has heads %v, the engine %v", seed, p, got, want)
		}
	}
	if got := hexHashes(heads(am.doc)); !slices.Equal(got, want) {
		t.Fatalf("seed %d: the automerge-go peer's heads differ", seed)
	}
	if !states[0].trailer {
		t.Fatalf("seed %d: no trailer seen from JS", seed)
	}
	t.Logf("seed %d: converged at %d changes", seed, doc.Graph().Len())
}
