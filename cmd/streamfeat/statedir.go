package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// stateDir holds the snapshots of one server in a directory. Files are
// named snapshot-<seq>.sfsnap with a zero-padded sequence number, so the
// newest is the one with the highest number whatever the clocks did. A
// snapshot is written to a temporary file in the same directory, synced,
// renamed into place and the directory synced, so that after a crash the
// directory holds either the old set or the new one, never a partial file
// under a snapshot's name. It is not safe for concurrent use.
type stateDir struct {
	path    string
	next    uint64           // sequence number of the next snapshot
	metrics *snapshotMetrics // nil without --metrics-listen
}

const (
	snapPrefix = "snapshot-"
	snapSuffix = ".sfsnap"
	tmpPrefix  = ".tmp-snapshot-"
	badSuffix  = ".bad" // appended to a snapshot set aside by --discard-bad-state
)

// openStateDir creates the directory if needed, removes temporary files
// left by a crash, and finds the next sequence number.
func openStateDir(path string) (*stateDir, error) {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	d := &stateDir{path: path}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	for _, ent := range entries {
		name := ent.Name()
		if strings.HasPrefix(name, tmpPrefix) {
			if err := os.Remove(filepath.Join(path, name)); err != nil {
				return nil, fmt.Errorf("state dir: remove a partial snapshot: %w", err)
			}
			continue
		}
		if seq, ok := snapSeq(strings.TrimSuffix(name, badSuffix)); ok {
			d.next = max(d.next, seq+1)
		}
	}
	return d, nil
}

// snapSeq returns the sequence number of a snapshot's file name.
func snapSeq(name string) (uint64, bool) {
	num, ok := strings.CutPrefix(name, snapPrefix)
	if !ok {
		return 0, false
	}
	num, ok = strings.CutSuffix(num, snapSuffix)
	if !ok {
		return 0, false
	}
	seq, err := strconv.ParseUint(num, 10, 64)
	// Numbers this large are not ours: the next one would wrap to 0 and
	// the stale file would stay "newest" for ever.
	return seq, err == nil && seq < maxSnapSeq
}

// maxSnapSeq bounds the sequence numbers taken for snapshot files; at one
// snapshot a millisecond it lasts for ages.
const maxSnapSeq = 1 << 62

// snapshots returns the paths of the snapshots, oldest first.
func (d *stateDir) snapshots() ([]string, error) {
	entries, err := os.ReadDir(d.path)
	if err != nil {
		return nil, fmt.Errorf("state dir: %w", err)
	}
	type snap struct {
		seq  uint64
		path string
	}
	var snaps []snap
	for _, ent := range entries {
		if seq, ok := snapSeq(ent.Name()); ok && ent.Type().IsRegular() {
			snaps = append(snaps, snap{seq, filepath.Join(d.path, ent.Name())})
		}
	}
	slices.SortFunc(snaps, func(a, b snap) int { return cmpUint(a.seq, b.seq) })
	paths := make([]string, len(snaps))
	for i, s := range snaps {
		paths[i] = s.path
	}
	return paths, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// newest returns the path of the newest snapshot, or "" when there is none.
func (d *stateDir) newest() (string, error) {
	snaps, err := d.snapshots()
	if err != nil || len(snaps) == 0 {
		return "", err
	}
	return snaps[len(snaps)-1], nil
}

// write stores a new snapshot that fill writes, crash-safely, and returns
// its path and size.
func (d *stateDir) write(fill func(io.Writer) error) (string, int64, error) {
	tmp, err := os.CreateTemp(d.path, tmpPrefix+"*")
	if err != nil {
		return "", 0, fmt.Errorf("state dir: %w", err)
	}
	size, err := writeSynced(tmp, fill)
	if err != nil {
		os.Remove(tmp.Name())
		return "", 0, err
	}

	name := filepath.Join(d.path, fmt.Sprintf("%s%020d%s", snapPrefix, d.next, snapSuffix))
	if err := os.Rename(tmp.Name(), name); err != nil {
		os.Remove(tmp.Name())
		return "", 0, fmt.Errorf("state dir: %w", err)
	}
	d.next++
	// The rename is durable only once the directory is.
	if err := syncDir(d.path); err != nil {
		return name, size, err
	}
	return name, size, nil
}

// writeSynced fills f through a buffer, syncs and closes it.
func writeSynced(f *os.File, fill func(io.Writer) error) (int64, error) {
	bw := bufio.NewWriterSize(f, 1<<20)
	err := fill(bw)
	if err == nil {
		err = bw.Flush()
	}
	var size int64
	if err == nil {
		var st os.FileInfo
		if st, err = f.Stat(); err == nil {
			size = st.Size()
		}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("state dir: write %s: %w", f.Name(), err)
	}
	return size, nil
}

func syncDir(path string) error {
	dir, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	err = dir.Sync()
	if cerr := dir.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("state dir: sync %s: %w", path, err)
	}
	return nil
}

// prune removes all but the newest keep snapshots.
func (d *stateDir) prune(keep int) error {
	snaps, err := d.snapshots()
	if err != nil {
		return err
	}
	var errs []error
	for _, path := range snaps[:max(0, len(snaps)-keep)] {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("state dir: prune: %w", err))
		}
	}
	return errors.Join(errs...)
}

// setAside renames a snapshot that could not be restored, so that it is
// kept for inspection but neither restored nor pruned again.
func (d *stateDir) setAside(path string) (string, error) {
	bad := path + badSuffix
	if err := os.Rename(path, bad); err != nil {
		return "", fmt.Errorf("state dir: set aside %s: %w", path, err)
	}
	return bad, syncDir(d.path)
}
