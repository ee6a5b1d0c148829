package replay

import (
	"errors"
	"io"
	"math"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/streamfeat/streamfeat"
)

// checkEvent asserts what every event a Source returns must satisfy.
func checkEvent(t *testing.T, ev streamfeat.Event, m Mapping) {
	t.Helper()
	if ev.EntityID == "" {
		t.Errorf("event with an empty entity: %+v", ev)
	}
	if len(m.Entity) > 1 && !strings.Contains(ev.EntityID, DefaultEntitySeparator) {
		t.Errorf("entity %q lacks the separator of its %d parts", ev.EntityID, len(m.Entity))
	}
	if len(ev.Values) == 0 || len(ev.Values) > len(m.Features) {
		t.Errorf("event with %d values for %d features", len(ev.Values), len(m.Features))
	}
	for _, v := range ev.Values {
		if math.IsNaN(v.Value) || math.IsInf(v.Value, 0) || v.FeatureID < 1 {
			t.Errorf("bad value %+v", v)
		}
	}
}

// drain reads src to its end, checking every event and error.
func drain(t *testing.T, src Source, m Mapping) {
	t.Helper()
	for range 1 << 16 { // a bound, so a source that never ends fails instead of hanging
		var ev streamfeat.Event
		err := src.Read(&ev)
		if err == io.EOF {
			return
		}
		var rerr *RowError
		if errors.As(err, &rerr) {
			if rerr.Number < 1 || rerr.Reason < 0 || rerr.Reason >= numReasons {
				t.Errorf("row error %v: bad position or reason", rerr)
			}
			continue
		}
		if err != nil {
			return // an I/O-level error ends the source; that is allowed
		}
		checkEvent(t, ev, m)
	}
	t.Fatal("source did not end")
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"2001-01-01T00:01:00Z", "2001-01-01 00:01:00.5+05:30",
		"978307260", "-1.5", "1e20", "9223372036854775807", "", "NaN", "0x10", "2001-02-30T00:00:00Z"} {
		for u := RFC3339; u <= Nanos; u++ {
			f.Add(s, int(u))
		}
	}
	f.Fuzz(func(t *testing.T, s string, unit int) {
		u := TimeUnit(((unit % 5) + 5) % 5)
		ms, err := ParseTime(s, u)
		if err != nil {
			return
		}
		// A whole number of the unit must land in the millisecond that
		// holds it.
		if u == Millis {
			if n, ok := parseInt(s); ok && n != ms {
				t.Errorf("ParseTime(%q, ms) = %d; want %d", s, ms, n)
			}
		}
		if u == Seconds {
			if n, ok := parseInt(s); ok && n*1000 != ms {
				t.Errorf("ParseTime(%q, s) = %d; want %d", s, ms, n*1000)
			}
		}
	})
}

// parseInt reads a plain decimal integer that fits comfortably in int64.
func parseInt(s string) (int64, bool) {
	if s == "" || len(s) > 15 {
		return 0, false
	}
	neg := s[0] == '-'
	if neg {
		s = s[1:]
	}
	var n int64
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if s == "" {
		return 0, false
	}
	if neg {
		n = -n
	}
	return n, true
}

func FuzzCSV(f *testing.F) {
	f.Add("2001-01-01T00:01:00Z,LAS,PHL,33,2176\n2001-01-01T00:01:00Z,ATL,SAV,,215\n")
	f.Add("bad,LAS,PHL,33,2176\n\"x\"y,1,2,3,4\n,,,,\n")
	f.Add("2001-01-01T00:01:00Z,\"L,AS\",PHL,1e3,-0\n2001-01-01T00:01:00Z,A,B,NaN,1\n")
	f.Add("2001-01-01T00:01:00Z,A,B,1\n\"open quote\n")
	f.Fuzz(func(t *testing.T, body string) {
		in := "time,origin,destination,delay,distance\n" + body
		m := Mapping{Entity: []string{"origin", "destination"}, Time: "time",
			Features: []string{"delay", "distance"}}
		src, err := NewCSV(strings.NewReader(in), m)
		if err != nil {
			t.Fatal(err) // the header is fixed and good
		}
		drain(t, src, m)
	})
}

func FuzzNDJSON(f *testing.F) {
	f.Add(`{"t":"2001-01-01T00:01:00Z","e":"a","x":1,"y":"2"}`)
	f.Add(`{"t":978307260,"e":7,"x":null}` + "\n" + `{"t":1,"e":"b","x":1e400}`)
	f.Add(`{"t":"","e":"","x":[]}` + "\n\n" + `{bad`)
	f.Add(`{"t":"2001-01-01T00:01:00Z","e":"\u00e9\/","x":-0.5}`)
	f.Fuzz(func(t *testing.T, in string) {
		m := Mapping{Entity: []string{"e"}, Time: "t", Features: []string{"x", "y"}}
		src, err := NewNDJSON(strings.NewReader(in), m)
		if err != nil {
			t.Fatal(err)
		}
		for range 1 << 16 {
			var ev streamfeat.Event
			err := src.Read(&ev)
			if err == io.EOF {
				return
			}
			var rerr *RowError
			if errors.As(err, &rerr) {
				continue
			}
			if err != nil {
				return
			}
			checkEvent(t, ev, m)
			if utf8.ValidString(in) && !utf8.ValidString(ev.EntityID) {
				t.Errorf("entity %q is not UTF-8 though the input was", ev.EntityID)
			}
		}
		t.Fatal("source did not end")
	})
}
