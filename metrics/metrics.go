package metrics

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are Tandem's Prometheus metrics. They implement hub.Metrics and
// room.Metrics, and are registered on the registerer given to New,
// never on a global one. No metric has a document ID as a label.
type Metrics struct {
	connections    prometheus.Gauge
	connectionsTot prometheus.Counter
	disconnects    *prometheus.CounterVec
	messagesIn     *prometheus.CounterVec
	messagesOut    *prometheus.CounterVec
	bytesIn        prometheus.Counter
	bytesOut       prometheus.Counter
	rooms          prometheus.Gauge
	evictions      prometheus.Counter
	storeLatency   prometheus.Histogram
	storeFailures  prometheus.Counter
	limited        *prometheus.CounterVec
}

// New creates the metrics and registers them on reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tandem_connections",
			Help: "Open WebSocket connections."}),
		connectionsTot: prometheus.NewCounter(prometheus.CounterOpts{Name: "tandem_connections_total",
			Help: "WebSocket connections accepted."}),
		disconnects: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_disconnects_total",
			Help: "Connections closed by the server, by close code."}, []string{"code"}),
		messagesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_messages_in_total",
			Help: "Protocol messages received, by type."}, []string{"type"}),
		messagesOut: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_messages_out_total",
			Help: "Protocol messages sent, by type."}, []string{"type"}),
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{Name: "tandem_bytes_in_total",
			Help: "Bytes of protocol messages received."}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "tandem_bytes_out_total",
			Help: "Bytes of protocol messages sent."}),
		rooms: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tandem_rooms",
			Help: "Documents (rooms) in memory."}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{Name: "tandem_room_evictions_total",
			Help: "Idle rooms flushed and evicted from memory."}),
		storeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tandem_store_append_seconds",
			Help:    "Latency of appending changes to the store (group commit included).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tandem_limited_total",
			Help: "Times a connection hit a limit (messages dropped, documents refused, connections closed), by limit."}, []string{"limit"}),
		storeFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "tandem_store_append_failures_total",
			Help: "Failed appends to the store (retried; nothing is advertised before it succeeds)."}),
	}
	for _, c := range []prometheus.Collector{m.connections, m.connectionsTot, m.disconnects, m.messagesIn, m.messagesOut,
		m.bytesIn, m.bytesOut, m.rooms, m.evictions, m.storeLatency, m.storeFailures, m.limited} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// ConnOpened implements hub.Metrics.
func (m *Metrics) ConnOpened() { m.connections.Inc(); m.connectionsTot.Inc() }

// ConnClosed implements hub.Metrics.
func (m *Metrics) ConnClosed() { m.connections.Dec() }

// MessageIn implements hub.Metrics.
func (m *Metrics) MessageIn(t string, n int) {
	m.messagesIn.WithLabelValues(t).Inc()
	m.bytesIn.Add(float64(n))
}

// MessageOut implements hub.Metrics.
func (m *Metrics) MessageOut(t string, n int) {
	m.messagesOut.WithLabelValues(t).Inc()
	m.bytesOut.Add(float64(n))
}

// Limited implements hub.Metrics.
func (m *Metrics) Limited(limit string) { m.limited.WithLabelValues(limit).Inc() }

// Disconnected implements hub.Metrics.
func (m *Metrics) Disconnected(code int) { m.disconnects.WithLabelValues(strconv.Itoa(code)).Inc() }

// RoomOpened implements room.Metrics.
func (m *Metrics) RoomOpened() { m.rooms.Inc() }

// RoomClosed implements room.Metrics.
func (m *Metrics) RoomClosed() { m.rooms.Dec() }

// RoomEvicted implements room.Metrics.
func (m *Metrics) RoomEvicted() { m.evictions.Inc() }

// StoreWrite implements room.Metrics.
func (m *Metrics) StoreWrite(took time.Duration, err error) {
	m.storeLatency.Observe(took.Seconds())
	if err != nil {
		m.storeFailures.Inc()
	}
}
