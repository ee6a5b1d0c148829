package streamfeat

import (
	"errors"
	"math"
	"slices"

	"github.com/streamfeat/streamfeat/arena"
)

// errStale is put's answer for a value older than every row of a ring that
// is full of newer live rows: it would only push one of them out.
var errStale = errors.New("older than every bucket of a full ring")

// bucket holds one (entity, feature) pair's moments for one bucket of time:
// a cell of a ring row. It is pointer-free, so slabs of buckets are never
// scanned by the garbage collector, and 32 bytes, two to a cache line.
type bucket struct {
	// id is the bucket number modulo 2^32; every cell of a row carries its
	// row's. Every row a ring holds lies within a few windows of now (see
	// rings.put), so the difference of two ids read as int32 orders them
	// correctly.
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
	// 1/n does not depend on the previous update, so the division runs
	// beside the chain of updates to one bucket instead of on it.
	inv := 1 / n
	d := x - shift
	delta := d - *mean
	*mean += delta * inv
	*m2 += delta * (d - *mean)
}

// groupWidth is the most features one ring holds. It makes a group header,
// with its features' ids, exactly one 64-byte cache line.
const groupWidth = 13

// group is one ring of up to groupWidth of an entity's features. Each row
// of the ring is one bucket: width cells, cell c for features[c], so an
// event writes one run of adjacent cells instead of a cache line per
// feature. A cell whose n is 0 had no value in that bucket.
//
// The ring lives in the shard's bucket arena: n rows from row head on,
// wrapping after cap rows, sorted by bucket.
type group struct {
	block    arena.Handle
	head     uint16
	n        uint16
	cap      uint16 // rows the block holds; 0 without a block
	class    uint8
	width    uint8
	features [groupWidth]int32
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

// rings stores every group's rows of one shard.
type rings struct {
	geo     geometry
	buckets *arena.Arena[bucket]
}

// initialRows is the capacity of a group's first block.
const initialRows = 4

// bucketClasses returns block sizes in cells: a ladder of powers of two and
// the sizes halfway between them, so that rounding up wastes at most a
// third, and the exact size of a full ring of each width.
func bucketClasses(maxLive int) []int {
	var classes []int
	for size := initialRows; size < maxLive*groupWidth; size *= 2 {
		classes = append(classes, size)
		if half := size + size/2; half < maxLive*groupWidth {
			classes = append(classes, half)
		}
	}
	for w := 1; w <= groupWidth; w++ {
		classes = append(classes, maxLive*w)
	}
	slices.Sort(classes)
	return slices.Compact(classes)
}

func newRings(geo geometry) (*rings, error) {
	classes := bucketClasses(geo.maxLive())
	a, err := arena.New[bucket](max(8192, classes[len(classes)-1]), classes)
	if err != nil {
		return nil, err
	}
	return &rings{geo: geo, buckets: a}, nil
}

// block returns the group's ring storage, or nil for a group with none yet.
func (r *rings) block(g *group) []bucket {
	if g.block == 0 {
		return nil
	}
	return r.buckets.Block(g.block, int(g.class))
}

// slot maps the i-th oldest row of a ring to its row in the block.
func slot(g *group, i int) int {
	j := int(g.head) + i
	if j >= int(g.cap) {
		j -= int(g.cap)
	}
	return j
}

// row returns the cells of the i-th oldest row.
func row(g *group, blk []bucket, i int) []bucket {
	w := int(g.width)
	j := slot(g, i) * w
	return blk[j : j+w : j+w]
}

// rowID returns the bucket id of the i-th oldest row.
func rowID(g *group, blk []bucket, i int) uint32 {
	return blk[slot(g, i)*int(g.width)].id
}

// put adds x to column col of bucket b's row, creating the row if needed.
// nowB is the bucket of the clock's now; b must not be older than the long
// window at nowB (the caller drops such events).
func (r *rings) put(g *group, col int, b, nowB int64, x float64) error {
	id := uint32(b)
	blk := r.block(g)

	// Almost every value lands in the newest row.
	if g.n > 0 {
		if c := &blk[slot(g, int(g.n)-1)*int(g.width)+col]; c.id == id {
			c.observe(x)
			return nil
		}
	}

	if int(g.n) == int(g.cap) && g.block != 0 && r.expired(g, blk, 0, nowB) {
		// Expired rows stay until their room is needed or the sweep trims
		// them: queries skip them anyway, and expiring on every new bucket
		// would read the ring's head, another cache line, for nothing.
		// One row makes the room, and the new newest row takes its slot,
		// so the only row read is the one about to be written; the rows
		// after it go one at a time, as room is needed again.
		g.head = uint16(slot(g, 1))
		g.n--
	}
	k := int(g.n) // rows older than b come first; k is where b goes
	for k > 0 && int32(rowID(g, blk, k-1)-id) > 0 {
		k--
	}
	if k > 0 && rowID(g, blk, k-1) == id {
		row(g, blk, k-1)[col].observe(x)
		return nil
	}

	blk, err := r.makeRoom(g, blk, nowB)
	if err != nil {
		return err
	}
	if g.n == g.cap {
		// Full at the most rows a ring can need, with every row live at
		// nowB: only possible when rows newer than nowB exist (a producer
		// that read an older clock, or a clock that went back). The oldest
		// row gives way, and a value older than all of them is the one
		// dropped.
		if k == 0 {
			return errStale
		}
		g.head = uint16(slot(g, 1))
		g.n--
		k--
	}
	for i := int(g.n); i > k; i-- {
		copy(row(g, blk, i), row(g, blk, i-1))
	}
	cells := row(g, blk, k)
	for c := range cells {
		cells[c] = bucket{id: id}
	}
	cells[col] = bucket{id: id, n: 1, shift: x}
	g.n++
	return nil
}

// touch reads the group's newest row, so that it is in the cache when an
// event is applied, and returns what it read.
func (r *rings) touch(g *group) uint32 {
	if g.n == 0 {
		return 0
	}
	return rowID(g, r.block(g), int(g.n)-1)
}

// expired reports whether the i-th oldest row lies before the long window
// at nowB.
func (r *rings) expired(g *group, blk []bucket, i int, nowB int64) bool {
	return int32(rowID(g, blk, i)-uint32(nowB)) < -int32(r.geo.long-1)
}

// expire drops the rows older than the long window at nowB.
func (r *rings) expire(g *group, blk []bucket, nowB int64) {
	for g.n > 0 && r.expired(g, blk, 0, nowB) {
		g.head = uint16(slot(g, 1))
		g.n--
	}
}

// makeRoom moves a full ring into a larger block, unless it holds the most
// rows a ring can need, and returns the ring's storage.
func (r *rings) makeRoom(g *group, blk []bucket, nowB int64) ([]bucket, error) {
	if g.block != 0 && g.n < g.cap {
		return blk, nil
	}
	rows := initialRows
	if g.block != 0 {
		if int(g.cap) >= r.geo.maxLive() {
			return blk, nil
		}
		// Without a rate to go by, double, as halfway steps would leave
		// more blocks behind while every new entity grows at once.
		rows = 2 * int(g.cap)
		if p := r.predict(g, blk, nowB); p > 0 && !r.geo.growByDoubling {
			rows = max(int(g.cap)+1, p)
		}
	}
	return r.move(g, blk, r.classFor(rows, int(g.width)), int(g.width))
}

// classFor returns the arena class for a ring of rows rows of width cells.
func (r *rings) classFor(rows, width int) int {
	return r.buckets.ClassFor(min(rows, r.geo.maxLive()) * width)
}

// predict estimates how many rows a full ring will hold once they span the
// whole long window, from the rate its rows show so far, plus one row of
// room.
//
// Growing straight to that size matters for memory: a ring that grew step
// by step from 4 to 720 rows would leave a block of every size behind, and
// when every entity grows at once nothing takes them, so they would hold
// more memory than the rings themselves.
func (r *rings) predict(g *group, blk []bucket, nowB int64) int {
	if g.n < 2 {
		return 0
	}
	// The rate is taken up to now, so a group that has gone quiet is
	// predicted to need less.
	oldest, newest := rowID(g, blk, 0), rowID(g, blk, int(g.n)-1)
	span := int64(max(int32(newest-oldest), int32(uint32(nowB)-oldest)))
	if span < r.geo.long/8 {
		// Too short a history to extrapolate from: a burst of a few
		// minutes would pass for an hour of steady traffic.
		return 0
	}
	want := (int64(g.n)-1)*r.geo.long/span + 2
	return int(min(want, int64(r.geo.maxLive())))
}

// move copies the ring's rows, oldest first, into a new block of class as
// rows of width cells, and frees the old block.
func (r *rings) move(g *group, blk []bucket, class, width int) ([]bucket, error) {
	h, err := r.copyInto(class, g, blk, width)
	if err != nil {
		return blk, err
	}
	n := g.n
	r.release(g)
	r.attach(g, h, class, width)
	g.n = n
	return r.buckets.Block(h, class), nil
}

// attach makes block h of class the group's empty storage for rows of width
// cells.
func (r *rings) attach(g *group, h arena.Handle, class, width int) {
	rows := min(r.buckets.ClassSize(class)/width, r.geo.maxLive())
	g.block, g.class, g.head, g.n = h, uint8(class), 0, 0
	g.cap, g.width = uint16(rows), uint8(width)
}

// copyInto allocates a block of class and copies the rows of from, whose
// storage is blk (possibly in another arena), into it, oldest first, as rows
// of width cells: the cells past from's width get the row's id and no value.
func (r *rings) copyInto(class int, from *group, blk []bucket, width int) (arena.Handle, error) {
	h, err := r.buckets.Alloc(class)
	if err != nil {
		return 0, err
	}
	dst := r.buckets.Block(h, class)
	for i := range int(from.n) {
		src := row(from, blk, i)
		out := dst[i*width : (i+1)*width]
		copy(out, src)
		for c := len(src); c < width; c++ {
			out[c] = bucket{id: src[0].id}
		}
	}
	return h, nil
}

// release frees the group's storage and empties it; its columns stay.
func (r *rings) release(g *group) {
	if g.block != 0 {
		r.buckets.Free(g.block, int(g.class))
	}
	g.block, g.head, g.n, g.cap = 0, 0, 0, 0
}

// widen adds columns for features to the group, which must have room for
// them, moving its rows into a block of the new width.
func (r *rings) widen(g *group, features []int32) error {
	was := int(g.width)
	width := was + len(features)
	if g.n > 0 {
		if _, err := r.move(g, r.block(g), r.classFor(int(g.cap), width), width); err != nil {
			return err
		}
	} else {
		r.release(g) // the next put allocates for the new width
	}
	copy(g.features[was:], features)
	g.width = uint8(width)
	return nil
}

// copyGroup makes dst, an empty group of another shard state, a copy of src,
// whose storage is blk, with its rows in a block just large enough.
func (r *rings) copyGroup(dst, src *group, blk []bucket) error {
	dst.features, dst.width = src.features, src.width
	if src.n == 0 {
		return nil
	}
	class := r.classFor(int(src.n), int(src.width))
	h, err := r.copyInto(class, src, blk, int(src.width))
	if err != nil {
		return err
	}
	r.attach(dst, h, class, int(src.width))
	dst.n = src.n
	return nil
}

// trim expires old rows and moves a ring that is mostly empty into a
// smaller block, or frees it when nothing is left.
func (r *rings) trim(g *group, nowB int64) error {
	blk := r.block(g)
	r.expire(g, blk, nowB)
	if g.n == 0 {
		r.release(g)
		return nil
	}
	if int(g.n)*4 > int(g.cap) || int(g.cap) <= initialRows {
		return nil
	}
	// Mostly empty: shrink, but not below what the ring's rate predicts it
	// will need, or it would only grow back.
	want := int(g.n) * 2
	if !r.geo.growByDoubling {
		want = max(want, r.predict(g, blk, nowB))
	}
	if class := r.classFor(want, int(g.width)); class < int(g.class) {
		_, err := r.move(g, blk, class, int(g.width))
		return err
	}
	return nil
}

// windows merges column col's cells that fall in each window at nowB.
func (r *rings) windows(g *group, col int, nowB int64) windowSet {
	var short, baseline lanes
	blk := r.block(g)
	shortFrom := -int32(r.geo.short - 1)
	longFrom := -int32(r.geo.long - 1)
	for i := int(g.n) - 1; i >= 0; i-- {
		b := &row(g, blk, i)[col]
		rel := int32(b.id - uint32(nowB))
		if rel < longFrom {
			break // sorted: everything older is out too
		}
		switch {
		case b.n == 0: // no value of this feature in the bucket
		case rel > 0: // ahead of now (wall clock skew): not in any window yet
		case rel >= shortFrom:
			short[b.id%uint32(len(short))].merge(int64(b.n), b.shift, b.mean, b.m2)
		default:
			baseline[b.id%uint32(len(baseline))].merge(int64(b.n), b.shift, b.mean, b.m2)
		}
	}
	return newWindowSet(short.sum(), baseline.sum())
}

// lanes are partial merges of one window's buckets, by bucket number modulo
// 4. Chan's merge of a bucket waits for the merge before it, and a single
// chain of them through the 720 buckets of a long window took most of a
// query's time; four chains run side by side.
//
// Plain sums of the deviations from one reference, with no division, were
// tried: on a million values with the reference 1000 standard deviations out
// they lost 2e-9 of the variance, more than TestLongWindowPrecisionWithOutlier
// allows.
type lanes [4]moments

// sum merges the lanes in a fixed order, so equal states give equal bits.
func (l *lanes) sum() moments {
	m := l[0]
	for _, other := range l[1:] {
		m.add(other)
	}
	return m
}

// newWindowSet returns the windows made of the short window's buckets and
// the baseline's.
func newWindowSet(short, baseline moments) windowSet {
	ws := windowSet{short: short, baseline: baseline, long: short}
	ws.long.add(baseline)
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
	var short, baseline lanes
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
			short[k%int64(len(short))].merge(pb.n, pb.shift, pb.mean, pb.m2)
		} else {
			baseline[k%int64(len(baseline))].merge(pb.n, pb.shift, pb.mean, pb.m2)
		}
	}
	return newWindowSet(short.sum(), baseline.sum())
}
