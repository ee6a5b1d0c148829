package streamfeat

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Ingest validates events, in order, and queues the accepted ones to their
// shards. It never blocks unless Config.WaitForCapacity is set: a shard whose
// queue is full has its share of the batch dropped and counted as overloaded.
// The result counts every event; the error is non-nil only when the engine is
// closed or a wait for queue space ended with ctx.
//
// The engine keeps nothing of events after Ingest returns: the caller may
// reuse the slice and its Values.
func (e *Engine) Ingest(ctx context.Context, events []Event) (IngestResult, error) {
	return e.IngestWith(ctx, events, IngestOptions{WaitForCapacity: e.cfg.WaitForCapacity})
}

// IngestWith is Ingest with per-call options.
func (e *Engine) IngestWith(ctx context.Context, events []Event, opts IngestOptions) (IngestResult, error) {
	if err := e.enter(); err != nil {
		return IngestResult{}, err
	}
	defer e.leave()
	if err := e.beginIntake(); err != nil {
		return IngestResult{}, err
	}

	var res IngestResult
	r := e.getRoute()
	e.route(events, r, &res)
	err := e.enqueue(ctx, r, &res, opts.WaitForCapacity)
	e.putRoute(r)

	res.DroppedEvents = res.DroppedTooOld + res.DroppedTooNew + res.DroppedInvalid + res.DroppedOverloaded
	e.counters.add(&res)
	return res, err
}

// route validates each event against the clock as it stands and appends the
// accepted ones to their shard's message. With the event-time clock each
// accepted event moves the local now forward before the next is checked.
//
// TODO: an event whose shard share is later dropped as overloaded has
// already moved the local now, so later events of the same call are judged
// against a time that was never accepted. Only overload and the event-time
// clock together get here; fixing it means validating shard by shard.
func (e *Engine) route(events []Event, r *routing, res *IngestResult) {
	nowMs := e.nowMs()
	nowB := e.geo.bucketOf(nowMs)
	span := e.geo.liveSpan(nowB)
	latest := addSat(nowMs, e.geo.skewMs)
	nFeatures := e.schema.n.Load()
	for i := range events {
		ev := &events[i]
		if !validEntity(ev.EntityID) {
			res.DroppedInvalid++
			continue
		}
		if ev.TimestampMs < span.from && e.geo.expired(e.geo.bucketOf(ev.TimestampMs), nowB) {
			res.DroppedTooOld++
			continue
		}
		if !e.geo.eventTime && ev.TimestampMs > latest {
			res.DroppedTooNew++
			continue
		}

		m := r.message(e, e.shardOf(ev.EntityID))
		first := len(m.values)
		for _, v := range ev.Values {
			if v.FeatureID < 1 || v.FeatureID > nFeatures || !validValue(v.Value) {
				res.RejectedValues++
				continue
			}
			m.values = append(m.values, v)
		}
		n := len(m.values) - first
		if n == 0 {
			res.DroppedInvalid++
			continue
		}
		m.events = append(m.events, queued{
			entity: ev.EntityID, ts: ev.TimestampMs, first: uint32(first), n: uint32(n),
		})
		if e.geo.eventTime && ev.TimestampMs > nowMs {
			nowMs = ev.TimestampMs
			if nowMs >= span.to { // a new bucket, or an empty span
				nowB = e.geo.bucketOf(nowMs)
				span = e.geo.liveSpan(nowB)
			}
		}
		m.nowMs = nowMs
	}
}

// enqueue hands each shard its message. A message that finds its queue full
// is dropped whole (or waited for, until ctx ends).
func (e *Engine) enqueue(ctx context.Context, r *routing, res *IngestResult, wait bool) error {
	var err error
	newest := int64(math.MinInt64)
	for i, m := range r.msgs {
		if m == nil {
			continue
		}
		r.msgs[i] = nil
		if len(m.events) == 0 { // every event routed here was invalid
			e.shards[i].recycle(m)
			continue
		}
		events, values, msgNow := int64(len(m.events)), int64(len(m.values)), m.nowMs
		m.queued = time.Now()
		if serr := e.send(ctx, e.shards[i], m, wait); serr != nil {
			res.DroppedOverloaded += events
			e.shards[i].recycle(m)
			if err == nil && wait {
				err = fmt.Errorf("%w: waiting for space in shard %d: %w", ErrOverloaded, i, serr)
			}
			continue
		}
		res.AcceptedEvents += events
		res.AcceptedValues += values
		newest = max(newest, msgNow)
	}
	if e.events != nil && res.AcceptedEvents > 0 {
		e.events.advance(newest)
	}
	if res.DroppedOverloaded > 0 && !wait {
		// A full queue means its owner is behind. Producers that retry at
		// once would keep the cores from it, so the caller yields its time
		// slice before it hears of the drop.
		runtime.Gosched()
	}
	return err
}

// send puts m in the shard's queue: at once, or by waiting until ctx ends.
func (e *Engine) send(ctx context.Context, s *shard, m *message, wait bool) error {
	select {
	case s.queue <- m:
		return nil
	default:
	}
	if !wait {
		return ErrOverloaded
	}
	select {
	case s.queue <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// routing collects one Ingest call's messages, one per shard that gets any
// event. Routings are pooled so that a steady stream of calls allocates
// nothing.
type routing struct {
	msgs []*message
}

func (e *Engine) getRoute() *routing {
	r, _ := e.routes.Get().(*routing)
	if r == nil {
		r = &routing{msgs: make([]*message, len(e.shards))}
	}
	return r
}

func (e *Engine) putRoute(r *routing) { e.routes.Put(r) }

// message returns the call's message for shard i, taking a spare one on
// first use.
func (r *routing) message(e *Engine, i int) *message {
	m := r.msgs[i]
	if m == nil {
		m = e.shards[i].spareMessage()
		r.msgs[i] = m
	}
	return m
}

// validEntity reports whether id is an acceptable entity id; checkEntity
// says why not.
func validEntity(id string) bool {
	return id != "" && len(id) <= MaxEntityIDBytes && utf8.ValidString(id)
}

// validValue reports whether x is finite and within MaxAbsValue.
func validValue(x float64) bool {
	return math.Abs(x) <= MaxAbsValue // false for NaN and ±Inf too
}

// counters are the engine's running totals over all Ingest calls.
type counters struct {
	acceptedEvents, acceptedValues, rejectedValues atomic.Int64
	tooOld, tooNew, invalid, overloaded            atomic.Int64
}

func (c *counters) add(r *IngestResult) {
	for _, p := range []struct {
		to *atomic.Int64
		n  int64
	}{
		{&c.acceptedEvents, r.AcceptedEvents}, {&c.acceptedValues, r.AcceptedValues},
		{&c.rejectedValues, r.RejectedValues}, {&c.tooOld, r.DroppedTooOld},
		{&c.tooNew, r.DroppedTooNew}, {&c.invalid, r.DroppedInvalid},
		{&c.overloaded, r.DroppedOverloaded},
	} {
		if p.n != 0 {
			p.to.Add(p.n)
		}
	}
}
