package streamfeat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"strings"
	"testing"
	"time"
)

// craft builds snapshots by hand, with valid framing and checksums, to feed
// the decoder contents the encoder would never write.
type craft struct {
	buf      bytes.Buffer
	sections uint64
}

func newCraft(header ...uint64) *craft {
	c := &craft{}
	c.buf.WriteString("SFSNAP\x01\x00")
	var h []byte
	for _, x := range header {
		h = binary.AppendUvarint(h, x)
	}
	c.section('H', h)
	return c
}

// section appends one section: kind, length, payload, CRC-32C of all three.
func (c *craft) section(kind byte, payload []byte) {
	b := binary.LittleEndian.AppendUint32([]byte{kind}, uint32(len(payload)))
	b = append(b, payload...)
	c.buf.Write(binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))))
	c.sections++
}

// finish appends a one-feature schema and the end section.
func (c *craft) finish(nowMs int64) []byte {
	c.section('S', append(binary.AppendUvarint(nil, 1), 1, 'f'))
	z := binary.AppendUvarint(binary.AppendVarint(nil, nowMs), c.sections)
	c.section('Z', z)
	return c.buf.Bytes()
}

// craftEngine returns an engine to restore into, of 1 s buckets, windows of
// 10 and 60 buckets, 4 shards and the event clock, and a snapshot of the
// same settings to craft.
func craftEngine(t *testing.T) (*Engine, *craft) {
	t.Helper()
	e := newEngine(t, Config{Shards: 4, Clock: NewEventClock(), BucketWidth: time.Second,
		ShortBuckets: 10, LongBuckets: 60, EntityTTL: 2 * time.Minute})
	return e, newCraft(1000, 10, 60, 4, 1) // width ms, short, long, shards, event clock
}

// craftEntity starts an entities section of one entity, "k", whose newest
// event is at lastMs and which has series series; they follow.
func craftEntity(e *Engine, lastMs int64, series uint64) []byte {
	var p []byte
	p = binary.AppendUvarint(p, uint64(e.shardOf("k")))
	p = binary.LittleEndian.AppendUint32(p, 1) // entities in the chunk
	p = append(binary.AppendUvarint(p, 1), 'k')
	p = binary.AppendVarint(p, lastMs)
	return binary.AppendUvarint(p, series)
}

// craftWindowSeries appends a series of feature f with one value in each of
// 60 buckets from first on.
func craftWindowSeries(p []byte, f int32, first int64) []byte {
	p = binary.AppendUvarint(p, uint64(f))
	p = binary.AppendUvarint(p, 60)
	p = binary.AppendVarint(p, first)
	for k := range 60 {
		if k > 0 {
			p = binary.AppendUvarint(p, 1)
		}
		p = binary.AppendUvarint(p, 1)
		for _, x := range []float64{float64(k), 0, 0} {
			p = binary.LittleEndian.AppendUint64(p, math.Float64bits(x))
		}
	}
	return p
}

// TestRestoreRefusesAliasedBucket: a bucket 2^32 buckets before its entity's
// newest event has the same 32-bit id as a current one; restored, it would
// count as live. The decoder refuses it.
func TestRestoreRefusesAliasedBucket(t *testing.T) {
	e, c := craftEngine(t)

	p := craftEntity(e, 999_500, 1) // newest event in bucket 999, one series
	// Feature 1, one bucket.
	p = binary.AppendUvarint(p, 1)
	p = binary.AppendUvarint(p, 1)
	p = binary.AppendVarint(p, 999-(1<<32))
	p = binary.AppendUvarint(p, 7)
	for _, x := range []float64{0, 42, 0} {
		p = binary.LittleEndian.AppendUint64(p, math.Float64bits(x))
	}
	c.section('E', p)

	err := e.Restore(bytes.NewReader(c.finish(999_500)))
	if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), "newest event") {
		t.Fatalf("restore of an aliased bucket: %v; want ErrBadSnapshot for the bucket range", err)
	}
}

// TestRestoreAllocationFollowsInput: population sections without buckets,
// a dozen bytes each, must not each make the decoder build a full ring.
func TestRestoreAllocationFollowsInput(t *testing.T) {
	e, err := New(Config{Clock: NewEventClock(), MaxFeatures: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c := newCraft(5000, 60, 720, 8, 1)
	for s := range uint64(8) {
		c.section('P', binary.AppendUvarint(binary.AppendUvarint(binary.AppendUvarint(nil, s), 1), 0))
	}
	err = e.Restore(bytes.NewReader(c.finish(0)))
	if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), "no bucket") {
		t.Fatalf("restore of empty population sections: %v; want ErrBadSnapshot for no bucket", err)
	}
	for _, s := range e.shards {
		if len(s.pop) > 1 && s.pop[1] != nil {
			t.Fatalf("shard %d built a population ring for an empty section", s.id)
		}
	}
}

