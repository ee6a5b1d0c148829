package streamfeat

import (
	"math"
	"strconv"
)

// Window selects one of the two rolling windows.
type Window uint8

// The two windows. The zero Window is invalid, so a forgotten field is an
// error rather than a silent choice.
const (
	Short Window = iota + 1 // the newest ShortBuckets buckets (5 minutes by default)
	Long                    // the newest LongBuckets buckets (1 hour by default)
)

// String returns "short", "long" or a description of an invalid value.
func (w Window) String() string {
	switch w {
	case Short:
		return "short"
	case Long:
		return "long"
	}
	return "Window(" + strconv.Itoa(int(w)) + ")"
}

// Stats are the moments of one feature's values in one window.
//
// Mean and the variances are undefined for an empty window, and the sample
// variance for a window of one value. Undefined fields are 0, never NaN, so a
// Stats always encodes to JSON; Count says which fields are defined (see
// HasMean and HasSampleVariance). Variances are never negative, and a window
// of identical values has a variance of exactly 0.
type Stats struct {
	Count              int64   `json:"count"`
	Mean               float64 `json:"mean"`
	PopulationVariance float64 `json:"population_variance"`
	SampleVariance     float64 `json:"sample_variance"`
}

// HasMean reports whether Mean and PopulationVariance are defined.
func (s Stats) HasMean() bool { return s.Count > 0 }

// HasSampleVariance reports whether SampleVariance is defined.
func (s Stats) HasSampleVariance() bool { return s.Count > 1 }

// StdDev returns the population standard deviation, 0 when undefined.
func (s Stats) StdDev() float64 { return math.Sqrt(s.PopulationVariance) }

// moments accumulate count, mean and the sum of squared deviations (M2) of a
// set of values, stored relative to a shift: mean is the mean of x - shift.
//
// The shift is the first value seen, so for data like 1e12 + N(0, 1) the
// deviations x - shift are small and, by Sterbenz's lemma, computed exactly;
// Welford's update and Chan's merge then work on numbers of the data's own
// spread instead of its offset. Plain Welford stores a mean of 1e12 whose ulp
// (1.2e-4) swamps a spread of 1e-3; this form keeps the full 53 bits for the
// spread. Merging never subtracts, so an expired bucket can never leave a
// residue: windows are rebuilt from the buckets they hold.
type moments struct {
	n     int64
	shift float64
	mean  float64
	m2    float64
}

// merge folds the moments (n, shift, mean, m2) of a disjoint set into m with
// Chan's parallel formula, carried out relative to m's shift.
func (m *moments) merge(n int64, shift, mean, m2 float64) {
	if n == 0 {
		return
	}
	if m.n == 0 {
		*m = moments{n: n, shift: shift, mean: mean, m2: m2}
		return
	}
	// The shifts are close for data with a large common offset, so their
	// difference is exact and delta keeps the precision of the spread.
	delta := (shift - m.shift) + (mean - m.mean)
	total := m.n + n
	f := float64(n) / float64(total)
	m.mean += delta * f
	m.m2 += m2 + delta*delta*float64(m.n)*f
	m.n = total
}

// add merges other into m.
func (m *moments) add(other moments) {
	m.merge(other.n, other.shift, other.mean, other.m2)
}

// stats converts m to the public form.
func (m moments) stats() Stats {
	if m.n == 0 {
		return Stats{}
	}
	m2 := max(m.m2, 0)
	s := Stats{
		Count:              m.n,
		Mean:               m.shift + m.mean,
		PopulationVariance: m2 / float64(m.n),
	}
	if m.n > 1 {
		s.SampleVariance = m2 / float64(m.n-1)
	}
	return s
}

// meanDiff returns mean(a) - mean(b) without first rounding either mean to a
// single float, which would cost the precision the shifts kept.
func meanDiff(a, b moments) float64 {
	return (a.shift - b.shift) + (a.mean - b.mean)
}
