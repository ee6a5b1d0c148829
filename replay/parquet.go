package replay

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/streamfeat/streamfeat"
)

// parquetSource reads a Parquet file row group by row group, a buffer of
// rows at a time.
type parquetSource struct {
	file   *parquet.File
	m      Mapping
	entity []parquetColumn
	time   parquetColumn
	feats  []parquetColumn

	group  int           // next row group to open
	rows   parquet.Rows  // the open row group's reader, or nil
	buf    []parquet.Row // rows read and not yet returned
	next   int           // index in buf of the next row to return
	row    int64         // rows returned so far
	done   atomic.Int64  // rows read, for Progress
	closer io.Closer
	parts  []string
	intern map[string]string // entity values seen, so repeats cost no allocation
}

// parquetColumn is one mapped leaf column and how to read it.
type parquetColumn struct {
	name  string
	index int
	kind  parquet.Kind
	unit  TimeUnit // for the time column: the unit of its integers
	text  bool     // a byte array read as text

	logical *format.LogicalType // the column's annotation, or nil
}

// rowsPerRead is how many rows one ReadRows call decodes: enough to amortize
// the call, few enough to keep the buffer small.
const rowsPerRead = 256

// internLimit bounds the intern table. Past it new entity values are copied
// per row, which costs time but keeps memory bounded on high-cardinality
// entities.
const internLimit = 1 << 16

// NewParquet reads the Parquet file in r, of size bytes. Mapped columns must
// be top-level, non-repeated leaves. A timestamp column is read in its own
// unit; an integer time column in the mapping's unit; a text one as the
// mapping says.
func NewParquet(r io.ReaderAt, size int64, m Mapping) (Source, error) {
	return newParquet(r, size, m, nil)
}

func newParquet(r io.ReaderAt, size int64, m Mapping, closer io.Closer) (*parquetSource, error) {
	m, err := m.validate()
	if err != nil {
		return nil, err
	}
	f, err := openParquet(r, size)
	if err != nil {
		return nil, err
	}
	s := &parquetSource{
		file: f, m: m, closer: closer, parts: make([]string, len(m.Entity)),
		intern: make(map[string]string),
	}
	for _, name := range m.Entity {
		c, err := lookupColumn(f.Schema(), name)
		if err != nil {
			return nil, err
		}
		s.entity = append(s.entity, c)
	}
	if s.time, err = lookupColumn(f.Schema(), m.Time); err != nil {
		return nil, err
	}
	if err := s.time.setTimeUnit(m.TimeUnit); err != nil {
		return nil, err
	}
	for _, name := range m.Features {
		c, err := lookupColumn(f.Schema(), name)
		if err != nil {
			return nil, err
		}
		s.feats = append(s.feats, c)
	}
	return s, nil
}

// lookupColumn finds a top-level leaf column by name.
func lookupColumn(schema *parquet.Schema, name string) (parquetColumn, error) {
	leaf, ok := schema.Lookup(name)
	if !ok || leaf.Node == nil || !leaf.Node.Leaf() {
		return parquetColumn{}, fmt.Errorf("parquet: no leaf column %q in the schema", name)
	}
	if leaf.MaxRepetitionLevel > 0 {
		return parquetColumn{}, fmt.Errorf("parquet: column %q is repeated", name)
	}
	typ := leaf.Node.Type()
	c := parquetColumn{name: name, index: leaf.ColumnIndex, kind: typ.Kind(),
		logical: typ.LogicalType()}
	c.text = c.kind == parquet.ByteArray || c.kind == parquet.FixedLenByteArray
	return c, nil
}

// setTimeUnit decides how to read the time column: a timestamp's own unit,
// or the mapping's for plain integers and text.
func (c *parquetColumn) setTimeUnit(u TimeUnit) error {
	c.unit = u
	leaf := c.kind == parquet.Int64 || c.kind == parquet.Int32
	if lt := c.logical; lt != nil {
		if ts, ok := lt.Value.(*format.TimestampType); ok && ts.Unit.Value != nil {
			switch ts.Unit.Value.(type) {
			case *format.MilliSeconds:
				c.unit = Millis
			case *format.MicroSeconds:
				c.unit = Micros
			case *format.NanoSeconds:
				c.unit = Nanos
			}
			return nil
		}
	}
	if leaf && u == RFC3339 {
		return fmt.Errorf("parquet: time column %q holds integers: set the time unit", c.name)
	}
	if !leaf && !c.text {
		return fmt.Errorf("parquet: time column %q is of kind %v: want a timestamp, "+
			"an integer or text", c.name, c.kind)
	}
	return nil
}

// openParquet opens a Parquet file, turning a panic of the decoder on a
// corrupt file into an error.
func openParquet(r io.ReaderAt, size int64) (f *parquet.File, err error) {
	defer recoverCorrupt(&err)
	f, err = parquet.OpenFile(r, size)
	if err != nil {
		return nil, fmt.Errorf("parquet: %w", err)
	}
	return f, nil
}

// errCorruptParquet marks a file the decoder could not make sense of.
var errCorruptParquet = errors.New("parquet: corrupt file")

// recoverCorrupt turns a panic inside the Parquet decoder into an error.
// The decoder trusts offsets and lengths read from the file, so a corrupt
// file can make it index out of range; that is bad input, not a bug here.
//
// TODO: drop this once parquet-go validates page and index offsets itself.
func recoverCorrupt(err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("%w: %v", errCorruptParquet, p)
	}
}

