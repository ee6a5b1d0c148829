package streamfeat

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"time"
)

// Snapshot errors.
var (
	// ErrBadSnapshot wraps every way a snapshot stream can be malformed:
	// a wrong magic or version, a checksum mismatch, a truncation, a value
	// out of range.
	ErrBadSnapshot = errors.New("streamfeat: bad snapshot")

	// ErrSnapshotMismatch is returned by Restore for a well-formed snapshot
	// that this engine cannot hold: another window geometry, shard count,
	// kind of clock or schema.
	ErrSnapshotMismatch = errors.New("streamfeat: snapshot does not fit the engine")

	// ErrRestoreTooLate is returned by Restore once the engine has taken an
	// Ingest call or a Restore already.
	ErrRestoreTooLate = errors.New("streamfeat: restore after intake began")

	// ErrRestoring is returned by Ingest while a Restore runs.
	ErrRestoring = errors.New("streamfeat: restore in progress")
)

// Engine phases, in Engine.phase. Restore moves fresh to restoring to
// restored; the first Ingest moves fresh or restored to ingesting.
const (
	phaseFresh int32 = iota
	phaseRestoring
	phaseRestored
	phaseIngesting
)

// beginIntake marks the engine as having taken intake, which rules out a
// later Restore. It fails while a Restore runs.
func (e *Engine) beginIntake() error {
	for {
		p := e.phase.Load()
		switch {
		case p == phaseIngesting:
			return nil
		case p == phaseRestoring:
			return ErrRestoring
		case e.phase.CompareAndSwap(p, phaseIngesting):
			return nil
		}
	}
}

// Snapshot writes the engine's state to w in the format of
// docs/SNAPSHOT.md. It is SnapshotContext without a deadline.
func (e *Engine) Snapshot(w io.Writer) error {
	return e.SnapshotContext(context.Background(), w)
}

// SnapshotContext writes the engine's state to w, shard by shard. Each shard
// copies its state on its owner goroutine, behind the batches queued before,
// and goes back to intake at once; the copy is encoded and written on the
// caller's goroutine. Intake therefore pauses one shard at a time, for the
// copy only. The snapshot holds every batch whose Ingest call returned
// before SnapshotContext began; batches that arrive meanwhile may be in it
// or not, shard by shard.
//
// It works on a closed engine too, once Close has applied what was queued:
// a snapshot taken after Close holds every accepted event.
func (e *Engine) SnapshotContext(ctx context.Context, w io.Writer) error {
	_, err := e.snapshot(ctx, w)
	return err
}

// snapshotStats describes one snapshot, for benchmarks and tests.
type snapshotStats struct {
	pauses   []time.Duration // time each owner spent copying
	bytes    int64
	entities int64
	buckets  int64
}

func (e *Engine) snapshot(ctx context.Context, w io.Writer) (snapshotStats, error) {
	st := snapshotStats{pauses: make([]time.Duration, len(e.shards))}
	enc := newEncoder(w)
	enc.header(e)

	var cp shardCopy
	appliedNow := int64(math.MinInt64)
	for i := range e.shards {
		if err := e.copyShard(ctx, i, &cp); err != nil {
			return st, err
		}
		st.pauses[i] = cp.took
		appliedNow = max(appliedNow, cp.appliedNow)
		enc.shard(i, &cp)
		if enc.err != nil {
			return st, enc.err
		}
	}

	// The schema is read after the copies, so that it names every feature
	// they hold. So is the clock: every event copied above was accepted at
	// or before it, except one whose producer has yet to move the clock,
	// and the owner's appliedNow covers that one.
	enc.schema(e.schemaNames())
	now := int64(math.MinInt64)
	if e.events != nil {
		now = max(e.nowMs(), appliedNow)
	}
	enc.end(now)
	st.bytes, st.entities, st.buckets = enc.n, enc.entities, enc.buckets
	return st, enc.err
}

// schemaNames returns the registered names in id order.
func (e *Engine) schemaNames() []string {
	e.schema.mu.Lock()
	defer e.schema.mu.Unlock()
	return append([]string(nil), e.schema.names...)
}

// shardCopy is one shard's live state, copied by its owner. Entities refer
// to ranges of series, and series to ranges of buckets.
type shardCopy struct {
	nowB       int64 // bucket ids are relative to it (see bucket.id)
	appliedNow int64
	took       time.Duration

	entities []entityCopy
	series   []seriesCopy
	buckets  []bucket
	pop      []popCopy
	popSlots []popBucket
}

type entityCopy struct {
	key              string
	lastMs           int64
	firstSeries, end uint32
}

