package replay

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/streamfeat/streamfeat"
)

// csvSource reads CSV with a header row that names the columns.
type csvSource struct {
	r      *csv.Reader
	m      Mapping
	cols   columnIndex
	width  int // fields in the header; every row must have as many
	count  *countingReader
	closer io.Closer
	parts  []string // entity parts of the current row, reused
}

// columnIndex holds the position of each mapped column in a row.
type columnIndex struct {
	entity   []int
	time     int
	features []int
}

// NewCSV reads CSV from r. The first record is the header; fields are
// separated by commas and may be quoted. Every row must have as many fields
// as the header.
func NewCSV(r io.Reader, m Mapping) (Source, error) {
	return newCSV(r, m, nil, nil)
}

func newCSV(r io.Reader, m Mapping, count *countingReader, closer io.Closer) (*csvSource, error) {
	m, err := m.validate()
	if err != nil {
		return nil, err
	}
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // checked per row, so a short row is counted, not fatal
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, errors.New("csv: empty file: no header row")
	}
	if err != nil {
		return nil, fmt.Errorf("csv: header: %w", err)
	}
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff") // a BOM from spreadsheets
	}
	cols, err := indexColumns(header, m)
	if err != nil {
		return nil, fmt.Errorf("csv: %w", err)
	}
	return &csvSource{
		r: cr, m: m, cols: cols, width: len(header), count: count, closer: closer,
		parts: make([]string, len(m.Entity)),
	}, nil
}

// indexColumns finds each mapped column in a header.
func indexColumns(header []string, m Mapping) (columnIndex, error) {
	pos := make(map[string]int, len(header))
	for i, name := range header {
		if _, dup := pos[name]; !dup {
			pos[name] = i
		}
	}
	find := func(name string) (int, error) {
		i, ok := pos[name]
		if !ok {
			return 0, fmt.Errorf("column %q not in the header %q", name, header)
		}
		return i, nil
	}

	var c columnIndex
	var err error
	if c.time, err = find(m.Time); err != nil {
		return c, err
	}
	for _, name := range m.Entity {
		i, err := find(name)
		if err != nil {
			return c, err
		}
		c.entity = append(c.entity, i)
	}
	for _, name := range m.Features {
		i, err := find(name)
		if err != nil {
			return c, err
		}
		c.features = append(c.features, i)
	}
	return c, nil
}

func (s *csvSource) Read(ev *streamfeat.Event) error {
	rec, err := s.r.Read()
	if err != nil {
		var perr *csv.ParseError
		if errors.As(err, &perr) {
			return &RowError{Unit: "line", Number: int64(perr.StartLine),
				Reason: Malformed, Err: perr.Err}
		}
		return err // io.EOF or an I/O error
	}
	line, _ := s.r.FieldPos(0)
	if len(rec) != s.width {
		return &RowError{Unit: "line", Number: int64(line), Reason: MissingColumn,
			Err: fmt.Errorf("%d fields, header has %d", len(rec), s.width)}
	}
	if reason, err := s.fill(ev, rec); err != nil {
		return &RowError{Unit: "line", Number: int64(line), Reason: reason, Err: err}
	}
	return nil
}

// fill turns one record of the header's width into ev.
func (s *csvSource) fill(ev *streamfeat.Event, rec []string) (Reason, error) {
	for i, c := range s.cols.entity {
		s.parts[i] = rec[c]
	}
	entity, err := joinEntity(s.parts, s.m)
	if err != nil {
		return BadEntity, err
	}
	ts, err := ParseTime(rec[s.cols.time], s.m.TimeUnit)
	if err != nil {
		return BadTime, err
	}

	ev.EntityID, ev.TimestampMs, ev.Values = entity, ts, ev.Values[:0]
	for i, c := range s.cols.features {
		v, ok, err := ParseValue(rec[c])
		if err != nil {
			return BadValue, fmt.Errorf("%s: %w", s.m.Features[i], err)
		}
		if ok {
			ev.Values = append(ev.Values, streamfeat.FeatureValue{
				FeatureID: s.m.FeatureIDs[i], Value: v,
			})
		}
	}
	if len(ev.Values) == 0 {
		return NoValues, errors.New("every feature is empty")
	}
	return 0, nil
}

// joinEntity joins entity parts into one id. An empty part is an error:
// joined, it would silently merge rows of different entities.
func joinEntity(parts []string, m Mapping) (string, error) {
	for i, p := range parts {
		if p == "" {
			return "", fmt.Errorf("entity column %q is empty", m.Entity[i])
		}
	}
	if len(parts) == 1 {
		// encoding/csv builds each record's text as a fresh string, so the
		// field stays valid after the next Read without a copy.
		return parts[0], nil
	}
	return strings.Join(parts, m.Separator), nil
}

func (s *csvSource) Progress() (done, total int64) { return s.count.progress() }

func (s *csvSource) Close() error {
	if s.closer == nil {
		return nil
	}
	return s.closer.Close()
}
