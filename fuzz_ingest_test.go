package streamfeat

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// fuzzInput hands out a fuzz input's bytes as the numbers a test needs. Once
// the bytes run out every read returns zero, so any input decodes to
// something and the decoded program always ends.
type fuzzInput struct{ b []byte }

func (in *fuzzInput) done() bool { return len(in.b) == 0 }

func (in *fuzzInput) byte() byte {
	if len(in.b) == 0 {
		return 0
	}
	x := in.b[0]
	in.b = in.b[1:]
	return x
}

func (in *fuzzInput) uint64() uint64 {
	var x uint64
	for range 8 {
		x = x<<8 | uint64(in.byte())
	}
	return x
}

func (in *fuzzInput) intn(n int) int { return int(in.byte()) % n }

// bytes returns the next n bytes, fewer if the input ends first.
func (in *fuzzInput) bytes(n int) []byte {
	n = min(n, len(in.b))
	x := in.b[:n]
	in.b = in.b[n:]
	return x
}

// Tables of awkward inputs the decoders draw from.
var (
	fuzzEntities = []string{
		"a", "b", "c", "", "\xff", "ok\xc3", "\x00", "\u202e\u0301", "é",
		strings.Repeat("x", MaxEntityIDBytes), strings.Repeat("x", MaxEntityIDBytes+1),
		strings.Repeat("é", MaxEntityIDBytes/2), strings.Repeat("é", MaxEntityIDBytes/2) + "x",
	}
	fuzzFeatureIDs = []int32{1, 2, 3, 0, -1, 4, math.MaxInt32, math.MinInt32}
	fuzzValues     = []float64{
		0, 1, -1, 0.5, 1e12, 1e12 + 1, -1e12, 3.25,
		MaxAbsValue, -MaxAbsValue, math.Nextafter(MaxAbsValue, math.Inf(1)),
		math.MaxFloat64, -math.MaxFloat64, math.NaN(), math.Inf(1), math.Inf(-1),
		math.SmallestNonzeroFloat64, -0x1p-1030, math.Copysign(0, -1), 1e-300,
	}
)

// entity decodes an entity id: from the table, or raw bytes of any length up
// to a little past the limit.
func (in *fuzzInput) entity() string {
	k := in.byte()
	if k < 224 {
		return fuzzEntities[int(k)%len(fuzzEntities)]
	}
	return string(in.bytes(in.intn(MaxEntityIDBytes + 8)))
}

// value decodes a feature value: from the table, small integers, or any
// float64 bit pattern.
func (in *fuzzInput) value() float64 {
	switch k := in.byte(); {
	case k < 128:
		return fuzzValues[int(k)%len(fuzzValues)]
	case k < 224:
		return float64(int8(in.byte()))
	default:
		return math.Float64frombits(in.uint64())
	}
}

func (in *fuzzInput) featureID() int32 {
	k := in.byte()
	if k < 240 {
		return fuzzFeatureIDs[int(k)%len(fuzzFeatureIDs)]
	}
	return int32(in.uint64())
}

// timestamp decodes a time near ref: within the window, a little or far
// behind or ahead, at either end of int64, or any int64.
func (in *fuzzInput) timestamp(ref, width int64) int64 {
	switch k := in.byte(); {
	case k < 96:
		return subSat(addSat(ref, int64(in.byte())), 128)
	case k < 176:
		return subSat(ref, int64(in.byte())*width*4)
	case k < 224:
		return addSat(ref, int64(in.byte())*width)
	case k < 236:
		return math.MinInt64 + int64(k%4)
	case k < 248:
		return math.MaxInt64 - int64(k%4)
	default:
		return int64(in.uint64())
	}
}

// expected is what a careful reading of the ingest rules predicts for one
// call, written apart from the engine's code.
type expected struct {
	res       IngestResult // every field but the overload split
	accepted  int64        // events that pass validation, overloaded or not
	values    []int64      // values of accepted events, by shard
	events    []int64      // accepted events, by shard
	shardNow  []int64      // the producer's now after its last event, by shard
	everySeen []string     // entity ids of the call
}

