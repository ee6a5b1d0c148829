package streamfeat

import (
	"runtime"
	"time"
)

// poll receives from c if a value arrives within d, checking again and
// yielding the processor between checks, and reports whether it did. With
// d <= 0 it checks once.
//
// It exists for latency, not throughput. A goroutine that parks on an empty
// channel must be woken by the sender, and when its processor is idle that
// means waking an OS thread on another CPU: on virtual machines, tens of
// microseconds, which dominated the tail of query latency. A goroutine that
// still polls when the value comes is running already. The yield keeps
// polling from delaying goroutines that have work; what polling costs is a
// CPU kept busy for up to d after the last message when nothing else runs.
func poll[T any](c <-chan T, d time.Duration) (T, bool) {
	var start time.Time
	for i := 0; ; i++ {
		select {
		case v := <-c:
			return v, true
		default:
		}
		if d <= 0 {
			var zero T
			return zero, false
		}
		// The clock is read every few polls: a yield with nothing else to
		// run takes well under a microsecond.
		if i%8 == 0 {
			if i == 0 {
				start = time.Now()
			} else if time.Since(start) >= d {
				var zero T
				return zero, false
			}
		}
		runtime.Gosched()
	}
}
