package replay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/streamfeat/streamfeat"
)

// ndjsonSource reads one JSON object per line.
type ndjsonSource struct {
	lines  *lineReader
	m      Mapping
	count  *countingReader
	closer io.Closer
	obj    map[string]json.RawMessage // the current line's fields, reused
	parts  []string
}

// NewNDJSON reads newline-delimited JSON from r: one flat object per line,
// blank lines skipped. Entity columns may be strings or numbers; the time
// is a string or a number read in the mapping's unit; a feature is a number
// or a string holding one, and null or an absent key means no value.
func NewNDJSON(r io.Reader, m Mapping) (Source, error) {
	return newNDJSON(r, m, nil, nil)
}

func newNDJSON(r io.Reader, m Mapping, count *countingReader, closer io.Closer) (*ndjsonSource, error) {
	m, err := m.validate()
	if err != nil {
		return nil, err
	}
	return &ndjsonSource{
		lines: newLineReader(r), m: m, count: count, closer: closer,
		obj: make(map[string]json.RawMessage), parts: make([]string, len(m.Entity)),
	}, nil
}

func (s *ndjsonSource) Read(ev *streamfeat.Event) error {
	for {
		line, err := s.lines.next()
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if reason, err := s.parse(ev, line); err != nil {
			return &RowError{Unit: "line", Number: s.lines.line, Reason: reason, Err: err}
		}
		return nil
	}
}

// parse turns one line into ev.
func (s *ndjsonSource) parse(ev *streamfeat.Event, line []byte) (Reason, error) {
	clear(s.obj)
	if err := json.Unmarshal(line, &s.obj); err != nil {
		return Malformed, fmt.Errorf("json: %w", err)
	}

	for i, name := range s.m.Entity {
		raw, ok := s.obj[name]
		if !ok {
			return MissingColumn, fmt.Errorf("no key %q", name)
		}
		v, err := scalarText(raw)
		if err != nil {
			return BadEntity, fmt.Errorf("entity %q: %w", name, err)
		}
		s.parts[i] = v
	}
	entity, err := joinEntity(s.parts, s.m)
	if err != nil {
		return BadEntity, err
	}

	raw, ok := s.obj[s.m.Time]
	if !ok {
		return MissingColumn, fmt.Errorf("no key %q", s.m.Time)
	}
	text, err := scalarText(raw)
	if err != nil {
		return BadTime, fmt.Errorf("time %q: %w", s.m.Time, err)
	}
	ts, err := ParseTime(text, s.m.TimeUnit)
	if err != nil {
		return BadTime, err
	}

	ev.EntityID, ev.TimestampMs, ev.Values = entity, ts, ev.Values[:0]
	for i, name := range s.m.Features {
		raw, ok := s.obj[name]
		if !ok || string(raw) == "null" {
			continue
		}
		text, err := scalarText(raw)
		if err != nil {
			return BadValue, fmt.Errorf("%s: %w", name, err)
		}
		v, ok, err := ParseValue(text)
		if err != nil {
			return BadValue, fmt.Errorf("%s: %w", name, err)
		}
		if ok {
			ev.Values = append(ev.Values, streamfeat.FeatureValue{
				FeatureID: s.m.FeatureIDs[i], Value: v,
			})
		}
	}
	if len(ev.Values) == 0 {
		return NoValues, errors.New("no feature has a value")
	}
	return 0, nil
}

// scalarText returns a JSON string's content or a number's literal text.
func scalarText(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", errors.New("empty")
	}
	switch c := raw[0]; {
	case c == '"':
		var s string
		err := json.Unmarshal(raw, &s)
		return s, err
	case c == '-' || (c >= '0' && c <= '9'):
		return string(raw), nil
	}
	return "", fmt.Errorf("%.20s is not a string or a number", raw)
}

func (s *ndjsonSource) Progress() (done, total int64) { return s.count.progress() }

func (s *ndjsonSource) Close() error {
	if s.closer == nil {
		return nil
	}
	return s.closer.Close()
}
