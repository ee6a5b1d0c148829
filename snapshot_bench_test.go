package streamfeat

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// countingWriter discards what it is given and counts it.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return len(p), nil
}

// snapshotState fills an engine with the default geometry and 8 shards with
// nEnt entities of two features, each fed one event every 150 s over the
// last hour: 24 buckets per series, 48 per entity.
func snapshotState(b *testing.B, nEnt int) *Engine {
	e := newEventEngine(b, 2, Config{Shards: 8})
	const step = 150_000 // ms between an entity's events
	batch := make([]Event, 0, 4096)
	values := make([]FeatureValue, 0, 2*4096)
	flush := func() {
		if _, err := e.Ingest(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
		batch, values = batch[:0], values[:0]
	}
	for k := range int64(24) {
		for i := range nEnt {
			values = append(values, FeatureValue{1, float64(i) + float64(k)/7},
				FeatureValue{2, 1e6 + float64(k*int64(i)%13)})
			batch = append(batch, Event{
				EntityID:    fmt.Sprintf("entity-%07d", i),
				TimestampMs: t0 + k*step + int64(i%step),
				Values:      values[len(values)-2:],
			})
			if len(batch) == cap(batch) {
				flush()
			}
		}
	}
	flush()
	return e
}

// BenchmarkSnapshot measures a snapshot of 100,000 entities (10,000 with
// -short): pause-ns/shard is how long each shard's owner stopped intake to
// copy its state (mean over shards; max-pause-ns the longest), bytes/entity
// the snapshot's size per entity. ns/op covers the whole snapshot, encoding
// included, on the caller's goroutine.
func BenchmarkSnapshot(b *testing.B) {
	nEnt := 100_000
	if testing.Short() {
		nEnt = 10_000
	}
	e := snapshotState(b, nEnt)
	b.ReportAllocs()
	b.ResetTimer()

	var pauses []time.Duration
	var size int64
	for b.Loop() {
		var w countingWriter
		st, err := e.snapshot(context.Background(), &w)
		if err != nil {
			b.Fatal(err)
		}
		if st.entities != int64(nEnt) {
			b.Fatalf("snapshot holds %d entities; want %d", st.entities, nEnt)
		}
		pauses = append(pauses, st.pauses...)
		size = w.n
	}

	var sum time.Duration
	for _, p := range pauses {
		sum += p
	}
	b.ReportMetric(float64(sum.Nanoseconds())/float64(len(pauses)), "pause-ns/shard")
	b.ReportMetric(float64(slices.Max(pauses).Nanoseconds()), "max-pause-ns")
	b.ReportMetric(float64(size)/float64(nEnt), "bytes/entity")
	b.ReportMetric(float64(size)/(1<<20), "snapshot-MiB")
}

// BenchmarkRestore measures decoding and installing the snapshot that
// BenchmarkSnapshot takes.
func BenchmarkRestore(b *testing.B) {
	nEnt := 100_000
	if testing.Short() {
		nEnt = 10_000
	}
	var buf bytes.Buffer
	if err := snapshotState(b, nEnt).Snapshot(&buf); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		e, err := New(Config{Shards: 8, Clock: NewEventClock()})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := e.Restore(bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		_ = e.Close()
		b.StartTimer()
	}
}
