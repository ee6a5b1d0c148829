package replay

import (
	"math"
	"testing"
)

func TestParseTime(t *testing.T) {
	const base = 978307260000 // 2001-01-01T00:01:00Z
	for _, c := range []struct {
		in   string
		unit TimeUnit
		want int64
	}{
		{"2001-01-01T00:01:00Z", RFC3339, base},
		{"2001-01-01T00:01:00.250Z", RFC3339, base + 250},
		{"2001-01-01T01:01:00+01:00", RFC3339, base},
		{"2001-01-01 00:01:00Z", RFC3339, base},
		{"2001-01-01T00:01:00", RFC3339, base},
		{"2001-01-01 00:01:00.5", RFC3339, base + 500},
		{"1969-12-31T23:59:59.9995Z", RFC3339, -1}, // rounds down, not toward zero
		{"978307260", Seconds, base},
		{"978307260.25", Seconds, base + 250},
		{"-1", Seconds, -1000},
		{"978307260000", Millis, base},
		{"978307260000.9", Millis, base},
		{"978307260000999", Micros, base},
		{"-1", Micros, -1},
		{"978307260000000001", Nanos, base},
	} {
		got, err := ParseTime(c.in, c.unit)
		if err != nil || got != c.want {
			t.Errorf("ParseTime(%q, %v) = %d, %v; want %d", c.in, c.unit, got, err, c.want)
		}
	}
}

func TestParseTimeErrors(t *testing.T) {
	for _, c := range []struct {
		in   string
		unit TimeUnit
	}{
		{"", RFC3339},
		{"978307260", RFC3339}, // a number needs a unit
		{"2001-13-01T00:00:00Z", RFC3339},
		{"yesterday", Seconds},
		{"1.5", Micros}, // fractions only for s and ms
		{"NaN", Seconds},
		{"1e300", Seconds},
		{"9223372036854775807", Seconds}, // overflows in milliseconds
	} {
		if got, err := ParseTime(c.in, c.unit); err == nil {
			t.Errorf("ParseTime(%q, %v) = %d; want an error", c.in, c.unit, got)
		}
	}
}

func TestParseTimeUnit(t *testing.T) {
	for in, want := range map[string]TimeUnit{
		"": RFC3339, "RFC3339": RFC3339, "s": Seconds, "ms": Millis, "µs": Micros, "us": Micros,
		"ns": Nanos,
	} {
		got, err := ParseTimeUnit(in)
		if err != nil || got != want {
			t.Errorf("ParseTimeUnit(%q) = %v, %v; want %v", in, got, err, want)
		}
		if back, _ := ParseTimeUnit(got.String()); back != got {
			t.Errorf("unit %v does not survive String and back", got)
		}
	}
	if _, err := ParseTimeUnit("fortnights"); err == nil {
		t.Error("ParseTimeUnit(fortnights): no error")
	}
}

func TestParseValue(t *testing.T) {
	for _, c := range []struct {
		in     string
		want   float64
		ok     bool
		hasErr bool
	}{
		{"12", 12, true, false},
		{"-3.5e2", -350, true, false},
		{" 7 ", 7, true, false},
		{"", 0, false, false},
		{"  ", 0, false, false},
		{"abc", 0, false, true},
		{"NaN", 0, false, true},
		{"-Inf", 0, false, true},
		{"1e999", 0, false, true},
	} {
		v, ok, err := ParseValue(c.in)
		if v != c.want || ok != c.ok || (err != nil) != c.hasErr {
			t.Errorf("ParseValue(%q) = %v, %v, %v; want %v, %v, error %v",
				c.in, v, ok, err, c.want, c.ok, c.hasErr)
		}
	}
	if v, _, _ := ParseValue("-0"); !math.Signbit(v) {
		t.Error("ParseValue(-0) lost the sign; want -0")
	}
}

func TestMappingValidate(t *testing.T) {
	good := Mapping{Entity: []string{"a"}, Time: "t", Features: []string{"x", "y"}}
	m, err := good.validate()
	if err != nil {
		t.Fatal(err)
	}
	if m.Separator != DefaultEntitySeparator || len(m.FeatureIDs) != 2 || m.FeatureIDs[1] != 2 {
		t.Errorf("defaults not filled: %+v", m)
	}
	for name, bad := range map[string]Mapping{
		"no entity":   {Time: "t", Features: []string{"x"}},
		"no time":     {Entity: []string{"a"}, Features: []string{"x"}},
		"no features": {Entity: []string{"a"}, Time: "t"},
		"ids":         {Entity: []string{"a"}, Time: "t", Features: []string{"x"}, FeatureIDs: []int32{1, 2}},
		"empty name":  {Entity: []string{""}, Time: "t", Features: []string{"x"}},
	} {
		if _, err := bad.validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
