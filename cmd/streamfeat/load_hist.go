package main

import (
	"math"
	"math/bits"
)

// histogram records non-negative durations in nanoseconds in log-linear
// buckets: 64 linear sub-buckets per power of two, so any value reported is
// within 1/64 (1.6%) above the true one, in a fixed 30 KB whatever the
// number of samples. It is not safe for concurrent use; each worker keeps
// its own and they are merged at the end.
type histogram struct {
	counts [histBuckets]int64
	n      int64
	max    int64
}

const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	histBuckets = histSub + (64-histSubBits-1)*histSub + histSub
)

// histIndex maps v to its bucket. Values below 64 get a bucket each; above,
// the bucket is the power of two (shift) and the next six bits below the
// leading one.
func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(v) - histSubBits - 1
	return histSub + shift*histSub + int(v>>shift) - histSub
}

// histUpper is the largest value in bucket i.
func histUpper(i int) int64 {
	if i < histSub {
		return int64(i)
	}
	shift := (i - histSub) / histSub
	top := uint64(i-histSub)%histSub + histSub
	return int64(min((top+1)<<shift-1, math.MaxInt64))
}

func (h *histogram) record(v int64) {
	v = max(v, 0)
	h.counts[histIndex(uint64(v))]++
	h.n++
	h.max = max(h.max, v)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the upper bound of the bucket holding the q-th value
// (0 < q <= 1), capped at the exact maximum; 0 when empty.
func (h *histogram) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen int64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(histUpper(i), h.max)
		}
	}
	return h.max
}
