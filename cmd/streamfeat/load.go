package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamfeat/streamfeat"
	"github.com/streamfeat/streamfeat/replay"
)

// loadFlags are the settings of one load run.
type loadFlags struct {
	target      string
	allowRemote bool
	entities    int
	features    int
	batch       int
	concurrency int
	duration    time.Duration
	events      int64
	rate        float64
	seed        uint64
	dist        *choiceValue
	mean        float64
	stddev      float64
	driftAfter  time.Duration
	driftShare  float64
	driftShift  float64
	driftScale  float64
	wait        bool
	timeout     time.Duration
	json        bool
	metricsURL  string
}

func parseLoadFlags(args []string, stderr io.Writer) (*loadFlags, error) {
	f := loadFlags{dist: newChoice("normal", "normal", "lognormal", "uniform")}
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: streamfeat load [flags]\n\nSends seeded synthetic events"+
			" to a server and reports throughput and RPC latency.\nThe same seed and flags"+
			" send the same values in the same order per worker.\n\nFlags:")
		printFlags(fs, false)
	}
	fs.StringVar(&f.target, "target", "127.0.0.1:7070", "server address HOST:PORT")
	fs.BoolVar(&f.allowRemote, "allow-remote", false, "allow a target that is not a loopback address")
	fs.IntVar(&f.entities, "entities", 10_000, "distinct entity ids, e0 … eN-1")
	fs.IntVar(&f.features, "features-per-event", 4, "feature values in each event")
	fs.IntVar(&f.batch, "batch-events", 500, "events per IngestBatch call")
	fs.IntVar(&f.concurrency, "concurrency", 4, "workers, each with one RPC in flight")
	fs.DurationVar(&f.duration, "duration", 10*time.Second, "how long to send")
	fs.Int64Var(&f.events, "events", 0, "stop after this many events (0: only --duration bounds the run)")
	fs.Float64Var(&f.rate, "rate", 0, "open loop: events/s over all workers, latency counted from "+
		"each batch's scheduled time (0: closed loop, as fast as the server answers)")
	fs.Uint64Var(&f.seed, "seed", 1, "random seed")
	fs.Var(f.dist, "dist", "value distribution: normal, lognormal or uniform")
	fs.Float64Var(&f.mean, "mean", 100, "mean of the values")
	fs.Float64Var(&f.stddev, "stddev", 10, "standard deviation of the values")
	fs.DurationVar(&f.driftAfter, "drift-after", 0, "inject drift this long after the start (0: never)")
	fs.Float64Var(&f.driftShare, "drift-share", 0.1, "share of entities that drift")
	fs.Float64Var(&f.driftShift, "drift-shift", 3, "drifted mean moves by this many standard deviations")
	fs.Float64Var(&f.driftScale, "drift-scale", 1, "drifted standard deviation is multiplied by this")
	fs.BoolVar(&f.wait, "wait-for-capacity", false, "ask the server to wait for queue space instead of dropping")
	fs.DurationVar(&f.timeout, "rpc-timeout", 10*time.Second, "deadline of each RPC")
	fs.BoolVar(&f.json, "json", false, "print the report as JSON")
	fs.StringVar(&f.metricsURL, "metrics-url", "", "the server's /metrics `URL`, such as "+
		"http://127.0.0.1:9090/metrics: report its drop counters and queue depths (empty: off)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}

	bad := func(format string, args ...any) (*loadFlags, error) {
		fmt.Fprintf(stderr, "streamfeat load: "+format+"\n", args...)
		return nil, errUsage
	}
	switch {
	case fs.NArg() > 0:
		return bad("unexpected arguments %q", fs.Args())
	case f.entities < 1 || f.features < 1 || f.batch < 1 || f.concurrency < 1:
		return bad("--entities, --features-per-event, --batch-events and --concurrency must be positive")
	case f.duration <= 0:
		return bad("--duration must be positive: every run is bounded")
	case f.events < 0 || f.rate < 0 || f.stddev < 0:
		return bad("--events, --rate and --stddev must not be negative")
	case f.driftShare < 0 || f.driftShare > 1:
		return bad("--drift-share %v: want 0 to 1", f.driftShare)
	}
	if err := checkLoopback(f.target, f.allowRemote); err != nil {
		return bad("%v", err)
	}
	if f.metricsURL != "" {
		if err := checkMetricsURL(f.metricsURL, f.allowRemote); err != nil {
			return bad("%v", err)
		}
	}
	return &f, nil
}

