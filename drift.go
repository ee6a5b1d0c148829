package streamfeat

import (
	"fmt"
	"math"
)

// Drift defaults: a mean shift of more than three long-window standard
// deviations, or a standard deviation that doubled or halved.
const (
	DefaultMeanZThreshold         = 3.0
	DefaultVarianceRatioThreshold = 2.0

	// driftEps keeps the ratios finite when a window has no spread.
	driftEps = 1e-12
)

// DriftOptions adjusts one drift check. The zero value applies the defaults.
type DriftOptions struct {
	// MeanZThreshold flags a mean shift when the z-score exceeds it.
	// 0 means DefaultMeanZThreshold.
	MeanZThreshold float64

	// VarianceRatioThreshold flags a variance shift when the ratio of
	// standard deviations, either way round, exceeds it. 0 means
	// DefaultVarianceRatioThreshold; otherwise it must be at least 1, and 1
	// flags any change of spread.
	VarianceRatioThreshold float64

	// MinCount is the number of values each window must hold before any flag
	// is set. 0 sets no minimum beyond a non-empty window. With one value in
	// the short window its standard deviation is 0 and the inverse ratio is
	// huge, so a MinCount of a few dozen avoids flagging single values.
	MinCount int64

	// ExcludeShortFromLong compares the short window with the long window
	// less the short window's buckets: a baseline that the recent values do
	// not pull toward themselves. DriftReport.Long is then that baseline.
	ExcludeShortFromLong bool
}

// DriftReport compares the short window with the long one.
type DriftReport struct {
	Short Stats
	Long  Stats // the baseline compared: with ExcludeShortFromLong, short's buckets left out

	MeanZScore           float64 // |mean_s - mean_l| / max(sigma_l, 1e-12)
	VarianceRatio        float64 // sigma_s / max(sigma_l, 1e-12)
	InverseVarianceRatio float64 // sigma_l / max(sigma_s, 1e-12)

	MeanShift     bool // MeanZScore > MeanZThreshold
	VarianceShift bool // either ratio > VarianceRatioThreshold
	Drifted       bool // MeanShift || VarianceShift

	// InsufficientData is set when a window is empty (every metric is then
	// 0) or holds fewer than MinCount values (metrics computed, no flag set).
	InsufficientData bool

	MeanZThreshold         float64 // the thresholds applied
	VarianceRatioThreshold float64
}

// withDefaults validates o and fills its zero thresholds.
func (o DriftOptions) withDefaults() (DriftOptions, error) {
	if o.MeanZThreshold == 0 {
		o.MeanZThreshold = DefaultMeanZThreshold
	}
	if o.VarianceRatioThreshold == 0 {
		o.VarianceRatioThreshold = DefaultVarianceRatioThreshold
	}
	if t := o.MeanZThreshold; !(t > 0) || math.IsInf(t, 0) {
		return o, fmt.Errorf("%w: mean z threshold %v: want a finite number above 0", ErrInvalidOption, t)
	}
	// Of a ratio and its inverse one is always at least 1, so a threshold
	// below 1 would flag every comparison, shifted or not.
	if t := o.VarianceRatioThreshold; !(t >= 1) || math.IsInf(t, 0) {
		return o, fmt.Errorf("%w: variance ratio threshold %v: want a finite number of at least 1",
			ErrInvalidOption, t)
	}
	if o.MinCount < 0 {
		return o, fmt.Errorf("%w: min count %d: must not be negative", ErrInvalidOption, o.MinCount)
	}
	return o, nil
}

// drift compares the windows of ws as o asks; o has its defaults filled.
func drift(ws windowSet, o DriftOptions) DriftReport {
	short, long := ws.short, ws.long
	if o.ExcludeShortFromLong {
		long = ws.baseline
	}
	r := DriftReport{
		Short:                  short.stats(),
		Long:                   long.stats(),
		MeanZThreshold:         o.MeanZThreshold,
		VarianceRatioThreshold: o.VarianceRatioThreshold,
	}
	if short.n == 0 || long.n == 0 {
		r.InsufficientData = true
		return r
	}

	sigmaS, sigmaL := r.Short.StdDev(), r.Long.StdDev()
	r.MeanZScore = math.Abs(meanDiff(short, long)) / max(sigmaL, driftEps)
	r.VarianceRatio = sigmaS / max(sigmaL, driftEps)
	r.InverseVarianceRatio = sigmaL / max(sigmaS, driftEps)
	if short.n < o.MinCount || long.n < o.MinCount {
		r.InsufficientData = true
		return r
	}

	r.MeanShift = r.MeanZScore > o.MeanZThreshold
	r.VarianceShift = r.VarianceRatio > o.VarianceRatioThreshold ||
		r.InverseVarianceRatio > o.VarianceRatioThreshold
	r.Drifted = r.MeanShift || r.VarianceShift
	return r
}
