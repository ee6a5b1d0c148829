package streamfeat

import (
	"errors"
	"math"
	"strings"
	"sync/atomic"
	"time"

	"github.com/dolthub/swiss"

	"github.com/streamfeat/streamfeat/arena"
)

// message is one unit of work in a shard's queue: a share of an ingest batch,
// or a function to run on the owner (a query or a control step).
type message struct {
	events []queued
	values []FeatureValue
	nowMs  int64     // the clock as the producer saw it after its last event here
	queued time.Time // when the producer handed the message to the queue
	run    func(*shard)
	stop   bool
}

// queued is an accepted event waiting in a queue; its values are
// values[first : first+n] of its message.
type queued struct {
	entity string
	ts     int64
	first  uint32
	n      uint32
}

// Messages that grew beyond this many events are not kept for reuse, so one
// huge backfill batch does not pin its buffers for the life of the engine.
const maxPooledEvents = 1 << 14

// spareSlack is how many spare messages a shard keeps beyond its queue depth:
// with a full queue, the one being applied and those that producers are
// filling are in circulation too.
const spareSlack = 16

// spareMessage returns an empty message for this shard: a used one if the
// shard has one spare, else a new one. Spares circulate between producers
// and the owner through a channel a little deeper than the queue, so a
// steady stream allocates nothing and spares stay bounded by the queue. A
// sync.Pool would lose them at every garbage collection.
func (s *shard) spareMessage() *message {
	select {
	case m := <-s.spares:
		return m
	default:
		m := &message{}
		m.reset()
		return m
	}
}

// recycle empties m and keeps it as a spare, unless it grew too large or
// enough spares are waiting already.
func (s *shard) recycle(m *message) {
	if cap(m.events) > maxPooledEvents {
		return
	}
	m.reset()
	select {
	case s.spares <- m:
	default:
	}
}

func (m *message) reset() {
	m.events = m.events[:0]
	m.values = m.values[:0]
	m.nowMs = math.MinInt64
	m.run = nil
}

// entity is one entity's record in its shard. Its series headers live in
// the shard's list arena: nSeries of them in block list of class listClass.
type entity struct {
	key       string
	lastMs    int64 // newest event time seen for the entity
	list      arena.Handle
	nSeries   uint16
	listClass uint8
	live      bool
}

// shard is one slice of the engine's state and the goroutine that owns it.
type shard struct {
	// Set by newShard and never changed: safe to read from any goroutine.
	id     int
	geo    geometry
	queue  chan *message
	spares chan *message // emptied messages for producers to reuse
	done   chan struct{} // closed when the owner goroutine has returned

	// Published by the owner for Metrics; any goroutine may load them.
	published shardCounters

	// Everything in shardState belongs to the owner goroutine alone. No
	// other goroutine may touch it, which is why the update path takes no
	// lock.
	shardState
}

// shardState is the part of a shard that compaction rebuilds.
type shardState struct {
	index      *swiss.Map[string, uint32] // entity id -> index in entities
	entities   []entity
	freeSlots  []uint32 // released entities' indexes, for reuse
	rings      *rings
	lists      *arena.Arena[series]
	pop        []popRing // by feature id; nil until the feature sees a value
	nextSweep  int64     // engine time (ms) of the next sweep
	appliedNow int64     // the newest producer clock among applied messages
	wasteSeen  bool      // the previous sweep found the shard wasteful
	err        error     // first arena failure; state stops growing after it
}

// shardCounters are the figures a shard publishes for Metrics.
type shardCounters struct {
	live        atomic.Int64
	tombstoned  atomic.Int64
	arenaBytes  atomic.Int64
	arenaInUse  atomic.Int64
	batches     atomic.Int64
	sweeps      atomic.Int64
	compactions atomic.Int64
	reclaimed   atomic.Int64
	expiredLate atomic.Int64
	lostValues  atomic.Int64

	batchEvents  *histogram
	applyLatency *histogram
}