// checkLoopback refuses a target that is not a loopback address unless
// allowed: load is meant for a server of one's own, not a shared one. Names
// other than localhost are not resolved, so they count as remote.
func checkLoopback(target string, allowRemote bool) error {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return fmt.Errorf("target %q: %w", target, err)
	}
	if allowRemote || host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("target %q is not a loopback address; pass --allow-remote to load it", target)
}

// generator makes one worker's events. Its values depend only on the seed,
// the worker number and how many events it made before.
type generator struct {
	rng      *rand.Rand
	f        *loadFlags
	ids      []int32
	drifting int // entities 0 … drifting-1 drift once drift is on
	events   []streamfeat.Event
	values   []streamfeat.FeatureValue
}

func newGenerator(f *loadFlags, worker int, ids []int32) *generator {
	return &generator{
		rng:      rand.New(rand.NewPCG(f.seed, uint64(worker))),
		f:        f,
		ids:      ids,
		drifting: int(math.Round(f.driftShare * float64(f.entities))),
		events:   make([]streamfeat.Event, f.batch),
		values:   make([]streamfeat.FeatureValue, f.batch*len(ids)),
	}
}

// batch fills and returns the next batch, stamped nowMs; drift says whether
// the drifting entities have drifted yet.
func (g *generator) batch(nowMs int64, drift bool) []streamfeat.Event {
	for i := range g.events {
		e := g.rng.IntN(g.f.entities)
		mean, sd := g.f.mean, g.f.stddev
		if drift && e < g.drifting {
			mean += g.f.driftShift * g.f.stddev
			sd *= g.f.driftScale
		}
		vals := g.values[i*len(g.ids) : (i+1)*len(g.ids)]
		for j, id := range g.ids {
			vals[j] = streamfeat.FeatureValue{FeatureID: id, Value: g.draw(mean, sd)}
		}
		g.events[i] = streamfeat.Event{EntityID: "e" + strconv.Itoa(e), TimestampMs: nowMs, Values: vals}
	}
	return g.events
}

// draw returns one value of the chosen distribution with this mean and
// standard deviation.
func (g *generator) draw(mean, sd float64) float64 {
	switch g.f.dist.value {
	case "uniform": // width sd*sqrt(12) has standard deviation sd
		return mean + sd*math.Sqrt(12)*(g.rng.Float64()-0.5)
	case "lognormal": // exp(N(mu, s)) matched to the mean and sd asked for
		if mean <= 0 {
			return mean + sd*g.rng.NormFloat64()
		}
		s2 := math.Log1p(sd * sd / (mean * mean))
		return math.Exp(math.Log(mean) - s2/2 + math.Sqrt(s2)*g.rng.NormFloat64())
	}
	return mean + sd*g.rng.NormFloat64()
}

// loadReport is the outcome of a run, printed as text or JSON.
type loadReport struct {
	Target        string  `json:"target"`
	Seconds       float64 `json:"seconds"`
	RPCs          int64   `json:"rpcs"`
	RPCErrors     int64   `json:"rpc_errors"`
	EventsSent    int64   `json:"events_sent"`
	EventsPerSec  float64 `json:"events_per_second"`
	ValuesPerSec  float64 `json:"feature_values_per_second"`
	Accepted      int64   `json:"accepted_events"`
	DroppedTooOld int64   `json:"dropped_too_old"`
	DroppedTooNew int64   `json:"dropped_too_new"`
	DroppedInv    int64   `json:"dropped_invalid"`
	DroppedOver   int64   `json:"dropped_overloaded"`
	LatencyP50us  float64 `json:"latency_p50_us"`
	LatencyP90us  float64 `json:"latency_p90_us"`
	LatencyP99us  float64 `json:"latency_p99_us"`
	LatencyMaxus  float64 `json:"latency_max_us"`
	FirstError    string  `json:"first_error,omitempty"`

	Server *serverReport `json:"server,omitempty"` // with --metrics-url
}

