package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	pb "github.com/streamfeat/streamfeat/gen/streamfeat/v1"
)

// servedProcess is `streamfeat serve` running in the test.
type servedProcess struct {
	grpcAddr, metricsAddr string
	stop                  func() error // signals the server and waits for it
}

// startServe runs the serve command with args on loopback ports until
// stop or the end of the test, and returns its gRPC and metrics addresses,
// which it reads from the start-up log records.
func startServe(t *testing.T, args ...string) *servedProcess {
	t.Helper()
	for _, name := range []string{"LISTEN", "SHARDS", "QUEUE_DEPTH", "ENTITY_TTL", "CLOCK",
		"MAX_BATCH_EVENTS", "MAX_RECV_BYTES", "DRAIN_TIMEOUT", "LOG_FORMAT",
		"METRICS_LISTEN", "PPROF"} {
		t.Setenv(envPrefix+name, "")
	}
	ctx, signal := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan error, 1)
	args = append([]string{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--log-format", "json"}, args...)
	go func() { done <- runServe(ctx, args, io.Discard, &stderr) }()

	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			signal()
			select {
			case stopErr = <-done:
			case <-time.After(time.Minute):
				stopErr = errors.New("serve did not return within a minute of its signal")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { stop() })

	p := &servedProcess{stop: stop}
	deadline := time.After(30 * time.Second)
	for p.grpcAddr == "" || p.metricsAddr == "" {
		select {
		case err := <-done:
			t.Fatalf("serve returned before serving: %v", err)
		case <-deadline:
			t.Fatal("no start-up log records")
		case <-time.After(5 * time.Millisecond):
		}
		if rec := stderr.record("serving streamfeat.v1.StreamFeat"); rec != nil {
			p.grpcAddr, _ = rec["addr"].(string)
		}
		if rec := stderr.record("serving metrics"); rec != nil {
			p.metricsAddr, _ = rec["addr"].(string)
		}
	}
	return p
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

// get returns the status code and body of an HTTP GET.
func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, body
}

// scrape fetches /metrics and parses it with expfmt's text parser.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, "http://"+addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: status %d", code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value returns the value of the series of family name whose labels
// include every pair of want ("reason", "overloaded", …): a counter's or
// gauge's value, a histogram's observation count. It fails the test when
// there is no such series.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	for _, m := range fams[name].GetMetric() {
		match := true
		for i := 0; i+1 < len(want); i += 2 {
			match = match && label(m, want[i]) == want[i+1]
		}
		if match {
			return m.GetCounter().GetValue() + m.GetGauge().GetValue() +
				float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("no series %s%v", name, want)
	return 0
}

// ingestTotals is what the clients sent and what the responses said.
type ingestTotals struct {
	mu                                  sync.Mutex
	rpcs, sent, accepted                int64
	tooOld, tooNew, invalid, overloaded int64
	acceptedValues, rejectedValues      int64
	firstErr                            error
}

func (s *ingestTotals) add(n int, r *pb.IngestBatchResponse, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.firstErr == nil {
			s.firstErr = err
		}
		return
	}
	s.rpcs++
	s.sent += int64(n)
	s.accepted += r.GetAcceptedEvents()
	s.tooOld += r.GetDroppedTooOld()
	s.tooNew += r.GetDroppedTooNew()
	s.invalid += r.GetDroppedInvalid()
	s.overloaded += r.GetDroppedOverloaded()
	s.acceptedValues += r.GetAcceptedFeatureValues()
	s.rejectedValues += r.GetRejectedFeatureValues()
}