// TestRestoreSplitsRings: the engine keeps an entity's features in shared
// rows, one per bucket, and a ring holds at most a window of them. Two series
// of a full window each, one bucket apart, need one row more than that, so
// restore lays them out in two rings; on the same buckets they share one.
func TestRestoreSplitsRings(t *testing.T) {
	for _, gap := range []int64{0, 1} {
		e, c := craftEngine(t)

		p := craftEntity(e, 100_500, 2) // newest event in bucket 100, two series
		for f, first := range []int64{41 - gap, 41} {
			p = craftWindowSeries(p, int32(f+1), first)
		}
		c.section('E', p)
		c.section('S', append(binary.AppendUvarint(nil, 2), 1, 'f', 1, 'g'))
		z := binary.AppendUvarint(binary.AppendVarint(nil, 100_500), c.sections)
		c.section('Z', z)

		if err := e.Restore(bytes.NewReader(c.buf.Bytes())); err != nil {
			t.Fatalf("gap %d: Restore: %v", gap, err)
		}
		// The long window at bucket 100 is buckets 41 to 100.
		for f, want := range []int64{60 - gap, 60} {
			if st := stats(t, e, "k", int32(f+1), Long); st.Count != want {
				t.Errorf("gap %d: feature %d: %+v; want %d values", gap, f+1, st, want)
			}
		}
		rings := 0
		onOwner(t, e, "k", func(s *shard) {
			idx, _ := s.index.Get("k")
			rings = groupCount(&s.entities[idx])
		})
		if want := 1 + int(gap); rings != want {
			t.Errorf("gap %d: %d rings; want %d", gap, rings, want)
		}
	}
}

// TestRestoreOwnSnapshotAfterClockBack: after the clock steps back, rows up
// to a window ahead of now stay live, and two rings' rows may not fit one.
// An engine must restore its own snapshot of that state and answer alike.
func TestRestoreOwnSnapshotAfterClockBack(t *testing.T) {
	const T = 1_700_000_000_000
	cfg := func(c Clock) Config {
		return Config{Shards: 1, Clock: c, BucketWidth: time.Second, ShortBuckets: 1, LongBuckets: 2,
			MaxFutureSkew: time.Millisecond, EntityTTL: time.Hour, MaxFeatures: 14} // 3 rows a ring
	}
	c := NewManualClock(T + 90_000)
	e := newEngine(t, cfg(c))
	registerN(t, e, 14)
	all := Event{EntityID: "a", TimestampMs: T + 90_000} // f1..f13 fill the first ring, f14 starts a second
	for f := int32(1); f <= 14; f++ {
		all.Values = append(all.Values, fv(f, 1))
	}
	ingestEach(t, e, all)
	at := func(now, b int64, f int32) {
		c.Set(T + now)
		ingestEach(t, e, Event{EntityID: "a", TimestampMs: T + b*1000, Values: []FeatureValue{fv(f, 1)}})
	}
	// The jump to bucket 100 empties the idle entity's rows: then f2 has
	// values in buckets 99 to 101, and f14 in 102 to 106.
	at(100_000, 99, 2)
	at(100_000, 100, 2)
	at(100_999, 101, 2)
	for b := int64(102); b <= 105; b++ {
		at(b*1000, b, 14)
	}
	at(105_999, 106, 14)
	c.Set(T + 100_000) // the clock steps back

	snap := snapshotBytes(t, e)
	r := restore(t, cfg(NewManualClock(T+100_000)), snap)
	for _, f := range []int32{2, 14} {
		for _, w := range []Window{Short, Long} {
			if got, want := stats(t, r, "a", f, w), stats(t, e, "a", f, w); got != want {
				t.Errorf("feature %d, %v window: restored %+v; want %+v", f, w, got, want)
			}
		}
	}
}

// TestRestoreRefusesMoreRingsThanFit: series whose buckets together overflow
// a window need a ring each, and an engine of 3 features holds one ring
// beyond an entity's first. The engine never writes such a snapshot (restore regroups
// its own series into no more rings than it had); a crafted one is refused,
// not a panic.
func TestRestoreRefusesMoreRingsThanFit(t *testing.T) {
	e := newEngine(t, Config{Shards: 4, Clock: NewEventClock(), BucketWidth: time.Second,
		ShortBuckets: 10, LongBuckets: 60, EntityTTL: 2 * time.Minute, MaxFeatures: 3})
	c := newCraft(1000, 10, 60, 4, 1) // width ms, short, long, shards, event clock
	p := craftEntity(e, 100_500, 3)   // newest event in bucket 100, three series
	for f, first := range []int64{41, 40, 39} {
		p = craftWindowSeries(p, int32(f+1), first)
	}
	c.section('E', p)
	c.section('S', append(binary.AppendUvarint(nil, 3), 1, 'f', 1, 'g', 1, 'h'))
	c.section('Z', binary.AppendUvarint(binary.AppendVarint(nil, 100_500), c.sections))

	err := e.Restore(bytes.NewReader(c.buf.Bytes()))
	if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), "rings") {
		t.Fatalf("restore of three series that need three rings: %v; want ErrBadSnapshot", err)
	}
}
