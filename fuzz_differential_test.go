package streamfeat

import (
	"math"
	"math/rand/v2"
	"testing"
)

// FuzzEngineDifferential decodes its input into a short program of ingest
// calls and queries and runs it on the engine and on the reference model of
// differential_test.go side by side. Every call's result must equal the
// model's, and every query's figures must match the model's windows
// recomputed exactly (counts equal, means within a few ulps, variances
// within 1e-9 relative), as in TestDifferential.
//
// Program: a header byte (shard count), then operations until the input
// runs out. An operation's first byte picks an ingest call of 1 to 8
// events (most of the time) or a query: one entity's short and long
// windows, the population's, or both kinds of drift. Events draw entities
// (some invalid), feature ids 0 to 5 (1 to 4 registered), values from a
// table of awkward ones or any bit pattern, and timestamps near the
// model's clock, behind it by up to about an hour and a quarter, a jump
// ahead, or at the ends of int64.
func FuzzEngineDifferential(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{2, 0, 3, 0, 0, 1, 1, 5, 0, 6, 0, 0})
	r := rand.New(rand.NewPCG(11, 3))
	for range 8 {
		b := make([]byte, 32+r.IntN(480))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		runEngineDifferential(t, &fuzzInput{b: data})
	})
}

// Entities of the differential program: a few valid ids, so queries find
// data, and invalid ones, which the model must drop alike.
var diffEntities = []string{"a", "b", "c", "d", "", "\xff"}

func runEngineDifferential(t *testing.T, in *fuzzInput) {
	const nFeatures = 4
	e := newEventEngine(t, nFeatures, Config{Shards: 1 + in.intn(4)})
	m := &model{nFeatures: nFeatures}
	var total, want IngestResult

	for op := 0; op < 64 && !in.done(); op++ {
		k := in.byte()
		if k < 160 || !m.started {
			batch := diffBatch(in, m)
			exp := m.ingest(batch)
			got := ingest(t, e, batch...)
			if got != exp {
				t.Fatalf("op %d: Ingest(%+v) = %+v; model says %+v", op, batch, got, exp)
			}
			if now := e.nowMs(); m.started && now != m.now {
				t.Fatalf("op %d: clock %d; model says %d", op, now, m.now)
			}
			addResult(&total, got)
			addResult(&want, exp)
			continue
		}

		ent := diffEntities[in.intn(4)]
		f := int32(1 + in.intn(nFeatures))
		what := describe("op %d, entity %q, feature %d", op, ent, f)
		compareQuery(t, e, m, int(k%4), ent, f, what)
		if t.Failed() {
			t.FailNow()
		}
	}

	mt := e.Metrics()
	if mt.EventsAccepted != want.AcceptedEvents || mt.ValuesAccepted != want.AcceptedValues ||
		mt.ValuesRejected != want.RejectedValues || mt.DroppedInvalid != want.DroppedInvalid ||
		mt.DroppedTooOld != want.DroppedTooOld || total != want {
		t.Fatalf("metrics %+v, results %+v; model says %+v", mt, total, want)
	}
}

// diffBatch decodes one ingest call for the differential program.
func diffBatch(in *fuzzInput, m *model) []Event {
	ref := t0
	if m.started {
		ref = m.now
	}
	batch := make([]Event, 1+in.intn(8))
	for i := range batch {
		ev := Event{EntityID: diffEntities[in.intn(len(diffEntities))], TimestampMs: diffTime(in, ref)}
		for range in.intn(5) {
			ev.Values = append(ev.Values, fv(int32(in.intn(6)), in.value()))
		}
		batch[i] = ev
	}
	return batch
}

// diffTime decodes a timestamp relative to ref, in the default geometry's
// 5-second buckets.
func diffTime(in *fuzzInput, ref int64) int64 {
	const width = 5000
	switch k := in.byte(); {
	case k < 64: // within ref's bucket or next to it
		return addSat(ref, int64(in.byte())*40-5000)
	case k < 160: // back across the long window and a little past it
		return subSat(ref, int64(in.byte())*4*width+int64(k))
	case k < 208: // a little ahead
		return addSat(ref, int64(in.byte())*width/4)
	case k < 248: // a jump ahead, up to three long windows
		return addSat(ref, int64(in.byte())*9*width)
	case k < 252:
		return math.MinInt64 + int64(k%2)
	default:
		return math.MaxInt64 - int64(k%2)*width*700
	}
}
