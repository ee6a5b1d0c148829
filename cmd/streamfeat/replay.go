package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/streamfeat/streamfeat"
	"github.com/streamfeat/streamfeat/replay"
)

// replayFlags are the settings of one replay run.
type replayFlags struct {
	format       string
	entity       string
	entitySep    string
	timeCol      string
	timeUnit     string
	features     string
	checkEvery   time.Duration
	minCount     int64
	meanZ        float64
	varRatio     float64
	excludeShort bool
	noPopulation bool
	alertsJSON   string
	strict       bool
	shards       int
	bucket       time.Duration
	shortWindow  time.Duration
	longWindow   time.Duration
	batchEvents  int
	quiet        bool
	maxPrinted   int
	badShown     int
	target       string
	timeout      time.Duration
	files        []string

	checkConcurrency int
}

func parseReplayFlags(args []string, stderr io.Writer) (*replayFlags, error) {
	var f replayFlags
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: streamfeat replay [flags] FILE...")
		fmt.Fprintln(stderr, "\nReplays a feature log (CSV with a header, NDJSON or Parquet; .gz"+
			" for the text\nformats) in file order with the event-time clock, and prints each"+
			" new drift alert.\n\nExample:\n  streamfeat replay --entity origin --time time"+
			" --features delay,distance \\\n      testdata/flights-sample.csv.gz\n\nFlags:")
		printFlags(fs, false)
	}
	fs.StringVar(&f.format, "format", "auto", "file format: auto (by extension), csv, ndjson or parquet")
	fs.StringVar(&f.entity, "entity", "", "entity column, or several joined, e.g. origin,destination (required)")
	fs.StringVar(&f.entitySep, "entity-sep", replay.DefaultEntitySeparator, "separator between joined entity columns")
	fs.StringVar(&f.timeCol, "time", "", "event time column (required)")
	fs.StringVar(&f.timeUnit, "time-unit", "rfc3339", "time format: rfc3339, or epoch s, ms, us or ns")
	fs.StringVar(&f.features, "features", "", "feature columns, comma-separated (required)")
	fs.DurationVar(&f.checkEvery, "check-every", replay.DefaultCheckEvery, "event time between drift checks")
	fs.Int64Var(&f.minCount, "min-count", 20, "values each window needs before drift is flagged")
	fs.Float64Var(&f.meanZ, "mean-z-threshold", streamfeat.DefaultMeanZThreshold, "mean-shift z-score that flags drift")
	fs.Float64Var(&f.varRatio, "variance-ratio-threshold", streamfeat.DefaultVarianceRatioThreshold,
		"ratio of standard deviations, either way, that flags drift")
	fs.BoolVar(&f.excludeShort, "exclude-short-from-long", false, "compare the short window with the long one less the short")
	fs.BoolVar(&f.noPopulation, "no-population", false, "skip the population (all entities) checks")
	fs.StringVar(&f.alertsJSON, "alerts-json", "", "also write alerts to this file as JSON lines")
	fs.BoolVar(&f.strict, "strict", false, "stop at the first bad row")
	fs.IntVar(&f.shards, "shards", 1, "engine shards; in-process only. One keeps population "+
		"sums in a fixed order, so reruns agree to the bit, and is fastest here: the drift "+
		"checks, not ingest, bound a replay")
	fs.DurationVar(&f.bucket, "bucket", streamfeat.DefaultBucketWidth, "bucket width; in-process only")
	fs.DurationVar(&f.shortWindow, "short-window", 5*time.Minute, "short window; in-process only")
	fs.DurationVar(&f.longWindow, "long-window", time.Hour, "long window; in-process only")
	fs.IntVar(&f.batchEvents, "batch-events", replay.DefaultBatchEvents, "events per ingest call")
	fs.BoolVar(&f.quiet, "quiet", false, "print no alerts and no progress, only the summary")
	fs.IntVar(&f.maxPrinted, "max-alerts-printed", 200, "alerts printed before the rest are only counted (0: no limit)")
	fs.IntVar(&f.badShown, "bad-rows-shown", 5, "bad rows reported one by one before the rest are only counted")
	fs.StringVar(&f.target, "target", "", "replay against the server at HOST:PORT instead of in-process")
	fs.IntVar(&f.checkConcurrency, "check-concurrency", 0,
		"drift queries in flight during a check (default 1 in-process, 8 with --target)")
	fs.DurationVar(&f.timeout, "rpc-timeout", 30*time.Second, "deadline of each RPC with --target")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, errUsage
	}
	f.files = fs.Args()
	if f.checkConcurrency == 0 {
		// In-process a query is a queue round trip of a microsecond or two;
		// goroutines would cost as much as they save. Over the network
		// several queries in flight hide the round trip.
		f.checkConcurrency = 1
		if f.target != "" {
			f.checkConcurrency = 8
		}
	}

	bad := func(format string, args ...any) (*replayFlags, error) {
		fmt.Fprintf(stderr, "streamfeat replay: "+format+"\n", args...)
		fs.Usage()
		return nil, errUsage
	}
	switch {
	case len(f.files) == 0:
		return bad("no input file")
	case f.entity == "" || f.timeCol == "" || f.features == "":
		return bad("--entity, --time and --features are required")
	case f.target != "" && isSet(fs, "shards", "bucket", "short-window", "long-window"):
		return bad("--shards and the window flags set up the in-process engine; the server has its own")
	}
	return &f, nil
}

