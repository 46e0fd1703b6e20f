package room

import "time"

// Metrics receives the registry's events, for monitoring. Implementations
// must be safe for concurrent use and fast. A nil Config.Metrics records
// nothing.
type Metrics interface {
	// RoomOpened and RoomClosed bracket a room's life in memory.
	RoomOpened()
	RoomClosed()
	// RoomEvicted counts rooms evicted for being idle.
	RoomEvicted()
	// StoreWrite reports one append to the store: how long it took and
	// whether it failed.
	StoreWrite(took time.Duration, err error)
	// Limited counts a limit hit (LimitChanges: a sync message beyond the
	// document's core.Limits, refused with 1007).
	Limited(limit string)
}

// LimitChanges labels sync messages refused for going beyond the
// document's core.Limits.
const LimitChanges = "change_limits"

type noMetrics struct{}

func (noMetrics) RoomOpened()                     {}
func (noMetrics) RoomClosed()                     {}
func (noMetrics) RoomEvicted()                    {}
func (noMetrics) Limited(string)                  {}
func (noMetrics) StoreWrite(time.Duration, error) {}
