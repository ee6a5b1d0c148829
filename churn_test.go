package streamfeat

import (
	"runtime"
	"strconv"
	"testing"
	"time"
)

// TestChurnHeapPlateaus runs 12 simulated hours in which entities are
// created all the time, stay active for two minutes and then go idle for
// good, after a flash crowd of 6000 entities in the first ten minutes. The
// live heap, measured after a collection every 10 simulated minutes, must
// level off: the last hour's peak may exceed the third hour's by at most 10%.
func TestChurnHeapPlateaus(t *testing.T) {
	hours := 12
	if *longTests {
		hours = 48
	}
	const (
		bucketMs      = 5000
		perHour       = 720
		newPerBucket  = 4
		activeBuckets = 24 // two minutes
		crowdBuckets  = 120
		crowdPer      = 50
	)
	e := newEventEngine(t, 2, Config{Shards: 2, EntityTTL: time.Hour})

	peaks := make([]uint64, hours)
	var batch []Event
	for k := range hours * perHour {
		ts := t0 + int64(k)*bucketMs
		batch = batch[:0]
		// Steady churn: new entities every bucket, each sending an event
		// every other bucket while it is active.
		for start := max(0, k-activeBuckets+1); start <= k; start++ {
			if (k-start)%2 != 0 {
				continue
			}
			for i := range newPerBucket {
				id := "s" + strconv.Itoa(start*newPerBucket+i)
				batch = append(batch, ev(id, ts, float64(k%17), float64(start%5)))
			}
		}
		if k < crowdBuckets {
			for i := range crowdPer {
				batch = append(batch, ev("c"+strconv.Itoa(k*crowdPer+i), ts, 1, 2))
			}
		}
		if res := ingest(t, e, batch...); res.AcceptedEvents != int64(len(batch)) {
			t.Fatalf("bucket %d: %+v; want all %d accepted", k, res, len(batch))
		}
		if k%120 == 119 {
			// A population query passes through every shard's queue, so
			// every batch has been applied when it returns.
			popStats(t, e, 1, Short)
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			h := k / perHour
			peaks[h] = max(peaks[h], ms.HeapAlloc)
		}
	}

	m := e.Metrics()
	var compactions int64
	for _, s := range m.Shards {
		compactions += s.Compactions
	}
	t.Logf("heap peak per hour (KiB): %v", kib(peaks))
	t.Logf("live %d, tombstoned %d, compactions %d, arena %d KiB",
		m.LiveEntities, m.TombstonedEntities, compactions, m.ArenaBytes>>10)

	// Slack: 512 KiB over the 10% covers what the heap holds besides the
	// engine's state and what varies from one measurement to the next: the
	// test's batch buffer, pooled ingest messages, the runtime's own
	// structures, and the swiss index's power-of-two growth (at about a
	// thousand live entities per shard, a table step is tens of KiB).
	const slack = 512 << 10
	third, last := peaks[2], peaks[hours-1]
	if float64(last) > 1.10*float64(third)+slack {
		t.Errorf("heap did not level off: last hour peaked at %d KiB, third hour at %d KiB",
			last>>10, third>>10)
	}
	if compactions == 0 {
		t.Errorf("no compaction ran after the flash crowd went idle")
	}
	// Live entities: those active or idle for less than the TTL, plus up to
	// one sweep interval (a quarter TTL, 15 minutes) of entities waiting for
	// the sweep.
	maxLive := newPerBucket * ((time.Hour+17*time.Minute).Milliseconds()/bucketMs + activeBuckets)
	if m.LiveEntities > maxLive || m.LiveEntities < newPerBucket*perHour {
		t.Errorf("%d live entities at the end; want between %d and %d",
			m.LiveEntities, newPerBucket*perHour, maxLive)
	}
	if m.TombstonedEntities > maxLive {
		t.Errorf("%d tombstoned entities at the end; want at most %d", m.TombstonedEntities, maxLive)
	}
}

func kib(xs []uint64) []uint64 {
	out := make([]uint64, len(xs))
	for i, x := range xs {
		out[i] = x >> 10
	}
	return out
}