// seriesClasses returns the capacities of an entity's series-header list.
func seriesClasses(maxFeatures int) []int {
	var classes []int
	for size := 1; size < maxFeatures; size *= 2 {
		classes = append(classes, size)
	}
	return append(classes, maxFeatures)
}

// newSeriesArena returns the arena for series-header lists of up to
// maxFeatures headers. New shards and compaction must build it alike: a slab
// only as long as the largest list would be a slab per entity, and too short
// for the arena when maxFeatures is 1.
func newSeriesArena(maxFeatures int) (*arena.Arena[series], error) {
	return arena.New[series](max(4096, maxFeatures), seriesClasses(maxFeatures))
}

func newShard(id int, geo geometry, cfg Config) (*shard, error) {
	r, err := newRings(geo)
	if err != nil {
		return nil, err
	}
	lists, err := newSeriesArena(cfg.MaxFeatures)
	if err != nil {
		return nil, err
	}
	s := &shard{
		id:     id,
		geo:    geo,
		queue:  make(chan *message, cfg.QueueDepth),
		spares: make(chan *message, cfg.QueueDepth+spareSlack),
		done:   make(chan struct{}),
		shardState: shardState{
			index:      swiss.NewMap[string, uint32](64),
			rings:      r,
			lists:      lists,
			nextSweep:  math.MinInt64,
			appliedNow: math.MinInt64,
		},
	}
	s.published.batchEvents = newHistogram(batchEventBounds, 1)
	s.published.applyLatency = newHistogram(applyLatencyBounds, 1e-9)
	return s, nil
}

// run is the owner goroutine: it applies messages in queue order until the
// stop message, which Close sends after the last producer has left.
func (s *shard) run(e *Engine) {
	defer close(s.done)
	for m := range s.queue {
		if m.stop {
			return
		}
		if m.run != nil {
			m.run(s)
			continue
		}
		s.apply(m)
		s.published.batchEvents.observe(int64(len(m.events)))
		s.published.applyLatency.observe(int64(time.Since(m.queued)))
		s.appliedNow = max(s.appliedNow, m.nowMs)
		s.recycle(m)
		s.maybeSweep()
		s.publish()
	}
}

// apply adds a batch share to the state.
//
// It expires and drops by the clock its producer validated against, not by
// the clock of now: with the event-time clock a producer can run far ahead of
// a deep queue, and judging queued events by a now they never saw would
// throw accepted events away. Any bucket that is in the window at the
// producer's now is kept; queries, made at the clock's later now, leave out
// what has since expired.
//
// NB: with the event-time clock, which never goes back, a producer's now may
// lag what the shard has applied already (another producer read a newer
// clock), so the window is taken at the newer of the two. Other clocks can
// go back (a wall clock stepped by NTP, a ManualClock set back), and then the
// producer's now is the one its caller will query at: a shard that judged by
// the newest now it had seen would drop events that the caller's next query
// must see.
func (s *shard) apply(m *message) {
	nowMs := m.nowMs
	if s.geo.eventTime {
		nowMs = max(nowMs, s.appliedNow)
	}
	nowB := s.geo.bucketOf(nowMs)
	oldest := s.geo.oldestBucket(nowB)
	for i := range m.events {
		ev := &m.events[i]
		b := s.geo.bucketOf(ev.ts)
		if b < oldest {
			// Accepted, then moved out of every window by a newer event of
			// the same call: no query can see it any more.
			s.published.expiredLate.Add(1)
			continue
		}
		ent := s.entityFor(ev.entity, ev.ts, nowB)
		for k, v := range m.values[ev.first : ev.first+ev.n] {
			s.observe(ent, k, v, b, nowB)
		}
	}
}

// observe adds one value, the i-th of its event, to the entity's series and
// the population ring.
func (s *shard) observe(ent *entity, i int, v FeatureValue, b, nowB int64) {
	sr, err := s.seriesFor(ent, i, v.FeatureID)
	if err == nil {
		err = s.rings.put(sr, b, nowB, v.Value)
	}
	switch {
	case err == nil:
		s.popFor(v.FeatureID).observe(b, v.Value)
	case errors.Is(err, errStale):
		s.published.expiredLate.Add(1)
	default:
		s.fail(err)
	}
}

