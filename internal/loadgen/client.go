package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/automerge/automerge-go"
	"github.com/coder/websocket"

	"github.com/tandem-sync/tandem/sync/engine"
	"github.com/tandem-sync/tandem/sync/wire"
)

// stampPrefix starts the change message of every edit the load generator
// makes: "tandem-bench <m|w> <author> <seq> <unix nanoseconds>", m for a
// measured edit, w for a warm-up one. Receivers read the send time from
// it. The creating change of a document carries initMessage instead, and
// the history its creator types before the load (Config.History)
// historyMessage.
const (
	stampPrefix    = "tandem-bench "
	initMessage    = "tandem-bench init"
	historyMessage = "tandem-bench history"
)

// seqSet is the set of an author's edit seqs a client has seen. They
// mostly arrive in order, but not always: a sync message lists the
// changes its receiver asked for by hash before the others, so an
// author's later change can come first. Seqs up to low have all been
// seen; above holds those seen past a gap.
type seqSet struct {
	low   uint64
	above map[uint64]struct{}
}

// add records seq and reports whether it is new.
func (s *seqSet) add(seq uint64) bool {
	if seq <= s.low {
		return false
	}
	if seq != s.low+1 {
		if _, dup := s.above[seq]; dup {
			return false
		}
		if s.above == nil {
			s.above = make(map[uint64]struct{})
		}
		s.above[seq] = struct{}{}
		return true
	}
	s.low = seq
	for {
		if _, ok := s.above[s.low+1]; !ok {
			break
		}
		delete(s.above, s.low+1)
		s.low++
	}
	if len(s.above) == 0 {
		s.above = nil
	}
	return true
}

// stamp is what an edit's change message says.
type stamp struct {
	measured bool
	author   int
	seq      uint64
	sent     time.Time
}

func (s stamp) String() string {
	m := "w"
	if s.measured {
		m = "m"
	}
	return stampPrefix + m + " " + strconv.Itoa(s.author) + " " + strconv.FormatUint(s.seq, 10) + " " + strconv.FormatInt(s.sent.UnixNano(), 10)
}

// parseStamp reads a change message; ok is false for messages that are not
// an edit's stamp (the creating change, other clients' changes).
func parseStamp(msg string) (s stamp, ok bool) {
	rest, found := strings.CutPrefix(msg, stampPrefix)
	if !found {
		return s, false
	}
	f := strings.Fields(rest)
	if len(f) != 4 || (f[0] != "m" && f[0] != "w") {
		return s, false
	}
	author, err1 := strconv.Atoi(f[1])
	seq, err2 := strconv.ParseUint(f[2], 10, 64)
	ns, err3 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || author < 0 {
		return s, false
	}
	return stamp{measured: f[0] == "m", author: author, seq: seq, sent: time.Unix(0, ns)}, true
}

// client is one simulated automerge-repo peer: one WebSocket connection,
// read by one goroutine, syncing one document.
type client struct {
	st     *stats
	author int // index among its document's clients
	peerID wire.PeerID
	docID  wire.DocID
	conn   *websocket.Conn

	// mu guards the replica and everything below it. wmu orders writes: a
	// message is generated under mu and written under wmu, taken before mu
	// is let go, so messages leave in the order they were generated.
	mu    sync.Mutex
	wmu   sync.Mutex
	rep   *replica
	seq   uint64
	seen  []seqSet // per author: the edits delivered
	rng   *rand.Rand
	heads []engine.Hash   // the server's, from its last sync message
	text  *automerge.Text // the document's, once resolved
	kv    *automerge.Map

	// ready is closed once readyFn holds (checked after every message).
	ready     chan struct{}
	readyFn   func(*client) bool
	readyOnce sync.Once

	dead    atomic.Bool // the connection ended
	closing atomic.Bool // we are closing it: its end is no disconnect
	ended   chan struct{}
}

func newClient(st *stats, author, authors int, peerID wire.PeerID, docID wire.DocID, seed uint64) *client {
	return &client{
		st: st, author: author, peerID: peerID, docID: docID,
		rep:   newReplica(),
		seen:  make([]seqSet, authors),
		rng:   rand.New(rand.NewPCG(seed, uint64(author))),
		ready: make(chan struct{}),
		ended: make(chan struct{}),
	}
}

// dial connects, joins and waits for the server's peer message, then
// starts the reader goroutine.
func (c *client) dial(ctx context.Context, url string) error {
	conn, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		return fmt.Errorf("dial %s: %w", url, err)
	}
	conn.SetReadLimit(256 << 20)
	c.conn = conn
	// Until the reader runs, close has nothing to wait for.
	fail := func(err error) error {
		conn.CloseNow()
		c.conn = nil
		return err
	}
	join := wire.Message{Type: wire.TypeJoin, SenderID: c.peerID, SupportedProtocolVersions: []string{wire.ProtocolVersion},
		PeerMetadata: &wire.PeerMetadata{IsEphemeral: true}}
	if err := c.write(ctx, join); err != nil {
		return fail(err)
	}
	_, frame, err := conn.Read(ctx)
	if err != nil {
		return fail(fmt.Errorf("handshake: %w", err))
	}
	c.st.in(len(frame))
	m, err := wire.Decode(frame)
	if err != nil || m.Type != wire.TypePeer {
		return fail(fmt.Errorf("handshake: got %q (%v), want a peer message", m.Type, err))
	}
	go c.readLoop()
	return nil
}