// TestMetricsUnderLoad is the acceptance test of the metrics: the real
// server, real gRPC ingest, real HTTP scrapes parsed with expfmt. With one
// shard and a queue of one message, concurrent ingest keeps the queue full
// while the shard applies a batch, so a scrape during the load sees depth 1;
// after the load it drains back to 0. Every event sent is counted once:
// accepted plus dropped is sent, on the server as in the responses.
func TestMetricsUnderLoad(t *testing.T) {
	p := startServe(t, "--shards", "1", "--queue-depth", "1")
	client := dial(t, p.grpcAddr)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := client.RegisterSchema(ctx, &pb.RegisterSchemaRequest{FeatureNames: []string{"f1"}})
	if err != nil {
		t.Fatal(err)
	}

	fams := scrape(t, p.metricsAddr)
	if v := value(t, fams, "streamfeat_queue_capacity", "shard", "0"); v != 1 {
		t.Errorf("queue capacity %v; want 1", v)
	}
	if v := value(t, fams, "streamfeat_events_accepted_total"); v != 0 {
		t.Errorf("events accepted before any ingest: %v", v)
	}

	// Load: workers send until a scrape has seen a queued message, or each
	// has sent maxBatches, or the deadline.
	const workers, batchEvents, maxBatches = 4, 2000, 2000
	var (
		totals ingestTotals
		seen   atomic.Bool
		wg     sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for b := 0; b < maxBatches && !seen.Load() && ctx.Err() == nil; b++ {
				req := ingestRequest(w, b, batchEvents)
				resp, err := client.IngestBatch(ctx, req)
				totals.add(len(req.Events), resp, err)
			}
		})
	}

	// Scrape during the load until the queue shows a message waiting. The
	// server's counts only grow meanwhile.
	var lastCounted float64
	scrapes := 0
	for !seen.Load() && ctx.Err() == nil {
		fams := scrape(t, p.metricsAddr)
		scrapes++
		counted := value(t, fams, "streamfeat_events_accepted_total")
		for _, reason := range dropReasons {
			counted += value(t, fams, "streamfeat_events_dropped_total", "reason", reason)
		}
		if counted < lastCounted {
			t.Errorf("accepted plus dropped went down from %v to %v", lastCounted, counted)
		}
		lastCounted = counted
		if value(t, fams, "streamfeat_queue_depth", "shard", "0") > 0 {
			seen.Store(true)
		}
	}
	wg.Wait()
	if !seen.Load() {
		t.Fatalf("no scrape of %d during the load saw a queued message", scrapes)
	}
	t.Logf("saw a queued message at scrape %d; %d RPCs sent %d events", scrapes, totals.rpcs, totals.sent)
	if totals.firstErr != nil {
		t.Fatalf("IngestBatch: %v", totals.firstErr)
	}

	// After the load: the server's counters are the responses' sums.
	fams = scrape(t, p.metricsAddr)
	accepted := value(t, fams, "streamfeat_events_accepted_total")
	dropped := 0.0
	for reason, want := range map[string]int64{
		"too_old": totals.tooOld, "too_new": totals.tooNew,
		"invalid": totals.invalid, "overloaded": totals.overloaded,
	} {
		got := value(t, fams, "streamfeat_events_dropped_total", "reason", reason)
		dropped += got
		if got != float64(want) {
			t.Errorf("dropped %s: server %v, responses %d", reason, got, want)
		}
	}
	if accepted != float64(totals.accepted) || accepted+dropped != float64(totals.sent) {
		t.Errorf("server: %v accepted + %v dropped; responses: %d accepted; sent %d",
			accepted, dropped, totals.accepted, totals.sent)
	}
	for name, want := range map[string]int64{
		"streamfeat_feature_values_accepted_total": totals.acceptedValues,
		"streamfeat_feature_values_rejected_total": totals.rejectedValues,
		"streamfeat_ingest_duration_seconds":       totals.rpcs,
	} {
		if got := value(t, fams, name); got != float64(want) {
			t.Errorf("%s = %v; want %d", name, got, want)
		}
	}
	handled := value(t, fams, "grpc_server_handled_total",
		"grpc_method", "IngestBatch", "grpc_code", "OK")
	if handled != float64(totals.rpcs) {
		t.Errorf("grpc_server_handled_total{IngestBatch, OK} = %v; want %d", handled, totals.rpcs)
	}

	// The queue drains, and the shard applies what it accepted.
	deadline := time.Now().Add(30 * time.Second)
	for value(t, scrape(t, p.metricsAddr), "streamfeat_queue_depth", "shard", "0") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("queue depth still above 0 30s after the load")
		}
		time.Sleep(5 * time.Millisecond)
	}
	fams = scrape(t, p.metricsAddr)
	if v := value(t, fams, "streamfeat_batches_applied_total", "shard", "0"); v < 1 {
		t.Errorf("batches applied %v; want at least 1", v)
	}
	if v := value(t, fams, "streamfeat_live_entities", "shard", "0"); v != batchEvents {
		t.Errorf("live entities %v; want %d", v, batchEvents)
	}
	if v := value(t, fams, "streamfeat_arena_in_use_bytes", "shard", "0"); v <= 0 {
		t.Errorf("arena bytes in use %v; want some", v)
	}

	if err := p.stop(); err != nil {
		t.Errorf("serve: %v", err)
	}
}