// TestCompactionAfterCrowd releases a crowd of entities and waits for the
// shard to compact. It runs with one feature too, where the series lists'
// largest class is a single header.
func TestCompactionAfterCrowd(t *testing.T) {
	for _, maxFeatures := range []int{1, 3} {
		t.Run(strconv.Itoa(maxFeatures), func(t *testing.T) {
			e := newEventEngine(t, maxFeatures, Config{Shards: 1, EntityTTL: time.Hour, MaxFeatures: maxFeatures})
			var crowd []Event
			for i := range 3000 {
				crowd = append(crowd, ev("c"+strconv.Itoa(i), t0, float64(i)))
			}
			ingest(t, e, crowd...)

			// The keeper sends a value every minute and outlives the crowd.
			var values []float64
			ts := t0
			for step := 0; ; step++ {
				ts += time.Minute.Milliseconds()
				values = append(values, float64(step%9)*1e9+float64(step))
				if res := ingest(t, e, ev("keeper", ts, values[step])); res.AcceptedEvents != 1 {
					t.Fatalf("step %d: %+v", step, res)
				}
				stats(t, e, "keeper", 1, Short) // waits for the batch and its sweep
				m := e.Metrics().Shards[0]
				if m.LostValues != 0 {
					t.Fatalf("step %d: %d values lost", step, m.LostValues)
				}
				if m.Compactions > 0 {
					break
				}
				if step > 300 {
					t.Fatalf("no compaction in 5 hours after 3000 entities went idle: %+v", m)
				}
			}
			m := e.Metrics()
			if m.LiveEntities != 1 || m.TombstonedEntities != 0 {
				t.Fatalf("after compaction: %+v; want one live entity and no tombstone", m)
			}
			// Values a minute apart: the short window holds the last 5, the
			// long window the last 60.
			checkStats(t, "keeper short", stats(t, e, "keeper", 1, Short), oracleOf(values[len(values)-5:]...), 1e-12)
			checkStats(t, "keeper long", stats(t, e, "keeper", 1, Long), oracleOf(values[len(values)-60:]...), 1e-12)
			for _, c := range []string{"c0", "c2999"} {
				checkStats(t, c, stats(t, e, c, 1, Long), want{}, exact)
			}
		})
	}
}

// TestCompactionKeepsLiveState compacts a shard by hand and checks that
// every entity answers bit for bit as before, whatever its ring size and
// however many rings its features take.
func TestCompactionKeepsLiveState(t *testing.T) {
	for _, features := range []int32{3, 2*groupWidth + 4} {
		t.Run(strconv.Itoa(int(features)), func(t *testing.T) { compactAndCompare(t, features) })
	}
}

func compactAndCompare(t *testing.T, features int32) {
	e := newEventEngine(t, int(features), Config{Shards: 1})
	var batch []Event
	for i := range 200 {
		// Entity i has values in i%300+1 buckets, some features only.
		id := "e" + strconv.Itoa(i)
		for b := range i%300 + 1 {
			x := Event{EntityID: id, TimestampMs: t0 + int64(b)*5000}
			for f := int32(1); f <= features; f++ {
				if f == 1 || (i+int(f))%2 == 1 {
					x.Values = append(x.Values, fv(f, 1e12+float64(i*b)+float64(f)))
				}
			}
			batch = append(batch, x)
		}
	}
	ingest(t, e, batch...)
	snapshot := func() map[string]DriftReport {
		out := map[string]DriftReport{}
		for i := range 200 {
			id := "e" + strconv.Itoa(i)
			for f := int32(1); f <= features; f++ {
				r, err := e.Drift(t.Context(), id, f, DriftOptions{ExcludeShortFromLong: true})
				if err != nil {
					t.Fatal(err)
				}
				out[id+"/"+strconv.Itoa(int(f))] = r
			}
		}
		return out
	}
	before := snapshot()
	onOwner(t, e, "e0", func(s *shard) { s.compact() })
	if c := e.Metrics().Shards[0].LostValues; c != 0 {
		t.Fatalf("%d values lost in compaction", c)
	}
	after := snapshot()
	for k, b := range before {
		if after[k] != b {
			t.Errorf("%s: %+v before compaction, %+v after", k, b, after[k])
		}
	}
	// The compacted state keeps taking values.
	ingestEach(t, e, ev("e0", t0+5000, 5))
	if s := stats(t, e, "e0", 1, Long); s.Count != 2 {
		t.Fatalf("e0 after compaction and a new value: %+v; want 2 values", s)
	}
}

// TestNoCompactionChurnWithLongWindows: with a long window of 16384 buckets
// a ring slab is megabytes, most of it idle under light load. That is not
// waste a compaction could return, so a lightly loaded shard must not
// compact at every sweep.
func TestNoCompactionChurnWithLongWindows(t *testing.T) {
	e := newEventEngine(t, 1, Config{Shards: 1, BucketWidth: time.Second, ShortBuckets: 60,
		LongBuckets: 1 << 14, EntityTTL: 5 * time.Hour})
	ts := t0
	for range 400 {
		ts += (5 * time.Minute).Milliseconds()
		ingestEach(t, e, ev("e", ts, 1))
	}
	stats(t, e, "e", 1, Short) // waits for the last batch and its sweep
	m := e.Metrics().Shards[0]
	if m.Sweeps < 20 || m.Compactions > 1 {
		t.Fatalf("%d compactions in %d sweeps; want none to speak of", m.Compactions, m.Sweeps)
	}
	t.Logf("%d sweeps, %d compactions", m.Sweeps, m.Compactions)
}
