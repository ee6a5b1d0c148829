package streamfeat

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/dolthub/swiss"
)

// snapshotImage is a decoded snapshot: shard states ready to install.
type snapshotImage struct {
	names  []string
	shards []shardState
	nowMs  int64 // the event clock's now, or MinInt64
}

// Smallest encodings, in bytes, used to bound a count by the bytes left.
const (
	minEntityBytes = 4  // key length, one key byte, lastMs, series count
	minSeriesBytes = 28 // feature, bucket count, one bucket
	minBucketBytes = 26 // bucket number, count, three floats
	minNameBytes   = 2  // length, one byte
)

// decoder reads a snapshot stream into a snapshotImage for engine e.
//
// It never trusts a length: a section's length is capped by
// maxSectionBytes and read through a buffer that grows only as bytes
// arrive, and every count inside a section is capped by what the engine can
// hold and by the bytes left in the section.
type decoder struct {
	e        *Engine
	r        io.Reader
	buf      bytes.Buffer
	sections uint64 // sections read so far, the end excepted
	img      snapshotImage
	tmp      []*shard // builders of img.shards
	seen     []uint64 // per feature id: the last entity (numbered) that had it
	entityNo uint64

	// Scratch for one entity's series, which restore lays out in rows.
	series  []seriesRead
	buckets []bucket
	numbers []int64 // bucket numbers of buckets
	rows    []int64 // the buckets of the ring being laid out
	merged  []int64 // scratch for groups

	maxFeature int // the largest feature id read so far
}

// seriesRead is one series of the entity being read: buckets[first:end].
type seriesRead struct {
	feature    int32
	first, end int
}

// decodeSnapshot reads and checks a whole snapshot without touching the
// engine's state.
func (e *Engine) decodeSnapshot(r io.Reader) (*snapshotImage, error) {
	d := &decoder{e: e, r: r}
	d.img.nowMs = math.MinInt64
	if err := d.decode(); err != nil {
		return nil, err
	}
	return &d.img, nil
}

func (d *decoder) decode() error {
	var head [8]byte
	if _, err := io.ReadFull(d.r, head[:]); err != nil {
		return d.readErr("magic", err)
	}
	if string(head[:6]) != snapMagic {
		return fmt.Errorf("%w: starts with %q, not %q: not a streamfeat snapshot",
			ErrBadSnapshot, head[:6], snapMagic)
	}
	if v := binary.LittleEndian.Uint16(head[6:]); v != snapVersion {
		return fmt.Errorf("%w: format version %d; this build reads version %d",
			ErrBadSnapshot, v, snapVersion)
	}

	// Sections come in this order: H, then E and P in any order, then S,
	// then Z. The schema is written last so that it names every feature the
	// shards' copies use, even one registered while they were taken.
	allowed := string(secHeader)
	for {
		kind, p, err := d.section()
		if err != nil {
			return err
		}
		if !strings.ContainsRune(allowed, rune(kind)) {
			return d.bad(kind, "section out of order: want one of %q", allowed)
		}
		switch kind {
		case secHeader:
			err, allowed = d.header(p), string([]byte{secEntities, secPop, secSchema})
		case secSchema:
			err, allowed = d.schema(p), string(secEnd)
		case secEntities:
			err = d.entities(p)
		case secPop:
			err = d.pop(p)
		case secEnd:
			return d.end(p)
		default:
			err = d.bad(kind, "unknown section")
		}
		if err != nil {
			return err
		}
		d.sections++
	}
}

// section reads one section and checks its checksum. The payload aliases
// d.buf until the next call.
func (d *decoder) section() (byte, *payload, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(d.r, hdr[:]); err != nil {
		return 0, nil, d.readErr(fmt.Sprintf("section %d", d.sections+1), err)
	}
	kind, n := hdr[0], binary.LittleEndian.Uint32(hdr[1:])
	if n > maxSectionBytes {
		return 0, nil, d.bad(kind, "length %d over the limit of %d", n, maxSectionBytes)
	}
	d.buf.Reset()
	d.buf.Write(hdr[:])
	if _, err := io.CopyN(&d.buf, d.r, int64(n)+4); err != nil {
		return 0, nil, d.readErr(fmt.Sprintf("section %d (%q) of %d bytes", d.sections+1, kind, n), err)
	}
	b := d.buf.Bytes()
	body, sum := b[:5+n], binary.LittleEndian.Uint32(b[5+n:])
	if got := crc32.Checksum(body, castagnoli); got != sum {
		return 0, nil, d.bad(kind, "checksum %08x, want %08x: the file is corrupt", got, sum)
	}
	return kind, &payload{b: body[5:]}, nil
}