// predict classifies events as route must, starting from now. eventTime
// selects the event clock (no future, accepted events move now); otherwise
// the clock stands still and events past now+skew are too new.
func predict(e *Engine, events []Event, now int64, eventTime bool, skewMs, widthMs, long int64, nFeatures int32) expected {
	n := len(e.shards)
	x := expected{values: make([]int64, n), events: make([]int64, n), shardNow: make([]int64, n)}
	for i := range x.shardNow {
		x.shardNow[i] = math.MinInt64
	}
	floor := func(ts int64) int64 {
		q := ts / widthMs
		if ts%widthMs < 0 {
			q--
		}
		return q
	}
	for _, ev := range events {
		x.everySeen = append(x.everySeen, ev.EntityID)
		id := ev.EntityID
		if id == "" || len(id) > MaxEntityIDBytes || !utf8.ValidString(id) {
			x.res.DroppedInvalid++
			continue
		}
		nowB := floor(now)
		oldest := int64(math.MinInt64)
		if nowB >= math.MinInt64+(long-1) {
			oldest = nowB - (long - 1)
		}
		if floor(ev.TimestampMs) < oldest {
			x.res.DroppedTooOld++
			continue
		}
		if !eventTime && now <= math.MaxInt64-skewMs && ev.TimestampMs > now+skewMs {
			x.res.DroppedTooNew++
			continue
		}
		good := int64(0)
		for _, v := range ev.Values {
			if v.FeatureID >= 1 && v.FeatureID <= nFeatures && !math.IsNaN(v.Value) &&
				math.Abs(v.Value) <= MaxAbsValue {
				good++
			} else {
				x.res.RejectedValues++
			}
		}
		if good == 0 {
			x.res.DroppedInvalid++
			continue
		}
		if eventTime && ev.TimestampMs > now {
			now = ev.TimestampMs
		}
		s := e.shardOf(id)
		x.accepted++
		x.events[s]++
		x.values[s] += good
		x.shardNow[s] = now
	}
	return x
}

// Ways a fuzzed call meets the queues.
const (
	callPlain      = iota // wait for space with no deadline: nothing is dropped
	callHeldDrop          // shard 0 held and full, no waiting: its share is dropped
	callHeldCancel        // shard 0 held and full, waiting with a cancelled context
	numCallModes
)

// FuzzIngestValidation feeds the engine batches of arbitrary events (odd
// entity ids, timestamps anywhere in int64, NaN, infinities, huge and tiny
// values, any feature id), on the event clock or a stopped wall-rules
// clock, with shard 0 sometimes held full. The engine must not panic, must
// classify every event as the rules say, and must account for every event
// and value: accepted + dropped = sent per call and in Metrics.
func FuzzIngestValidation(f *testing.F) {
	for _, seed := range fuzzIngestSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		runIngestValidation(t, &fuzzInput{b: data})
	})
}

func fuzzIngestSeeds() [][]byte {
	seeds := [][]byte{
		nil,
		{0, 0, 0, 0},
		{1, 1, 0, 0x80, 0, 1, 0, 1, 0, 0}, // wall rules, stopped at MinInt64
		// Event clock, one event of every kind of timestamp.
		{0, 3, 0, 0, 5, 0, 0, 0, 1, 0, 1, 1, 0, 100, 1, 0, 2, 2, 0, 230, 1, 0, 3, 3, 0, 240, 1, 0, 1},
	}
	r := rand.New(rand.NewPCG(7, 7))
	for range 6 {
		b := make([]byte, 64+r.IntN(512))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		seeds = append(seeds, b)
	}
	return seeds
}