// isSet reports whether any of the named flags was given.
func isSet(fs *flag.FlagSet, names ...string) bool {
	found := false
	fs.Visit(func(fl *flag.Flag) {
		for _, n := range names {
			found = found || fl.Name == n
		}
	})
	return found
}

// splitList splits a comma-separated list, dropping blanks around names.
func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseReplayFlags(args, stderr)
	if err != nil {
		return err
	}
	format, err := replay.ParseFormat(f.format)
	if err != nil {
		return err
	}
	unit, err := replay.ParseTimeUnit(f.timeUnit)
	if err != nil {
		return err
	}

	backend, closeBackend, err := f.backend(ctx)
	if err != nil {
		return err
	}
	defer closeBackend()

	names := splitList(f.features)
	ids, err := backend.RegisterSchema(ctx, names)
	if err != nil {
		return fmt.Errorf("register features %q: %w", names, err)
	}
	mapping := replay.Mapping{
		Entity: splitList(f.entity), Separator: f.entitySep, Time: f.timeCol,
		TimeUnit: unit, Features: names,
	}
	feats := make([]replay.Feature, len(names))
	for i, n := range names {
		mapping.FeatureIDs = append(mapping.FeatureIDs, ids[n])
		feats[i] = replay.Feature{ID: ids[n], Name: n}
	}

	out, err := newAlertOutput(f, stdout)
	if err != nil {
		return err
	}
	defer out.close()

	det, err := replay.NewDetector(backend, feats, replay.DetectorOptions{
		Drift: streamfeat.DriftOptions{
			MeanZThreshold: f.meanZ, VarianceRatioThreshold: f.varRatio,
			MinCount: f.minCount, ExcludeShortFromLong: f.excludeShort,
		},
		NoPopulation: f.noPopulation,
		Concurrency:  f.checkConcurrency,
	})
	if err != nil {
		return err
	}
	bad := &badRowPrinter{w: stderr, limit: f.badShown}
	rp, err := replay.NewReplayer(backend, det, replay.Config{
		BatchEvents: f.batchEvents, CheckEvery: f.checkEvery, Strict: f.strict,
		OnAlert: out.write, OnBadRow: bad.print,
	})
	if err != nil {
		return err
	}
	return f.replayFiles(ctx, rp, format, mapping, out, stdout, stderr)
}