type seriesCopy struct {
	feature          int32
	firstBucket, end uint32
}

type popCopy struct {
	feature        int32
	firstSlot, end uint32
}

// reset empties cp, keeping its storage, and makes room for about as much
// state as the shard published, so that the owner's copy rarely grows a
// slice: allocating and zeroing here costs the owner nothing.
func (cp *shardCopy) reset(s *shard) {
	live := int(s.published.live.Load())
	records := int(s.published.arenaInUse.Load() / 32)
	cp.entities = grow(cp.entities[:0], live+live/16)
	cp.series = grow(cp.series[:0], records/4) // a ring holds 4 records or more
	cp.buckets = grow(cp.buckets[:0], records)
	cp.pop = cp.pop[:0]
	cp.popSlots = cp.popSlots[:0]
}

// grow returns s with capacity for at least n elements; s is empty. New
// memory is written once here, so that the page faults of fresh memory
// happen on the caller and not while the owner copies into it.
func grow[T any](s []T, n int) []T {
	if cap(s) >= n {
		return s
	}
	s = make([]T, n)
	clear(s)
	return s[:0]
}

// copyShard fills cp with shard i's live state: on its owner goroutine while
// the engine runs, or on this one once Close has stopped the owners.
func (e *Engine) copyShard(ctx context.Context, i int, cp *shardCopy) error {
	s := e.shards[i]
	cp.reset(s)
	if err := e.enter(); err != nil {
		// Closing or closed: wait for the owners to apply what was queued
		// and exit; after that nothing else touches the state.
		select {
		case <-e.stopped:
		case <-ctx.Done():
			return fmt.Errorf("streamfeat: snapshot: %w", ctx.Err())
		}
		s.copyLiveTo(e, cp)
		return nil
	}

	done := make(chan struct{}, 1)
	m := &message{run: func(s *shard) {
		s.copyLiveTo(e, cp)
		done <- struct{}{}
	}}
	select {
	case s.queue <- m:
	case <-ctx.Done():
		e.leave()
		return fmt.Errorf("streamfeat: snapshot: %w", ctx.Err())
	}
	e.leave()

	select {
	case <-done:
		return nil
	case <-ctx.Done():
		// NB: the owner may still write cp later; the caller drops it.
		return fmt.Errorf("streamfeat: snapshot: %w", ctx.Err())
	}
}

// copyLiveTo copies the shard's live state into cp: the entities that a
// window can still use, their buckets inside the long window, and the
// population buckets inside it. Only the owner may call it, or anyone once
// the owner has exited.
func (s *shard) copyLiveTo(e *Engine, cp *shardCopy) {
	start := time.Now()
	nowMs := e.nowMs()
	if s.geo.eventTime {
		nowMs = max(nowMs, s.appliedNow)
	}
	nowB := s.geo.bucketOf(nowMs)
	cp.nowB, cp.appliedNow = nowB, s.appliedNow

	longFrom := -int32(s.geo.long - 1)
	for idx := range s.entities {
		ent := &s.entities[idx]
		if !ent.live || s.geo.unreachable(s.geo.bucketOf(ent.lastMs), nowB) {
			continue
		}
		ec := entityCopy{key: ent.key, lastMs: ent.lastMs, firstSeries: uint32(len(cp.series))}
		for i := range groupCount(ent) {
			g := s.groupAt(ent, i)
			blk := s.rings.block(g)
			for col, f := range g.features[:g.width] {
				first := len(cp.buckets)
				cp.buckets = appendLive(cp.buckets, blk, g, col, nowB, longFrom)
				if len(cp.buckets) > first {
					cp.series = append(cp.series, seriesCopy{
						feature: f, firstBucket: uint32(first), end: uint32(len(cp.buckets)),
					})
				}
			}
		}
		ec.end = uint32(len(cp.series))
		cp.entities = append(cp.entities, ec)
	}

	oldest := s.geo.oldestBucket(nowB)
	for f, ring := range s.pop {
		if ring == nil {
			continue
		}
		first := len(cp.popSlots)
		for _, pb := range ring {
			if pb.n > 0 && pb.id >= oldest {
				cp.popSlots = append(cp.popSlots, pb)
			}
		}
		if len(cp.popSlots) > first {
			cp.pop = append(cp.pop, popCopy{
				feature: int32(f), firstSlot: uint32(first), end: uint32(len(cp.popSlots)),
			})
		}
	}
	cp.took = time.Since(start)
}

