package replay

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/streamfeat/streamfeat"
)

// readAll reads src to its end and returns the events and the bad rows.
func readAll(t *testing.T, src Source) ([]streamfeat.Event, []*RowError) {
	t.Helper()
	var events []streamfeat.Event
	var bad []*RowError
	for {
		var ev streamfeat.Event
		err := src.Read(&ev)
		if err == io.EOF {
			return events, bad
		}
		var rerr *RowError
		if errors.As(err, &rerr) {
			bad = append(bad, rerr)
			continue
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		events = append(events, ev)
	}
}

func fv(id int32, v float64) streamfeat.FeatureValue {
	return streamfeat.FeatureValue{FeatureID: id, Value: v}
}

var flightsMapping = Mapping{
	Entity: []string{"origin", "destination"}, Time: "time",
	Features: []string{"delay", "distance"}, FeatureIDs: []int32{7, 9},
}

const flightsCSV = `time,origin,destination,delay,distance
2001-01-01T00:01:00Z,LAS,PHL,33,2176
2001-01-01T00:02:00Z,ATL,SAV,,215
`

func TestCSVMapping(t *testing.T) {
	src, err := NewCSV(strings.NewReader(flightsCSV), flightsMapping)
	if err != nil {
		t.Fatal(err)
	}
	events, bad := readAll(t, src)
	want := []streamfeat.Event{
		{EntityID: "LAS|PHL", TimestampMs: 978307260000, Values: []streamfeat.FeatureValue{fv(7, 33), fv(9, 2176)}},
		{EntityID: "ATL|SAV", TimestampMs: 978307320000, Values: []streamfeat.FeatureValue{fv(9, 215)}},
	}
	if len(bad) != 0 || !reflect.DeepEqual(events, want) {
		t.Errorf("got %+v, bad %v; want %+v", events, bad, want)
	}
}

func TestCSVColumnOrderAndSeparator(t *testing.T) {
	in := "\ufeffdistance,origin,time,destination\n100,SFO,978307260,LAX\n"
	m := Mapping{Entity: []string{"destination", "origin"}, Separator: "->", Time: "time",
		TimeUnit: Seconds, Features: []string{"distance"}}
	src, err := NewCSV(strings.NewReader(in), m)
	if err != nil {
		t.Fatal(err)
	}
	events, _ := readAll(t, src)
	if len(events) != 1 || events[0].EntityID != "LAX->SFO" || events[0].Values[0] != fv(1, 100) {
		t.Errorf("got %+v; want LAX->SFO with distance 100 as feature 1", events)
	}
}

func TestCSVMissingHeaderColumn(t *testing.T) {
	m := flightsMapping
	m.Features = []string{"delay", "altitude"}
	if _, err := NewCSV(strings.NewReader(flightsCSV), m); err == nil ||
		!strings.Contains(err.Error(), "altitude") {
		t.Errorf("err = %v; want one naming the missing column", err)
	}
	if _, err := NewCSV(strings.NewReader(""), flightsMapping); err == nil {
		t.Error("empty input: no error")
	}
}

func TestCSVBadRows(t *testing.T) {
	in := `time,origin,destination,delay,distance
2001-01-01T00:01:00Z,LAS,PHL,33,2176
not-a-time,ATL,SAV,1,2
2001-01-01T00:01:00Z,ATL,SAV,late,2
2001-01-01T00:01:00Z,ATL,SAV,1
2001-01-01T00:01:00Z,,SAV,1,2
2001-01-01T00:01:00Z,ATL,SAV,,
2001-01-01T00:01:00Z,"AT"L,SAV,1,2
"multi
line",ATL,SAV,1,2
2001-01-01T00:03:00Z,BOS,JFK,-4,187
`
	src, err := NewCSV(strings.NewReader(in), flightsMapping)
	if err != nil {
		t.Fatal(err)
	}
	events, bad := readAll(t, src)
	if len(events) != 2 || events[1].EntityID != "BOS|JFK" {
		t.Errorf("good rows: %+v; want LAS|PHL and BOS|JFK", events)
	}
	type got struct {
		line   int64
		reason Reason
	}
	// A quote left open spoils its own line only: records never span lines,
	// so the rows after it are read as usual.
	want := []got{{3, BadTime}, {4, BadValue}, {5, MissingColumn}, {6, BadEntity},
		{7, NoValues}, {8, Malformed}, {9, Malformed}, {10, Malformed}}
	var have []got
	for _, b := range bad {
		have = append(have, got{b.Number, b.Reason})
		if b.Unit != "line" || !strings.HasPrefix(b.Error(), "line ") {
			t.Errorf("bad row %v: want it to name its line", b)
		}
	}
	if !reflect.DeepEqual(have, want) {
		t.Errorf("bad rows %+v; want %+v", have, want)
	}
}

// TestCSVStrayQuote: an unclosed quote early in a long file costs one row,
// not the rest of the file.
func TestCSVStrayQuote(t *testing.T) {
	var b strings.Builder
	b.WriteString("time,origin,destination,delay,distance\n")
	b.WriteString(`2001-01-01T00:01:00Z,"LAS,PHL,33,2176` + "\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "2001-01-01T00:%02d:00Z,ATL,SAV,%d,2\n", i%60, i)
	}
	src, err := NewCSV(strings.NewReader(b.String()), flightsMapping)
	if err != nil {
		t.Fatal(err)
	}
	events, bad := readAll(t, src)
	if len(events) != 1000 || len(bad) != 1 || bad[0].Number != 2 || bad[0].Reason != Malformed {
		t.Fatalf("%d events, bad rows %+v; want 1000 events and line 2 malformed", len(events), bad)
	}
}

func TestNDJSON(t *testing.T) {
	in := `{"ts": 978307260000, "origin": "LAS", "destination": "PHL", "delay": 33, "distance": 2176}

{"ts": "978307320000", "origin": "ATL", "destination": 7, "delay": "-2.5", "distance": null}
{"ts": 978307320000, "origin": "ATL", "destination": "SAV", "delay": "x"}
{"ts": 978307320000, "destination": "SAV", "delay": 1}
{"ts": true, "origin": "ATL", "destination": "SAV", "delay": 1}
{"ts": 978307320000, "origin": {"a": 1}, "destination": "SAV", "delay": 1}
{"ts": 978307320000, "origin": "A\/B", "destination": "SAV"}
{not json
{"ts": 978307380000, "origin": "BOS", "destination": "JFK", "delay": 5}`
	m := flightsMapping
	m.Time, m.TimeUnit = "ts", Millis
	src, err := NewNDJSON(strings.NewReader(in), m)
	if err != nil {
		t.Fatal(err)
	}
	events, bad := readAll(t, src)
	want := []streamfeat.Event{
		{EntityID: "LAS|PHL", TimestampMs: 978307260000, Values: []streamfeat.FeatureValue{fv(7, 33), fv(9, 2176)}},
		{EntityID: "ATL|7", TimestampMs: 978307320000, Values: []streamfeat.FeatureValue{fv(7, -2.5)}},
		{EntityID: "BOS|JFK", TimestampMs: 978307380000, Values: []streamfeat.FeatureValue{fv(7, 5)}},
	}
	if !reflect.DeepEqual(events, want) {
		t.Errorf("events %+v; want %+v", events, want)
	}
	var lines []int64
	var reasons []Reason
	for _, b := range bad {
		lines, reasons = append(lines, b.Number), append(reasons, b.Reason)
	}
	wantLines := []int64{4, 5, 6, 7, 8, 9}
	wantReasons := []Reason{BadValue, MissingColumn, BadTime, BadEntity, NoValues, Malformed}
	if !reflect.DeepEqual(lines, wantLines) || !reflect.DeepEqual(reasons, wantReasons) {
		t.Errorf("bad rows at lines %v for %v; want %v for %v", lines, reasons, wantLines, wantReasons)
	}
}

func TestNDJSONLongLine(t *testing.T) {
	long := `{"t": 1, "e": "` + strings.Repeat("x", MaxLineBytes) + `", "v": 1}`
	in := long + "\n" + `{"t": 2, "e": "a", "v": 3}` + "\n"
	src, err := NewNDJSON(strings.NewReader(in), Mapping{Entity: []string{"e"}, Time: "t",
		TimeUnit: Seconds, Features: []string{"v"}})
	if err != nil {
		t.Fatal(err)
	}
	events, bad := readAll(t, src)
	if len(bad) != 1 || bad[0].Number != 1 || bad[0].Reason != Malformed {
		t.Errorf("bad rows %v; want line 1 malformed", bad)
	}
	if len(events) != 1 || events[0].EntityID != "a" || events[0].TimestampMs != 2000 {
		t.Errorf("%d events; want only the line after the long one", len(events))
	}
}

// writeFile writes data under a test directory and returns its path.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func gzipped(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := io.WriteString(zw, s); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestOpenGzip(t *testing.T) {
	plain := writeFile(t, "flights.csv", []byte(flightsCSV))
	zipped := writeFile(t, "flights.CSV.gz", gzipped(t, flightsCSV))
	var results [2][]streamfeat.Event
	for i, path := range []string{plain, zipped} {
		src, err := Open(path, FormatAuto, flightsMapping)
		if err != nil {
			t.Fatal(err)
		}
		results[i], _ = readAll(t, src)
		done, total := src.Progress()
		if info, _ := os.Stat(path); done != info.Size() || total != info.Size() {
			t.Errorf("%s: progress %d of %d; want all %d bytes", path, done, total, info.Size())
		}
		if err := src.Close(); err != nil {
			t.Error(err)
		}
		if err := src.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
	}
	if len(results[0]) != 2 || !reflect.DeepEqual(results[0], results[1]) {
		t.Errorf("gzip gives %+v; plain gives %+v", results[1], results[0])
	}

	ndjson := writeFile(t, "x.jsonl.gz", gzipped(t, `{"e":"a","t":"2001-01-01T00:00:00Z","v":1}`))
	src, err := Open(ndjson, FormatAuto, Mapping{Entity: []string{"e"}, Time: "t", Features: []string{"v"}})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if events, _ := readAll(t, src); len(events) != 1 {
		t.Errorf("gzip NDJSON: %d events; want 1", len(events))
	}
}

