package streamfeat

import (
	"context"
	"errors"
	"maps"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	e := newEngine(t, Config{})
	width, short, long := e.Geometry()
	if width != 5*time.Second || short != 60 || long != 720 {
		t.Fatalf("Geometry() = %v, %d, %d; want 5s, 60, 720", width, short, long)
	}
	m := e.Metrics()
	if len(m.Shards) != DefaultShards || m.Shards[0].QueueCapacity != DefaultQueueDepth {
		t.Fatalf("metrics %+v; want %d shards of depth %d", m, DefaultShards, DefaultQueueDepth)
	}
}

func TestConfigInvalid(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"negative shards", Config{Shards: -1}},
		{"too many shards", Config{Shards: 4097}},
		{"negative queue depth", Config{QueueDepth: -5}},
		{"huge queue depth", Config{QueueDepth: 1<<20 + 1}},
		{"negative bucket width", Config{BucketWidth: -time.Second}},
		{"sub-millisecond bucket width", Config{BucketWidth: time.Microsecond}},
		{"fractional-millisecond bucket width", Config{BucketWidth: 1500 * time.Microsecond}},
		{"negative short window", Config{ShortBuckets: -1}},
		{"short longer than long", Config{ShortBuckets: 100, LongBuckets: 50}},
		{"negative long window", Config{LongBuckets: -1}},
		{"long window too long", Config{LongBuckets: 1<<14 + 1, EntityTTL: 100 * time.Hour}},
		{"negative skew", Config{MaxFutureSkew: -time.Second}},
		{"skew spanning too many buckets", Config{MaxFutureSkew: time.Hour, BucketWidth: time.Millisecond}},
		{"negative ttl", Config{EntityTTL: -time.Hour}},
		{"ttl shorter than long window", Config{EntityTTL: time.Hour - time.Millisecond}},
		{"ttl shorter than a custom long window", Config{BucketWidth: time.Minute, EntityTTL: 2 * time.Hour}},
		{"negative max features", Config{MaxFeatures: -1}},
		{"too many max features", Config{MaxFeatures: 1 << 16}},
		{"idle spin too long", Config{IdleSpin: time.Millisecond + 1}},
		{"huge bucket width", Config{BucketWidth: time.Duration(1<<62) / time.Millisecond * time.Millisecond}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := New(c.cfg)
			if !errors.Is(err, ErrInvalidConfig) {
				if e != nil {
					_ = e.Close()
				}
				t.Fatalf("New(%+v) error %v; want ErrInvalidConfig", c.cfg, err)
			}
			if e != nil {
				t.Fatalf("New returned an engine with an error")
			}
		})
	}
	// Edges that are valid.
	for _, cfg := range []Config{
		{EntityTTL: time.Hour},
		{BucketWidth: time.Millisecond, MaxFutureSkew: time.Second, EntityTTL: time.Second},
		{Shards: 1, QueueDepth: 1, ShortBuckets: 1, LongBuckets: 1, EntityTTL: 5 * time.Second},
		{MaxFeatures: 1},
		{IdleSpin: -1},
		{IdleSpin: time.Millisecond},
		{LongBuckets: 1 << 14, EntityTTL: 1 << 14 * 5 * time.Second},
	} {
		e, err := New(cfg)
		if err != nil {
			t.Errorf("New(%+v): %v; want it valid", cfg, err)
			continue
		}
		if err := e.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
}

func TestRegisterSchema(t *testing.T) {
	e := newEngine(t, Config{MaxFeatures: 4})
	ids, err := e.RegisterSchema([]string{"a", "b", "a"})
	if err != nil || !maps.Equal(ids, map[string]int32{"a": 1, "b": 2}) {
		t.Fatalf("RegisterSchema(a, b, a) = %v, %v; want a=1 b=2", ids, err)
	}
	ids, err = e.RegisterSchema([]string{"b", "c"})
	if err != nil || !maps.Equal(ids, map[string]int32{"b": 2, "c": 3}) {
		t.Fatalf("RegisterSchema(b, c) = %v, %v; want b=2 c=3", ids, err)
	}
	for _, bad := range [][]string{
		nil, {}, {""}, {"d", ""}, {strings.Repeat("n", MaxFeatureNameBytes+1)}, {"d", "\xfe"},
	} {
		if _, err := e.RegisterSchema(bad); !errors.Is(err, ErrInvalidFeature) {
			t.Errorf("RegisterSchema(%q): %v; want ErrInvalidFeature", bad, err)
		}
	}
	// Over the cap of 4: "d" and "e" would make 5, so neither is registered.
	if _, err := e.RegisterSchema([]string{"d", "e"}); !errors.Is(err, ErrTooManyFeatures) {
		t.Fatalf("RegisterSchema over the cap: %v; want ErrTooManyFeatures", err)
	}
	if got := e.Schema(); !maps.Equal(got, map[string]int32{"a": 1, "b": 2, "c": 3}) {
		t.Fatalf("Schema() = %v after failed calls; want a, b, c only", got)
	}
	long := strings.Repeat("n", MaxFeatureNameBytes)
	ids, err = e.RegisterSchema([]string{long, "a", long})
	if err != nil || ids[long] != 4 || ids["a"] != 1 {
		t.Fatalf("RegisterSchema(256-byte name) = %v, %v; want id 4", ids, err)
	}
	// Registered names can be registered again at the cap.
	if _, err := e.RegisterSchema([]string{"c", long}); err != nil {
		t.Fatalf("RegisterSchema of known names at the cap: %v", err)
	}
	if name, err := e.FeatureName(2); err != nil || name != "b" {
		t.Fatalf("FeatureName(2) = %q, %v; want b", name, err)
	}
	if _, err := e.FeatureName(5); !errors.Is(err, ErrUnknownFeature) {
		t.Fatalf("FeatureName(5): %v; want ErrUnknownFeature", err)
	}
}

