package streamfeat

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitGoroutines polls until at most n goroutines run, or fails after a
// generous deadline.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines still running; want at most %d\n%s",
				runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// TestConcurrentProducersAndQueries runs many producers and queriers at
// once. Each producer owns its entities and checks read-your-writes after
// every call; at the end every accepted value is in the state.
func TestConcurrentProducersAndQueries(t *testing.T) {
	base := runtime.NumGoroutine()
	clock := NewManualClock(t0)
	e, err := New(Config{Clock: clock, Shards: 4, QueueDepth: 8, WaitForCapacity: true})
	if err != nil {
		t.Fatal(err)
	}
	registerN(t, e, 2)
	const producers, calls, perCall = 8, 150, 10
	ctx := context.Background()

	var wg sync.WaitGroup
	stop := make(chan struct{})
	for q := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				s, err := e.PopulationStats(ctx, int32(1+i%2), Short)
				if err != nil || s.Count < 0 {
					t.Errorf("querier %d: %+v, %v", q, s, err)
					return
				}
				if _, err := e.Drift(ctx, "p0-0", 1, DriftOptions{}); err != nil {
					t.Errorf("querier %d: %v", q, err)
					return
				}
			}
		})
	}
	var pw sync.WaitGroup
	for p := range producers {
		pw.Go(func() {
			counts := map[string]int64{}
			for c := range calls {
				var batch []Event
				for i := range perCall {
					id := "p" + strconv.Itoa(p) + "-" + strconv.Itoa((c+i)%5)
					batch = append(batch, ev(id, t0-int64(i*1000), float64(c), 1))
					counts[id]++
				}
				res, err := e.Ingest(ctx, batch)
				if err != nil || res.AcceptedEvents != perCall {
					t.Errorf("producer %d: %+v, %v", p, res, err)
					return
				}
				id := batch[0].EntityID
				if s, err := e.Stats(ctx, id, 1, Short); err != nil || s.Count != counts[id] {
					t.Errorf("producer %d read %s: %+v, %v; want count %d", p, id, s, err, counts[id])
					return
				}
			}
		})
	}
	pw.Wait()
	close(stop)
	wg.Wait()

	total := int64(producers * calls * perCall)
	for f := int32(1); f <= 2; f++ {
		if s := popStats(t, e, f, Long); s.Count != total {
			t.Fatalf("population count of feature %d: %d; want %d", f, s.Count, total)
		}
	}
	if m := e.Metrics(); m.EventsAccepted != total || m.ValuesAccepted != 2*total {
		t.Fatalf("metrics %+v; want %d events", m, total)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	waitGoroutines(t, base)
}

// TestCloseDrains closes the engine while producers are still sending, with
// queues small enough to overflow. Every value that an Ingest call reported
// as accepted must be in the state once Close has returned.
func TestCloseDrains(t *testing.T) {
	base := runtime.NumGoroutine()
	e, err := New(Config{Clock: NewManualClock(t0), Shards: 3, QueueDepth: 16})
	if err != nil {
		t.Fatal(err)
	}
	registerN(t, e, 1)
	var accepted, overloaded atomic.Int64
	var wg sync.WaitGroup
	started := make(chan struct{}, 6)
	for p := range 6 {
		wg.Go(func() {
			for c := 0; ; c++ {
				batch := []Event{ev("p"+strconv.Itoa(p)+"-"+strconv.Itoa(c%7), t0, 1), ev("x"+strconv.Itoa(c), t0, 2)}
				res, err := e.Ingest(context.Background(), batch)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Ingest: %v", err)
					return
				}
				accepted.Add(res.AcceptedValues)
				overloaded.Add(res.DroppedOverloaded)
				if c == 20 {
					started <- struct{}{}
				}
			}
		})
	}
	for range 6 {
		<-started
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	// The shard goroutines have returned, so their state may be read here.
	var inState int64
	for _, s := range e.shards {
		<-s.done
		ws := s.popWindows(1, t0)
		inState += ws.long.n
	}
	if inState != accepted.Load() || inState == 0 {
		t.Fatalf("%d values in the state after Close; %d were reported accepted", inState, accepted.Load())
	}
	if m := e.Metrics(); m.ValuesAccepted != accepted.Load() || m.DroppedOverloaded != overloaded.Load() {
		t.Fatalf("metrics %+v; want %d values accepted, %d events overloaded", m, accepted.Load(), overloaded.Load())
	}
	t.Logf("%d values kept, %d events dropped as overloaded", inState, overloaded.Load())
	waitGoroutines(t, base)
}

