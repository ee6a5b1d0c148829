package replay

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// DefaultEntitySeparator joins the values of several entity columns into one
// id: origin "SFO" and destination "LAX" become "SFO|LAX". A vertical bar
// reads well and rarely occurs in codes or names. It is not escaped, so
// columns whose values contain it can produce the same id from different
// rows; choose another separator for such data.
const DefaultEntitySeparator = "|"

// Mapping says how the columns of a log become events.
type Mapping struct {
	// Entity names the columns whose values, joined with Separator, form
	// the entity id. At least one is required.
	Entity []string

	// Separator joins several entity columns. Empty means
	// DefaultEntitySeparator.
	Separator string

	// Time names the column that holds the event time.
	Time string

	// TimeUnit says how to read the time column's values. Parquet timestamp
	// columns carry their own unit and ignore it.
	TimeUnit TimeUnit

	// Features names the columns that hold feature values, in the order of
	// FeatureIDs.
	Features []string

	// FeatureIDs are the ids the engine gave Features, one for each. Nil
	// means 1, 2, … in the order of Features.
	FeatureIDs []int32
}

// validate checks m and returns it with its defaults filled.
func (m Mapping) validate() (Mapping, error) {
	if m.Separator == "" {
		m.Separator = DefaultEntitySeparator
	}
	switch {
	case len(m.Entity) == 0:
		return m, errors.New("replay: mapping: no entity column")
	case m.Time == "":
		return m, errors.New("replay: mapping: no time column")
	case len(m.Features) == 0:
		return m, errors.New("replay: mapping: no feature column")
	case m.FeatureIDs != nil && len(m.FeatureIDs) != len(m.Features):
		return m, fmt.Errorf("replay: mapping: %d feature ids for %d features",
			len(m.FeatureIDs), len(m.Features))
	}
	for _, name := range m.columns() {
		if name == "" {
			return m, errors.New("replay: mapping: empty column name")
		}
	}
	if m.FeatureIDs == nil {
		m.FeatureIDs = make([]int32, len(m.Features))
		for i := range m.FeatureIDs {
			m.FeatureIDs[i] = int32(i + 1)
		}
	}
	return m, nil
}

// columns lists every column the mapping reads.
func (m Mapping) columns() []string {
	cols := append([]string{}, m.Entity...)
	cols = append(cols, m.Time)
	return append(cols, m.Features...)
}

// TimeUnit tells how a time column is written.
type TimeUnit int

const (
	// RFC3339 reads text such as 2001-01-01T00:01:00Z, with an optional
	// fraction. A space may stand for the T, and a time without an offset
	// is taken as UTC.
	RFC3339 TimeUnit = iota
	Seconds          // Unix seconds, an integer or a decimal fraction
	Millis           // Unix milliseconds, an integer or a decimal fraction
	Micros           // Unix microseconds, an integer
	Nanos            // Unix nanoseconds, an integer
)

// ParseTimeUnit reads a unit name: rfc3339, s, ms, us (or µs) or ns.
func ParseTimeUnit(s string) (TimeUnit, error) {
	switch strings.ToLower(s) {
	case "rfc3339", "":
		return RFC3339, nil
	case "s", "sec", "seconds":
		return Seconds, nil
	case "ms", "millis":
		return Millis, nil
	case "us", "µs", "micros":
		return Micros, nil
	case "ns", "nanos":
		return Nanos, nil
	}
	return 0, fmt.Errorf("replay: time unit %q: want rfc3339, s, ms, us or ns", s)
}

// String returns the unit's name as ParseTimeUnit reads it.
func (u TimeUnit) String() string {
	switch u {
	case RFC3339:
		return "rfc3339"
	case Seconds:
		return "s"
	case Millis:
		return "ms"
	case Micros:
		return "us"
	case Nanos:
		return "ns"
	}
	return "TimeUnit(" + strconv.Itoa(int(u)) + ")"
}

// perMs is how many of the unit make one millisecond, for the integer units
// finer than a millisecond.
func (u TimeUnit) perMs() int64 {
	switch u {
	case Micros:
		return 1_000
	case Nanos:
		return 1_000_000
	}
	return 1
}

// ParseTime reads a timestamp written in unit u and returns it in Unix
// milliseconds, rounded down.
func ParseTime(s string, u TimeUnit) (int64, error) {
	if u == RFC3339 {
		return parseText(s)
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return epochToMs(n, u)
	}
	if u != Seconds && u != Millis {
		return 0, fmt.Errorf("time %q: want an integer of unit %v", s, u)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("time %q: not a number of unit %v", s, u)
	}
	if u == Seconds {
		f *= 1000
	}
	// Beyond ±2^53 ms a float no longer holds whole milliseconds, and the
	// years it reaches (about 285,000) are not event times anyway.
	if !(math.Abs(f) < 1<<53) {
		return 0, fmt.Errorf("time %q: out of range", s)
	}
	return int64(math.Floor(f)), nil
}

// epochToMs converts an integer count of unit u to milliseconds.
func epochToMs(n int64, u TimeUnit) (int64, error) {
	switch u {
	case Seconds:
		if n > math.MaxInt64/1000 || n < math.MinInt64/1000 {
			return 0, fmt.Errorf("time %d s: out of range", n)
		}
		return n * 1000, nil
	case Millis:
		return n, nil
	case Micros, Nanos:
		d := u.perMs()
		q := n / d
		if n%d < 0 { // floor, so that times before 1970 round down too
			q--
		}
		return q, nil
	}
	return 0, fmt.Errorf("time unit %v: unknown", u)
}

// textLayouts are tried in order after RFC 3339 proper fails.
var textLayouts = []string{
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999",
}

// parseText reads an RFC 3339 timestamp or one of its common relatives.
func parseText(s string) (int64, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		for _, layout := range textLayouts {
			var lerr error
			if t, lerr = time.Parse(layout, s); lerr == nil {
				err = nil
				break
			}
		}
	}
	if err != nil {
		return 0, fmt.Errorf("time %q: not RFC 3339 (set the time unit for epoch numbers)", s)
	}
	return t.UnixMilli(), nil
}

// ParseValue reads a feature value: a decimal or exponent number. Empty
// text is no value (ok false, err nil); NaN and infinities are errors, since
// the engine would reject them anyway.
func ParseValue(s string) (v float64, ok bool, err error) {
	if s == "" {
		return 0, false, nil
	}
	v, err = strconv.ParseFloat(s, 64)
	if err != nil {
		s2 := strings.TrimSpace(s)
		if s2 == "" {
			return 0, false, nil
		}
		if v, err = strconv.ParseFloat(s2, 64); err != nil {
			return 0, false, fmt.Errorf("value %q: not a number", s)
		}
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, false, fmt.Errorf("value %q: not finite", s)
	}
	return v, true, nil
}