// fail records an arena failure. The arena only fails when a shard holds
// 2^32 records (128 GiB of buckets), far past any machine's memory.
func (s *shard) fail(err error) {
	if s.err == nil {
		s.err = err
	}
	s.published.lostValues.Add(1)
}

// entityFor returns the entity's record, creating it on first sight, and
// notes the event time.
func (s *shard) entityFor(key string, ts, nowB int64) *entity {
	idx, ok := s.index.Get(key)
	if !ok {
		idx = s.newEntity(key)
	}
	ent := &s.entities[idx]
	if s.geo.unreachable(s.geo.bucketOf(ent.lastMs), nowB) {
		// Idle for a whole window, or far ahead of a clock that went back:
		// no window can use the records. Emptying the rings here also keeps
		// their 32-bit bucket ids unambiguous.
		s.clearSeries(ent)
		ent.lastMs = ts
	}
	ent.lastMs = max(ent.lastMs, ts)
	return ent
}

// newEntity adds a record for key, reusing a released slot if there is one.
func (s *shard) newEntity(key string) uint32 {
	// The id may share memory with a caller's larger buffer; the index keeps
	// its own copy so that it pins nothing else.
	ent := entity{key: strings.Clone(key), lastMs: math.MinInt64, live: true}
	var idx uint32
	if n := len(s.freeSlots); n > 0 {
		idx = s.freeSlots[n-1]
		s.freeSlots = s.freeSlots[:n-1]
		s.entities[idx] = ent
	} else {
		idx = uint32(len(s.entities))
		s.entities = append(s.entities, ent)
	}
	s.index.Put(ent.key, idx)
	return idx
}

// seriesOf returns the entity's series headers.
func (s *shard) seriesOf(ent *entity) []series {
	if ent.list == 0 {
		return nil
	}
	return s.lists.Block(ent.list, int(ent.listClass))[:ent.nSeries]
}

// seriesFor returns the entity's series for a feature, adding it if new.
// Producers tend to send an entity's features in the same order every
// time, and series are added in the order first seen, so the series at the
// value's position in its event is tried first.
func (s *shard) seriesFor(ent *entity, hint int, feature int32) (*series, error) {
	list := s.seriesOf(ent)
	if hint < len(list) && list[hint].feature == feature {
		return &list[hint], nil
	}
	for i := range list {
		if list[i].feature == feature {
			return &list[i], nil
		}
	}

	if ent.list == 0 || int(ent.nSeries) == s.lists.ClassSize(int(ent.listClass)) {
		if err := s.growList(ent); err != nil {
			return nil, err
		}
	}
	ent.nSeries++
	list = s.seriesOf(ent)
	list[len(list)-1] = series{feature: feature}
	return &list[len(list)-1], nil
}

// growList moves the entity's series headers to a list of the next class.
func (s *shard) growList(ent *entity) error {
	class := 0
	if ent.list != 0 {
		class = int(ent.listClass) + 1
	}
	h, err := s.lists.Alloc(class)
	if err != nil {
		return err
	}
	copy(s.lists.Block(h, class), s.seriesOf(ent))
	if ent.list != 0 {
		s.lists.Free(ent.list, int(ent.listClass))
	}
	ent.list, ent.listClass = h, uint8(class)
	return nil
}

// clearSeries empties every ring of the entity, keeping their storage.
func (s *shard) clearSeries(ent *entity) {
	list := s.seriesOf(ent)
	for i := range list {
		list[i].head, list[i].n = 0, 0
	}
}

// popFor returns the feature's population ring, creating it on first use.
func (s *shard) popFor(feature int32) popRing {
	if int(feature) >= len(s.pop) {
		s.pop = append(s.pop, make([]popRing, int(feature)+1-len(s.pop))...)
	}
	if s.pop[feature] == nil {
		s.pop[feature] = newPopRing(s.geo)
	}
	return s.pop[feature]
}