func (d *decoder) readErr(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: truncated in %s", ErrBadSnapshot, what)
	}
	return fmt.Errorf("streamfeat: snapshot: read %s: %w", what, err)
}

func (d *decoder) bad(kind byte, format string, args ...any) error {
	return fmt.Errorf("%w: section %d (%q): %s", ErrBadSnapshot, d.sections+1, kind,
		fmt.Sprintf(format, args...))
}

// check turns a payload's parse error, or bytes left over, into an error.
func (d *decoder) check(kind byte, p *payload) error {
	if p.err == nil && len(p.b) != 0 {
		p.err = fmt.Errorf("%d bytes left over", len(p.b))
	}
	if errors.Is(p.err, ErrSnapshotMismatch) {
		return p.err
	}
	if p.err != nil {
		return d.bad(kind, "%v", p.err)
	}
	return nil
}

func (d *decoder) header(p *payload) error {
	width, short, long := p.uvarint(), p.uvarint(), p.uvarint()
	shards, clock := p.uvarint(), p.uvarint()
	if err := d.check(secHeader, p); err != nil {
		return err
	}

	e, g := d.e, d.e.geo
	if width != uint64(g.widthMs) || short != uint64(g.short) || long != uint64(g.long) {
		return fmt.Errorf("%w: buckets of %dms and windows of %d and %d buckets; "+
			"this engine has %v, %d and %d", ErrSnapshotMismatch, width, short, long,
			time.Duration(g.widthMs)*time.Millisecond, g.short, g.long)
	}
	if shards != uint64(len(e.shards)) {
		return fmt.Errorf("%w: %d shards; this engine has %d", ErrSnapshotMismatch,
			shards, len(e.shards))
	}
	if want := map[bool]uint64{false: clockWall, true: clockEvent}[g.eventTime]; clock != want {
		return fmt.Errorf("%w: taken with the %s clock; this engine has the %s clock",
			ErrSnapshotMismatch, clockName(clock), clockName(want))
	}

	d.tmp = make([]*shard, len(e.shards))
	d.seen = make([]uint64, e.schema.max+1)
	return nil
}

// builder returns the builder of shard i, making it on first use.
func (d *decoder) builder(i int) (*shard, error) {
	if s := d.tmp[i]; s != nil {
		return s, nil
	}
	r, err := newRings(d.e.geo)
	if err != nil {
		return nil, err
	}
	lists, err := newGroupArena(d.e.cfg.MaxFeatures)
	if err != nil {
		return nil, err
	}
	d.tmp[i] = &shard{id: i, geo: d.e.geo, maxFeatures: d.e.cfg.MaxFeatures, shardState: shardState{
		index:      swiss.NewMap[string, uint32](64),
		rings:      r,
		lists:      lists,
		nextSweep:  math.MinInt64,
		appliedNow: math.MinInt64,
	}}
	return d.tmp[i], nil
}

func clockName(kind uint64) string {
	switch kind {
	case clockWall:
		return "wall"
	case clockEvent:
		return "event"
	}
	return fmt.Sprintf("unknown (%d)", kind)
}

func (d *decoder) schema(p *payload) error {
	n := p.count(maxFeaturesLimit, minNameBytes)
	seen := make(map[string]bool, n)
	for range n {
		name := p.str(MaxFeatureNameBytes)
		if p.err != nil {
			break
		}
		if err := checkFeatureName(name); err != nil {
			p.fail("%v", err)
			break
		}
		if seen[name] {
			p.fail("feature %q twice", name)
			break
		}
		seen[name] = true
		d.img.names = append(d.img.names, name)
	}
	if err := d.check(secSchema, p); err != nil {
		return err
	}
	if n < d.maxFeature {
		return d.bad(secSchema, "%d features named; ids up to %d used", n, d.maxFeature)
	}
	if max := d.e.schema.max; n > max {
		return fmt.Errorf("%w: %d features; this engine allows %d (Config.MaxFeatures)",
			ErrSnapshotMismatch, n, max)
	}
	return nil
}

