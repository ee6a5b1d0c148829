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

// TestRestoreRefusesAliasedBucket: a bucket 2^32 buckets before its entity's
// newest event has the same 32-bit id as a current one; restored, it would
// count as live. The decoder refuses it.
func TestRestoreRefusesAliasedBucket(t *testing.T) {
	cfg := Config{Shards: 4, Clock: NewEventClock(), BucketWidth: time.Second,
		ShortBuckets: 10, LongBuckets: 60, EntityTTL: 2 * time.Minute}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c := newCraft(1000, 10, 60, 4, 1) // width ms, short, long, shards, event clock

	var p []byte
	p = binary.AppendUvarint(p, uint64(e.shardOf("k")))
	p = binary.LittleEndian.AppendUint32(p, 1) // entities in the chunk
	p = append(binary.AppendUvarint(p, 1), 'k')
	p = binary.AppendVarint(p, 999_500) // newest event, bucket 999
	p = binary.AppendUvarint(p, 1)      // one series, feature 1, one bucket
	p = binary.AppendUvarint(p, 1)
	p = binary.AppendUvarint(p, 1)
	p = binary.AppendVarint(p, 999-(1<<32))
	p = binary.AppendUvarint(p, 7)
	for _, x := range []float64{0, 42, 0} {
		p = binary.LittleEndian.AppendUint64(p, math.Float64bits(x))
	}
	c.section('E', p)

	err = e.Restore(bytes.NewReader(c.finish(999_500)))
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