// entityWindows answers a query for one entity's feature at nowMs.
func (s *shard) entityWindows(key string, feature int32, nowMs int64) windowSet {
	idx, ok := s.index.Get(key)
	if !ok {
		return windowSet{}
	}
	ent := &s.entities[idx]
	nowB := s.geo.bucketOf(nowMs)
	if s.geo.unreachable(s.geo.bucketOf(ent.lastMs), nowB) {
		return windowSet{}
	}
	for _, sr := range s.seriesOf(ent) {
		if sr.feature == feature {
			return s.rings.windows(&sr, nowB)
		}
	}
	return windowSet{}
}

// popWindows answers a population query for a feature at nowMs.
func (s *shard) popWindows(feature int32, nowMs int64) windowSet {
	if int(feature) >= len(s.pop) || s.pop[feature] == nil {
		return windowSet{}
	}
	return s.pop[feature].windows(s.geo, s.geo.bucketOf(nowMs))
}

// maybeSweep runs the sweep once per sweep interval of engine time, as far
// as this shard has applied it: a shard that lags behind the clock does not
// release state that its queued batches are about to extend.
func (s *shard) maybeSweep() {
	if s.appliedNow < s.nextSweep {
		return
	}
	s.nextSweep = addSat(s.appliedNow, s.geo.sweepMs)
	s.sweep(s.appliedNow)
}

// sweep releases entities idle for longer than the TTL, drops expired
// buckets from the others that went quiet and shrinks their rings, then
// compacts the shard if released space has come to dominate it.
func (s *shard) sweep(nowMs int64) {
	nowB := s.geo.bucketOf(nowMs)
	idleBefore := subSat(nowMs, s.geo.ttlMs)
	quietBefore := subSat(nowMs, s.geo.sweepMs)
	for idx := range s.entities {
		ent := &s.entities[idx]
		if !ent.live {
			continue
		}
		if ent.lastMs < idleBefore {
			s.release(uint32(idx))
			continue
		}
		if ent.lastMs >= quietBefore {
			// Written since the last sweep: its rings were sized by their
			// rate when they grew, and expire on their own when full.
			// Trimming them would read a cache line per feature for little.
			continue
		}
		if s.geo.unreachable(s.geo.bucketOf(ent.lastMs), nowB) {
			s.clearSeries(ent)
		}
		list := s.seriesOf(ent)
		for i := range list {
			if err := s.rings.trim(&list[i], nowB); err != nil {
				s.fail(err)
			}
		}
	}
	s.published.sweeps.Add(1)

	// Free blocks are reused by the next allocations of their class, so
	// compacting at the first sight of waste would only make the rings grow
	// into new slabs again. Waste that outlasts a whole sweep interval is
	// memory the shard no longer needs.
	if !s.wasteful() {
		s.wasteSeen = false
		return
	}
	if s.wasteSeen {
		s.compact()
	}
	s.wasteSeen = !s.wasteSeen
}

// release frees an entity's state and its slot; the slot counts as a
// tombstone until a new entity or a compaction takes it.
func (s *shard) release(idx uint32) {
	ent := &s.entities[idx]
	list := s.seriesOf(ent)
	for i := range list {
		s.rings.release(&list[i])
	}
	if ent.list != 0 {
		s.lists.Free(ent.list, int(ent.listClass))
	}
	s.index.Delete(ent.key)
	*ent = entity{}
	s.freeSlots = append(s.freeSlots, idx)
}

// Compaction thresholds: compact when at least this many slots are free and
// they outnumber live entities, or when more than two thirds of the slab
// bytes (and at least compactMinBytes) sit on free lists, at two sweeps in a
// row. Rings shrink at sweeps and grow back between them, so a third or so of
// the slabs being free is the steady state, not waste.
const (
	compactMinSlots = 1024
	compactMinBytes = 4 << 20
)

