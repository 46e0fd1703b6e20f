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
}

type noMetrics struct{}

func (noMetrics) RoomOpened()                     {}
func (noMetrics) RoomClosed()                     {}
func (noMetrics) RoomEvicted()                    {}
func (noMetrics) StoreWrite(time.Duration, error) {}