// ingestRequest is batch b of worker w: n events of entities e0 … e(n-1),
// stamped now, one value each.
func ingestRequest(w, b, n int) *pb.IngestBatchRequest {
	now := time.Now().UnixMilli()
	events := make([]*pb.Event, n)
	for i := range events {
		events[i] = &pb.Event{
			EntityId:    "e" + strconv.Itoa(i),
			TimestampMs: now,
			Values:      []*pb.FeatureValue{{FeatureId: 1, Value: float64(w*1000 + b + i%7)}},
		}
	}
	return &pb.IngestBatchRequest{Events: events}
}

func TestPprofOnlyWithFlag(t *testing.T) {
	for _, withPprof := range []bool{false, true} {
		var args []string
		want := http.StatusNotFound
		if withPprof {
			args, want = []string{"--pprof"}, http.StatusOK
		}
		p := startServe(t, args...)
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
			if code, _ := get(t, "http://"+p.metricsAddr+path); code != want {
				t.Errorf("pprof %v: GET %s: status %d; want %d", withPprof, path, code, want)
			}
		}
		if code, _ := get(t, "http://"+p.metricsAddr+"/metrics"); code != http.StatusOK {
			t.Errorf("pprof %v: GET /metrics: status %d; want 200", withPprof, code)
		}
		if err := p.stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	}
}

func TestMetricsFlags(t *testing.T) {
	cfg, err := parseServeFlags(nil, env(map[string]string{
		"STREAMFEAT_METRICS_LISTEN": "127.0.0.1:9090", "STREAMFEAT_PPROF": "true",
	}), io.Discard)
	if err != nil || cfg.metricsListen != "127.0.0.1:9090" || !cfg.pprof {
		t.Errorf("from the environment: %q, pprof %v, %v; want 127.0.0.1:9090, true",
			cfg.metricsListen, cfg.pprof, err)
	}
	cfg, err = parseServeFlags(nil, env(nil), io.Discard)
	if err != nil || cfg.metricsListen != "" || cfg.pprof {
		t.Errorf("defaults: %q, pprof %v, %v; want off", cfg.metricsListen, cfg.pprof, err)
	}
	var stderr bytes.Buffer
	if _, err := parseServeFlags([]string{"--pprof"}, env(nil), &stderr); !errors.Is(err, errUsage) ||
		!bytes.Contains(stderr.Bytes(), []byte("--metrics-listen")) {
		t.Errorf("--pprof alone: %v, %q; want a usage error naming --metrics-listen", err, stderr.String())
	}

	// A port in use fails the start, and the gRPC port is released.
	p := startServe(t)
	cfg, err = parseServeFlags([]string{"--listen", "127.0.0.1:0", "--metrics-listen", p.metricsAddr},
		env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	err = serve(t.Context(), cfg, newLogger("text", io.Discard))
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("metrics listen")) {
		t.Errorf("metrics port in use: %v; want a metrics listen error", err)
	}
}

func TestCheckMetricsURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"http://127.0.0.1:9090/metrics": true, "http://localhost/metrics": true,
		"https://[::1]:9090/metrics": true, "http://10.0.0.1:9090/metrics": false,
		"http://example.com/metrics": false, "ftp://127.0.0.1/metrics": false, "127.0.0.1:9090": false,
	} {
		if err := checkMetricsURL(raw, false); (err == nil) != ok {
			t.Errorf("checkMetricsURL(%q) = %v; want allowed %v", raw, err, ok)
		}
	}
	if err := checkMetricsURL("http://10.0.0.1:9090/metrics", true); err != nil {
		t.Errorf("--allow-remote: %v", err)
	}
}

