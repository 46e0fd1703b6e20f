package api_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tandem-sync/tandem/api"
	"github.com/tandem-sync/tandem/internal/testwait"
	"github.com/tandem-sync/tandem/sync/room"
	"github.com/tandem-sync/tandem/sync/wire"
)

// metric returns the value of the sample of the named metric family whose
// labels include labels (label name, value pairs); 0 if there is none.
// Counters, gauges and histograms (their sample count) are read.
func metric(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !hasLabels(m, labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// waitMetric polls until the metric satisfies cond.
func waitMetric(t *testing.T, reg prometheus.Gatherer, what string, cond func(v float64) bool, name string, labels ...string) {
	t.Helper()
	testwait.For(t, testwait.Default, what, func() bool { return cond(metric(t, reg, name, labels...)) })
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite, api.Config{}, func(c *room.Config) { c.IdleTimeout = 200 * time.Millisecond })
	ctx := testCtx(t)
	reg := e.reg
	if v := metric(t, reg, "tandem_connections"); v != 0 {
		t.Fatalf("tandem_connections = %v before any connection", v)
	}

	c := e.create(t, `{"a": 1}`)
	if v := metric(t, reg, "tandem_store_append_seconds"); v < 1 {
		t.Fatalf("tandem_store_append_seconds has %v observations after a create", v)
	}

	p := dialPeer(t, ctx, e.ts.URL, "peer-metrics", c.ID)
	if v := metric(t, reg, "tandem_connections"); v != 1 {
		t.Fatalf("tandem_connections = %v with one peer", v)
	}
	if v := metric(t, reg, "tandem_connections_total"); v != 1 {
		t.Fatalf("tandem_connections_total = %v", v)
	}
	if v := metric(t, reg, "tandem_messages_in_total", "type", "join"); v != 1 {
		t.Fatalf(`tandem_messages_in_total{type="join"} = %v`, v)
	}
	waitMetric(t, reg, "the peer message counted", func(v float64) bool { return v == 1 }, "tandem_messages_out_total", "type", "peer")
	bytesIn, bytesOut := metric(t, reg, "tandem_bytes_in_total"), metric(t, reg, "tandem_bytes_out_total")
	if bytesIn <= 0 || bytesOut <= 0 {
		t.Fatalf("bytes in %v, out %v after the handshake", bytesIn, bytesOut)
	}

	p.request(ctx, hashes(t, c.Heads))
	// The peer keeps the document's room in memory.
	if v := metric(t, reg, "tandem_rooms"); v != 1 || e.rooms.Len() != 1 {
		t.Fatalf("tandem_rooms = %v with %d rooms in memory, want 1", v, e.rooms.Len())
	}
	if v := metric(t, reg, "tandem_messages_in_total", "type", "request"); v != 1 {
		t.Fatalf(`tandem_messages_in_total{type="request"} = %v`, v)
	}
	waitMetric(t, reg, "sync messages out", func(v float64) bool { return v >= 1 }, "tandem_messages_out_total", "type", "sync")
	// The peer answered the server's sync message with one of its own.
	waitMetric(t, reg, "sync messages in", func(v float64) bool { return v >= 1 }, "tandem_messages_in_total", "type", "sync")
	waitMetric(t, reg, "bytes in to grow", func(v float64) bool { return v > bytesIn }, "tandem_bytes_in_total")
	waitMetric(t, reg, "bytes out to grow", func(v float64) bool { return v > bytesOut }, "tandem_bytes_out_total")

	// A second document's room.
	other := dialPeer(t, ctx, e.ts.URL, "peer-other", wire.NewDocID())
	other.sendSync(ctx, wire.TypeRequest)
	other.syncUntil(ctx, "doc-unavailable", func(m wire.Message) bool { return m.Type == wire.TypeDocUnavailable })
	if v := metric(t, reg, "tandem_rooms"); v != 2 || e.rooms.Len() != 2 {
		t.Fatalf("tandem_rooms = %v with %d rooms in memory, want 2", v, e.rooms.Len())
	}
	waitMetric(t, reg, "doc-unavailable counted", func(v float64) bool { return v == 1 }, "tandem_messages_out_total", "type", "doc-unavailable")
	if v := metric(t, reg, "tandem_connections"); v != 2 {
		t.Fatalf("tandem_connections = %v with two peers", v)
	}

	// A new connection with the same peer ID replaces the old one (4002).
	dialPeer(t, ctx, e.ts.URL, "peer-other", wire.NewDocID())
	waitMetric(t, reg, "the replaced connection counted", func(v float64) bool { return v == 1 }, "tandem_disconnects_total", "code", "4002")

	// GET /metrics serves them in the text format.
	r := e.do(t, "GET", "/metrics", nil, "")
	r.want(t, http.StatusOK, nil)
	text := string(r.body)
	for _, want := range []string{
		"# TYPE tandem_connections gauge",
		`tandem_messages_in_total{type="join"} 3`,
		`tandem_messages_in_total{type="request"} 2`,
		`tandem_messages_out_total{type="peer"} 3`,
		`tandem_disconnects_total{code="4002"} 1`,
		"# TYPE tandem_bytes_in_total counter",
		"# TYPE tandem_bytes_out_total counter",
		"# TYPE tandem_rooms gauge",
		"# TYPE tandem_store_append_seconds histogram",
		"tandem_room_evictions_total",
		"tandem_store_append_failures_total 0",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, leak := range []string{string(c.ID), "peer-metrics", "peer-other"} {
		if strings.Contains(text, leak) {
			t.Errorf("/metrics mentions %q", leak)
		}
	}

	// Every connection closed: the gauge returns to 0; idle rooms are
	// evicted and counted.
	e.hub.Close()
	waitMetric(t, reg, "tandem_connections back to 0", func(v float64) bool { return v == 0 }, "tandem_connections")
	waitMetric(t, reg, "idle rooms evicted", func(v float64) bool { return v == 0 }, "tandem_rooms")
	if v := metric(t, reg, "tandem_room_evictions_total"); v < 2 {
		t.Fatalf("tandem_room_evictions_total = %v after 2 rooms were evicted", v)
	}
	if v := metric(t, reg, "tandem_connections_total"); v != 3 {
		t.Fatalf("tandem_connections_total = %v, want 3", v)
	}
	checkLabels(t, reg)
}

// TestMetricsConnectionClosedByClient checks that the gauge follows a
// client's own close.
func TestMetricsConnectionClosedByClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, openSQLite, api.Config{})
	ctx := testCtx(t)
	p := dialPeer(t, ctx, e.ts.URL, "peer-bye", wire.NewDocID())
	if v := metric(t, e.reg, "tandem_connections"); v != 1 {
		t.Fatalf("tandem_connections = %v", v)
	}
	if err := p.CloseWith(1000, "bye"); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, e.reg, "tandem_connections back to 0", func(v float64) bool { return v == 0 }, "tandem_connections")
	checkLabels(t, e.reg)
}

// checkLabels checks that Tandem's metrics are labelled only by message
// type or close code: never by document or peer.
func checkLabels(t *testing.T, reg prometheus.Gatherer) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "tandem_") {
			t.Errorf("metric %s is not Tandem's: the registry should hold only Tandem's", mf.GetName())
			continue
		}
		names = append(names, mf.GetName())
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() != "type" && lp.GetName() != "code" {
					t.Errorf("metric %s has label %s=%q", mf.GetName(), lp.GetName(), lp.GetValue())
				}
				if _, err := wire.ParseDocID(lp.GetValue()); err == nil {
					t.Errorf("metric %s has a document ID as a label value: %s", mf.GetName(), lp.GetValue())
				}
			}
		}
	}
	for _, want := range []string{"tandem_connections", "tandem_connections_total", "tandem_messages_in_total",
		"tandem_messages_out_total", "tandem_bytes_in_total", "tandem_bytes_out_total", "tandem_rooms",
		"tandem_store_append_seconds"} {
		if !slices.Contains(names, want) {
			t.Errorf("metric %s is missing", want)
		}
	}
}