// appendLive appends column col's cells that hold values, from the first row
// inside the long window (rel >= longFrom) on. Rows are sorted, so the
// expired ones come first.
func appendLive(dst, blk []bucket, g *group, col int, nowB int64, longFrom int32) []bucket {
	k := 0
	for k < int(g.n) && int32(rowID(g, blk, k)-uint32(nowB)) < longFrom {
		k++
	}
	for ; k < int(g.n); k++ {
		if c := row(g, blk, k)[col]; c.n > 0 {
			dst = append(dst, c)
		}
	}
	return dst
}

// Restore loads a snapshot written by Snapshot into an engine that has
// taken no Ingest call yet. The snapshot must have been taken by an engine
// with the same bucket width, windows, shard count and kind of clock, and
// the names registered so far must be the first of its schema. Restore reads
// and checks the whole stream before it changes anything, so on error the
// engine is as it was. Ingest calls made while Restore runs fail with
// ErrRestoring.
func (e *Engine) Restore(r io.Reader) error {
	if e.closed.Load() {
		return ErrClosed
	}
	if !e.phase.CompareAndSwap(phaseFresh, phaseRestoring) {
		return ErrRestoreTooLate
	}
	// The stream is read outside enter and leave, so that a slow reader
	// cannot hold up Close.
	img, err := e.decodeSnapshot(r)
	if err == nil {
		err = e.enter()
	}
	if err != nil {
		e.phase.Store(phaseFresh)
		return err
	}
	defer e.leave()
	if err := e.restoreSchema(img.names); err != nil {
		e.phase.Store(phaseFresh)
		return err
	}

	// Intake is held off by the phase, and nothing was ever ingested, so
	// every shard is empty: install its new state on its owner.
	done := make(chan struct{}, len(e.shards))
	for i, s := range e.shards {
		st := img.shards[i]
		s.queue <- &message{run: func(s *shard) {
			s.install(st)
			done <- struct{}{}
		}}
	}
	for range e.shards {
		<-done
	}
	if e.events != nil && img.nowMs != math.MinInt64 {
		e.events.advance(img.nowMs)
	}
	e.phase.Store(phaseRestored)
	return nil
}

// restoreSchema registers the snapshot's names, which must extend the names
// registered already.
func (e *Engine) restoreSchema(names []string) error {
	s := &e.schema
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, name := range s.names {
		if i >= len(names) || names[i] != name {
			return fmt.Errorf("%w: feature %d is %q here but not in the snapshot",
				ErrSnapshotMismatch, i+1, name)
		}
	}
	if s.ids == nil {
		s.ids = make(map[string]int32, len(names))
	}
	for i := len(s.names); i < len(names); i++ {
		s.names = append(s.names, names[i])
		s.ids[names[i]] = int32(i + 1)
	}
	s.n.Store(int32(len(s.names)))
	return nil
}

// install replaces the owner's empty state with a restored one.
func (s *shard) install(st shardState) {
	s.shardState = st
	p := &s.published
	p.live.Store(int64(len(s.entities)))
	rs, ls := s.rings.buckets.Stats(), s.lists.Stats()
	p.arenaBytes.Store(rs.Bytes + ls.Bytes)
	p.arenaInUse.Store(rs.InUseBytes + ls.InUseBytes)
}

