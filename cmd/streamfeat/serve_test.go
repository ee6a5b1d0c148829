package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/streamfeat/streamfeat"
	pb "github.com/streamfeat/streamfeat/gen/streamfeat/v1"
	"github.com/streamfeat/streamfeat/grpcserver"
)

// env returns a lookup function over a fixed set of variables.
func env(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

func TestServeFlagDefaults(t *testing.T) {
	cfg, err := parseServeFlags(nil, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.listen != "127.0.0.1:7070" || cfg.clock != "wall" || cfg.engine.Clock != nil ||
		cfg.logFormat != "text" || cfg.engine.Shards != streamfeat.DefaultShards ||
		cfg.server.MaxRecvMsgBytes != grpcserver.DefaultMaxRecvMsgBytes ||
		cfg.server.DrainTimeout != grpcserver.DefaultDrainTimeout {
		t.Errorf("defaults = %+v", cfg)
	}
}

func TestServeFlagsFromEnv(t *testing.T) {
	vars := map[string]string{
		"STREAMFEAT_LISTEN":           "127.0.0.1:9999",
		"STREAMFEAT_SHARDS":           "3",
		"STREAMFEAT_QUEUE_DEPTH":      "17",
		"STREAMFEAT_ENTITY_TTL":       "90m",
		"STREAMFEAT_CLOCK":            "event",
		"STREAMFEAT_MAX_BATCH_EVENTS": "1000",
		"STREAMFEAT_MAX_RECV_BYTES":   "8MiB",
		"STREAMFEAT_DRAIN_TIMEOUT":    "3s",
		"STREAMFEAT_LOG_FORMAT":       "json",
	}
	cfg, err := parseServeFlags(nil, env(vars), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.engine.Clock.(*streamfeat.EventClock); !ok || cfg.clock != "event" {
		t.Errorf("clock = %q, %T; want the event clock", cfg.clock, cfg.engine.Clock)
	}
	got := []any{cfg.listen, cfg.engine.Shards, cfg.engine.QueueDepth, cfg.engine.EntityTTL,
		cfg.server.MaxBatchEvents, cfg.server.MaxRecvMsgBytes, cfg.server.DrainTimeout, cfg.logFormat}
	want := []any{"127.0.0.1:9999", 3, 17, 90 * time.Minute, 1000, 8 << 20, 3 * time.Second, "json"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("setting %d = %v; want %v", i, got[i], want[i])
		}
	}

	// A flag on the command line wins over the environment.
	cfg, err = parseServeFlags([]string{"--shards", "5", "--clock=wall"}, env(vars), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.engine.Shards != 5 || cfg.clock != "wall" || cfg.engine.Clock != nil || cfg.engine.QueueDepth != 17 {
		t.Errorf("flags over env: shards %d, clock %q, queue depth %d; want 5, wall, 17",
			cfg.engine.Shards, cfg.clock, cfg.engine.QueueDepth)
	}

	// An empty variable counts as unset.
	cfg, err = parseServeFlags(nil, env(map[string]string{"STREAMFEAT_SHARDS": ""}), io.Discard)
	if err != nil || cfg.engine.Shards != streamfeat.DefaultShards {
		t.Errorf("empty STREAMFEAT_SHARDS: shards %d, err %v; want the default", cfg.engine.Shards, err)
	}
}

func TestServeFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		vars    map[string]string
		message string
	}{
		{"bad clock flag", []string{"--clock", "sundial"}, nil, "want one of wall, event"},
		{"bad clock env", nil, map[string]string{"STREAMFEAT_CLOCK": "sundial"}, "STREAMFEAT_CLOCK"},
		{"bad shards env", nil, map[string]string{"STREAMFEAT_SHARDS": "many"}, "STREAMFEAT_SHARDS"},
		{"bad size", []string{"--max-recv-bytes", "lots"}, nil, "64MiB"},
		{"size over 2GiB", []string{"--max-recv-bytes", "4GiB"}, nil, "2GiB"},
		{"unknown flag", []string{"--bogus"}, nil, "bogus"},
		{"argument", []string{"extra"}, nil, "no arguments"},
	} {
		var stderr bytes.Buffer
		_, err := parseServeFlags(tc.args, env(tc.vars), &stderr)
		if !errors.Is(err, errUsage) {
			t.Errorf("%s: err = %v; want errUsage", tc.name, err)
		}
		if !strings.Contains(stderr.String(), tc.message) {
			t.Errorf("%s: stderr %q; want it to mention %q", tc.name, stderr.String(), tc.message)
		}
	}
}

func TestServeHelp(t *testing.T) {
	var stderr bytes.Buffer
	_, err := parseServeFlags([]string{"--help"}, env(nil), &stderr)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("err = %v; want flag.ErrHelp", err)
	}
	for _, s := range []string{"Example:", "grpcurl", "--max-recv-bytes bytes", "STREAMFEAT_MAX_RECV_BYTES",
		"--clock wall|event", "default 127.0.0.1:7070"} {
		if !strings.Contains(stderr.String(), s) {
			t.Errorf("help lacks %q:\n%s", s, stderr.String())
		}
	}
	if code := run(t.Context(), []string{"serve", "-h"}, io.Discard, io.Discard); code != 0 {
		t.Errorf("serve -h exit code %d; want 0", code)
	}
	if code := run(t.Context(), []string{"serve", "--bogus"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("serve --bogus exit code %d; want 2", code)
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "1024": 1024, "512B": 512, "4KiB": 4096,
		"64MiB": 64 << 20, "1GiB": 1 << 30} {
		var b byteSize
		if err := b.Set(in); err != nil || int(b) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.5MiB", "MiB", "3TB"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("Set(%q) = %d; want an error", in, b)
		}
	}
	if s := byteSize(64 << 20); s.String() != "64MiB" {
		t.Errorf("String = %q; want 64MiB", s.String())
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and a polling reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// record returns the first JSON log record whose message is msg.
func (b *syncBuffer) record(msg string) map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	sc := bufio.NewScanner(bytes.NewReader(b.buf.Bytes()))
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == msg {
			return rec
		}
	}
	return nil
}