func TestClose(t *testing.T) {
	e, err := New(Config{Clock: NewEventClock()})
	if err != nil {
		t.Fatal(err)
	}
	registerN(t, e, 1)
	ingestEach(t, e, ev("e", t0, 1))
	if err := e.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := e.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v; want ErrClosed", err)
	}
	ctx := context.Background()
	calls := map[string]error{}
	_, calls["Ingest"] = e.Ingest(ctx, []Event{ev("e", t0, 1)})
	_, calls["IngestWith"] = e.IngestWith(ctx, []Event{ev("e", t0, 1)}, IngestOptions{WaitForCapacity: true})
	_, calls["Stats"] = e.Stats(ctx, "e", 1, Short)
	_, calls["Drift"] = e.Drift(ctx, "e", 1, DriftOptions{})
	_, calls["PopulationStats"] = e.PopulationStats(ctx, 1, Long)
	_, calls["PopulationDrift"] = e.PopulationDrift(ctx, 1, DriftOptions{})
	_, calls["RegisterSchema"] = e.RegisterSchema([]string{"x"})
	for name, err := range calls {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v; want ErrClosed", name, err)
		}
	}
	// Metrics still answers, with the accepted event counted.
	if m := e.Metrics(); m.EventsAccepted != 1 {
		t.Fatalf("metrics after Close: %+v", m)
	}
}

// TestMaxFeaturesAtTheCap registers as many features as a Config allows and
// gives one entity a value of every one of them. Before the cap was lowered
// to 65535, the 65536th series wrapped the entity's 16-bit series count and
// the shard goroutine panicked. At the real cap every feature's population
// ring costs 40 KiB, so the default run uses a smaller cap; -streamfeat.long
// runs the real one.
func TestMaxFeaturesAtTheCap(t *testing.T) {
	n := 4097
	if *longTests {
		n = maxFeaturesLimit
	}
	e := newEventEngine(t, n, Config{MaxFeatures: n, Shards: 1})
	x := Event{EntityID: "e", TimestampMs: t0}
	for id := int32(1); id <= int32(n); id++ {
		x.Values = append(x.Values, fv(id, float64(id)))
	}
	if res := ingest(t, e, x); res.AcceptedValues != int64(n) {
		t.Fatalf("Ingest = %+v; want %d values accepted", res, n)
	}
	for _, id := range []int32{1, 2, int32(n - 1), int32(n)} {
		checkStats(t, describe("feature %d", id), stats(t, e, "e", id, Short),
			want{1, float64(id), 0, 0, 0}, exact)
	}
	if lost := e.Metrics().Shards[0].LostValues; lost != 0 {
		t.Fatalf("%d values lost", lost)
	}
}

// TestConfigInForce: Engine.Config reports the defaults that zero fields
// stand for, so that callers can log what is in force.
func TestConfigInForce(t *testing.T) {
	e, err := New(Config{Shards: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c := e.Config()
	if c.Shards != 3 || c.QueueDepth != DefaultQueueDepth || c.EntityTTL != DefaultEntityTTL ||
		c.BucketWidth != DefaultBucketWidth || c.LongBuckets != DefaultLongBuckets ||
		c.MaxFeatures != DefaultMaxFeatures || c.IdleSpin != DefaultIdleSpin || c.Clock == nil {
		t.Errorf("config in force %+v; want 3 shards and every other field at its default", c)
	}
}

// TestLiveSpan checks the span against the bucket arithmetic it stands in
// for: a time is in the span exactly when its bucket is in the long window,
// and a span is empty only where an end would overflow.
func TestLiveSpan(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, width := range []int64{1, 7, 5000} {
		g := geometry{widthMs: width, long: 720}
		nows := []int64{0, -1, 719, math.MinInt64, math.MinInt64 + 719, math.MaxInt64,
			math.MaxInt64 / width, math.MaxInt64/width - 1, math.MinInt64/width + 719, r.Int64()}
		for _, nowB := range nows {
			sp := g.liveSpan(nowB)
			empty := sp.from > sp.to
			oldest := g.oldestBucket(nowB)
			times := []int64{math.MinInt64, math.MaxInt64, sp.from, sp.from - 1, sp.to, sp.to - 1}
			for range 200 {
				times = append(times, r.Int64(), sp.from+r.Int64N(1e6)-5e5, sp.to+r.Int64N(1e6)-5e5)
			}
			for _, ts := range times {
				b := g.bucketOf(ts)
				inWindow := b >= oldest && b <= nowB
				if got := sp.holds(ts); got != (inWindow && !empty) {
					t.Fatalf("width %d, now bucket %d: holds(%d) = %v; bucket %d, window [%d, %d]",
						width, nowB, ts, got, b, oldest, nowB)
				}
			}
			if ordinary := nowB > math.MinInt64/(2*width) && nowB < math.MaxInt64/(2*width); empty && ordinary {
				t.Fatalf("width %d, now bucket %d: empty span %+v; want the fast path", width, nowB, sp)
			}
		}
	}
}