func TestOpenErrors(t *testing.T) {
	m := Mapping{Entity: []string{"e"}, Time: "t", Features: []string{"v"}}
	if _, err := Open(filepath.Join(t.TempDir(), "none.csv"), FormatAuto, m); err == nil {
		t.Error("missing file: no error")
	}
	if _, err := Open(writeFile(t, "x.txt", nil), FormatAuto, m); err == nil {
		t.Error("unknown extension: no error")
	}
	if _, err := Open(writeFile(t, "x.parquet.gz", nil), FormatAuto, m); err == nil {
		t.Error("gzip parquet: no error")
	}
	if _, err := Open(writeFile(t, "x.csv.gz", []byte("not gzip")), FormatAuto, m); err == nil {
		t.Error("bad gzip: no error")
	}
}

func TestFormats(t *testing.T) {
	for path, want := range map[string]Format{
		"a.csv": FormatCSV, "a.csv.gz": FormatCSV, "a.ndjson": FormatNDJSON, "a.jsonl.gz": FormatNDJSON,
		"dir.x/a.parquet": FormatParquet,
	} {
		if got, err := DetectFormat(path); err != nil || got != want {
			t.Errorf("DetectFormat(%q) = %v, %v; want %v", path, got, err, want)
		}
		if got, _ := ParseFormat(want.String()); got != want {
			t.Errorf("format %v does not survive String and back", want)
		}
	}
}

