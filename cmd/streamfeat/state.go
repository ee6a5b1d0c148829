package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/streamfeat/streamfeat"
)

// stateConfig is what the state flags of serve set.
type stateConfig struct {
	dir     string        // where snapshots live; empty: state is not kept
	every   time.Duration // between periodic snapshots; 0: only at shutdown
	discard bool          // start empty when the newest snapshot is bad
}

// keepSnapshots is how many snapshots the state dir keeps: the newest one,
// and two older ones to fall back on by hand should it ever be unreadable.
const keepSnapshots = 3

func addStateFlags(fs *flag.FlagSet, c *stateConfig) {
	fs.StringVar(&c.dir, "state-dir", "",
		"`directory` for snapshots: restore the newest on start, write one every "+
			"--snapshot-every and at shutdown (empty: state is lost on exit)")
	fs.DurationVar(&c.every, "snapshot-every", 30*time.Second,
		"time between snapshots to --state-dir; 0 writes one only at shutdown")
	fs.BoolVar(&c.discard, "discard-bad-state", false,
		"start empty, instead of failing, when the newest snapshot cannot be restored; "+
			"the bad file is renamed *.bad")
}

func (c stateConfig) check() error {
	if c.every < 0 {
		return fmt.Errorf("--snapshot-every %v must not be negative", c.every)
	}
	return nil
}

// restoreState opens the state dir and restores its newest snapshot into
// engine. It returns nil, nil when no state dir is set.
func restoreState(c stateConfig, engine *streamfeat.Engine, log *slog.Logger) (*stateDir, error) {
	if c.dir == "" {
		return nil, nil
	}
	dir, err := openStateDir(c.dir)
	if err != nil {
		return nil, err
	}
	path, err := dir.newest()
	if err != nil {
		return nil, err
	}
	if path == "" {
		log.Info("no snapshot to restore; starting empty", "state_dir", c.dir)
		return dir, nil
	}

	start := time.Now()
	err = restoreFile(engine, path)
	switch {
	case err == nil:
		m := engine.Metrics()
		log.Info("restored state", "file", path, "entities", m.LiveEntities,
			"features", len(engine.Schema()), "took", time.Since(start).Round(time.Millisecond).String())
		return dir, nil
	case !c.discard && errors.Is(err, streamfeat.ErrSnapshotMismatch):
		// The file is good; the settings differ. Setting it aside would
		// throw the state away for nothing.
		return nil, fmt.Errorf("restore state from %s: %w (start with the settings the "+
			"snapshot was taken with, or with --discard-bad-state to set it aside and "+
			"start empty)", path, err)
	case !c.discard:
		return nil, fmt.Errorf("restore state from %s: %w (start with --discard-bad-state "+
			"to set it aside and start empty)", path, err)
	}
	bad, serr := dir.setAside(path)
	if serr != nil {
		return nil, errors.Join(fmt.Errorf("restore state from %s: %w", path, err), serr)
	}
	log.Warn("discarded a snapshot that cannot be restored, as --discard-bad-state asks; "+
		"starting empty", "file", path, "renamed_to", bad, "err", err)
	return dir, nil
}

func restoreFile(engine *streamfeat.Engine, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return engine.Restore(f)
}

// saveState writes a snapshot of engine to dir and prunes old ones. It works
// on a closed engine too, which is how the final snapshot is taken.
func saveState(dir *stateDir, engine *streamfeat.Engine, log *slog.Logger) error {
	start := time.Now()
	path, size, err := dir.write(engine.Snapshot)
	dir.metrics.observe(time.Since(start), size, err)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	log.Info("wrote snapshot", "file", path, "bytes", size,
		"took", time.Since(start).Round(time.Millisecond).String())
	if err := dir.prune(keepSnapshots); err != nil {
		log.Warn("could not prune old snapshots; they take space until removed", "err", err)
	}
	return nil
}

// snapshotLoop writes a snapshot every interval until stop is closed, then
// closes done. Failures are logged, and the next tick tries again.
func snapshotLoop(dir *stateDir, engine *streamfeat.Engine, every time.Duration,
	log *slog.Logger, stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			if err := saveState(dir, engine, log); err != nil {
				log.Error("periodic snapshot failed; will retry at the next one; "+
					"check the state dir's space and permissions", "err", err)
			}
		}
	}
}

// stateKeeper runs the periodic snapshots of a serve run.
type stateKeeper struct {
	dir    *stateDir
	engine *streamfeat.Engine
	log    *slog.Logger
	stop   chan struct{}
	done   chan struct{}
}

// startState starts periodic snapshots; a nil dir keeps no state.
func startState(dir *stateDir, c stateConfig, engine *streamfeat.Engine, log *slog.Logger) *stateKeeper {
	k := &stateKeeper{dir: dir, engine: engine, log: log}
	if dir != nil && c.every > 0 {
		k.stop, k.done = make(chan struct{}), make(chan struct{})
		go snapshotLoop(dir, engine, c.every, log, k.stop, k.done)
	}
	return k
}

// pause stops the periodic snapshots and waits for one in progress.
func (k *stateKeeper) pause() {
	if k.stop != nil {
		close(k.stop)
		<-k.done
		k.stop = nil
	}
}

// final writes the shutdown snapshot. Call it after the server's Shutdown
// closed the engine: Close applies every batch still queued, so the
// snapshot holds every event any IngestBatch acknowledged. A snapshot taken
// before Shutdown would miss the batches of calls still draining.
func (k *stateKeeper) final() error {
	k.pause()
	if k.dir == nil {
		return nil
	}
	if err := saveState(k.dir, k.engine, k.log); err != nil {
		k.log.Error("final snapshot failed; state since the last snapshot is lost", "err", err)
		return err
	}
	return nil
}