// replayFiles runs every file through rp with progress, then prints the
// summary, also after an interrupt.
func (f *replayFlags) replayFiles(ctx context.Context, rp *replay.Replayer, format replay.Format,
	m replay.Mapping, out *alertOutput, stdout, stderr io.Writer) error {
	prog, err := newProgress(f.files, rp, stderr, f.quiet)
	if err != nil {
		return err
	}
	start := time.Now()
	stopProgress := prog.start()

	runErr := func() error {
		for i, path := range f.files {
			src, err := replay.Open(path, format, m)
			if err != nil {
				return err
			}
			prog.setSource(i, src)
			err = rp.Run(ctx, src)
			prog.setSource(i+1, nil)
			if cerr := src.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("close %s: %w", path, cerr)
			}
			if err != nil {
				if ctx.Err() == nil {
					// The rows read before the failure still count: send the
					// batch in hand, so the summary says what was kept.
					err = errors.Join(err, rp.Finish(ctx))
				}
				return fmt.Errorf("%s: %w", path, err)
			}
		}
		return rp.Finish(ctx)
	}()
	stopProgress()

	interrupted := runErr != nil && ctx.Err() != nil
	sum := rp.Summary()
	printSummary(stdout, sum, out, time.Since(start), interrupted)
	if interrupted {
		return nil // a clean stop on request; the summary says so
	}
	if runErr == nil {
		runErr = nothingAccepted(sum, f.target != "")
	}
	if in := sum.Ingest; runErr == nil && f.target != "" && in.DroppedTooOld > 0 {
		// A log older than the server's clock loses its start quietly;
		// say so, since the alerts then describe only part of it.
		fmt.Fprintf(stderr, "warning: %d of %d events dropped as too old: the server had seen "+
			"newer events; replay into a server started with --clock event that has seen "+
			"none newer than this log\n",
			in.DroppedTooOld, in.AcceptedEvents+in.DroppedEvents)
	}
	return runErr
}

// nothingAccepted explains a replay whose rows were all bad or whose events
// were all dropped: its alerts say nothing about the file, so it must not
// pass for a success.
func nothingAccepted(sum replay.Summary, remote bool) error {
	in := sum.Ingest
	if bad := sum.TotalBadRows(); bad > 0 && bad == sum.Rows {
		return fmt.Errorf("all %d rows were bad: check --time, --time-unit and the "+
			"column names against the file", bad)
	}
	if in.DroppedEvents == 0 || in.AcceptedEvents > 0 {
		return nil
	}
	err := fmt.Errorf("none of %d events was accepted (too old %d, too new %d, invalid %d, overloaded %d)",
		in.DroppedEvents, in.DroppedTooOld, in.DroppedTooNew, in.DroppedInvalid, in.DroppedOverloaded)
	switch {
	case remote && in.DroppedTooOld > 0:
		return fmt.Errorf("%w: the server's clock is past this log; replay into a server "+
			"started with --clock event that has not seen newer events", err)
	case in.DroppedInvalid > 0:
		return fmt.Errorf("%w: check --entity and --features against the file's columns", err)
	}
	return err
}

// backend connects to the server, or starts an in-process engine.
func (f *replayFlags) backend(ctx context.Context) (replay.Backend, func(), error) {
	if f.target != "" {
		return dialBackend(ctx, f.target, f.timeout)
	}
	width := f.bucket
	if width <= 0 || f.shortWindow%width != 0 || f.longWindow%width != 0 {
		return nil, nil, fmt.Errorf("windows %v and %v must be whole multiples of the bucket %v",
			f.shortWindow, f.longWindow, width)
	}
	long := f.longWindow
	e, err := streamfeat.New(streamfeat.Config{
		Shards: f.shards, Clock: streamfeat.NewEventClock(),
		BucketWidth: width, ShortBuckets: int(f.shortWindow / width),
		LongBuckets: int(long / width), EntityTTL: max(streamfeat.DefaultEntityTTL, 2*long),
	})
	if err != nil {
		return nil, nil, err
	}
	return replay.Local(e), func() { e.Close() }, nil
}

// alertOutput prints alerts to stdout, up to a limit, and writes every one
// to the JSON lines file if asked.
type alertOutput struct {
	w       io.Writer
	limit   int
	printed int
	quiet   bool
	file    *os.File
	enc     *json.Encoder
	header  bool
}