// entities reads a chunk of one shard's entities into its builder.
func (d *decoder) entities(p *payload) error {
	s := d.shardOf(p)
	n := 0
	if p.err == nil {
		n = int(p.u32())
		if n > len(p.b)/minEntityBytes {
			p.fail("%d entities in %d bytes", n, len(p.b))
		}
	}
	for range n {
		if p.err != nil {
			break
		}
		d.entity(p, s)
	}
	return d.check(secEntities, p)
}

// shardOf reads a shard number.
func (d *decoder) shardOf(p *payload) *shard {
	i := p.uvarint()
	if p.err == nil && i >= uint64(len(d.tmp)) {
		p.fail("shard %d of %d", i, len(d.tmp))
	}
	if p.err != nil {
		return nil
	}
	s, err := d.builder(int(i))
	if err != nil {
		p.fail("%v", err)
	}
	return s
}

// entity reads one entity and its series into s.
func (d *decoder) entity(p *payload, s *shard) {
	key := p.str(MaxEntityIDBytes)
	lastMs := p.varint()
	nSeries := p.count(maxFeaturesLimit, minSeriesBytes)
	d.fits(p, nSeries)
	if p.err != nil {
		return
	}
	if !validEntity(key) {
		p.fail("entity id %q: %v", key, checkEntity(key))
		return
	}
	if d.e.shardOf(key) != s.id {
		p.fail("entity %q in shard %d; it belongs in shard %d", key, s.id, d.e.shardOf(key))
		return
	}
	if _, dup := s.index.Get(key); dup {
		p.fail("entity %q twice", key)
		return
	}

	ent := &s.entities[s.newEntity(key)]
	ent.lastMs = lastMs
	d.entityNo++
	d.series, d.buckets, d.numbers = d.series[:0], d.buckets[:0], d.numbers[:0]
	for range nSeries {
		f := p.uvarint()
		d.feature(p, f)
		if p.err == nil && d.seen[f] == d.entityNo {
			p.fail("entity %q: feature %d twice", key, f)
		}
		if p.err != nil {
			return
		}
		d.seen[f] = d.entityNo
		first := len(d.buckets)
		d.ring(p, s, s.geo.bucketOf(lastMs))
		d.series = append(d.series, seriesRead{feature: int32(f), first: first, end: len(d.buckets)})
	}
	d.groups(p, s, ent)
}

// groups lays the entity's series out in rings, in the order read. A ring
// takes the next series while it has a column free and the buckets of its
// series together fit one ring. They always fit for a snapshot of state
// whose clock only went forward, but an entity written while the clock was
// ahead keeps rows up to a window ahead of now, and two rings whose rows
// fit apart could then overflow one.
func (d *decoder) groups(p *payload, s *shard, ent *entity) {
	start, gi := 0, 0
	d.rows = d.rows[:0]
	for i, sr := range d.series {
		merged := unionSorted(d.merged[:0], d.rows, d.numbers[sr.first:sr.end])
		if i > start && (i-start == groupWidth || len(merged) > s.geo.maxLive()) {
			d.group(p, s, ent, gi, d.series[start:i])
			if p.err != nil {
				return
			}
			start, gi = i, gi+1
			merged = append(merged[:0], d.numbers[sr.first:sr.end]...)
		}
		d.rows, d.merged = merged, d.rows
	}
	if len(d.series) > start {
		d.group(p, s, ent, gi, d.series[start:])
	}
}

// unionSorted appends the union of the ascending lists a and b to dst.
func unionSorted(dst, a, b []int64) []int64 {
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0] < b[0]:
			dst, a = append(dst, a[0]), a[1:]
		case b[0] < a[0]:
			dst, b = append(dst, b[0]), b[1:]
		default:
			dst, a, b = append(dst, a[0]), a[1:], b[1:]
		}
	}
	dst = append(dst, a...)
	return append(dst, b...)
}

