package streamfeat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"
)

// snapCfg is a small geometry, so that a test's events span several long
// windows quickly: 1 s buckets, windows of 10 and 60 buckets.
func snapCfg(clock Clock) Config {
	return Config{
		Shards: 4, Clock: clock, WaitForCapacity: true,
		BucketWidth: time.Second, ShortBuckets: 10, LongBuckets: 60,
		EntityTTL: 2 * time.Minute, MaxFutureSkew: 5 * time.Second,
	}
}

// snapLoad is a seeded stream of batches: many entities, three features
// unless set otherwise,
// events out of order and some late enough to be dropped, values with a
// large offset, and entities that go idle for longer than the TTL.
type snapLoad struct {
	r        *rand.Rand
	now      int64 // the newest timestamp handed out
	nEnt     int
	features int32
	values   int64
}

func newSnapLoad(seed uint64, nEnt int) *snapLoad {
	return &snapLoad{r: rand.New(rand.NewPCG(seed, 7)), now: t0, nEnt: nEnt, features: 3}
}

// batch returns n events around the load's clock, which moves forward by
// up to step ms per event.
func (l *snapLoad) batch(n int, step int64) []Event {
	evs := make([]Event, 0, n)
	for range n {
		l.now += l.r.Int64N(step + 1)
		ts := l.now - l.r.Int64N(90_000) // up to 90 s late: some dropped
		if l.r.IntN(4) == 0 {
			ts = l.now
		}
		ent := fmt.Sprintf("ent-%d", l.r.IntN(l.nEnt))
		if l.r.IntN(10) == 0 {
			ent = fmt.Sprintf("rare-%d", l.r.IntN(1000)) // seen once or twice
		}
		ev := Event{EntityID: ent, TimestampMs: ts}
		for f := int32(1); f <= l.features; f++ {
			if l.r.IntN(3) != 0 {
				x := 1e9 + l.r.NormFloat64()*float64(f)
				ev.Values = append(ev.Values, FeatureValue{FeatureID: f, Value: x})
			}
		}
		if len(ev.Values) == 0 {
			ev.Values = append(ev.Values, FeatureValue{FeatureID: 2, Value: 0.5})
		}
		evs = append(evs, ev)
	}
	return evs
}

// feed sends batches to every engine alike.
func (l *snapLoad) feed(t testing.TB, batches, size int, step int64, set func(int64), engines ...*Engine) {
	t.Helper()
	for range batches {
		evs := l.batch(size, step)
		if set != nil {
			set(l.now)
		}
		var first IngestResult
		for i, e := range engines {
			res := ingest(t, e, evs...)
			if i == 0 {
				first = res
			} else if res != first {
				t.Fatalf("engine %d: Ingest = %+v; engine 0 had %+v", i, res, first)
			}
		}
		l.values += first.AcceptedValues
	}
}

// answers returns every answer the engine gives about the load's entities
// and the population, each formatted with %v, which prints the shortest
// decimal that parses back to the same float: equal strings mean equal bits.
func answers(t testing.TB, e *Engine, nEnt int) []string {
	t.Helper()
	return answersN(t, e, nEnt, 3)
}

