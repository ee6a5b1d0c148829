package streamfeat

import (
	"math"
	"sync/atomic"
	"time"
)

// A Clock tells the engine what time it is, in Unix milliseconds. Windows end
// at the clock's now, events too far behind it are dropped as too old, and
// idle entities are released by it. Implementations must be safe for
// concurrent use.
type Clock interface {
	NowMs() int64
}

// WallClock is the default Clock: the machine's real time.
type WallClock struct{}

// NowMs returns the current Unix time in milliseconds.
func (WallClock) NowMs() int64 { return time.Now().UnixMilli() }

// EventClock is the event-time clock: now is the greatest event timestamp
// the engine has accepted so far, over all entities. It suits replays of logs
// and tests. It has no future: a newer event simply moves now forward, so gaps
// of hours in a log are fine. Give each Engine its own EventClock.
type EventClock struct {
	now atomic.Int64
}

// noTime is the event clock's now before any event: so far in the past that
// every event is newer.
const noTime = math.MinInt64

// NewEventClock returns an event-time clock that has seen no event yet.
func NewEventClock() *EventClock {
	c := &EventClock{}
	c.now.Store(noTime)
	return c
}

// NowMs returns the newest accepted event time, or math.MinInt64 before the
// first event.
func (c *EventClock) NowMs() int64 { return c.now.Load() }

// advance moves now forward to ts; it never moves it back.
func (c *EventClock) advance(ts int64) {
	for {
		cur := c.now.Load()
		if ts <= cur || c.now.CompareAndSwap(cur, ts) {
			return
		}
	}
}

// ManualClock is a Clock that moves only when told to. It serves tests and
// simulations that need the wall clock's rules (a future limit, windows that
// empty while no event arrives) without waiting for real time.
type ManualClock struct {
	now atomic.Int64
}

// NewManualClock returns a ManualClock set to nowMs.
func NewManualClock(nowMs int64) *ManualClock {
	c := &ManualClock{}
	c.now.Store(nowMs)
	return c
}

// NowMs returns the time the clock was last set to.
func (c *ManualClock) NowMs() int64 { return c.now.Load() }

// Set moves the clock to nowMs, forwards or back.
func (c *ManualClock) Set(nowMs int64) { c.now.Store(nowMs) }

// Advance moves the clock forward by d.
func (c *ManualClock) Advance(d time.Duration) { c.now.Add(d.Milliseconds()) }
