//go:build race

package streamfeat

// raceEnabled reports whether the tests run under the race detector, which
// makes the numerics tests that push a million values through the engine
// take tens of seconds; the plain run checks them.
const raceEnabled = true