// ring reads a series' buckets into d.buckets and their numbers into
// d.numbers. Every bucket must be after the one before, not after the
// entity's newest (lastB), and within 2^30 buckets before it, so that
// 32-bit ids order them (see bucket.id).
func (d *decoder) ring(p *payload, s *shard, lastB int64) {
	n := p.count(s.geo.maxLive(), minBucketBytes)
	if p.err == nil && n == 0 {
		p.fail("series with no bucket")
	}
	if p.err != nil {
		return
	}
	var first, b int64
	for k := range n {
		if k == 0 {
			b = p.varint()
			first = b
		} else {
			delta := p.uvarint()
			if p.err == nil && (delta == 0 || delta > 1<<30 || b > math.MaxInt64-int64(delta)) {
				p.fail("bucket step %d after bucket %d", delta, b)
			}
			b += int64(delta)
		}
		cnt := p.uvarint()
		shift, mean, m2 := p.float(), p.float(), p.float()
		if p.err == nil && (cnt < 1 || cnt > math.MaxUint32) {
			p.fail("bucket %d: count %d", b, cnt)
		}
		if p.err != nil {
			return
		}
		d.buckets = append(d.buckets, bucket{id: uint32(b), n: uint32(cnt), shift: shift, mean: mean, m2: m2})
		d.numbers = append(d.numbers, b)
	}
	// The oldest bucket must lie within 2^30 buckets of the newest event,
	// or its 32-bit id could alias a bucket of the current window.
	if b > lastB || uint64(lastB-first) >= 1<<30 {
		p.fail("buckets %d to %d with the newest event in bucket %d", first, b, lastB)
	}
}

// group lays the series of chunk out as the entity's i-th group: a row for
// every bucket that any of them has, which d.rows lists.
func (d *decoder) group(p *payload, s *shard, ent *entity, i int, chunk []seriesRead) {
	if i > 0 {
		if err := s.addGroup(ent); err != nil {
			p.fail("entity %q: %v", ent.key, err)
			return
		}
	}
	g := s.groupAt(ent, i)
	for c, sr := range chunk {
		g.features[c] = sr.feature
	}

	w := len(chunk)
	class := s.rings.classFor(len(d.rows), w)
	h, err := s.rings.buckets.Alloc(class)
	if err != nil {
		p.fail("%v", err)
		return
	}
	s.rings.attach(g, h, class, w)
	g.n = uint16(len(d.rows))
	blk := s.rings.buckets.Block(h, class)
	for r, b := range d.rows {
		for c := range w {
			blk[r*w+c] = bucket{id: uint32(b)}
		}
	}
	for c, sr := range chunk {
		for k := sr.first; k < sr.end; k++ {
			r, _ := slices.BinarySearch(d.rows, d.numbers[k])
			blk[r*w+c] = d.buckets[k]
		}
	}
}

// feature checks a feature id against the engine's limit and notes the
// largest, which the schema must name.
func (d *decoder) feature(p *payload, f uint64) {
	if p.err == nil && (f < 1 || f > maxFeaturesLimit) {
		p.fail("feature id %d: want 1 to %d", f, maxFeaturesLimit)
	}
	d.fits(p, int(f))
	if p.err == nil {
		d.maxFeature = max(d.maxFeature, int(f))
	}
}

// fits checks that this engine can hold n features.
func (d *decoder) fits(p *payload, n int) {
	if p.err == nil && n > d.e.schema.max {
		p.err = fmt.Errorf("%w: %d features or more; this engine allows %d (Config.MaxFeatures)",
			ErrSnapshotMismatch, n, d.e.schema.max)
	}
}