func runIngestValidation(t *testing.T, in *fuzzInput) {
	// Header: clock, shard count, bucket width.
	eventTime := in.byte()%2 == 0
	var clock Clock = NewEventClock()
	if !eventTime {
		clock = NewManualClock(in.timestamp(t0, 5000))
	}
	cfg := Config{Clock: clock, Shards: 1 + in.intn(4), QueueDepth: 1, MaxFeatures: 3}
	if in.byte()%2 == 1 {
		// The narrowest geometry: bucket arithmetic meets the int64 ends.
		cfg.BucketWidth, cfg.ShortBuckets, cfg.LongBuckets = time.Millisecond, 1, 4
		cfg.EntityTTL, cfg.MaxFutureSkew = time.Second, time.Second
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer e.Close()
	registerN(t, e, 3)
	width, _, long := e.Geometry()
	widthMs, skewMs := width.Milliseconds(), e.geo.skewMs

	var total IngestResult
	sent := int64(0)
	seen := map[string]bool{}
	for call := 0; call < 16 && !in.done(); call++ {
		mode := in.intn(numCallModes)
		if len(e.shards) == 1 && mode != callPlain {
			mode = callPlain // holding the only shard would hold every event
		}
		now := e.nowMs()
		events := make([]Event, in.intn(33))
		for i := range events {
			events[i] = Event{EntityID: in.entity(), TimestampMs: in.timestamp(now, widthMs)}
			for range in.intn(6) {
				events[i].Values = append(events[i].Values, FeatureValue{in.featureID(), in.value()})
			}
		}
		want := predict(e, events, now, eventTime, skewMs, widthMs, int64(long), 3)
		res, err := ingestInMode(t, e, events, mode)
		sent += int64(len(events))
		for _, id := range want.everySeen {
			seen[id] = true
		}
		checkPrediction(t, call, mode, e, res, err, want, now, eventTime)
		addResult(&total, res)
	}

	// Totals: per call, in Metrics, and accepted + dropped = sent.
	if total.AcceptedEvents+total.DroppedEvents != sent {
		t.Fatalf("%d events sent; results account for %+v", sent, total)
	}
	m := e.Metrics()
	if m.EventsAccepted != total.AcceptedEvents || m.ValuesAccepted != total.AcceptedValues ||
		m.ValuesRejected != total.RejectedValues || m.DroppedTooOld != total.DroppedTooOld ||
		m.DroppedTooNew != total.DroppedTooNew || m.DroppedInvalid != total.DroppedInvalid ||
		m.DroppedOverloaded != total.DroppedOverloaded {
		t.Fatalf("metrics %+v; the calls' results add up to %+v", m, total)
	}

	// Every query answers, well formed, and an invalid id is refused.
	ctx := context.Background()
	for id := range seen {
		for f := int32(1); f <= 3; f++ {
			s, err := e.Stats(ctx, id, f, Long)
			if !validEntity(id) {
				if !errors.Is(err, ErrInvalidEntity) {
					t.Fatalf("Stats(%q): %v; want ErrInvalidEntity", id, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("Stats(%q, %d): %v", id, f, err)
			}
			checkWellFormed(t, s)
			rep, err := e.Drift(ctx, id, f, DriftOptions{})
			if err != nil {
				t.Fatalf("Drift(%q, %d): %v", id, f, err)
			}
			checkFiniteDrift(t, "drift of "+id, rep)
		}
	}
	for f := int32(1); f <= 3; f++ {
		s := popStats(t, e, f, Long)
		if s.Count > total.AcceptedValues {
			t.Fatalf("population count %d of feature %d; only %d values were accepted",
				s.Count, f, total.AcceptedValues)
		}
		rep, err := e.PopulationDrift(ctx, f, DriftOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkFiniteDrift(t, "population drift", rep)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// ingestInMode makes one Ingest call the way mode says.
func ingestInMode(t *testing.T, e *Engine, events []Event, mode int) (IngestResult, error) {
	ctx := context.Background()
	if mode == callPlain {
		return e.IngestWith(ctx, events, IngestOptions{WaitForCapacity: true})
	}

	// Empty every other queue (a query waits behind all that came before
	// it), then hold shard 0 and fill its queue, so that exactly shard 0's
	// share meets a full queue.
	others := make([]int, 0, len(e.shards)-1)
	for i := 1; i < len(e.shards); i++ {
		others = append(others, i)
	}
	if _, err := e.onShards(ctx, others, func(*shard) windowSet { return windowSet{} }); err != nil {
		t.Fatal(err)
	}
	release := blockShard(t, e, 0)
	defer release()
	q := e.shards[0].queue
	for len(q) < cap(q) {
		q <- &message{run: func(*shard) {}}
	}
	if mode == callHeldDrop {
		return e.IngestWith(ctx, events, IngestOptions{})
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	return e.IngestWith(cancelled, events, IngestOptions{WaitForCapacity: true})
}

// checkPrediction compares one call's result with the prediction.
func checkPrediction(t *testing.T, call, mode int, e *Engine, res IngestResult, err error,
	want expected, before int64, eventTime bool) {
	t.Helper()
	checkResult(t, res, len(want.everySeen))
	var held int64 // shard 0's events, which meet a full queue
	if mode != callPlain {
		held = want.events[0]
	}
	switch {
	case mode == callHeldCancel && held > 0:
		if !errors.Is(err, ErrOverloaded) || !errors.Is(err, context.Canceled) {
			t.Fatalf("call %d: error %v; want ErrOverloaded wrapping context.Canceled", call, err)
		}
	case err != nil:
		t.Fatalf("call %d (mode %d): %v", call, mode, err)
	}

	w := want.res
	w.DroppedOverloaded = held
	w.AcceptedEvents = want.accepted - held
	w.AcceptedValues = 0
	newest := before
	for s := range want.values {
		if mode != callPlain && s == 0 {
			continue
		}
		w.AcceptedValues += want.values[s]
		if want.events[s] > 0 {
			newest = max(newest, want.shardNow[s])
		}
	}
	w.DroppedEvents = w.DroppedTooOld + w.DroppedTooNew + w.DroppedInvalid + w.DroppedOverloaded
	if res != w {
		t.Fatalf("call %d (mode %d): Ingest = %+v; want %+v", call, mode, res, w)
	}
	if eventTime {
		if now := e.nowMs(); now != newest {
			t.Fatalf("call %d: event clock at %d; want %d", call, now, newest)
		}
	}
}

func addResult(total *IngestResult, r IngestResult) {
	total.AcceptedEvents += r.AcceptedEvents
	total.DroppedEvents += r.DroppedEvents
	total.DroppedTooOld += r.DroppedTooOld
	total.DroppedTooNew += r.DroppedTooNew
	total.DroppedInvalid += r.DroppedInvalid
	total.DroppedOverloaded += r.DroppedOverloaded
	total.AcceptedValues += r.AcceptedValues
	total.RejectedValues += r.RejectedValues
}