// load --metrics-url reports the server's own count of the run's events.
func TestLoadReportsServerMetrics(t *testing.T) {
	p := startServe(t, "--shards", "2")
	var stdout, stderr bytes.Buffer
	args := []string{"--target", p.grpcAddr, "--metrics-url", "http://" + p.metricsAddr + "/metrics",
		"--events", "3000", "--batch-events", "100", "--concurrency", "2", "--entities", "50",
		"--duration", "30s", "--json"}
	if code := run(t.Context(), append([]string{"load"}, args...), &stdout, &stderr); code != 0 {
		t.Fatalf("load exit code %d: %s", code, stderr.String())
	}
	var rep loadReport
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, stdout.String())
	}
	s := rep.Server
	if s == nil {
		t.Fatalf("no server section: %s", stdout.String())
	}
	var dropped int64
	for _, n := range s.Dropped {
		dropped += n
	}
	if s.EventsAccepted != rep.Accepted || s.EventsAccepted+dropped != rep.EventsSent ||
		rep.EventsSent != 3000 {
		t.Errorf("server %d accepted + %d dropped; client sent %d, %d accepted",
			s.EventsAccepted, dropped, rep.EventsSent, rep.Accepted)
	}
	if fmt.Sprint(s.QueueCapacity) != "[256 256]" || len(s.QueueDepth) != 2 {
		t.Errorf("queues: depth %v, capacity %v; want 2 shards of 256", s.QueueDepth, s.QueueCapacity)
	}

	// The text report prints them too; a URL that serves no metrics fails.
	stdout.Reset()
	code := run(t.Context(), append([]string{"load"}, args[:len(args)-1]...), &stdout, &stderr)
	if code != 0 || !regexp.MustCompile(`server queues \d+/256 \d+/256 `).Match(stdout.Bytes()) {
		t.Errorf("text report (exit %d):\n%s", code, stdout.String())
	}
	bad := []string{"load", "--target", p.grpcAddr, "--metrics-url", "http://" + p.metricsAddr + "/nothing",
		"--events", "10", "--duration", "5s"}
	stderr.Reset()
	if code := run(t.Context(), bad, io.Discard, &stderr); code != 1 ||
		!bytes.Contains(stderr.Bytes(), []byte("404")) {
		t.Errorf("metrics URL answering 404: exit %d, %q; want 1 and the status", code, stderr.String())
	}
}

// Every family the Grafana dashboard queries is one the server exports.
func TestDashboardQueriesExportedFamilies(t *testing.T) {
	raw, err := os.ReadFile("../../examples/grafana/streamfeat.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}

	p := startServe(t)
	fams := scrape(t, p.metricsAddr)
	name := regexp.MustCompile(`\b(streamfeat|grpc_server|process|go_memstats)_[a-z_]+`) // not the labels
	checked := 0
	for _, panel := range dash.Panels {
		for _, target := range panel.Targets {
			for _, n := range name.FindAllString(target.Expr, -1) {
				family := strings.TrimSuffix(n, "_bucket")
				if fams[family] == nil {
					t.Errorf("the dashboard queries %s, which /metrics does not have", n)
				}
				checked++
			}
		}
	}
	if checked < 20 {
		t.Errorf("checked only %d names; did the dashboard's layout change?", checked)
	}
}

// TestSnapshotMetrics: with a state directory, the server times and sizes
// its periodic snapshots on /metrics.
func TestSnapshotMetrics(t *testing.T) {
	for _, name := range []string{"STATE_DIR", "SNAPSHOT_EVERY", "DISCARD_BAD_STATE"} {
		t.Setenv(envPrefix+name, "")
	}
	p := startServe(t, "--state-dir", t.TempDir(), "--snapshot-every", "20ms")
	deadline := time.Now().Add(30 * time.Second)
	for {
		fams := scrape(t, p.metricsAddr)
		if fams["streamfeat_snapshot_duration_seconds"] != nil &&
			value(t, fams, "streamfeat_snapshot_duration_seconds") >= 2 {
			if size := value(t, fams, "streamfeat_snapshot_size_bytes"); size <= 0 {
				t.Fatalf("snapshot size %v; want the bytes of the newest snapshot", size)
			}
			if f := value(t, fams, "streamfeat_snapshot_failures_total"); f != 0 {
				t.Fatalf("%v snapshot failures; want 0", f)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no two snapshots timed on /metrics within 30 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
}