// blockShard makes shard i's owner wait until the returned func is called.
func blockShard(t *testing.T, e *Engine, i int) (release func()) {
	t.Helper()
	entered, gate := make(chan struct{}), make(chan struct{})
	e.shards[i].queue <- &message{run: func(*shard) { close(entered); <-gate }}
	<-entered
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return release
}

// TestWaitForCapacity fills a shard's queue while its owner is held, then
// checks both ways of meeting a full queue.
func TestWaitForCapacity(t *testing.T) {
	e := newEngine(t, Config{Clock: NewEventClock(), Shards: 1, QueueDepth: 1})
	registerN(t, e, 1)
	release := blockShard(t, e, 0)
	ctx := context.Background()

	// The queue holds one batch.
	if res := ingest(t, e, ev("e", t0, 1)); res.AcceptedEvents != 1 {
		t.Fatalf("first batch: %+v; want accepted", res)
	}
	// Default: a full queue drops the whole batch at once (SF-15's other
	// answer), counted as overloaded.
	big := []Event{ev("e", t0, 5), ev("f", t0, 6), ev("e", t0+1, 7)}
	res, err := e.Ingest(ctx, big)
	if err != nil || res.DroppedOverloaded != 3 || res.AcceptedEvents != 0 || res.DroppedEvents != 3 {
		t.Fatalf("full queue: %+v, %v; want all 3 dropped as overloaded", res, err)
	}
	// Waiting until a deadline that passes first.
	dctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	res, err = e.IngestWith(dctx, big, IngestOptions{WaitForCapacity: true})
	cancel()
	if !errors.Is(err, ErrOverloaded) || !errors.Is(err, context.DeadlineExceeded) || res.DroppedOverloaded != 3 {
		t.Fatalf("waiting past the deadline: %+v, %v; want ErrOverloaded and 3 dropped", res, err)
	}
	// Waiting without a deadline: the batch goes in once the owner moves.
	done := make(chan IngestResult)
	go func() {
		res, err := e.IngestWith(ctx, []Event{ev("e", t0+2, 3)}, IngestOptions{WaitForCapacity: true})
		if err != nil {
			t.Errorf("waiting ingest: %v", err)
		}
		done <- res
	}()
	release()
	if res := <-done; res.AcceptedEvents != 1 {
		t.Fatalf("waiting ingest: %+v; want accepted", res)
	}
	checkStats(t, "after waiting", stats(t, e, "e", 1, Short), want{2, 2, 1, 2, 1}, exact)
	checkStats(t, "dropped entity", stats(t, e, "f", 1, Short), want{}, exact)
	if m := e.Metrics(); m.DroppedOverloaded != 6 || m.EventsAccepted != 2 {
		t.Fatalf("metrics %+v; want 6 overloaded, 2 accepted", m)
	}
}

// TestQueryContextEnds checks that a query waiting behind a held shard gives
// up when its context ends.
func TestQueryContextEnds(t *testing.T) {
	e := newEngine(t, Config{Clock: NewEventClock(), Shards: 1, QueueDepth: 1})
	registerN(t, e, 1)
	blockShard(t, e, 0)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() {
		_, err := e.Stats(ctx, "e", 1, Short)
		errc <- err
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Stats with a cancelled context: %v; want context.Canceled", err)
	}
}
