package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamfeat/streamfeat"
	"github.com/streamfeat/streamfeat/replay"
)

// sampleUntil writes the rows of the bundled flights sample before the
// given RFC 3339 prefix bound to a gzip CSV file and returns its path.
func sampleUntil(t *testing.T, until string) string {
	t.Helper()
	f, err := os.Open("../../testdata/flights-sample.csv.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	sc := bufio.NewScanner(zr)
	for first := true; sc.Scan(); first = false {
		if !first && sc.Text() >= until {
			break // the sample is in time order and lines start with the time
		}
		zw.Write(append(sc.Bytes(), '\n'))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "flights.csv.gz")
	if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func replayArgs(extra ...string) []string {
	return append([]string{"--entity", "origin", "--time", "time", "--features", "delay,distance",
		"--min-count", "10"}, extra...)
}

func TestReplayPrintsAlertsAndSummary(t *testing.T) {
	path := sampleUntil(t, "2001-01-01T14")
	var stdout, stderr bytes.Buffer
	err := runReplay(context.Background(), replayArgs(path), &stdout, &stderr)
	if err != nil {
		t.Fatalf("replay: %v\n%s", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{
		"2001-01-01T08:31:00Z ORD", // a real airport alert in the first hours
		"(population)",
		"rows          ",
		"0 dropped (too_old 0, too_new 0, invalid 0, overloaded 0)",
		"events/s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestReplayBadRows(t *testing.T) {
	in := "time,origin,destination,delay,distance\n" +
		"2001-01-01T00:01:00Z,LAS,PHL,33,2176\n" +
		"soon,ATL,SAV,19,215\n" +
		"2001-01-01T00:02:00Z,ATL,SAV,lots,215\n"
	path := filepath.Join(t.TempDir(), "bad.csv")
	if err := os.WriteFile(path, []byte(in), 0o644); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	if err := runReplay(context.Background(), replayArgs(path), &stdout, &stderr); err != nil {
		t.Fatalf("replay: %v", err)
	}
	for _, want := range []string{"line 3: bad_time", "line 4: bad_value"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if !strings.Contains(stdout.String(), "3 read, 2 bad, bad_time 1, bad_value 1") {
		t.Errorf("summary does not count the bad rows:\n%s", stdout.String())
	}

	stdout.Reset()
	err := runReplay(context.Background(), replayArgs("--strict", path), &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("strict: err %v; want the first bad row", err)
	}
	// The summary counts the row that stopped the run, and the good row
	// before it was sent, not left in the batch.
	for _, want := range []string{"2 read, 1 bad, bad_time 1", "events        1 accepted"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("strict summary lacks %q:\n%s", want, stdout.String())
		}
	}
}

func TestReplayUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--entity", "origin"},         // no file, no time, no features
		replayArgs(),                   // no file
		replayArgs("--bogus", "x.csv"), // unknown flag
		replayArgs("--target", "127.0.0.1:1", "--shards", "4", "x.csv"),
	} {
		var stderr bytes.Buffer
		err := runReplay(context.Background(), args, &bytes.Buffer{}, &stderr)
		if !errors.Is(err, errUsage) {
			t.Errorf("args %q: err %v; want errUsage", args, err)
		}
	}
}

// TestReplayTargetMatchesInProcess replays the same input in-process and
// against a real server on loopback and compares the alert files byte for
// byte. Both engines run four shards: entities go to shards by a fixed hash,
// so population moments merge in the same order on both sides.
func TestReplayTargetMatchesInProcess(t *testing.T) {
	path := sampleUntil(t, "2001-01-01T12:30")

	addr, _ := startServer(t, streamfeat.Config{Clock: streamfeat.NewEventClock(), Shards: 4})

	dir := t.TempDir()
	local, remote := filepath.Join(dir, "local.jsonl"), filepath.Join(dir, "remote.jsonl")
	for _, run := range [][]string{
		replayArgs("--quiet", "--features", "delay", "--alerts-json", local, "--shards", "4", path),
		replayArgs("--quiet", "--features", "delay", "--alerts-json", remote,
			"--target", addr, path),
	} {
		var stdout, stderr bytes.Buffer
		if err := runReplay(context.Background(), run, &stdout, &stderr); err != nil {
			t.Fatalf("replay %q: %v\n%s", run, err, stderr.String())
		}
	}

	a, errA := os.ReadFile(local)
	b, errB := os.ReadFile(remote)
	if errA != nil || errB != nil {
		t.Fatal(errA, errB)
	}
	n := bytes.Count(a, []byte("\n"))
	if n < 3 || !bytes.Contains(a, []byte(`"entity":"ORD"`)) {
		t.Fatalf("in-process run gave %d alerts; want several, ORD among them:\n%s", n, a)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("alerts differ:\nin-process:\n%s\nremote:\n%s", a, b)
	}
}

func TestNothingAccepted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		in     streamfeat.IngestResult
		rows   int64 // rows read
		bad    int64 // of them bad
		remote bool
		want   string // "" for no error
	}{
		{"every row bad", streamfeat.IngestResult{}, 7, 7, false, "all 7 rows were bad"},
		{"some rows bad", streamfeat.IngestResult{AcceptedEvents: 1}, 7, 6, false, ""},
		{"some accepted", streamfeat.IngestResult{AcceptedEvents: 1, DroppedEvents: 5, DroppedTooOld: 5}, 0, 0, true, ""},
		{"empty file", streamfeat.IngestResult{}, 0, 0, false, ""},
		{"server ahead", streamfeat.IngestResult{DroppedEvents: 3, DroppedTooOld: 3}, 0, 0, true, "--clock event"},
		{"bad mapping", streamfeat.IngestResult{DroppedEvents: 2, DroppedInvalid: 2}, 0, 0, false, "--entity"},
		{"overloaded", streamfeat.IngestResult{DroppedEvents: 2, DroppedOverloaded: 2}, 0, 0, false, "overloaded 2"},
	} {
		sum := replay.Summary{Ingest: tc.in, Rows: tc.rows}
		sum.BadRows[0] = tc.bad
		err := nothingAccepted(sum, tc.remote)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v; want one mentioning %q", tc.name, err, tc.want)
		}
	}
}