// answersN is answers for features 1 to features; beyond 2*groupWidth, for
// the first three features of each ring and the last one.
func answersN(t testing.TB, e *Engine, nEnt int, features int32) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	add := func(what string, v any, err error) {
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		out = append(out, fmt.Sprintf("%s: %+v", what, v))
	}
	ids := []string{"absent"}
	for i := range nEnt {
		ids = append(ids, fmt.Sprintf("ent-%d", i))
	}
	for i := range 1000 {
		ids = append(ids, fmt.Sprintf("rare-%d", i))
	}
	exclude := DriftOptions{ExcludeShortFromLong: true, MinCount: 3}
	for f := int32(1); f <= features; f++ {
		if features > 2*groupWidth && (f-1)%groupWidth > 2 && f != features {
			continue
		}
		for _, id := range ids {
			for _, w := range []Window{Short, Long} {
				s, err := e.Stats(ctx, id, f, w)
				add(fmt.Sprintf("stats %s f%d %v", id, f, w), s, err)
			}
			d, err := e.Drift(ctx, id, f, DriftOptions{})
			add(fmt.Sprintf("drift %s f%d", id, f), d, err)
			d, err = e.Drift(ctx, id, f, exclude)
			add(fmt.Sprintf("drift/exclude %s f%d", id, f), d, err)
		}
		for _, w := range []Window{Short, Long} {
			s, err := e.PopulationStats(ctx, f, w)
			add(fmt.Sprintf("population f%d %v", f, w), s, err)
		}
		d, err := e.PopulationDrift(ctx, f, exclude)
		add(fmt.Sprintf("population drift f%d", f), d, err)
	}
	return out
}

// sameAnswers fails the test at the first answer that differs.
func sameAnswers(t testing.TB, what string, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d answers; want %d", what, len(got), len(want))
	}
	nonEmpty := 0
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: answer %d differs:\n got %s\nwant %s", what, i, got[i], want[i])
		}
		if !strings.Contains(got[i], "Count:0 ") {
			nonEmpty++
		}
	}
	if nonEmpty < 100 {
		t.Fatalf("%s: only %d of %d answers hold data; the test state is too thin",
			what, nonEmpty, len(got))
	}
}

func snapshotBytes(t testing.TB, e *Engine) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := e.Snapshot(&buf); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return buf.Bytes()
}

