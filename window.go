package streamfeat

import (
	"errors"
	"math"

	"github.com/streamfeat/streamfeat/arena"
)

// errStale is put's answer for a value older than every bucket of a ring
// that is full of newer live buckets: it would only push one of them out.
var errStale = errors.New("older than every bucket of a full ring")

// bucket holds one (entity, feature) pair's moments for one bucket of time.
// It is pointer-free, so slabs of buckets are never scanned by the garbage
// collector, and 32 bytes, two to a cache line.
type bucket struct {
	// id is the bucket number modulo 2^32. Every bucket a ring holds lies
	// within a few windows of now (see rings.put), so the difference of two
	// ids read as int32 orders them correctly.
	id    uint32
	n     uint32 // a bucket holds at most one shard's values for 5 s: far below 2^32
	shift float64
	mean  float64
	m2    float64
}

// observe adds x to the bucket with Welford's update relative to the shift.
func (b *bucket) observe(x float64) {
	if b.n == 0 {
		*b = bucket{id: b.id, n: 1, shift: x}
		return
	}
	b.n++
	welford(float64(b.n), b.shift, &b.mean, &b.m2, x)
}

// welford updates the mean and M2 of the values' deviations from shift with
// x, where n already counts x.
func welford(n, shift float64, mean, m2 *float64, x float64) {
	d := x - shift
	delta := d - *mean
	*mean += delta / n
	*m2 += delta * (d - *mean)
}

// series is one feature's ring of buckets within an entity. The ring lives
// in the shard's bucket arena: n records from slot head on, wrapping at the
// block's end, sorted by bucket.
//
// TODO: with one ring per feature an event of ten features touches ten
// rings' cache lines; one ring per entity whose rows hold every feature's
// moments would touch one, which is what ingest needs to reach its 20M
// values/s target (docs/PERFORMANCE.md, Shortfalls).
type series struct {
	feature int32
	block   arena.Handle
	head    uint16
	n       uint16
	class   uint8
}

// windowSet holds the three windows a query can ask for, all ending at now:
// short, long, and baseline (the long window without the short one's buckets).
type windowSet struct {
	short, long, baseline moments
}

// pick returns the window w.
func (ws *windowSet) pick(w Window) moments {
	if w == Short {
		return ws.short
	}
	return ws.long
}

// rings stores every series' buckets of one shard.
type rings struct {
	geo     geometry
	buckets *arena.Arena[bucket]
}

// bucketClasses returns ring capacities: powers of two from 4, and last the
// most buckets a series can hold at once.
func bucketClasses(maxLive int) []int {
	var classes []int
	for size := 4; size < maxLive; size *= 2 {
		classes = append(classes, size)
	}
	return append(classes, maxLive)
}

func newRings(geo geometry) (*rings, error) {
	classes := bucketClasses(geo.maxLive())
	a, err := arena.New[bucket](max(8192, classes[len(classes)-1]), classes)
	if err != nil {
		return nil, err
	}
	return &rings{geo: geo, buckets: a}, nil
}

// block returns the series' ring storage, or nil for a series with none yet.
func (r *rings) block(sr *series) []bucket {
	if sr.block == 0 {
		return nil
	}
	return r.buckets.Block(sr.block, int(sr.class))
}

// slot maps the i-th oldest record of a ring to its index in blk.
func slot(sr *series, i int, blk []bucket) int {
	j := int(sr.head) + i
	if j >= len(blk) {
		j -= len(blk)
	}
	return j
}

