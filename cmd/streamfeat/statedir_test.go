package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/streamfeat/streamfeat"
)

func writeString(s string) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := io.WriteString(w, s)
		return err
	}
}

func TestStateDirWriteNewestPrune(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	d, err := openStateDir(path)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := d.newest(); p != "" || err != nil {
		t.Fatalf("newest of an empty dir = %q, %v; want none", p, err)
	}
	for i := range 12 {
		if _, _, err := d.write(writeString(string(rune('a' + i)))); err != nil {
			t.Fatal(err)
		}
	}
	p, err := d.newest()
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "l" {
		t.Errorf("newest (%s) holds %q; want the last written, %q", p, b, "l")
	}
	if err := d.prune(keepSnapshots); err != nil {
		t.Fatal(err)
	}
	snaps, _ := d.snapshots()
	if len(snaps) != keepSnapshots || snaps[len(snaps)-1] != p {
		t.Errorf("after prune: %v; want the newest %d ending in %s", snaps, keepSnapshots, p)
	}

	// A failed write leaves nothing behind, and a reopened dir continues
	// the sequence and clears temporary files a crash left.
	boom := errors.New("boom")
	if _, _, err := d.write(func(io.Writer) error { return boom }); !errors.Is(err, boom) {
		t.Errorf("write = %v; want boom", err)
	}
	if err := os.WriteFile(filepath.Join(path, tmpPrefix+"123"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	d2, err := openStateDir(path)
	if err != nil {
		t.Fatal(err)
	}
	next, _, err := d2.write(writeString("m"))
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(path)
	for _, ent := range entries {
		if strings.HasPrefix(ent.Name(), tmpPrefix) {
			t.Errorf("temporary file %s left behind", ent.Name())
		}
	}
	if next <= p {
		t.Errorf("reopened dir wrote %s, not after %s", next, p)
	}
}

// snapshotFile writes a snapshot of a small engine into dir and returns
// its path.
func snapshotFile(t *testing.T, d *stateDir) string {
	t.Helper()
	e, err := streamfeat.New(streamfeat.Config{Shards: 2, Clock: streamfeat.NewEventClock()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.RegisterSchema([]string{"f1"}); err != nil {
		t.Fatal(err)
	}
	_, err = e.Ingest(context.Background(), []streamfeat.Event{{EntityID: "e1",
		TimestampMs: 1_700_000_000_000, Values: []streamfeat.FeatureValue{{FeatureID: 1, Value: 2}}}})
	if err != nil {
		t.Fatal(err)
	}
	path, _, err := d.write(e.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// A good snapshot is restored; a corrupt or truncated one stops start-up
// with an error naming the file, unless --discard-bad-state sets it aside.
func TestRestoreState(t *testing.T) {
	newEngine := func() *streamfeat.Engine {
		e, err := streamfeat.New(streamfeat.Config{Shards: 2, Clock: streamfeat.NewEventClock()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	var logs bytes.Buffer
	log := newLogger("text", &logs)

	dir := t.TempDir()
	d, _ := openStateDir(dir)
	snapshotFile(t, d)
	e := newEngine()
	if _, err := restoreState(stateConfig{dir: dir}, e, log); err != nil {
		t.Fatalf("restore of a good snapshot: %v", err)
	}
	if st, err := e.Stats(context.Background(), "e1", 1, streamfeat.Long); err != nil || st.Count != 1 {
		t.Errorf("restored Stats = %+v, %v; want count 1", st, err)
	}

	for _, damage := range []string{"truncated", "corrupt"} {
		path := snapshotFile(t, d)
		b, _ := os.ReadFile(path)
		if damage == "truncated" {
			b = b[:len(b)-3]
		} else {
			b[len(b)/2] ^= 1
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}

		_, err := restoreState(stateConfig{dir: dir}, newEngine(), log)
		if !errors.Is(err, streamfeat.ErrBadSnapshot) || !strings.Contains(err.Error(), path) ||
			!strings.Contains(err.Error(), "--discard-bad-state") {
			t.Errorf("%s: restore = %v; want ErrBadSnapshot naming %s and the flag", damage, err, path)
		}

		logs.Reset()
		e := newEngine()
		if _, err := restoreState(stateConfig{dir: dir, discard: true}, e, log); err != nil {
			t.Errorf("%s with --discard-bad-state: %v", damage, err)
		}
		if !strings.Contains(logs.String(), "discarded a snapshot") {
			t.Errorf("%s: no log of the discard in %q", damage, logs.String())
		}
		if _, err := os.Stat(path + badSuffix); err != nil {
			t.Errorf("%s: bad snapshot not set aside: %v", damage, err)
		}
		if m := e.Metrics(); m.LiveEntities != 0 {
			t.Errorf("%s: started with %d entities; want empty", damage, m.LiveEntities)
		}
	}
}

func TestStateFlags(t *testing.T) {
	cfg, err := parseServeFlags(nil, env(map[string]string{
		"STREAMFEAT_STATE_DIR":         "/tmp/x",
		"STREAMFEAT_SNAPSHOT_EVERY":    "1m",
		"STREAMFEAT_DISCARD_BAD_STATE": "true",
	}), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := stateConfig{dir: "/tmp/x", every: time.Minute, discard: true}
	if cfg.state != want {
		t.Errorf("state flags from env = %+v; want %+v", cfg.state, want)
	}
	cfg, err = parseServeFlags(nil, env(nil), io.Discard)
	if err != nil || cfg.state != (stateConfig{every: 30 * time.Second}) {
		t.Errorf("default state flags = %+v, %v", cfg.state, err)
	}
	if _, err := parseServeFlags([]string{"--snapshot-every", "-1s"}, env(nil), io.Discard); !errors.Is(err, errUsage) {
		t.Errorf("negative --snapshot-every: %v; want a usage error", err)
	}
}

// TestSnapSeqBounds: a file numbered near the top of uint64 is not taken as
// a snapshot, since the next number would wrap to 0 and the stale file would
// stay the newest for ever.
func TestSnapSeqBounds(t *testing.T) {
	for _, c := range []struct {
		name string
		seq  uint64
		ok   bool
	}{
		{snapPrefix + "7" + snapSuffix, 7, true},
		{snapPrefix + "4611686018427387903" + snapSuffix, 1<<62 - 1, true},
		{snapPrefix + "4611686018427387904" + snapSuffix, 0, false},
		{snapPrefix + "18446744073709551615" + snapSuffix, 0, false},
		{snapPrefix + "x" + snapSuffix, 0, false},
		{"other" + snapSuffix, 0, false},
	} {
		seq, ok := snapSeq(c.name)
		if ok != c.ok || (ok && seq != c.seq) {
			t.Errorf("snapSeq(%q) = %d, %v; want %d, %v", c.name, seq, ok, c.seq, c.ok)
		}
	}
}