func (s *parquetSource) Read(ev *streamfeat.Event) (err error) {
	for s.next >= len(s.buf) {
		if err := s.fillSafely(); err != nil {
			return err
		}
	}
	row := s.buf[s.next]
	s.next++
	s.row++
	if reason, err := s.convert(ev, row); err != nil {
		return &RowError{Unit: "row", Number: s.row, Reason: reason, Err: err}
	}
	return nil
}

// fillSafely is fill with decoder panics turned into errors.
func (s *parquetSource) fillSafely() (err error) {
	defer recoverCorrupt(&err)
	return s.fill()
}

// fill reads the next buffer of rows, opening row groups as needed.
func (s *parquetSource) fill() error {
	if s.rows == nil {
		groups := s.file.RowGroups()
		if s.group >= len(groups) {
			return io.EOF
		}
		s.rows = groups[s.group].Rows()
		s.group++
	}
	if s.buf == nil {
		s.buf = make([]parquet.Row, rowsPerRead)
	}
	s.buf = s.buf[:cap(s.buf)]
	n, err := s.rows.ReadRows(s.buf)
	s.buf, s.next = s.buf[:n], 0
	s.done.Add(int64(n))
	if errors.Is(err, io.EOF) {
		cerr := s.rows.Close()
		s.rows = nil
		return cerr
	}
	if err != nil {
		return fmt.Errorf("parquet: row group %d: %w", s.group-1, err)
	}
	return nil
}

// convert turns one row into ev.
func (s *parquetSource) convert(ev *streamfeat.Event, row parquet.Row) (Reason, error) {
	for i, c := range s.entity {
		v, err := valueOf(row, c)
		if err != nil {
			return MissingColumn, err
		}
		if v.IsNull() {
			return BadEntity, fmt.Errorf("entity column %q is null", c.name)
		}
		s.parts[i] = s.entityText(v, c)
	}
	entity, err := joinEntity(s.parts, s.m)
	if err != nil {
		return BadEntity, err
	}

	tv, err := valueOf(row, s.time)
	if err != nil {
		return MissingColumn, err
	}
	ts, err := s.timeOf(tv)
	if err != nil {
		return BadTime, err
	}

	ev.EntityID, ev.TimestampMs, ev.Values = entity, ts, ev.Values[:0]
	for i, c := range s.feats {
		v, err := valueOf(row, c)
		if err != nil {
			return MissingColumn, err
		}
		x, ok, err := numberOf(v, c)
		if err != nil {
			return BadValue, fmt.Errorf("%s: %w", c.name, err)
		}
		if ok {
			ev.Values = append(ev.Values, streamfeat.FeatureValue{
				FeatureID: s.m.FeatureIDs[i], Value: x,
			})
		}
	}
	if len(ev.Values) == 0 {
		return NoValues, errors.New("every feature is null")
	}
	return 0, nil
}

// valueOf finds column c's value in a row of a flat schema, where the value
// of leaf i usually sits at position i.
func valueOf(row parquet.Row, c parquetColumn) (parquet.Value, error) {
	if c.index < len(row) && row[c.index].Column() == c.index {
		return row[c.index], nil
	}
	for _, v := range row {
		if v.Column() == c.index {
			return v, nil
		}
	}
	return parquet.Value{}, fmt.Errorf("column %q absent from the row", c.name)
}

// entityText returns a value as entity text, interning byte arrays.
func (s *parquetSource) entityText(v parquet.Value, c parquetColumn) string {
	if !c.text {
		return v.String()
	}
	b := v.ByteArray()
	if str, ok := s.intern[string(b)]; ok { // no allocation for the lookup
		return str
	}
	str := string(b)
	if len(s.intern) < internLimit {
		s.intern[str] = str
	}
	return str
}

// timeOf reads the time column's value in Unix milliseconds.
func (s *parquetSource) timeOf(v parquet.Value) (int64, error) {
	switch {
	case v.IsNull():
		return 0, fmt.Errorf("time column %q is null", s.time.name)
	case s.time.text:
		return ParseTime(string(v.ByteArray()), s.time.unit)
	case s.time.kind == parquet.Int32:
		return epochToMs(int64(v.Int32()), s.time.unit)
	}
	return epochToMs(v.Int64(), s.time.unit)
}

// numberOf reads a feature value; null is no value.
func numberOf(v parquet.Value, c parquetColumn) (float64, bool, error) {
	if v.IsNull() {
		return 0, false, nil
	}
	var x float64
	switch c.kind {
	case parquet.Boolean:
		if v.Boolean() {
			x = 1
		}
	case parquet.Int32:
		x = float64(v.Int32())
	case parquet.Int64:
		x = float64(v.Int64())
	case parquet.Float:
		x = float64(v.Float())
	case parquet.Double:
		x = v.Double()
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return ParseValue(string(v.ByteArray()))
	default:
		return 0, false, fmt.Errorf("kind %v is not a number", c.kind)
	}
	if x-x != 0 { // NaN or an infinity
		return 0, false, errors.New("value " + strconv.FormatFloat(x, 'g', -1, 64) + ": not finite")
	}
	return x, true, nil
}

func (s *parquetSource) Progress() (done, total int64) {
	return s.done.Load(), s.file.NumRows()
}

func (s *parquetSource) Close() error {
	var err error
	if s.rows != nil {
		err = s.rows.Close()
		s.rows = nil
	}
	if s.closer != nil {
		err = errors.Join(err, s.closer.Close())
		s.closer = nil
	}
	return err
}
