package replay

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamfeat/streamfeat"
)

// scripted is a Backend whose drift answers follow a script: drifted[k] is
// the answer at check k for every entity and the population.
type scripted struct {
	mu      sync.Mutex
	drifted []bool
	check   int
}

func (s *scripted) RegisterSchema(context.Context, []string) (map[string]int32, error) {
	return nil, nil
}

func (s *scripted) Ingest(context.Context, []streamfeat.Event) (streamfeat.IngestResult, error) {
	return streamfeat.IngestResult{}, nil
}

func (s *scripted) Drift(context.Context, string, int32, streamfeat.DriftOptions) (streamfeat.DriftReport, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return streamfeat.DriftReport{Drifted: s.drifted[s.check], MeanShift: s.drifted[s.check]}, nil
}

func (s *scripted) PopulationDrift(ctx context.Context, f int32, o streamfeat.DriftOptions) (streamfeat.DriftReport, error) {
	return s.Drift(ctx, "", f, o)
}

// TestDetectorFiresOncePerEpisode runs the alert rule on a scripted drift
// sequence: an alert at the start of each drifted run, none while it lasts.
func TestDetectorFiresOncePerEpisode(t *testing.T) {
	script := []bool{false, true, true, true, false, true, false, false, true}
	b := &scripted{drifted: script}
	d, err := NewDetector(b, []Feature{{ID: 1, Name: "x"}}, DetectorOptions{NoPopulation: true})
	if err != nil {
		t.Fatal(err)
	}
	var fired []int
	for i := range script {
		b.check = i
		d.Observe("a")
		alerts, err := d.Check(context.Background(), time.UnixMilli(int64(i)))
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range alerts {
			if a.Entity != "a" || a.Feature != "x" || a.Flags() != "mean" {
				t.Errorf("check %d: alert %+v; want a/x with the mean flag", i, a)
			}
			fired = append(fired, i)
		}
	}
	if want := []int{1, 5, 8}; !reflect.DeepEqual(fired, want) {
		t.Errorf("alerts at checks %v; want %v", fired, want)
	}
}

// TestDetectorChecksOnlySeenEntities: an entity not observed since the last
// check is not queried, and keeps its state until it is.
func TestDetectorChecksOnlySeenEntities(t *testing.T) {
	b := &scripted{drifted: []bool{true, true, false, true}}
	d, _ := NewDetector(b, []Feature{{ID: 1, Name: "x"}}, DetectorOptions{NoPopulation: true})
	ctx := context.Background()
	var got []string
	for i, seen := range [][]string{{"a", "b"}, {"b"}, {"b"}, {"a", "b"}} {
		b.check = i
		for _, e := range seen {
			d.Observe(e)
		}
		alerts, _ := d.Check(ctx, time.UnixMilli(int64(i)))
		for _, a := range alerts {
			got = append(got, fmt.Sprintf("%d:%s", i, a.Entity))
		}
	}
	// a was drifted at its last check (0) and again at 3: the same episode
	// as far as the detector can tell. b recovered at 2 and fires again.
	if want := []string{"0:a", "0:b", "3:b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("alerts %v; want %v", got, want)
	}
}

// driftLog writes a CSV log of one entity, "a", with a value every 5
// seconds from t0 for 3 hours: 9 and 11 alternating, then from shiftAt on
// 29 and 31. The steady part fills the long window before the shift.
func driftLog(t0, shiftAt time.Time) string {
	var sb strings.Builder
	sb.WriteString("ts,entity,x\n")
	for ts := t0; ts.Before(t0.Add(3 * time.Hour)); ts = ts.Add(5 * time.Second) {
		v := 9 + 2*(ts.Unix()/5%2)
		if !ts.Before(shiftAt) {
			v += 20
		}
		fmt.Fprintf(&sb, "%d,a,%d\n", ts.UnixMilli(), v)
	}
	return sb.String()
}

// replayCSV replays a CSV log through an in-process engine with the
// event-time clock and returns the alerts.
func replayCSV(t *testing.T, csv string, m Mapping, opts DetectorOptions) ([]Alert, Summary) {
	t.Helper()
	e, err := streamfeat.New(streamfeat.Config{Clock: streamfeat.NewEventClock(), Shards: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	b := Local(e)
	ids, err := b.RegisterSchema(context.Background(), m.Features)
	if err != nil {
		t.Fatal(err)
	}
	var feats []Feature
	m.FeatureIDs = nil
	for _, f := range m.Features {
		m.FeatureIDs = append(m.FeatureIDs, ids[f])
		feats = append(feats, Feature{ID: ids[f], Name: f})
	}
	det, err := NewDetector(b, feats, opts)
	if err != nil {
		t.Fatal(err)
	}
	var alerts []Alert
	rp, err := NewReplayer(b, det, Config{OnAlert: func(a Alert) error {
		alerts = append(alerts, a)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewCSV(strings.NewReader(csv), m)
	if err != nil {
		t.Fatal(err)
	}
	if err := rp.Run(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	if err := rp.Finish(context.Background()); err != nil {
		t.Fatal(err)
	}
	return alerts, rp.Summary()
}

// TestAlertAtKnownDriftPoint replays a log whose level jumps at a known time
// and checks that the alert comes at the first check after the jump, once.
//
// The short window is compared with the long one less the short, so the
// baseline is the old level (10 ± 1) until values of the new one (30 ± 1)
// age into it. With a share p of new values in the baseline, z is
// sqrt((1-p)/p) and sigma_baseline / sigma_short about 20 sqrt(p(1-p)), so
// one of the two flags holds until p passes 0.99: one episode, one alert.
func TestAlertAtKnownDriftPoint(t *testing.T) {
	t0 := time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)
	shiftAt := t0.Add(90 * time.Minute)
	m := Mapping{Entity: []string{"entity"}, Time: "ts", TimeUnit: Millis, Features: []string{"x"}}
	alerts, sum := replayCSV(t, driftLog(t0, shiftAt), m, DetectorOptions{
		Drift: streamfeat.DriftOptions{MinCount: 30, ExcludeShortFromLong: true},
	})

	if sum.Rows != 3*720 || sum.Ingest.AcceptedEvents != sum.Rows || sum.TotalBadRows() != 0 {
		t.Errorf("summary %+v; want all %d rows accepted", sum, 3*720)
	}
	if sum.Checks != 3*60 {
		t.Errorf("%d checks; want one per minute, %d", sum.Checks, 3*60)
	}
	// With one entity the population is the entity, so both fire together.
	if len(alerts) != 2 {
		t.Fatalf("%d alerts: %+v; want one for a and one for the population", len(alerts), alerts)
	}
	// The shift's first value is at 01:30:00; the check it triggers runs at
	// the minute boundary after it, on data up to the newest event then,
	// 01:30:55: 12 new values and 48 old in the short window.
	want := shiftAt.Add(55 * time.Second)
	for i, scope := range []string{"(population)", "a"} {
		a := alerts[i]
		if !a.Time.Equal(want) || a.Scope() != scope || a.Feature != "x" {
			t.Errorf("alert %d at %v for %s/%s; want %v for %s/x", i, a.Time, a.Scope(), a.Feature,
				want, scope)
		}
		if a.Short.Count != 60 || math.Abs(a.Short.Mean-14) > 1e-9 || math.Abs(a.Long.Mean-10) > 1e-9 ||
			!a.MeanShift {
			t.Errorf("alert %d: short %+v, long %+v, mean shift %v; want 60 values of mean 14 "+
				"against a baseline of mean 10, and a mean shift", i, a.Short, a.Long, a.MeanShift)
		}
	}
}