func runLoad(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseLoadFlags(args, stderr)
	if err != nil {
		return err
	}
	backend, closeBackend, err := dialLoad(f)
	if err != nil {
		return err
	}
	defer closeBackend()

	names := make([]string, f.features)
	for i := range names {
		names[i] = "f" + strconv.Itoa(i+1)
	}
	reg, err := backend.RegisterSchema(ctx, names)
	if err != nil {
		return fmt.Errorf("register features: %w", err)
	}
	ids := make([]int32, len(names))
	for i, n := range names {
		ids[i] = reg[n]
	}

	// Scrape first, so that a bad --metrics-url fails before the load.
	var before *serverFigures
	if f.metricsURL != "" {
		if before, err = scrapeServer(ctx, f.metricsURL, f.timeout); err != nil {
			return err
		}
	}

	rep := f.drive(ctx, backend, ids)
	if before != nil {
		after, err := scrapeServer(context.WithoutCancel(ctx), f.metricsURL, f.timeout)
		if err != nil {
			f.print(stdout, rep)
			return err
		}
		rep.Server = newServerReport(f.metricsURL, before, after)
	}
	return f.print(stdout, rep)
}

// dialLoad connects with the wait-for-capacity choice of the flags.
func dialLoad(f *loadFlags) (*remote, func(), error) {
	b, closeFn, err := dialBackend(context.Background(), f.target, f.timeout)
	if err != nil {
		return nil, nil, err
	}
	r := b.(*remote)
	r.noWait = !f.wait
	return r, closeFn, nil
}