// flight is a row of the test Parquet file, shaped like the real data set.
type flight struct {
	Date        time.Time `parquet:"date,timestamp(microsecond)"`
	Delay       int64     `parquet:"delay"`
	Distance    *float64  `parquet:"distance,optional"`
	Origin      string    `parquet:"origin"`
	Destination string    `parquet:"destination"`
	Epoch       int64     `parquet:"epoch_s"`
}

func TestParquet(t *testing.T) {
	t0 := time.Date(2001, 1, 1, 0, 1, 0, 999_000, time.UTC) // sub-ms part must round down
	dist := 2176.0
	rows := make([]flight, 600) // more than one read buffer
	for i := range rows {
		rows[i] = flight{Date: t0.Add(time.Duration(i) * time.Minute), Delay: int64(i),
			Origin: "LAS", Destination: "PHL", Epoch: t0.Unix() + int64(i)*60}
		if i%2 == 0 {
			rows[i].Distance = &dist
		}
	}
	var buf bytes.Buffer
	if err := parquet.Write(&buf, rows, parquet.MaxRowsPerRowGroup(250)); err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, "flights.parquet", buf.Bytes())

	for _, m := range []Mapping{
		{Entity: []string{"origin", "destination"}, Time: "date", Features: []string{"delay", "distance"}},
		{Entity: []string{"origin", "destination"}, Time: "epoch_s", TimeUnit: Seconds,
			Features: []string{"delay", "distance"}},
	} {
		src, err := Open(path, FormatAuto, m)
		if err != nil {
			t.Fatal(err)
		}
		events, bad := readAll(t, src)
		if done, total := src.Progress(); done != 600 || total != 600 {
			t.Errorf("progress %d of %d; want 600 rows", done, total)
		}
		src.Close()
		if len(events) != 600 || len(bad) != 0 {
			t.Fatalf("time %s: %d events, %v bad; want 600 and none", m.Time, len(events), bad)
		}
		ev := events[3]
		wantMs := t0.Add(3*time.Minute).UnixMilli() / 1000 * 1000 // both columns hold whole seconds here
		if ev.EntityID != "LAS|PHL" || ev.TimestampMs != wantMs ||
			!reflect.DeepEqual(ev.Values, []streamfeat.FeatureValue{fv(1, 3)}) {
			t.Errorf("time %s: row 4 = %+v; want LAS|PHL at %d with delay 3 and no distance",
				m.Time, ev, wantMs)
		}
		if len(events[4].Values) != 2 {
			t.Errorf("row 5 values %v; want delay and distance", events[4].Values)
		}
	}

	_, err := Open(path, FormatParquet, Mapping{Entity: []string{"origin"}, Time: "epoch_s",
		Features: []string{"delay"}})
	if err == nil || !strings.Contains(err.Error(), "time unit") {
		t.Errorf("integer time without a unit: err %v; want one asking for the unit", err)
	}
	_, err = Open(path, FormatParquet, Mapping{Entity: []string{"origin"}, Time: "date",
		Features: []string{"altitude"}})
	if err == nil || !strings.Contains(err.Error(), "altitude") {
		t.Errorf("missing column: err %v; want one naming it", err)
	}
}