// pop reads one shard's population ring of one feature.
func (d *decoder) pop(p *payload) error {
	s := d.shardOf(p)
	f := p.uvarint()
	d.feature(p, f)
	if p.err == nil && int(f) < len(s.pop) && s.pop[f] != nil {
		p.fail("feature %d twice in shard %d", f, s.id)
	}
	if p.err != nil {
		return d.check(secPop, p)
	}

	// The count comes first: a ring is allocated only for a section that
	// brings buckets for it, as the encoder never writes an empty one.
	n := p.count(popRingLen(s.geo), minBucketBytes)
	if p.err == nil && n == 0 {
		p.fail("population of feature %d with no bucket", f)
	}
	if p.err != nil {
		return d.check(secPop, p)
	}
	ring := s.popFor(int32(f))
	for range n {
		id, cnt := p.varint(), p.uvarint()
		shift, mean, m2 := p.float(), p.float(), p.float()
		if p.err != nil {
			break
		}
		pb := &ring[uint64(id)&uint64(len(ring)-1)]
		if cnt < 1 || cnt > math.MaxInt64 || pb.n != 0 {
			p.fail("bucket %d: count %d, or a second bucket in its slot", id, cnt)
			break
		}
		*pb = popBucket{id: id, n: int64(cnt), shift: shift, mean: mean, m2: m2}
	}
	return d.check(secPop, p)
}

// end reads the closing section and checks that nothing follows it.
func (d *decoder) end(p *payload) error {
	now, sections := p.varint(), p.uvarint()
	if err := d.check(secEnd, p); err != nil {
		return err
	}
	if sections != d.sections {
		return d.bad(secEnd, "%d sections written, %d read", sections, d.sections)
	}
	var one [1]byte
	if n, _ := io.ReadFull(d.r, one[:]); n != 0 {
		return fmt.Errorf("%w: data after the end section", ErrBadSnapshot)
	}

	if d.e.geo.eventTime {
		d.img.nowMs = now
	}
	d.img.shards = make([]shardState, len(d.tmp))
	for i := range d.tmp {
		s, err := d.builder(i)
		if err != nil {
			return err
		}
		// A batch applied after the restore is judged by no older a now
		// than the snapshot's: nothing older can be in any window.
		s.appliedNow = d.img.nowMs
		d.img.shards[i] = s.shardState
	}
	return nil
}

// payload parses a section's payload. The first error sticks, and every
// later read returns zero.
type payload struct {
	b   []byte
	err error
}

func (p *payload) fail(format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf(format, args...)
	}
}

func (p *payload) uvarint() uint64 {
	if p.err != nil {
		return 0
	}
	x, n := binary.Uvarint(p.b)
	if n <= 0 {
		p.fail("bad or truncated number")
		return 0
	}
	p.b = p.b[n:]
	return x
}

func (p *payload) varint() int64 {
	if p.err != nil {
		return 0
	}
	x, n := binary.Varint(p.b)
	if n <= 0 {
		p.fail("bad or truncated number")
		return 0
	}
	p.b = p.b[n:]
	return x
}

func (p *payload) u32() uint32 {
	if p.err == nil && len(p.b) < 4 {
		p.fail("truncated")
	}
	if p.err != nil {
		return 0
	}
	x := binary.LittleEndian.Uint32(p.b)
	p.b = p.b[4:]
	return x
}

// float reads a float64, which must be finite: the engine never stores a
// NaN or an infinity.
func (p *payload) float() float64 {
	if p.err == nil && len(p.b) < 8 {
		p.fail("truncated")
	}
	if p.err != nil {
		return 0
	}
	x := math.Float64frombits(binary.LittleEndian.Uint64(p.b))
	p.b = p.b[8:]
	if math.IsNaN(x) || math.IsInf(x, 0) {
		p.fail("value %v", x)
		return 0
	}
	return x
}

// str reads a string of at most limit bytes.
func (p *payload) str(limit int) string {
	n := p.uvarint()
	if p.err == nil && (n > uint64(limit) || n > uint64(len(p.b))) {
		p.fail("string of %d bytes: limit %d, %d left", n, limit, len(p.b))
	}
	if p.err != nil {
		return ""
	}
	s := string(p.b[:n])
	p.b = p.b[n:]
	return s
}

// count reads a number of items of at least minBytes each, at most limit.
func (p *payload) count(limit, minBytes int) int {
	n := p.uvarint()
	if p.err == nil && (n > uint64(limit) || n > uint64(len(p.b)/minBytes)) {
		p.fail("count %d: limit %d, %d bytes left", n, limit, len(p.b))
	}
	if p.err != nil {
		return 0
	}
	return int(n)
}