// drive runs the workers until the duration, the event budget or ctx ends.
// The end of the duration stops new batches; the RPCs in flight then finish
// under ctx, so that every batch sent is counted with its answer.
func (f *loadFlags) drive(ctx context.Context, b *remote, ids []int32) loadReport {
	stop, cancel := context.WithTimeout(ctx, f.duration)
	defer cancel()

	var budget atomic.Int64 // events still to send when --events is set
	budget.Store(f.events)
	start := time.Now()
	var interval time.Duration // open loop: time between one worker's batches
	if f.rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(f.batch*f.concurrency) / f.rate)
	}

	results := make([]workerResult, f.concurrency)
	var wg sync.WaitGroup
	for w := range f.concurrency {
		wg.Go(func() {
			results[w] = f.work(ctx, stop, b, newGenerator(f, w, ids), start, interval, &budget)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	var total workerResult
	for i := range results {
		total.add(&results[i])
	}
	return total.report(f, elapsed)
}

// workerResult is what one worker saw.
type workerResult struct {
	hist     histogram
	rpcs     int64
	errors   int64
	sent     int64
	res      streamfeat.IngestResult
	firstErr error
}

func (r *workerResult) add(o *workerResult) {
	r.hist.merge(&o.hist)
	r.rpcs += o.rpcs
	r.errors += o.errors
	r.sent += o.sent
	r.res.AcceptedEvents += o.res.AcceptedEvents
	r.res.AcceptedValues += o.res.AcceptedValues
	r.res.DroppedTooOld += o.res.DroppedTooOld
	r.res.DroppedTooNew += o.res.DroppedTooNew
	r.res.DroppedInvalid += o.res.DroppedInvalid
	r.res.DroppedOverloaded += o.res.DroppedOverloaded
	if r.firstErr == nil {
		r.firstErr = o.firstErr
	}
}

// work sends batches until ctx ends or the budget runs out. In open loop a
// batch's latency runs from when it was due, so a slow server shows as
// latency rather than as a lower send rate (no coordinated omission).
func (f *loadFlags) work(ctx, stop context.Context, b *remote, g *generator, start time.Time,
	interval time.Duration, budget *atomic.Int64) workerResult {
	var r workerResult
	due := start
	for stop.Err() == nil {
		n := len(g.events)
		if f.events > 0 {
			left := budget.Add(-int64(n))
			if left+int64(n) <= 0 {
				break
			}
			n = min(n, int(left+int64(n)))
		}
		if interval > 0 {
			due = due.Add(interval)
			if wait := time.Until(due); wait > 0 {
				select {
				case <-time.After(wait):
				case <-stop.Done():
					return r
				}
			}
		} else {
			due = time.Now()
		}

		now := time.Now()
		batch := g.batch(now.UnixMilli(), f.driftAfter > 0 && now.Sub(start) >= f.driftAfter)[:n]
		res, err := b.Ingest(ctx, batch)
		r.hist.record(int64(time.Since(due)))
		r.rpcs++
		r.sent += int64(n)
		if err != nil {
			if ctx.Err() != nil {
				r.sent -= int64(n) // cut off by an interrupt, not a failure
				break
			}
			r.errors++
			if r.firstErr == nil {
				r.firstErr = err
			}
			continue
		}
		r.res.AcceptedEvents += res.AcceptedEvents
		r.res.AcceptedValues += res.AcceptedValues
		r.res.DroppedTooOld += res.DroppedTooOld
		r.res.DroppedTooNew += res.DroppedTooNew
		r.res.DroppedInvalid += res.DroppedInvalid
		r.res.DroppedOverloaded += res.DroppedOverloaded
	}
	return r
}

func (r *workerResult) report(f *loadFlags, elapsed time.Duration) loadReport {
	secs := elapsed.Seconds()
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	rep := loadReport{
		Target: f.target, Seconds: secs, RPCs: r.rpcs, RPCErrors: r.errors,
		EventsSent: r.sent, EventsPerSec: float64(r.res.AcceptedEvents) / secs,
		ValuesPerSec: float64(r.res.AcceptedValues) / secs,
		Accepted:     r.res.AcceptedEvents, DroppedTooOld: r.res.DroppedTooOld,
		DroppedTooNew: r.res.DroppedTooNew, DroppedInv: r.res.DroppedInvalid,
		DroppedOver:  r.res.DroppedOverloaded,
		LatencyP50us: us(r.hist.quantile(0.50)), LatencyP90us: us(r.hist.quantile(0.90)),
		LatencyP99us: us(r.hist.quantile(0.99)), LatencyMaxus: us(r.hist.max),
	}
	if r.firstErr != nil {
		rep.FirstError = r.firstErr.Error()
	}
	return rep
}

func (f *loadFlags) print(w io.Writer, r loadReport) error {
	if f.json {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	fmt.Fprintf(w, "target        %s, %.2fs, %d RPCs (%d failed)\n", r.Target, r.Seconds, r.RPCs, r.RPCErrors)
	fmt.Fprintf(w, "events        %d sent, %d accepted, dropped: too_old %d, too_new %d, "+
		"invalid %d, overloaded %d\n", r.EventsSent, r.Accepted, r.DroppedTooOld,
		r.DroppedTooNew, r.DroppedInv, r.DroppedOver)
	fmt.Fprintf(w, "throughput    %.0f events/s, %.0f feature values/s\n", r.EventsPerSec, r.ValuesPerSec)
	fmt.Fprintf(w, "rpc latency   p50 %.0fµs, p90 %.0fµs, p99 %.0fµs, max %.0fµs\n",
		r.LatencyP50us, r.LatencyP90us, r.LatencyP99us, r.LatencyMaxus)
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error   %s\n", r.FirstError)
	}
	if r.Server != nil {
		r.Server.print(w)
	}
	return nil
}

// The load generator uses the replay's gRPC adapter.
var _ replay.Backend = (*remote)(nil)
