package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/streamfeat/streamfeat/replay"
)

// progress reports a replay's advance on stderr: one line redrawn in place
// on a terminal, a plain line now and then otherwise (logs, CI).
type progress struct {
	w     io.Writer
	tty   bool
	quiet bool
	rp    *replay.Replayer
	sizes []int64 // bytes of each file, for the share done
	total int64

	mu   sync.Mutex
	file int // index of the file being read
	src  replay.Source
}

func newProgress(files []string, rp *replay.Replayer, w io.Writer, quiet bool) (*progress, error) {
	p := &progress{w: w, rp: rp, quiet: quiet}
	for _, path := range files {
		info, err := os.Stat(path)
		if err != nil {
			return nil, err
		}
		p.sizes = append(p.sizes, info.Size())
		p.total += info.Size()
	}
	if f, ok := w.(interface{ Fd() uintptr }); ok {
		p.tty = term.IsTerminal(int(f.Fd()))
	}
	return p, nil
}

// setSource notes that file i is being read through src (nil between files).
func (p *progress) setSource(i int, src replay.Source) {
	p.mu.Lock()
	p.file, p.src = i, src
	p.mu.Unlock()
}

// fraction returns the share of all input bytes read so far.
func (p *progress) fraction() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var done float64
	for i := 0; i < p.file && i < len(p.sizes); i++ {
		done += float64(p.sizes[i])
	}
	if p.src != nil {
		if d, t := p.src.Progress(); t > 0 {
			done += float64(p.sizes[p.file]) * float64(d) / float64(t)
		}
	}
	if p.total == 0 {
		return 0
	}
	return min(done/float64(p.total), 1)
}

// start reports until the returned stop function is called.
func (p *progress) start() (stop func()) {
	if p.quiet {
		return func() {}
	}
	every := 5 * time.Second
	if p.tty {
		every = 250 * time.Millisecond
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	begin := time.Now()
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if p.tty {
					fmt.Fprint(p.w, "\r\033[K")
				}
				return
			case <-t.C:
				p.report(time.Since(begin))
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (p *progress) report(elapsed time.Duration) {
	rows := p.rp.Rows()
	frac := p.fraction()
	line := fmt.Sprintf("rows %d  %.0f rows/s  %.1f%%", rows,
		float64(rows)/elapsed.Seconds(), 100*frac)
	if frac > 0.01 {
		eta := time.Duration(float64(elapsed) * (1 - frac) / frac)
		line += fmt.Sprintf("  ETA %v", eta.Round(time.Second))
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
	} else {
		fmt.Fprintf(p.w, "progress: %s\n", line)
	}
}