// put adds x to bucket b of the series, creating the bucket record if needed.
// nowB is the bucket of the clock's now; b must not be older than the long
// window at nowB (the caller drops such events).
func (r *rings) put(sr *series, b, nowB int64, x float64) error {
	id := uint32(b)
	blk := r.block(sr)

	// Almost every event lands in the newest bucket.
	if sr.n > 0 {
		if last := &blk[slot(sr, int(sr.n)-1, blk)]; last.id == id {
			last.observe(x)
			return nil
		}
	}

	if sr.block != 0 && int(sr.n) == len(blk) {
		// Expired records stay until their room is needed or the sweep
		// trims them: queries skip them anyway, and expiring on every new
		// bucket would read the ring's head, another cache line, for
		// nothing.
		r.expire(sr, blk, nowB)
	}
	k := int(sr.n) // records older than b come first; k is where b goes
	for k > 0 && int32(blk[slot(sr, k-1, blk)].id-id) > 0 {
		k--
	}
	if k > 0 {
		if prev := &blk[slot(sr, k-1, blk)]; prev.id == id {
			prev.observe(x)
			return nil
		}
	}

	blk, err := r.makeRoom(sr, blk, nowB)
	if err != nil {
		return err
	}
	if int(sr.n) == len(blk) {
		// Full at the largest class, with every record live at nowB: only
		// possible when records newer than nowB exist (a producer that read
		// an older clock, or a clock that went back). The oldest bucket
		// gives way, and a value older than all of them is the one dropped.
		if k == 0 {
			return errStale
		}
		sr.head = uint16(slot(sr, 1, blk))
		sr.n--
		k--
	}
	for i := int(sr.n); i > k; i-- {
		blk[slot(sr, i, blk)] = blk[slot(sr, i-1, blk)]
	}
	blk[slot(sr, k, blk)] = bucket{id: id, n: 1, shift: x}
	sr.n++
	return nil
}

// expire drops the records older than the long window at nowB.
func (r *rings) expire(sr *series, blk []bucket, nowB int64) {
	oldest := -int32(r.geo.long - 1)
	for sr.n > 0 && int32(blk[sr.head].id-uint32(nowB)) < oldest {
		sr.head = uint16(slot(sr, 1, blk))
		sr.n--
	}
}

// makeRoom moves a full ring into a block of the next class, if there is
// one, and returns the ring's storage.
func (r *rings) makeRoom(sr *series, blk []bucket, nowB int64) ([]bucket, error) {
	if sr.block != 0 && int(sr.n) < len(blk) {
		return blk, nil
	}
	class := 0
	if sr.block != 0 {
		class = int(sr.class) + 1
		if class == r.buckets.Classes() {
			return blk, nil
		}
		if !r.geo.growByDoubling {
			class = max(class, r.buckets.ClassFor(r.predict(sr, blk, nowB)))
		}
	}
	return r.move(sr, blk, class)
}

// predict estimates how many records a full ring will hold once they span
// the whole long window, from the rate its records show so far, plus one
// record of room.
//
// Growing straight to that size matters for memory: a ring that doubled its
// way from 4 to 720 records would leave blocks of 4, 8, …, 512 behind, and
// when every entity grows at once nothing takes them, so they would hold
// more memory than the rings themselves.
func (r *rings) predict(sr *series, blk []bucket, nowB int64) int {
	if sr.n < 2 {
		return 0
	}
	// The rate is taken up to now, so a series that has gone quiet is
	// predicted to need less.
	oldest, newest := blk[sr.head], blk[slot(sr, int(sr.n)-1, blk)]
	span := int64(max(int32(newest.id-oldest.id), int32(uint32(nowB)-oldest.id)))
	if span < r.geo.long/8 {
		// Too short a history to extrapolate from: a burst of a few
		// minutes would pass for an hour of steady traffic.
		return 0
	}
	want := (int64(sr.n)-1)*r.geo.long/span + 2
	return int(min(want, int64(r.geo.maxLive())))
}

// move copies the ring's records, oldest first, into a new block of class and
// frees the old block.
func (r *rings) move(sr *series, blk []bucket, class int) ([]bucket, error) {
	h, err := r.copyInto(class, sr, blk)
	if err != nil {
		return blk, err
	}
	if sr.block != 0 {
		r.buckets.Free(sr.block, int(sr.class))
	}
	sr.block, sr.class, sr.head = h, uint8(class), 0
	return r.buckets.Block(h, class), nil
}

// copyInto allocates a block of class and copies the records of from, whose
// storage is blk (possibly in another arena), into it, oldest first.
func (r *rings) copyInto(class int, from *series, blk []bucket) (arena.Handle, error) {
	h, err := r.buckets.Alloc(class)
	if err != nil {
		return 0, err
	}
	dst := r.buckets.Block(h, class)
	for i := range int(from.n) {
		dst[i] = blk[slot(from, i, blk)]
	}
	return h, nil
}