func restore(t testing.TB, cfg Config, snap []byte) *Engine {
	t.Helper()
	e := newEngine(t, cfg)
	if err := e.Restore(bytes.NewReader(snap)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	return e
}

// A restored engine answers every query with the same bits as the engine
// the snapshot was taken of, and keeps doing so as both take the same
// further events; a snapshot of it is byte for byte the snapshot it came
// from.
func TestSnapshotRestoreExact(t *testing.T) {
	for _, variant := range []string{"event", "manual", "event/wide"} {
		clock, wide := strings.CutSuffix(variant, "/wide")
		t.Run(variant, func(t *testing.T) {
			newClock, set := func() Clock { return NewEventClock() }, func(int64) {}
			var manual [2]*ManualClock
			if clock == "manual" {
				n := 0
				newClock = func() Clock {
					manual[n] = NewManualClock(t0)
					n++
					return manual[n-1]
				}
				set = func(now int64) {
					for _, c := range manual {
						if c != nil {
							c.Set(now)
						}
					}
				}
			}

			const nEnt = 300
			load := newSnapLoad(1, nEnt)
			if wide {
				load.features = 2*groupWidth + 4 // three rings per entity
			}
			orig := newEngine(t, snapCfg(newClock()))
			registerN(t, orig, int(load.features))
			// Two and a half long windows: buckets and entities expire.
			load.feed(t, 150, 100, 10, set, orig)

			snap := snapshotBytes(t, orig)
			want := answersN(t, orig, nEnt, load.features)
			copied := newEngine(t, snapCfg(newClock()))
			set(load.now)
			if err := copied.Restore(bytes.NewReader(snap)); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			sameAnswers(t, "restored", answersN(t, copied, nEnt, load.features), want)
			if again := snapshotBytes(t, copied); !bytes.Equal(again, snap) {
				t.Errorf("snapshot of the restored engine: %d bytes differ from the %d restored",
					len(again), len(snap))
			}

			load.feed(t, 40, 100, 10, set, orig, copied)
			sameAnswers(t, "after further ingest", answersN(t, copied, nEnt, load.features),
				answersN(t, orig, nEnt, load.features))
		})
	}
}

// A snapshot taken after Close holds every accepted event: it equals one
// taken just before Close, when nothing was queued.
func TestSnapshotClosedEngine(t *testing.T) {
	e := newEngine(t, snapCfg(NewEventClock()))
	registerN(t, e, 3)
	newSnapLoad(2, 50).feed(t, 20, 50, 20, nil, e)
	before := snapshotBytes(t, e)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if after := snapshotBytes(t, e); !bytes.Equal(after, before) {
		t.Errorf("snapshot after Close differs from the one before")
	}
}

// Snapshots taken while producers run, and features are registered, see
// no torn state and restore; the race detector sees no unsynchronised
// access.
func TestSnapshotDuringIngest(t *testing.T) {
	e := newEngine(t, snapCfg(NewEventClock()))
	registerN(t, e, 3)
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Go(func() {
			newSnapLoad(uint64(10+p), 200).feed(t, 50, 50, 10, nil, e)
		})
	}
	wg.Go(func() {
		for f := int32(4); f <= 40; f++ {
			if _, err := e.RegisterSchema([]string{fmt.Sprintf("f%d", f)}); err != nil {
				t.Error(err)
				return
			}
			ingest(t, e, Event{EntityID: "late", TimestampMs: t0,
				Values: []FeatureValue{{FeatureID: f, Value: 1}}})
		}
	})
	snaps := 0
	for done := false; !done || snaps < 20; snaps++ {
		done = len(e.Schema()) == 40
		r := restore(t, snapCfg(NewEventClock()), snapshotBytes(t, e))
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	t.Logf("%d snapshots restored", snaps)
}

func TestRestoreRefusals(t *testing.T) {
	src := newEngine(t, snapCfg(NewEventClock()))
	registerN(t, src, 3)
	newSnapLoad(3, 20).feed(t, 5, 20, 100, nil, src)
	snap := snapshotBytes(t, src)

	for _, tc := range []struct {
		name string
		cfg  func(*Config)
		want string
	}{
		{"bucket width", func(c *Config) { c.BucketWidth = 2 * time.Second }, "buckets of 1000ms"},
		{"long window", func(c *Config) { c.LongBuckets = 61 }, "windows of 10 and 60"},
		{"shards", func(c *Config) { c.Shards = 3 }, "4 shards"},
		{"clock", func(c *Config) { c.Clock = NewManualClock(t0) }, "event clock"},
		{"max features", func(c *Config) { c.MaxFeatures = 2 }, "3 features"},
	} {
		cfg := snapCfg(NewEventClock())
		tc.cfg(&cfg)
		err := newEngine(t, cfg).Restore(bytes.NewReader(snap))
		if !errors.Is(err, ErrSnapshotMismatch) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Restore = %v; want ErrSnapshotMismatch naming %q", tc.name, err, tc.want)
		}
	}

	// A schema that is not a prefix of the snapshot's.
	e := newEngine(t, snapCfg(NewEventClock()))
	if _, err := e.RegisterSchema([]string{"other"}); err != nil {
		t.Fatal(err)
	}
	if err := e.Restore(bytes.NewReader(snap)); !errors.Is(err, ErrSnapshotMismatch) {
		t.Errorf("Restore over another schema = %v; want ErrSnapshotMismatch", err)
	}

	// After intake, or a second time.
	e = newEngine(t, snapCfg(NewEventClock()))
	registerN(t, e, 3)
	ingest(t, e, ev("x", t0, 1))
	if err := e.Restore(bytes.NewReader(snap)); !errors.Is(err, ErrRestoreTooLate) {
		t.Errorf("Restore after Ingest = %v; want ErrRestoreTooLate", err)
	}
	e = restore(t, snapCfg(NewEventClock()), snap)
	if err := e.Restore(bytes.NewReader(snap)); !errors.Is(err, ErrRestoreTooLate) {
		t.Errorf("second Restore = %v; want ErrRestoreTooLate", err)
	}

	// A failed restore changes nothing: a good one still works after it.
	e = newEngine(t, snapCfg(NewEventClock()))
	bad := bytes.Clone(snap)
	bad[len(bad)/2] ^= 0x40
	if err := e.Restore(bytes.NewReader(bad)); !errors.Is(err, ErrBadSnapshot) {
		t.Errorf("Restore of a corrupt snapshot = %v; want ErrBadSnapshot", err)
	}
	if err := e.Restore(bytes.NewReader(snap)); err != nil {
		t.Errorf("Restore after a failed one: %v", err)
	}
	sameAnswers(t, "after a failed restore", answers(t, e, 20), answers(t, src, 20))
}

