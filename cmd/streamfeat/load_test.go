package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/streamfeat/streamfeat"
)

// TestHistogramAgainstSort checks quantiles against the exact order
// statistics of the same samples: never below, at most 1/64 above.
func TestHistogramAgainstSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h histogram
	var all []int64
	for range 20_000 {
		v := int64(rng.ExpFloat64() * 1e6) // a long tail, like latencies
		if rng.IntN(100) == 0 {
			v = rng.Int64N(64) // and some tiny ones
		}
		h.record(v)
		all = append(all, v)
	}
	slices.Sort(all)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		exact := all[int(q*float64(len(all))+0.999999)-1]
		got := h.quantile(q)
		if got < exact || float64(got-exact) > float64(exact)/64+1 {
			t.Errorf("q%v = %d; exact %d", q, got, exact)
		}
	}
	if h.max != all[len(all)-1] || h.n != int64(len(all)) {
		t.Errorf("max %d, n %d; want %d, %d", h.max, h.n, all[len(all)-1], len(all))
	}
	for _, v := range []uint64{0, 63, 64, 127, 128, 1 << 40, 1<<63 - 1} {
		i := histIndex(v)
		if i < 0 || i >= histBuckets || histUpper(i) < int64(v) || (i > 0 && histUpper(i-1) >= int64(v)) {
			t.Errorf("value %d: bucket %d of upper %d does not hold it", v, i, histUpper(i))
		}
	}
}

func TestCheckLoopback(t *testing.T) {
	for target, ok := range map[string]bool{
		"127.0.0.1:7070": true, "[::1]:7070": true, "localhost:1": true, "127.3.2.1:9": true,
		"10.0.0.1:7070": false, "example.com:7070": false, "0.0.0.0:7070": false, "nonsense": false,
	} {
		if err := checkLoopback(target, false); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v; want allowed %v", target, err, ok)
		}
	}
	if err := checkLoopback("10.0.0.1:7070", true); err != nil {
		t.Errorf("--allow-remote: %v", err)
	}
}

func TestGeneratorIsReproducible(t *testing.T) {
	f, err := parseLoadFlags([]string{"--seed", "42", "--entities", "50", "--batch-events", "20",
		"--features-per-event", "3", "--dist", "lognormal", "--drift-share", "0.5"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ids := []int32{1, 2, 3}
	snap := func(g *generator, drift bool) []streamfeat.Event {
		var out []streamfeat.Event
		for _, ev := range g.batch(1000, drift) {
			ev.Values = slices.Clone(ev.Values)
			out = append(out, ev)
		}
		return out
	}
	a, b := newGenerator(f, 0, ids), newGenerator(f, 0, ids)
	for i := range 3 {
		if x, y := snap(a, i == 2), snap(b, i == 2); !reflect.DeepEqual(x, y) {
			t.Fatalf("batch %d differs between two generators of the same seed", i)
		}
	}
	if reflect.DeepEqual(snap(newGenerator(f, 1, ids), false), snap(newGenerator(f, 0, ids), false)) {
		t.Error("workers 0 and 1 send the same values; want a stream each")
	}
}

func TestLoadUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--target", "192.0.2.1:7070"},
		{"--duration", "0s"},
		{"--drift-share", "2"},
		{"--dist", "cauchy"},
		{"extra"},
	} {
		if _, err := parseLoadFlags(args, &bytes.Buffer{}); !errors.Is(err, errUsage) {
			t.Errorf("args %q: err %v; want errUsage", args, err)
		}
	}
}

// TestLoadAgainstServer sends a fixed number of events to a real server on
// loopback and checks the report adds up.
func TestLoadAgainstServer(t *testing.T) {
	addr, engine := startServer(t, streamfeat.Config{})

	var stdout bytes.Buffer
	err := runLoad(context.Background(), []string{"--target", addr, "--events", "5000",
		"--batch-events", "300", "--concurrency", "3", "--wait-for-capacity", "--json",
		"--duration", "1m"}, &stdout, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	var rep loadReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, stdout.String())
	}
	if rep.EventsSent != 5000 || rep.Accepted != 5000 || rep.RPCErrors != 0 || rep.RPCs != 17 {
		t.Errorf("report %+v; want 5000 events sent and accepted in 17 RPCs (16 full, one of 200)", rep)
	}
	if rep.LatencyP50us <= 0 || rep.LatencyP50us > rep.LatencyP99us || rep.LatencyP99us > rep.LatencyMaxus {
		t.Errorf("latencies p50 %v, p99 %v, max %v; want 0 < p50 <= p99 <= max",
			rep.LatencyP50us, rep.LatencyP99us, rep.LatencyMaxus)
	}
	m := engine.Metrics()
	if m.EventsAccepted != 5000 || m.ValuesAccepted != 5000*4 {
		t.Errorf("server counted %d events, %d values; want 5000 and 20000", m.EventsAccepted, m.ValuesAccepted)
	}
}