// TestParquetCorrupt damages a valid file one byte at a time, at offsets
// spread over the whole file: every damaged copy must give an error or rows,
// never a panic (the decoder trusts offsets read from the file).
func TestParquetCorrupt(t *testing.T) {
	rows := make([]flight, 300)
	for i := range rows {
		rows[i] = flight{Date: time.Unix(978307260+int64(i)*60, 0).UTC(), Delay: int64(i),
			Origin: "LAS", Destination: "PHL"}
	}
	var buf bytes.Buffer
	if err := parquet.Write(&buf, rows, parquet.MaxRowsPerRowGroup(100)); err != nil {
		t.Fatal(err)
	}
	good := buf.Bytes()
	m := Mapping{Entity: []string{"origin"}, Time: "date", Features: []string{"delay"}}
	dir := t.TempDir()
	step := max(1, len(good)/400)
	for off := 0; off < len(good); off += step {
		bad := bytes.Clone(good)
		bad[off] ^= 0xA5
		path := filepath.Join(dir, fmt.Sprintf("c%d.parquet", off))
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Errorf("byte %d damaged: panic %v", off, p)
				}
			}()
			src, err := Open(path, FormatParquet, m)
			if err != nil {
				return
			}
			defer src.Close()
			var ev streamfeat.Event
			for range len(rows) + 1 {
				err := src.Read(&ev)
				var rowErr *RowError
				if err != nil && !errors.As(err, &rowErr) {
					return
				}
			}
		}()
	}
}
