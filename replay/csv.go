package replay

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/streamfeat/streamfeat"
)

// csvSource reads CSV with a header row that names the columns.
type csvSource struct {
	lines  *lineReader
	rec    []string // fields of the current line, reused
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

// NewCSV reads CSV from r. The first line is the header; fields are
// separated by commas and may be quoted ("a ""b""", with commas inside).
// Every row must have as many fields as the header. A record may not span
// lines: a quote left open spoils its own line only, where a reader that
// followed it would swallow the rest of the file into one field.
func NewCSV(r io.Reader, m Mapping) (Source, error) {
	return newCSV(r, m, nil, nil)
}

func newCSV(r io.Reader, m Mapping, count *countingReader, closer io.Closer) (*csvSource, error) {
	m, err := m.validate()
	if err != nil {
		return nil, err
	}
	lines := newLineReader(r)
	first, err := lines.next()
	if err == io.EOF {
		return nil, errors.New("csv: empty file: no header row")
	}
	if err != nil {
		return nil, fmt.Errorf("csv: header: %w", err)
	}
	header, err := splitCSV(string(first), nil)
	if err != nil {
		return nil, fmt.Errorf("csv: header: %w", err)
	}
	cols, err := indexColumns(header, m)
	if err != nil {
		return nil, fmt.Errorf("csv: %w", err)
	}
	return &csvSource{
		lines: lines, m: m, cols: cols, width: len(header), count: count, closer: closer,
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
	for {
		line, err := s.lines.next()
		if err != nil {
			return err // io.EOF, an I/O error or an oversize line
		}
		if len(line) == 0 {
			continue
		}
		n := s.lines.line
		if s.rec, err = splitCSV(string(line), s.rec); err != nil {
			return &RowError{Unit: "line", Number: n, Reason: Malformed, Err: err}
		}
		if len(s.rec) != s.width {
			return &RowError{Unit: "line", Number: n, Reason: MissingColumn,
				Err: fmt.Errorf("%d fields, header has %d", len(s.rec), s.width)}
		}
		if reason, err := s.fill(ev, s.rec); err != nil {
			return &RowError{Unit: "line", Number: n, Reason: reason, Err: err}
		}
		return nil
	}
}

// splitCSV splits one line into fields, reusing dst. Unquoted fields are
// substrings of line, so a line costs one allocation however many fields it
// has.
func splitCSV(line string, dst []string) ([]string, error) {
	dst = dst[:0]
	for i := 0; ; {
		var field string
		if i < len(line) && line[i] == '"' {
			var err error
			if field, i, err = quotedField(line, i+1); err != nil {
				return nil, err
			}
		} else {
			end := strings.IndexByte(line[i:], ',')
			if end < 0 {
				end = len(line) - i
			}
			field = line[i : i+end]
			if strings.IndexByte(field, '"') >= 0 {
				return nil, fmt.Errorf("bare quote in unquoted field %q", field)
			}
			i += end
		}
		dst = append(dst, field)
		if i == len(line) {
			return dst, nil
		}
		if line[i] != ',' {
			return nil, fmt.Errorf("%q after a quoted field; want a comma", line[i])
		}
		i++
		if i == len(line) {
			return append(dst, ""), nil // a trailing comma ends with an empty field
		}
	}
}

// quotedField reads a quoted field whose text starts at line[i] and returns
// it with doubled quotes undone, and the index just past its closing quote.
func quotedField(line string, i int) (string, int, error) {
	var b strings.Builder
	for {
		k := strings.IndexByte(line[i:], '"')
		if k < 0 {
			return "", 0, errors.New("quoted field not closed on its line")
		}
		b.WriteString(line[i : i+k])
		i += k + 1
		if i < len(line) && line[i] == '"' {
			b.WriteByte('"')
			i++
			continue
		}
		return b.String(), i, nil
	}
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
		// Each line's text is a fresh string, so the field stays valid
		// after the next Read without a copy.
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
