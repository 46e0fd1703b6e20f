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
}

type noMetrics struct{}

func (noMetrics) ConnOpened()            {}
func (noMetrics) ConnClosed()            {}
func (noMetrics) MessageIn(string, int)  {}
func (noMetrics) MessageOut(string, int) {}
func (noMetrics) Disconnected(int)       {}
