package hub

// Metrics receives connection events, for monitoring. Implementations must
// be safe for concurrent use and fast. A nil Config.Metrics records nothing.
type Metrics interface {
	// ConnOpened and ConnClosed bracket a connection.
	ConnOpened()
	ConnClosed()
	// MessageIn and MessageOut count protocol messages by type with their
	// size on the wire. Types are the protocol's; anything else is "other".
	MessageIn(msgType string, bytes int)
	MessageOut(msgType string, bytes int)
	// Disconnected counts connections the server closed, by close code.
	Disconnected(code int)
	// Limited counts the times a connection hit one of the limits
	// (LimitDocs, LimitEphemeralRate, ...).
	Limited(limit string)
}

// The limits Metrics.Limited counts.
const (
	// LimitDocs: a document refused because its connection had MaxDocs.
	LimitDocs = "docs_per_connection"
	// LimitFrame: a frame refused for its size (1009, or 1007 for a large
	// frame that does not declare its size).
	LimitFrame = "frame_size"
	// LimitEphemeralRate: an ephemeral message dropped over the rate limit.
	LimitEphemeralRate = "ephemeral_rate"
	// LimitEphemeralFlood: a connection closed for flooding ephemerals.
	LimitEphemeralFlood = "ephemeral_flood"
	// LimitEphemeralBacklog: a relayed ephemeral message dropped because
	// its recipient's queue was backed up.
	LimitEphemeralBacklog = "ephemeral_backlog"
)

type noMetrics struct{}

func (noMetrics) ConnOpened()            {}
func (noMetrics) ConnClosed()            {}
func (noMetrics) MessageIn(string, int)  {}
func (noMetrics) MessageOut(string, int) {}
func (noMetrics) Disconnected(int)       {}
func (noMetrics) Limited(string)         {}