// The serve command runs the real server, answers RPCs, and exits cleanly
// when its context ends, as it does on SIGINT or SIGTERM.
func TestServeRunsUntilCancelled(t *testing.T) {
	for _, name := range []string{"LISTEN", "SHARDS", "QUEUE_DEPTH", "ENTITY_TTL", "CLOCK",
		"MAX_BATCH_EVENTS", "MAX_RECV_BYTES", "DRAIN_TIMEOUT", "LOG_FORMAT"} {
		t.Setenv(envPrefix+name, "")
	}
	deadline, cancelAll := context.WithTimeout(t.Context(), time.Minute)
	defer cancelAll()
	ctx, signal := context.WithCancel(deadline)
	defer signal()

	var stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runServe(ctx, []string{"--listen", "127.0.0.1:0", "--clock", "event",
			"--log-format", "json", "--shards", "2"}, io.Discard, &stderr)
	}()

	// Wait for the start-up record, which names the port chosen.
	var addr string
	for addr == "" {
		select {
		case err := <-done:
			t.Fatalf("serve returned before serving: %v", err)
		case <-deadline.Done():
			t.Fatal("no start-up log record")
		case <-time.After(10 * time.Millisecond):
		}
		if rec := stderr.record("serving streamfeat.v1.StreamFeat"); rec != nil {
			addr, _ = rec["addr"].(string)
			if rec["shards"] != 2.0 || rec["clock"] != "event" {
				t.Errorf("start-up record %v; want shards 2, clock event", rec)
			}
		}
	}

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewStreamFeatClient(conn)
	if _, err := client.RegisterSchema(deadline, &pb.RegisterSchemaRequest{FeatureNames: []string{"f1"}}); err != nil {
		t.Fatalf("RegisterSchema: %v", err)
	}
	_, err = client.IngestBatch(deadline, &pb.IngestBatchRequest{Events: []*pb.Event{
		{EntityId: "e1", TimestampMs: 1_700_000_000_000, Values: []*pb.FeatureValue{{FeatureId: 1, Value: 1}}},
		{EntityId: "e1", TimestampMs: 1_700_000_001_000, Values: []*pb.FeatureValue{{FeatureId: 1, Value: 3}}},
	}})
	if err != nil {
		t.Fatalf("IngestBatch: %v", err)
	}
	resp, err := client.GetFeatureStats(deadline, &pb.GetFeatureStatsRequest{
		EntityId: "e1", FeatureId: 1, Window: pb.Window_WINDOW_SHORT,
	})
	if err != nil || resp.GetStats().GetCount() != 2 || resp.GetStats().GetMean() != 2 {
		t.Errorf("GetFeatureStats = %v, %v; want count 2, mean 2", resp, err)
	}
	hresp, err := healthpb.NewHealthClient(conn).Check(deadline, &healthpb.HealthCheckRequest{})
	if err != nil || hresp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health = %v, %v; want SERVING", hresp, err)
	}

	signal()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve returned %v; want nil after a graceful shutdown", err)
		}
	case <-deadline.Done():
		t.Fatal("serve did not return after its context ended")
	}
	rec := stderr.record("stopped")
	if rec == nil || rec["events_accepted"] != 2.0 || rec["events_dropped"] != 0.0 {
		t.Errorf("shutdown summary %v; want events_accepted 2, events_dropped 0", rec)
	}
}

func TestServeListenError(t *testing.T) {
	cfg, err := parseServeFlags([]string{"--listen", "127.0.0.1:-1"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	err = serve(t.Context(), cfg, newLogger("text", io.Discard))
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("serve on a bad address = %v; want a listen error", err)
	}
}