// write encodes and sends one message.
func (c *client) write(ctx context.Context, m wire.Message) error {
	b, err := wire.Encode(m)
	if err != nil {
		return fmt.Errorf("encode %s: %w", m.Type, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.conn.Write(wctx, websocket.MessageBinary, b); err != nil {
		return fmt.Errorf("write %s: %w", m.Type, err)
	}
	c.st.out(len(b))
	return nil
}

// sendLocked generates the replica's next sync message, if any, and sends
// it as typ. It is called with mu held and lets go of it.
func (c *client) sendLocked(typ string) error {
	data, ok := c.rep.generate()
	c.wmu.Lock()
	c.mu.Unlock()
	defer c.wmu.Unlock()
	if !ok || c.dead.Load() {
		return nil
	}
	return c.write(context.Background(), wire.Message{Type: typ, SenderID: c.peerID, DocumentID: c.docID, Data: data})
}

// send is sendLocked for callers that do not hold mu.
func (c *client) send(typ string) error {
	c.mu.Lock()
	return c.sendLocked(typ)
}

func (c *client) readLoop() {
	defer close(c.ended)
	for {
		_, frame, err := c.conn.Read(context.Background())
		if err != nil {
			c.dead.Store(true)
			if !c.closing.Load() {
				c.st.disconnect(websocket.CloseStatus(err), err)
			}
			return
		}
		at := time.Now()
		c.st.in(len(frame))
		c.handle(frame, at)
	}
}

// handle processes one frame from the server that arrived at at.
func (c *client) handle(frame []byte, at time.Time) {
	m, err := wire.Decode(frame)
	if err != nil {
		c.st.fail(fmt.Errorf("decode a frame from the server: %w", err))
		return
	}
	switch m.Type {
	case wire.TypeSync:
		if m.DocumentID != c.docID {
			c.st.fail(fmt.Errorf("sync message for %s, not our %s", m.DocumentID, c.docID))
			return
		}
		c.mu.Lock()
		heads, added, err := c.rep.receive(m.Data)
		if err != nil {
			c.mu.Unlock()
			c.st.fail(err)
			return
		}
		for _, ch := range added {
			msg, err := changeMessage(ch.Raw)
			if err != nil {
				continue
			}
			s, ok := parseStamp(msg)
			if !ok || s.author == c.author || s.author >= len(c.seen) || !c.seen[s.author].add(s.seq) {
				continue
			}
			if s.measured {
				c.st.deliver(at.Sub(s.sent))
			}
		}
		c.heads = heads
		c.checkReady()
		if err := c.sendLocked(wire.TypeSync); err != nil && !c.closing.Load() {
			c.st.fail(err)
		}
	case wire.TypeError:
		c.st.fail(fmt.Errorf("server error message: %s", m.ErrorMessage))
	case wire.TypeDocUnavailable:
		c.st.fail(fmt.Errorf("server: document %s unavailable", m.DocumentID))
	}
	// ephemeral and other messages: nothing to do.
}

// checkReady closes ready once readyFn holds. Called with mu held.
func (c *client) checkReady() {
	if c.readyFn != nil && c.readyFn(c) {
		c.readyOnce.Do(func() { close(c.ready) })
	}
}

// create makes the document's first change: a text and a map at the root,
// plus init (more content, for idle documents).
func (c *client) create(init func(*automerge.Map) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	root := c.rep.am.RootMap()
	if err := root.Set("text", automerge.NewText("")); err != nil {
		return fmt.Errorf("create text: %w", err)
	}
	if err := root.Set("map", automerge.NewMap()); err != nil {
		return fmt.Errorf("create map: %w", err)
	}
	if init != nil {
		if err := init(root); err != nil {
			return fmt.Errorf("create content: %w", err)
		}
	}
	return c.rep.commit(initMessage)
}

// prefill types n changes of one character each at the end of the
// document's text, before the creator's first sync: a history of n
// changes that reaches the server in one burst, as an offline editor's.
func (c *client) prefill(n int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.resolveObjects(); err != nil {
		return err
	}
	for i := range n {
		if err := c.text.Insert(c.text.Len(), letters[i%len(letters):i%len(letters)+1]); err != nil {
			return fmt.Errorf("history: text insert: %w", err)
		}
		if err := c.rep.commit(historyMessage); err != nil {
			return fmt.Errorf("history: %w", err)
		}
	}
	return nil
}

// serverHasOurHeads reports whether the server's last sync message
// advertised every head of our document (readyFn of a creator). Called
// with mu held.
func serverHasOurHeads(c *client) bool { return c.rep.ourHeadsIn(c.heads) }

// hasDocument reports whether the replica received the document's first
// change (readyFn of a client that requested it). Called with mu held.
func hasDocument(c *client) bool { return c.rep.graph.Graph().Len() > 0 }

const letters = "abcdefghijklmnopqrstuvwxyz"

// resolveObjects finds the document's text and map once, so that edits
// address them by object ID rather than by path (a lookup per call).
// Called with mu held.
func (c *client) resolveObjects() error {
	root := c.rep.am.RootMap()
	t, err := root.Get("text")
	if err != nil || t.Kind() != automerge.KindText {
		return fmt.Errorf("document %s has no text at the root (%v)", c.docID, err)
	}
	m, err := root.Get("map")
	if err != nil || m.Kind() != automerge.KindMap {
		return fmt.Errorf("document %s has no map at the root (%v)", c.docID, err)
	}
	c.text, c.kv = t.Text(), m.Map()
	return nil
}

// edit makes one change, a text splice or a map set, stamped with its
// time, and sends it. It returns false when the client's connection has
// ended (no edit was made).
func (c *client) edit(text, measured bool) (bool, error) {
	if c.dead.Load() {
		return false, nil
	}
	c.mu.Lock()
	if err := c.rep.merge(); err != nil {
		c.mu.Unlock()
		return false, err
	}
	if c.text == nil {
		if err := c.resolveObjects(); err != nil {
			c.mu.Unlock()
			return false, err
		}
	}
	if text {
		t := c.text
		n := t.Len()
		pos := c.rng.IntN(n + 1)
		if n > 16 && c.rng.IntN(8) == 0 {
			if err := t.Delete(min(pos, n-3), 3); err != nil {
				c.mu.Unlock()
				return false, fmt.Errorf("text delete: %w", err)
			}
		}
		ins := make([]byte, 1+c.rng.IntN(8))
		for i := range ins {
			ins[i] = letters[c.rng.IntN(len(letters))]
		}
		if err := t.Insert(min(pos, t.Len()), string(ins)); err != nil {
			c.mu.Unlock()
			return false, fmt.Errorf("text insert: %w", err)
		}
	}
	c.seq++
	s := stamp{measured: measured, author: c.author, seq: c.seq, sent: time.Now()}
	if !text {
		// A value no other client sets: the core makes no op for a put of
		// the value a key already has, and the commit would be empty.
		key := "k" + strconv.Itoa(c.rng.IntN(32))
		if err := c.kv.Set(key, int64(c.author)<<48|int64(c.seq)); err != nil {
			c.mu.Unlock()
			return false, fmt.Errorf("map set: %w", err)
		}
	}
	if err := c.rep.commit(s.String()); err != nil {
		c.mu.Unlock()
		return false, err
	}
	return true, c.sendLocked(wire.TypeSync)
}

// close ends the connection with a normal close.
func (c *client) close() {
	if c.conn == nil {
		return
	}
	c.closing.Store(true)
	if err := c.conn.Close(websocket.StatusNormalClosure, ""); err != nil {
		c.conn.CloseNow()
	}
	<-c.ended
}

// stats are a run's shared counters.
type stats struct {
	hist       Histogram
	deliveries atomic.Int64
	bytesIn    atomic.Int64
	bytesOut   atomic.Int64
	msgsIn     atomic.Int64
	msgsOut    atomic.Int64
	errs       atomic.Int64

	mu          sync.Mutex
	errSamples  []string
	disconnects map[string]int64
}

const maxErrSamples = 10

func newStats() *stats { return &stats{disconnects: make(map[string]int64)} }

func (s *stats) in(n int) {
	s.msgsIn.Add(1)
	s.bytesIn.Add(int64(n))
}

func (s *stats) out(n int) {
	s.msgsOut.Add(1)
	s.bytesOut.Add(int64(n))
}

func (s *stats) deliver(d time.Duration) {
	s.hist.Record(d)
	s.deliveries.Add(1)
}

func (s *stats) fail(err error) {
	s.errs.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errSamples) < maxErrSamples {
		s.errSamples = append(s.errSamples, err.Error())
	}
}

// disconnect counts a connection the server (or the network) ended, by
// close code; code -1 means it ended without a close frame.
func (s *stats) disconnect(code websocket.StatusCode, err error) {
	key := strconv.Itoa(int(code))
	if code == -1 {
		key = "no close frame"
		if errors.Is(err, context.Canceled) {
			key = "canceled"
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.disconnects[key]++
}

func (s *stats) snapshot() (errs []string, disconnects map[string]int64, total int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	disconnects = make(map[string]int64, len(s.disconnects))
	for k, v := range s.disconnects {
		disconnects[k] = v
		total += v
	}
	return slices.Clone(s.errSamples), disconnects, total
}
