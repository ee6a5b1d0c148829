//go:build !race

package streamfeat

// raceEnabled reports whether the tests run under the race detector.
const raceEnabled = false