// wasteful reports whether a compaction would return a worthwhile amount of
// memory.
func (s *shard) wasteful() bool {
	free := len(s.freeSlots)
	if free >= compactMinSlots && free > len(s.entities)-free {
		return true
	}
	rs, ls := s.rings.buckets.Stats(), s.lists.Stats()
	idle := rs.Bytes - rs.InUseBytes + ls.Bytes - ls.InUseBytes
	return idle >= compactMinBytes && idle > 2*(rs.InUseBytes+ls.InUseBytes)
}

// compact copies every live entity into fresh slabs, a fresh index and a
// fresh entity table, and drops the old ones so their memory can return to
// the Go heap. Swiss tables do not shrink on delete, so this is also what
// bounds the index under churn.
func (s *shard) compact() {
	before := s.arenaBytes()
	fresh, err := s.copyLive()
	if err != nil {
		s.fail(err) // keep the old state: it is still whole
		return
	}
	s.shardState = fresh.shardState
	s.published.compactions.Add(1)
	s.published.reclaimed.Add(max(before-s.arenaBytes(), 0))
}

// copyLive builds a new shard state holding only the live entities.
func (s *shard) copyLive() (*shard, error) {
	r, err := newRings(s.geo)
	if err != nil {
		return nil, err
	}
	lists, err := newSeriesArena(s.lists.ClassSize(s.lists.Classes() - 1))
	if err != nil {
		return nil, err
	}
	live := len(s.entities) - len(s.freeSlots)
	n := &shard{geo: s.geo, shardState: shardState{
		index:      swiss.NewMap[string, uint32](uint32(max(live, 64))),
		entities:   make([]entity, 0, live),
		rings:      r,
		lists:      lists,
		pop:        s.pop,
		nextSweep:  s.nextSweep,
		appliedNow: s.appliedNow,
		err:        s.err,
	}}
	for i := range s.entities {
		if s.entities[i].live {
			if err := n.adopt(s, &s.entities[i]); err != nil {
				return nil, err
			}
		}
	}
	return n, nil
}

// adopt copies one entity of old into n.
func (n *shard) adopt(old *shard, ent *entity) error {
	cp := *ent
	cp.list, cp.nSeries = 0, 0
	n.entities = append(n.entities, cp)
	n.index.Put(cp.key, uint32(len(n.entities)-1))
	dst := &n.entities[len(n.entities)-1]

	for _, sr := range old.seriesOf(ent) {
		if sr.n == 0 {
			continue
		}
		nsr, err := n.seriesFor(dst, int(dst.nSeries), sr.feature)
		if err != nil {
			return err
		}
		src := old.rings.block(&sr)
		class := n.rings.buckets.ClassFor(int(sr.n))
		h, err := n.rings.copyInto(class, &sr, src)
		if err != nil {
			return err
		}
		nsr.block, nsr.class, nsr.head, nsr.n = h, uint8(class), 0, sr.n
	}
	return nil
}

// arenaBytes returns the bytes held by the shard's slabs.
func (s *shard) arenaBytes() int64 {
	return s.rings.buckets.Stats().Bytes + s.lists.Stats().Bytes
}

// publish stores the shard's figures for Metrics.
func (s *shard) publish() {
	p := &s.published
	p.batches.Add(1)
	p.live.Store(int64(len(s.entities) - len(s.freeSlots)))
	p.tombstoned.Store(int64(len(s.freeSlots)))
	rs, ls := s.rings.buckets.Stats(), s.lists.Stats()
	p.arenaBytes.Store(rs.Bytes + ls.Bytes)
	p.arenaInUse.Store(rs.InUseBytes + ls.InUseBytes)
}

// addSat returns a+b, saturated at the int64 range, for b >= 0.
func addSat(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}

// subSat returns a-b, saturated at the int64 range, for b >= 0.
func subSat(a, b int64) int64 {
	if a < math.MinInt64+b {
		return math.MinInt64
	}
	return a - b
}