// release frees the series' storage and empties it.
func (r *rings) release(sr *series) {
	if sr.block != 0 {
		r.buckets.Free(sr.block, int(sr.class))
	}
	sr.block, sr.head, sr.n = 0, 0, 0
}

// trim expires old records and moves a ring that is mostly empty into a
// smaller block, or frees it when nothing is left.
func (r *rings) trim(sr *series, nowB int64) error {
	blk := r.block(sr)
	r.expire(sr, blk, nowB)
	if sr.n == 0 {
		r.release(sr)
		return nil
	}
	if sr.class == 0 || int(sr.n)*4 > r.buckets.ClassSize(int(sr.class)) {
		return nil
	}
	// Mostly empty: shrink, but not below what the ring's rate predicts it
	// will need, or it would only grow back.
	want := int(sr.n) * 2
	if !r.geo.growByDoubling {
		want = max(want, r.predict(sr, blk, nowB))
	}
	if class := r.buckets.ClassFor(want); class < int(sr.class) {
		_, err := r.move(sr, blk, class)
		return err
	}
	return nil
}

// windows merges the series' records that fall in each window at nowB.
func (r *rings) windows(sr *series, nowB int64) windowSet {
	var ws windowSet
	blk := r.block(sr)
	shortFrom := -int32(r.geo.short - 1)
	longFrom := -int32(r.geo.long - 1)
	for i := int(sr.n) - 1; i >= 0; i-- {
		b := &blk[slot(sr, i, blk)]
		rel := int32(b.id - uint32(nowB))
		if rel < longFrom {
			break // sorted: everything older is out too
		}
		switch {
		case rel > 0: // ahead of now (wall clock skew): not in any window yet
		case rel >= shortFrom:
			ws.short.merge(int64(b.n), b.shift, b.mean, b.m2)
		default:
			ws.baseline.merge(int64(b.n), b.shift, b.mean, b.m2)
		}
	}
	ws.long = ws.short
	ws.long.add(ws.baseline)
	return ws
}

// popBucket holds one feature's moments over all of a shard's entities for
// one bucket.
type popBucket struct {
	id    int64
	n     int64
	shift float64
	mean  float64
	m2    float64
}

// popRing is a dense ring of population buckets indexed by bucket number
// modulo its power-of-two length, which exceeds the long window plus the
// future skew, so two live buckets never share a slot.
type popRing []popBucket

func newPopRing(geo geometry) popRing { return make(popRing, popRingLen(geo)) }

// popRingLen is the power of two above the most buckets live at once.
func popRingLen(geo geometry) int {
	size := 1
	for size <= geo.maxLive() {
		size *= 2
	}
	return size
}

// observe adds x to bucket b.
func (p popRing) observe(b int64, x float64) {
	pb := &p[uint64(b)&uint64(len(p)-1)]
	switch {
	case pb.id == b && pb.n > 0:
		pb.n++
		welford(float64(pb.n), pb.shift, &pb.mean, &pb.m2, x)
	case pb.id > b && pb.n > 0:
		// The slot holds a bucket a whole ring newer, so b is outside every
		// window that holds that bucket: only a clock that went back gets here.
	default:
		*pb = popBucket{id: b, n: 1, shift: x}
	}
}

// windows merges the buckets that fall in each window at nowB.
func (p popRing) windows(geo geometry, nowB int64) windowSet {
	var ws windowSet
	mask := uint64(len(p) - 1)
	// Count k back from now rather than compare j with nowB-long, which
	// wraps around when nowB is near the bottom of the int64 range.
	for k := range geo.long {
		if nowB < math.MinInt64+k {
			break // no bucket precedes MinInt64
		}
		j := nowB - k
		pb := &p[uint64(j)&mask]
		if pb.id != j || pb.n == 0 {
			continue
		}
		if k < geo.short {
			ws.short.merge(pb.n, pb.shift, pb.mean, pb.m2)
		} else {
			ws.baseline.merge(pb.n, pb.shift, pb.mean, pb.m2)
		}
	}
	ws.long = ws.short
	ws.long.add(ws.baseline)
	return ws
}
