package replay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync/atomic"
	"time"

	"github.com/streamfeat/streamfeat"
)

// Defaults for the zero fields of a Config.
const (
	DefaultBatchEvents = 512
	DefaultCheckEvery  = time.Minute
)

// Config sets up a Replayer. Zero fields take their defaults.
type Config struct {
	// BatchEvents is how many events go to the backend in one Ingest call.
	// Default 512: large enough to amortize a call or an RPC, small enough
	// that a batch's memory does not matter.
	BatchEvents int

	// CheckEvery is the event time between drift checks. Checks fall on
	// multiples of it since the Unix epoch. Default one minute.
	CheckEvery time.Duration

	// Strict makes the first bad row end the replay with its error.
	Strict bool

	// OnAlert receives each new alert, in order. An error ends the replay.
	OnAlert func(Alert) error

	// OnBadRow receives each bad row when Strict is off.
	OnBadRow func(*RowError)
}

// Summary counts what a replay did.
type Summary struct {
	Rows    int64             // rows read, good and bad
	BadRows [numReasons]int64 // bad rows by Reason

	Ingest streamfeat.IngestResult // summed over every batch
	Alerts int64
	Checks int64

	FirstEventMs int64 // smallest event time ingested; 0 before any
	LastEventMs  int64 // largest event time ingested; 0 before any
}

// TotalBadRows sums BadRows.
func (s Summary) TotalBadRows() int64 {
	var n int64
	for _, c := range s.BadRows {
		n += c
	}
	return n
}

// BadRowsByReason returns the non-zero bad-row counts keyed by reason name.
func (s Summary) BadRowsByReason() map[string]int64 {
	out := make(map[string]int64)
	for r, c := range s.BadRows {
		if c > 0 {
			out[Reason(r).String()] = c
		}
	}
	return out
}

// Replayer feeds sources through a Backend and checks drift as event time
// passes. It is used by one goroutine at a time, except Rows, which any
// goroutine may call.
type Replayer struct {
	b   Backend
	det *Detector
	cfg Config

	batch     []streamfeat.Event
	n         int   // events in batch
	nextCheck int64 // event time of the next check; math.MinInt64 before any event
	newest    int64 // newest event time in the batches sent
	pending   bool  // events ingested since the last check
	sent      bool  // any batch ingested
	rows      atomic.Int64
	sum       Summary
}

// NewReplayer returns a Replayer that sends to b and checks drift with det.
func NewReplayer(b Backend, det *Detector, cfg Config) (*Replayer, error) {
	if cfg.BatchEvents == 0 {
		cfg.BatchEvents = DefaultBatchEvents
	}
	if cfg.CheckEvery == 0 {
		cfg.CheckEvery = DefaultCheckEvery
	}
	if cfg.BatchEvents < 1 {
		return nil, fmt.Errorf("replay: batch of %d events: want at least 1", cfg.BatchEvents)
	}
	if cfg.CheckEvery < time.Millisecond {
		return nil, fmt.Errorf("replay: check interval %v: want at least 1ms", cfg.CheckEvery)
	}
	return &Replayer{
		b: b, det: det, cfg: cfg,
		batch:     make([]streamfeat.Event, cfg.BatchEvents),
		nextCheck: math.MinInt64,
		newest:    math.MinInt64,
	}, nil
}

// Rows returns the rows read so far; safe to call while Run works.
func (r *Replayer) Rows() int64 { return r.rows.Load() }

// Summary returns the counts so far.
func (r *Replayer) Summary() Summary {
	s := r.sum
	s.Rows = r.rows.Load()
	s.Checks = r.det.Checks()
	return s
}

// Run reads src to its end. Several sources may be run one after another;
// call Finish after the last.
func (r *Replayer) Run(ctx context.Context, src Source) error {
	for {
		// Checking the context every row would cost more than a row.
		if r.rows.Load()%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		ev := &r.batch[r.n]
		err := src.Read(ev)
		if err == io.EOF {
			return nil
		}
		r.rows.Add(1)
		if err != nil {
			var rerr *RowError
			if !errors.As(err, &rerr) {
				return err
			}
			r.sum.BadRows[rerr.Reason]++
			if r.cfg.OnBadRow != nil {
				r.cfg.OnBadRow(rerr)
			}
			if r.cfg.Strict {
				return err
			}
			continue
		}
		if err := r.add(ctx, ev); err != nil {
			return err
		}
	}
}

// add takes the event just read into batch[n]: it first runs the check the
// event's time has passed, then counts the event in.
func (r *Replayer) add(ctx context.Context, ev *streamfeat.Event) error {
	every := r.cfg.CheckEvery.Milliseconds()
	if ev.TimestampMs >= r.nextCheck {
		if r.nextCheck != math.MinInt64 {
			// The event stays in batch[i], outside the flushed prefix, and
			// moves to the front afterwards, so it goes out after the check.
			i := r.n
			if err := r.checkpoint(ctx); err != nil {
				return err
			}
			r.batch[0], r.batch[i] = r.batch[i], r.batch[0]
			ev = &r.batch[0]
		}
		r.nextCheck = floorDiv(ev.TimestampMs, every)*every + every
	}

	r.det.Observe(ev.EntityID)
	r.n++
	if r.n == len(r.batch) {
		return r.flush(ctx)
	}
	return nil
}

// checkpoint sends the batch and runs a drift check.
func (r *Replayer) checkpoint(ctx context.Context) error {
	if err := r.flush(ctx); err != nil {
		return err
	}
	if !r.pending {
		return nil
	}
	r.pending = false
	alerts, err := r.det.Check(ctx, time.UnixMilli(r.newest))
	if err != nil {
		return err
	}
	for _, a := range alerts {
		r.sum.Alerts++
		if r.cfg.OnAlert != nil {
			if err := r.cfg.OnAlert(a); err != nil {
				return err
			}
		}
	}
	return nil
}

// flush sends the first n events of the batch.
func (r *Replayer) flush(ctx context.Context) error {
	if r.n == 0 {
		return nil
	}
	events := r.batch[:r.n]
	res, err := r.b.Ingest(ctx, events)
	r.addResult(res)
	if err != nil {
		return fmt.Errorf("replay: ingest: %w", err)
	}
	oldest := int64(math.MaxInt64)
	for i := range events {
		oldest = min(oldest, events[i].TimestampMs)
		r.newest = max(r.newest, events[i].TimestampMs)
	}
	if !r.sent || oldest < r.sum.FirstEventMs {
		r.sum.FirstEventMs = oldest
	}
	r.sent = true
	r.sum.LastEventMs = r.newest
	r.n = 0
	r.pending = true
	return nil
}

func (r *Replayer) addResult(res streamfeat.IngestResult) {
	s := &r.sum.Ingest
	s.AcceptedEvents += res.AcceptedEvents
	s.DroppedEvents += res.DroppedEvents
	s.DroppedTooOld += res.DroppedTooOld
	s.DroppedTooNew += res.DroppedTooNew
	s.DroppedInvalid += res.DroppedInvalid
	s.DroppedOverloaded += res.DroppedOverloaded
	s.AcceptedValues += res.AcceptedValues
	s.RejectedValues += res.RejectedValues
}

// Finish sends what is left and runs a last check at the newest event time.
func (r *Replayer) Finish(ctx context.Context) error {
	return r.checkpoint(ctx)
}

// floorDiv divides rounding toward minus infinity.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b < 0 {
		q--
	}
	return q
}