// Snapshot format constants; docs/SNAPSHOT.md describes the layout.
const (
	snapMagic   = "SFSNAP"
	snapVersion = 1

	secHeader   = 'H'
	secSchema   = 'S'
	secEntities = 'E'
	secPop      = 'P'
	secEnd      = 'Z'

	// maxSectionBytes bounds one section. The writer cuts entity lists into
	// sections of about chunkBytes, far below it.
	maxSectionBytes = 64 << 20
	chunkBytes      = 1 << 20

	clockWall  = 0 // the clock is not saved: any Clock but the event clock
	clockEvent = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encoder writes snapshot sections. The first write error sticks.
type encoder struct {
	w        io.Writer
	buf      []byte // the section being built, from its kind byte on
	err      error
	n        int64 // bytes written
	sections uint64
	entities int64
	buckets  int64
}

func newEncoder(w io.Writer) *encoder {
	enc := &encoder{w: w}
	var head [8]byte
	copy(head[:], snapMagic)
	binary.LittleEndian.PutUint16(head[6:], snapVersion)
	enc.write(head[:])
	return enc
}

func (enc *encoder) write(p []byte) {
	if enc.err != nil {
		return
	}
	n, err := enc.w.Write(p)
	enc.n += int64(n)
	if err != nil {
		enc.err = fmt.Errorf("streamfeat: snapshot: write: %w", err)
	}
}

// begin starts a section of kind.
func (enc *encoder) begin(kind byte) {
	enc.buf = append(enc.buf[:0], kind, 0, 0, 0, 0)
}

// finish fills in the section's length, appends its CRC-32C and writes it.
func (enc *encoder) finish() {
	binary.LittleEndian.PutUint32(enc.buf[1:5], uint32(len(enc.buf)-5))
	enc.buf = binary.LittleEndian.AppendUint32(enc.buf, crc32.Checksum(enc.buf, castagnoli))
	enc.write(enc.buf)
	enc.sections++
}

func (enc *encoder) uvarint(x uint64) { enc.buf = binary.AppendUvarint(enc.buf, x) }
func (enc *encoder) varint(x int64)   { enc.buf = binary.AppendVarint(enc.buf, x) }
func (enc *encoder) float(x float64) {
	enc.buf = binary.LittleEndian.AppendUint64(enc.buf, math.Float64bits(x))
}
func (enc *encoder) str(s string) {
	enc.uvarint(uint64(len(s)))
	enc.buf = append(enc.buf, s...)
}

func (enc *encoder) header(e *Engine) {
	enc.begin(secHeader)
	enc.uvarint(uint64(e.geo.widthMs))
	enc.uvarint(uint64(e.geo.short))
	enc.uvarint(uint64(e.geo.long))
	enc.uvarint(uint64(len(e.shards)))
	if e.events != nil {
		enc.uvarint(clockEvent)
	} else {
		enc.uvarint(clockWall)
	}
	enc.finish()
}

func (enc *encoder) schema(names []string) {
	enc.begin(secSchema)
	enc.uvarint(uint64(len(names)))
	for _, name := range names {
		enc.str(name)
	}
	enc.finish()
}

// shard writes one shard's copy: its entities in sections of about
// chunkBytes, then one section per population feature.
func (enc *encoder) shard(i int, cp *shardCopy) {
	for from := 0; from < len(cp.entities) && enc.err == nil; {
		from = enc.entityChunk(i, cp, from)
	}
	for _, pc := range cp.pop {
		enc.begin(secPop)
		enc.uvarint(uint64(i))
		enc.uvarint(uint64(pc.feature))
		slots := cp.popSlots[pc.firstSlot:pc.end]
		enc.uvarint(uint64(len(slots)))
		for _, pb := range slots {
			enc.varint(pb.id)
			enc.uvarint(uint64(pb.n))
			enc.float(pb.shift)
			enc.float(pb.mean)
			enc.float(pb.m2)
		}
		enc.finish()
	}
}

// entityChunk writes entities from on until the section reaches chunkBytes,
// and returns where it stopped.
func (enc *encoder) entityChunk(i int, cp *shardCopy, from int) int {
	enc.begin(secEntities)
	enc.uvarint(uint64(i))
	at := len(enc.buf)
	enc.buf = append(enc.buf, 0, 0, 0, 0) // the count, filled in below
	to := from
	for to < len(cp.entities) && len(enc.buf) < chunkBytes {
		ec := &cp.entities[to]
		enc.str(ec.key)
		enc.varint(ec.lastMs)
		enc.uvarint(uint64(ec.end - ec.firstSeries))
		for _, sc := range cp.series[ec.firstSeries:ec.end] {
			enc.uvarint(uint64(sc.feature))
			enc.ring(cp.buckets[sc.firstBucket:sc.end], cp.nowB)
		}
		to++
	}
	binary.LittleEndian.PutUint32(enc.buf[at:], uint32(to-from))
	enc.entities += int64(to - from)
	enc.finish()
	return to
}

// ring writes a series' buckets, oldest first: the first bucket number in
// full, then each one's distance from the one before.
func (enc *encoder) ring(bs []bucket, nowB int64) {
	enc.uvarint(uint64(len(bs)))
	prev := int64(0)
	for k, b := range bs {
		abs := nowB + int64(int32(b.id-uint32(nowB)))
		if k == 0 {
			enc.varint(abs)
		} else {
			enc.uvarint(uint64(abs - prev))
		}
		prev = abs
		enc.uvarint(uint64(b.n))
		enc.float(b.shift)
		enc.float(b.mean)
		enc.float(b.m2)
	}
	enc.buckets += int64(len(bs))
}

// end writes the closing section: the clock and the number of sections
// before it, so that a stream cut at a section boundary is caught.
func (enc *encoder) end(nowMs int64) {
	enc.begin(secEnd)
	enc.varint(nowMs)
	enc.uvarint(enc.sections)
	enc.finish()
}
