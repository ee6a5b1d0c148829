package replay

import (
	"compress/gzip"
	"encoding/csv"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/streamfeat/streamfeat"
)

// flightRow is one raw row of the bundled sample.
type flightRow struct {
	ms     int64
	origin string
	delay  float64
}

// sampleDay reads the first day of the bundled flights sample and returns
// its rows raw and as CSV text.
func sampleDay(t *testing.T) ([]flightRow, string) {
	t.Helper()
	f, err := os.Open("../testdata/flights-sample.csv.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(zr).ReadAll()
	if err != nil {
		t.Fatal(err)
	}

	var rows []flightRow
	var sb strings.Builder
	sb.WriteString(strings.Join(records[0], ",") + "\n")
	for _, rec := range records[1:] {
		if !strings.HasPrefix(rec[0], "2001-01-01T") {
			break // the file is in time order
		}
		ts, err := time.Parse(time.RFC3339, rec[0])
		if err != nil {
			t.Fatal(err)
		}
		delay, err := strconv.ParseFloat(rec[3], 64)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, flightRow{ts.UnixMilli(), rec[1], delay})
		sb.WriteString(strings.Join(rec, ",") + "\n")
	}
	return rows, sb.String()
}

// twoPass returns count, mean and population variance of the delays of
// origin (every origin when it is empty) with event time in [from, to], the
// textbook way: the mean first, then the squared deviations from it.
func twoPass(rows []flightRow, origin string, from, to int64) (int64, float64, float64) {
	var n int64
	var sum float64
	for _, r := range rows {
		if r.ms >= from && r.ms <= to && (origin == "" || r.origin == origin) {
			n++
			sum += r.delay
		}
	}
	if n == 0 {
		return 0, 0, 0
	}
	mean := sum / float64(n)
	var ss float64
	for _, r := range rows {
		if r.ms >= from && r.ms <= to && (origin == "" || r.origin == origin) {
			ss += (r.delay - mean) * (r.delay - mean)
		}
	}
	return n, mean, ss / float64(n)
}

// TestFlightsAgainstRecomputation replays the first day of the real sample
// and checks every alert's printed statistics against a recomputation from
// the raw rows. An alert at event time now describes the windows that end
// with now's 5-second bucket: the short one starts 59 buckets earlier, the
// long one 719, and both hold the rows ingested so far, those up to now.
func TestFlightsAgainstRecomputation(t *testing.T) {
	rows, text := sampleDay(t)
	m := Mapping{Entity: []string{"origin"}, Time: "time", Features: []string{"delay"}}
	alerts, sum := replayCSV(t, text, m, DetectorOptions{Drift: streamfeat.DriftOptions{MinCount: 10}})
	if sum.Ingest.AcceptedEvents != int64(len(rows)) {
		t.Fatalf("%d events accepted; want all %d rows", sum.Ingest.AcceptedEvents, len(rows))
	}

	const width = 5000 // ms, the default bucket
	entities := 0
	for _, a := range alerts {
		now := a.Time.UnixMilli()
		bucket := now / width
		for _, w := range []struct {
			name    string
			buckets int64
			got     streamfeat.Stats
		}{{"short", 60, a.Short}, {"long", 720, a.Long}} {
			from := (bucket - w.buckets + 1) * width
			n, mean, variance := twoPass(rows, a.Entity, from, now)
			if n != w.got.Count || !near(mean, w.got.Mean) || !near(variance, w.got.PopulationVariance) {
				t.Errorf("%s %s at %v, %s window: engine n=%d mean=%v var=%v; "+
					"recomputed n=%d mean=%v var=%v", a.Scope(), a.Feature, a.Time, w.name,
					w.got.Count, w.got.Mean, w.got.PopulationVariance, n, mean, variance)
			}
		}
		z := math.Abs(a.Short.Mean-a.Long.Mean) / a.Long.StdDev()
		if !near(z, a.MeanZScore) {
			t.Errorf("%s at %v: z %v; recomputed %v", a.Scope(), a.Time, a.MeanZScore, z)
		}
		if !a.Population {
			entities++
		}
	}
	t.Logf("%d alerts checked, %d of them for airports", len(alerts), entities)
	if entities < 5 {
		t.Errorf("%d entity alerts in %d; want at least 5 to make the check worth its name",
			entities, len(alerts))
	}
}

// near reports whether a and b agree to 1e-9, relative to their size.
func near(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*max(1, math.Abs(a), math.Abs(b))
}