// Every truncation of a snapshot is caught, and so is a flipped bit in any
// byte.
func TestSnapshotCorruption(t *testing.T) {
	src := newEngine(t, snapCfg(NewEventClock()))
	registerN(t, src, 3)
	newSnapLoad(4, 10).feed(t, 3, 10, 100, nil, src)
	snap := snapshotBytes(t, src)
	e := newEngine(t, snapCfg(NewEventClock()))

	for n := range len(snap) {
		if _, err := e.decodeSnapshot(bytes.NewReader(snap[:n])); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("truncated to %d of %d bytes: %v; want ErrBadSnapshot", n, len(snap), err)
		}
	}
	for i := range len(snap) {
		bad := bytes.Clone(snap)
		bad[i] ^= 1 << (i % 8) // one bit of each byte, a different one each time
		_, err := e.decodeSnapshot(bytes.NewReader(bad))
		if !errors.Is(err, ErrBadSnapshot) && !errors.Is(err, ErrSnapshotMismatch) {
			t.Fatalf("byte %d flipped: %v; want an error", i, err)
		}
	}
	if _, err := e.decodeSnapshot(bytes.NewReader(append(bytes.Clone(snap), 0))); err == nil {
		t.Error("a trailing byte was accepted")
	}
}

// FuzzSnapshotDecode feeds arbitrary bytes to the decoder: it must never
// panic (allocation is bounded by the section caps and the engine's own
// configuration; TestRestoreAllocationFollowsInput checks the one fixed
// cost), and whatever it accepts must restore into an engine that answers
// queries.
func FuzzSnapshotDecode(f *testing.F) {
	src := newEngine(f, snapCfg(NewEventClock()))
	registerN(f, src, 3)
	newSnapLoad(5, 8).feed(f, 3, 8, 200, nil, src)
	snap := snapshotBytes(f, src)
	f.Add(snap)
	for _, n := range []int{0, 5, 8, 13, len(snap) / 2, len(snap) - 1} {
		f.Add(snap[:n])
	}

	e := newEngine(f, snapCfg(NewEventClock()))
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := e.decodeSnapshot(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrBadSnapshot) && !errors.Is(err, ErrSnapshotMismatch) {
				t.Fatalf("error %v is neither ErrBadSnapshot nor ErrSnapshotMismatch", err)
			}
			return
		}
		r := newEngine(t, snapCfg(NewEventClock()))
		if err := r.Restore(bytes.NewReader(data)); err != nil {
			t.Fatalf("decoded, but Restore failed: %v", err)
		}
		for range 2 {
			queryImage(t, r, img)
			ingest(t, r, ev("ent-1", r.nowMs(), 1, 2, 3))
		}
	})
}

// queryImage asks r about a few of the image's entities and every feature,
// and checks that the answers are well formed.
func queryImage(t *testing.T, r *Engine, img *snapshotImage) {
	ctx := context.Background()
	var keys []string
	for _, st := range img.shards {
		for _, ent := range st.entities[:min(len(st.entities), 20)] {
			keys = append(keys, ent.key)
		}
	}
	for f := int32(1); f <= int32(len(img.names)) && f <= 4; f++ {
		for _, w := range []Window{Short, Long} {
			checkWellFormed(t, popStats(t, r, f, w))
			for _, key := range keys {
				s, err := r.Stats(ctx, key, f, w)
				if err != nil {
					t.Fatalf("Stats(%q, %d): %v", key, f, err)
				}
				checkWellFormed(t, s)
			}
		}
	}
}
