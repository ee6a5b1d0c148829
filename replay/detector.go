package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/streamfeat/streamfeat"
)

// Feature is a registered feature: its engine id and its name.
type Feature struct {
	ID   int32
	Name string
}

// Alert is one newly drifted (entity, feature) pair, or population feature.
type Alert struct {
	// Time is the event time of the check: the newest event time ingested
	// before it, which is where the engine's windows end.
	Time       time.Time `json:"time"`
	Entity     string    `json:"entity,omitempty"` // empty for the population
	Population bool      `json:"population"`
	Feature    string    `json:"feature"`

	Short streamfeat.Stats `json:"short"`
	Long  streamfeat.Stats `json:"long"`

	MeanZScore           float64 `json:"mean_z_score"`
	VarianceRatio        float64 `json:"variance_ratio"`         // sigma_short / sigma_long
	InverseVarianceRatio float64 `json:"inverse_variance_ratio"` // sigma_long / sigma_short
	MeanShift            bool    `json:"mean_shift"`
	VarianceShift        bool    `json:"variance_shift"`
}

// Scope returns the entity, or "(population)".
func (a Alert) Scope() string {
	if a.Population {
		return "(population)"
	}
	return a.Entity
}

// Flags names the tests that fired: "mean", "variance" or "mean+variance".
func (a Alert) Flags() string {
	switch {
	case a.MeanShift && a.VarianceShift:
		return "mean+variance"
	case a.MeanShift:
		return "mean"
	case a.VarianceShift:
		return "variance"
	}
	return ""
}

// DetectorOptions configure a Detector.
type DetectorOptions struct {
	// Drift is passed to every drift query.
	Drift streamfeat.DriftOptions

	// NoPopulation skips the population checks.
	NoPopulation bool

	// Concurrency is how many drift queries a check has in flight at once.
	// Default 8: enough to hide a server's round trip, few enough not to
	// crowd out ingest.
	Concurrency int
}

// Detector turns drift queries into alerts that fire once per episode. It
// is used by one goroutine at a time.
type Detector struct {
	b     Backend
	feats []Feature
	opts  DetectorOptions

	seen    map[string]struct{} // entities observed since the last check
	drifted map[pairKey]bool    // pairs drifted at their last check; only true entries
	checks  int64
}

// pairKey names an (entity, feature) pair; the population has pop set.
type pairKey struct {
	entity  string
	feature int32
	pop     bool
}

// NewDetector returns a Detector that checks feats through b.
func NewDetector(b Backend, feats []Feature, opts DetectorOptions) (*Detector, error) {
	if len(feats) == 0 {
		return nil, errors.New("replay: detector: no features")
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 8
	}
	if opts.Concurrency < 0 {
		return nil, fmt.Errorf("replay: detector: concurrency %d: must be positive", opts.Concurrency)
	}
	return &Detector{
		b: b, feats: slices.Clone(feats), opts: opts,
		seen: make(map[string]struct{}), drifted: make(map[pairKey]bool),
	}, nil
}

// Observe notes that entity had an event since the last check.
func (d *Detector) Observe(entity string) {
	if _, ok := d.seen[entity]; !ok {
		d.seen[entity] = struct{}{}
	}
}

// Checks returns how many checks have run.
func (d *Detector) Checks() int64 { return d.checks }

// Check queries drift for every entity observed since the last check, and
// for the population, and returns the alerts that are new, ordered by
// entity (population first) and feature. at is the event time to stamp
// them with.
func (d *Detector) Check(ctx context.Context, at time.Time) ([]Alert, error) {
	entities := make([]string, 0, len(d.seen))
	for e := range d.seen {
		entities = append(entities, e)
	}
	slices.Sort(entities)
	clear(d.seen)
	d.checks++

	keys := make([]pairKey, 0, (len(entities)+1)*len(d.feats))
	if !d.opts.NoPopulation {
		for _, f := range d.feats {
			keys = append(keys, pairKey{feature: f.ID, pop: true})
		}
	}
	for _, e := range entities {
		for _, f := range d.feats {
			keys = append(keys, pairKey{entity: e, feature: f.ID})
		}
	}
	reports, err := d.query(ctx, keys)
	if err != nil {
		return nil, err
	}

	var alerts []Alert
	for i, k := range keys {
		r := reports[i]
		if !r.Drifted {
			delete(d.drifted, k) // back to normal: it may fire again later
			continue
		}
		if d.drifted[k] {
			continue // still the same episode
		}
		d.drifted[k] = true
		alerts = append(alerts, d.alert(at, k, r))
	}
	return alerts, nil
}

// query runs the drift queries for keys with bounded concurrency and
// returns the reports in the order of keys.
func (d *Detector) query(ctx context.Context, keys []pairKey) ([]streamfeat.DriftReport, error) {
	reports := make([]streamfeat.DriftReport, len(keys))
	errs := make([]error, len(keys))
	ask := func(i int) {
		k := keys[i]
		if k.pop {
			reports[i], errs[i] = d.b.PopulationDrift(ctx, k.feature, d.opts.Drift)
		} else {
			reports[i], errs[i] = d.b.Drift(ctx, k.entity, k.feature, d.opts.Drift)
		}
	}
	if d.opts.Concurrency == 1 || len(keys) == 1 {
		for i := range keys {
			ask(i)
		}
	} else {
		sem := make(chan struct{}, d.opts.Concurrency)
		var wg sync.WaitGroup
		for i := range keys {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				ask(i)
			})
		}
		wg.Wait()
	}
	for i, err := range errs {
		if err != nil {
			k := keys[i]
			return nil, fmt.Errorf("replay: drift of %q feature %d: %w", k.entity, k.feature, err)
		}
	}
	return reports, nil
}

func (d *Detector) alert(at time.Time, k pairKey, r streamfeat.DriftReport) Alert {
	name := ""
	for _, f := range d.feats {
		if f.ID == k.feature {
			name = f.Name
		}
	}
	return Alert{
		Time: at.UTC(), Entity: k.entity, Population: k.pop, Feature: name,
		Short: r.Short, Long: r.Long,
		MeanZScore: r.MeanZScore, VarianceRatio: r.VarianceRatio,
		InverseVarianceRatio: r.InverseVarianceRatio,
		MeanShift:            r.MeanShift, VarianceShift: r.VarianceShift,
	}
}