func newAlertOutput(f *replayFlags, w io.Writer) (*alertOutput, error) {
	o := &alertOutput{w: w, limit: f.maxPrinted, quiet: f.quiet}
	if f.alertsJSON != "" {
		file, err := os.Create(f.alertsJSON)
		if err != nil {
			return nil, fmt.Errorf("alerts file: %w", err)
		}
		o.file, o.enc = file, json.NewEncoder(file)
	}
	return o, nil
}

func (o *alertOutput) write(a replay.Alert) error {
	if o.enc != nil {
		if err := o.enc.Encode(a); err != nil {
			return fmt.Errorf("alerts file: %w", err)
		}
	}
	if o.quiet || (o.limit > 0 && o.printed >= o.limit) {
		return nil
	}
	if !o.header {
		o.header = true
		fmt.Fprintf(o.w, "%-20s %-13s %-9s %23s %23s %7s %8s  %s\n", "event time", "entity",
			"feature", "short mean±sd (n)", "long mean±sd (n)", "z", "sd ratio", "flags")
	}
	o.printed++
	fmt.Fprintf(o.w, "%-20s %-13s %-9s %23s %23s %7.2f %8.2f  %s\n",
		a.Time.Format(time.RFC3339), a.Scope(), a.Feature, fmtStats(a.Short), fmtStats(a.Long),
		a.MeanZScore, a.VarianceRatio, a.Flags())
	return nil
}

func (o *alertOutput) close() error {
	if o.file == nil {
		return nil
	}
	err := o.file.Close()
	o.file = nil
	return err
}

// fmtStats prints a window as "mean±sd (n)".
func fmtStats(s streamfeat.Stats) string {
	return fmt.Sprintf("%.1f±%.1f (%d)", s.Mean, s.StdDev(), s.Count)
}

// badRowPrinter reports the first few bad rows.
type badRowPrinter struct {
	w     io.Writer
	limit int
	n     int
}

func (b *badRowPrinter) print(err *replay.RowError) {
	b.n++
	if b.n <= b.limit {
		fmt.Fprintf(b.w, "\rbad row: %v\n", err)
	}
}

func printSummary(w io.Writer, s replay.Summary, out *alertOutput, wall time.Duration,
	interrupted bool) {
	in := s.Ingest
	fmt.Fprintln(w)
	if interrupted {
		fmt.Fprintln(w, "interrupted: the counts below cover the rows read so far")
	}
	fmt.Fprintf(w, "rows          %d read, %d bad", s.Rows, s.TotalBadRows())
	for r, n := range s.BadRows {
		if n > 0 {
			fmt.Fprintf(w, ", %v %d", replay.Reason(r), n)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "events        %d accepted, %d dropped (too_old %d, too_new %d, invalid %d, "+
		"overloaded %d); values %d accepted, %d rejected\n",
		in.AcceptedEvents, in.DroppedEvents, in.DroppedTooOld, in.DroppedTooNew,
		in.DroppedInvalid, in.DroppedOverloaded, in.AcceptedValues, in.RejectedValues)
	if in.AcceptedEvents+in.DroppedEvents > 0 {
		fmt.Fprintf(w, "event time    %s to %s\n", time.UnixMilli(s.FirstEventMs).UTC().Format(time.RFC3339),
			time.UnixMilli(s.LastEventMs).UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(w, "alerts        %d in %d checks", s.Alerts, s.Checks)
	if out.limit > 0 && s.Alerts > int64(out.printed) && !out.quiet {
		fmt.Fprintf(w, " (%d printed; --max-alerts-printed)", out.printed)
	}
	fmt.Fprintln(w)
	secs := wall.Seconds()
	fmt.Fprintf(w, "wall time     %.2fs, %.0f events/s, %.0f rows/s\n", secs,
		float64(in.AcceptedEvents)/secs, float64(s.Rows)/secs)
}
