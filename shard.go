package streamfeat

import (
	"errors"
	"math"
	"slices"
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
	poll   time.Duration // after run, how long the owner polls its queue before it parks
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
	m.poll = 0
}

// entity is one entity's record in its shard. Its first group of features
// is held inline, which saves a cache miss per event for entities of up to
// groupWidth features; any further groups live in the shard's group arena:
// nMore of them in block more of class moreClass.
type entity struct {
	first     group
	key       string
	lastMs    int64 // newest event time seen for the entity
	more      arena.Handle
	nMore     uint16
	moreClass uint8
	live      bool
}

// shard is one slice of the engine's state and the goroutine that owns it.
type shard struct {
	// Set by newShard and never changed: safe to read from any goroutine.
	id          int
	geo         geometry
	maxFeatures int
	queue       chan *message
	spares      chan *message // emptied messages for producers to reuse
	done        chan struct{} // closed when the owner goroutine has returned

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
	lists      *arena.Arena[group] // entities' groups beyond the first
	pop        []popRing           // by feature id; nil until the feature sees a value
	nextSweep  int64               // engine time (ms) of the next sweep
	appliedNow int64               // the newest producer clock among applied messages
	wasteSeen  bool                // the previous sweep found the shard wasteful
	err        error               // first arena failure; state stops growing after it
	idxs       []uint32            // scratch for apply: a lookup run's entities
	touched    uint32              // what apply read ahead, kept so the reads stay
	missing    []int32             // scratch for widen: an event's features without a column
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

// groupClasses returns the capacities of an entity's list of extra groups.
func groupClasses(maxFeatures int) []int {
	most := max(1, (maxFeatures-1)/groupWidth) // the first group is inline
	var classes []int
	for size := 1; size < most; size *= 2 {
		classes = append(classes, size)
	}
	return append(classes, most)
}

// newGroupArena returns the arena for entities' lists of extra groups. New
// shards, compaction and restore must build it alike.
func newGroupArena(maxFeatures int) (*arena.Arena[group], error) {
	classes := groupClasses(maxFeatures)
	return arena.New[group](max(1024, classes[len(classes)-1]), classes)
}

func newShard(id int, geo geometry, cfg Config) (*shard, error) {
	r, err := newRings(geo)
	if err != nil {
		return nil, err
	}
	lists, err := newGroupArena(cfg.MaxFeatures)
	if err != nil {
		return nil, err
	}
	s := &shard{
		id:          id,
		geo:         geo,
		maxFeatures: cfg.MaxFeatures,
		queue:       make(chan *message, cfg.QueueDepth),
		spares:      make(chan *message, cfg.QueueDepth+spareSlack),
		done:        make(chan struct{}),
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

// next waits for the shard's next message, polling for d before it parks
// (see poll). Queries ask for the poll, since they tend to come in streams
// whose latency the wake would dominate. Ingest does not: a batch is not
// waiting for an answer, and polling would take CPU from the producers,
// which at small batches share it with the owners.
func (s *shard) next(d time.Duration) *message {
	if m, ok := poll(s.queue, d); ok {
		return m
	}
	return <-s.queue
}

// run is the owner goroutine: it applies messages in queue order until the
// stop message, which Close sends after the last producer has left.
func (s *shard) run(e *Engine) {
	defer close(s.done)
	var spin time.Duration
	for {
		m := s.next(spin)
		if m.stop {
			return
		}
		spin = m.poll
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
	span := s.geo.liveSpan(nowB)
	for start := 0; start < len(m.events); start += lookupRun {
		evs := m.events[start:min(start+lookupRun, len(m.events))]

		// Find the run's entities and read their newest rows first, then
		// apply the values. Each of those reads misses the cache, and in a
		// loop of them alone the processor keeps several misses in flight
		// at once; interleaved with the updates they would wait one by one.
		idxs := s.idxs[:0]
		var touched uint32
		for i := range evs {
			ev := &evs[i]
			if ev.ts < span.from && s.geo.bucketOf(ev.ts) < oldest {
				// Accepted, then moved out of every window by a newer event
				// of the same call: no query can see it any more.
				s.published.expiredLate.Add(1)
				idxs = append(idxs, noEntity)
				continue
			}
			idx := s.entityFor(ev.entity, ev.ts, nowB, span)
			idxs = append(idxs, idx)
			touched += s.rings.touch(&s.entities[idx].first)
		}
		s.idxs = idxs
		s.touched += touched

		for i, idx := range idxs {
			if idx != noEntity {
				ev := &evs[i]
				values := m.values[ev.first : ev.first+ev.n]
				s.observeEvent(&s.entities[idx], values, s.geo.bucketOf(ev.ts), nowB)
			}
		}
	}
}

// lookupRun is how many events apply looks up before it applies them.
const lookupRun = 16

// noEntity marks an event of a lookup run that apply skips.
const noEntity = math.MaxUint32

// observeEvent adds an event's values to the entity's rings and to the
// population rings.
func (s *shard) observeEvent(ent *entity, values []FeatureValue, b, nowB int64) {
	for k, v := range values {
		g, col := s.columnOf(ent, k, v.FeatureID)
		if g == nil {
			// A feature new to the entity: give every new feature of the
			// event its column at once, so that a group moves its rows
			// into a wider block once per event at most.
			if err := s.addColumns(ent, values); err != nil {
				s.fail(err)
				continue
			}
			g, col = s.columnOf(ent, k, v.FeatureID)
		}
		s.observe(g, col, v, b, nowB)
	}
}

// observe adds one value to column col of the group and to the population
// ring.
func (s *shard) observe(g *group, col int, v FeatureValue, b, nowB int64) {
	err := s.rings.put(g, col, b, nowB, v.Value)
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

// entityFor returns the index of the entity's record, creating it on first
// sight, and notes the event time.
func (s *shard) entityFor(key string, ts, nowB int64, span liveSpan) uint32 {
	idx, ok := s.index.Get(key)
	if !ok {
		idx = s.newEntity(key)
	}
	ent := &s.entities[idx]
	if !span.holds(ent.lastMs) && s.geo.unreachable(s.geo.bucketOf(ent.lastMs), nowB) {
		// Idle for a whole window, or far ahead of a clock that went back:
		// no window can use the records. Emptying the rings here also keeps
		// their 32-bit bucket ids unambiguous.
		s.clearRows(ent)
		ent.lastMs = ts
	}
	ent.lastMs = max(ent.lastMs, ts)
	return idx
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

// groupCount returns the number of the entity's groups, counting the
// inline one even while it has no column.
func groupCount(ent *entity) int { return 1 + int(ent.nMore) }

// groupAt returns the entity's i-th group, or nil past the last.
func (s *shard) groupAt(ent *entity, i int) *group {
	switch {
	case i == 0:
		return &ent.first
	case i <= int(ent.nMore):
		return &s.lists.Block(ent.more, int(ent.moreClass))[i-1]
	}
	return nil
}

// columnOf finds the group and column that hold a feature of the entity,
// or returns a nil group. Producers tend to send an entity's features in
// the same order every time, and columns are added in the order first seen,
// so the column at the value's position in its event is tried first.
func (s *shard) columnOf(ent *entity, hint int, feature int32) (*group, int) {
	if g := s.groupAt(ent, hint/groupWidth); g != nil {
		if c := hint % groupWidth; c < int(g.width) && g.features[c] == feature {
			return g, c
		}
	}
	for i := range groupCount(ent) {
		g := s.groupAt(ent, i)
		for c, f := range g.features[:g.width] {
			if f == feature {
				return g, c
			}
		}
	}
	return nil, 0
}

// addColumns gives each feature of values that the entity has no column for
// one, filling the last group before it adds another: every group but the
// last is always full.
//
// TODO: columns are never dropped, so a feature that an entity stops sending
// keeps an empty cell in each of its new rows until the entity is released;
// the sweep could drop columns that have emptied.
func (s *shard) addColumns(ent *entity, values []FeatureValue) error {
	missing := s.missing[:0]
	for _, v := range values {
		if g, _ := s.columnOf(ent, 0, v.FeatureID); g == nil && !slices.Contains(missing, v.FeatureID) {
			missing = append(missing, v.FeatureID)
		}
	}
	s.missing = missing
	for len(missing) > 0 {
		g := s.groupAt(ent, groupCount(ent)-1)
		room := groupWidth - int(g.width)
		if room == 0 {
			if err := s.addGroup(ent); err != nil {
				return err
			}
			continue
		}
		n := min(room, len(missing))
		if err := s.rings.widen(g, missing[:n]); err != nil {
			return err
		}
		missing = missing[n:]
	}
	return nil
}

// addGroup appends an empty group to the entity's list of extra groups.
func (s *shard) addGroup(ent *entity) error {
	if ent.more == 0 || int(ent.nMore) == s.lists.ClassSize(int(ent.moreClass)) {
		if err := s.growList(ent); err != nil {
			return err
		}
	}
	ent.nMore++
	*s.groupAt(ent, int(ent.nMore)) = group{}
	return nil
}

// errTooManyRings is growList's answer for an entity whose extra groups fill
// the largest list. Ingest never gets there: groups fill up 13 features at a
// time, and the largest list holds the groups of every feature the schema
// can name. Only a crafted snapshot can ask for more.
var errTooManyRings = errors.New("more rings than Config.MaxFeatures features need")

// growList moves the entity's extra groups to a list of the next class.
func (s *shard) growList(ent *entity) error {
	class := 0
	if ent.more != 0 {
		class = int(ent.moreClass) + 1
	}
	if class == s.lists.Classes() {
		return errTooManyRings
	}
	h, err := s.lists.Alloc(class)
	if err != nil {
		return err
	}
	if ent.more != 0 {
		old := s.lists.Block(ent.more, int(ent.moreClass))
		copy(s.lists.Block(h, class), old[:ent.nMore])
		s.lists.Free(ent.more, int(ent.moreClass))
	}
	ent.more, ent.moreClass = h, uint8(class)
	return nil
}

// clearRows empties every ring of the entity, keeping their storage.
func (s *shard) clearRows(ent *entity) {
	for i := range groupCount(ent) {
		g := s.groupAt(ent, i)
		g.head, g.n = 0, 0
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
	g, col := s.columnOf(ent, 0, feature)
	if g == nil {
		return windowSet{}
	}
	return s.rings.windows(g, col, nowB)
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
		if ent.lastMs >= quietBefore && ent.nMore == 0 {
			// Written since the last sweep: its ring was sized by its rate
			// when it grew, and expires rows on its own when full. Trimming
			// it would read another cache line per entity for little. An
			// entity of several rings may write one and leave another
			// alone, whose rows would then never expire, until 2^32 buckets
			// on their ids would alias current ones: those are trimmed.
			continue
		}
		if s.geo.unreachable(s.geo.bucketOf(ent.lastMs), nowB) {
			s.clearRows(ent)
		}
		for i := range groupCount(ent) {
			if err := s.rings.trim(s.groupAt(ent, i), nowB); err != nil {
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
	for i := range groupCount(ent) {
		s.rings.release(s.groupAt(ent, i))
	}
	if ent.more != 0 {
		s.lists.Free(ent.more, int(ent.moreClass))
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
	// A fresh state leaves the rest of its newest slabs idle too: with a
	// long window a ring slab is megabytes, and counting it would make a
	// lightly loaded shard compact at every sweep for nothing.
	idle -= slabBytes(rs) + slabBytes(ls)
	return idle >= compactMinBytes && idle > 2*(rs.InUseBytes+ls.InUseBytes)
}

// slabBytes returns the size of one of an arena's slabs, 0 with none.
func slabBytes(st arena.Stats) int64 {
	if st.Slabs == 0 {
		return 0
	}
	return st.Bytes / int64(st.Slabs)
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
	lists, err := newGroupArena(s.maxFeatures)
	if err != nil {
		return nil, err
	}
	live := len(s.entities) - len(s.freeSlots)
	n := &shard{geo: s.geo, maxFeatures: s.maxFeatures, shardState: shardState{
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
	cp.first, cp.more, cp.nMore, cp.moreClass = group{}, 0, 0, 0
	n.entities = append(n.entities, cp)
	n.index.Put(cp.key, uint32(len(n.entities)-1))
	dst := &n.entities[len(n.entities)-1]

	for i := range groupCount(ent) {
		if i > 0 {
			if err := n.addGroup(dst); err != nil {
				return err
			}
		}
		src := old.groupAt(ent, i)
		if err := n.rings.copyGroup(n.groupAt(dst, i), src, old.rings.block(src)); err != nil {
			return err
		}
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
