package replay

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/streamfeat/streamfeat"
)

// A Source reads the rows of one log as events, in file order. It is used by
// one goroutine at a time, except Progress, which any goroutine may call.
type Source interface {
	// Read fills ev from the next row. ev.Values is truncated and refilled,
	// so its backing array is reused. At the end it returns io.EOF. A row
	// that cannot become an event gives a *RowError and the next call reads
	// on; any other error ends the source.
	Read(ev *streamfeat.Event) error

	// Progress returns how much of the input has been read and its total,
	// in bytes of the file (compressed, for gzip) or, for Parquet, rows.
	Progress() (done, total int64)

	// Close releases the file. It is safe to call more than once.
	Close() error
}

// Reason classifies a bad row.
type Reason int

// The reasons a row cannot become an event.
const (
	BadTime       Reason = iota // the time is not readable in the time unit
	BadValue                    // a feature value is not a finite number
	BadEntity                   // an entity column is empty or not a scalar
	MissingColumn               // a mapped column is absent from the row
	NoValues                    // every feature value is empty
	Malformed                   // the row itself does not parse (quotes, JSON, length)
	numReasons
)

var reasonNames = [numReasons]string{
	"bad_time", "bad_value", "bad_entity", "missing_column", "no_values", "malformed",
}

// String returns the reason in snake case, as the summary prints it.
func (r Reason) String() string {
	if r >= 0 && r < numReasons {
		return reasonNames[r]
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// RowError reports one row that could not become an event.
type RowError struct {
	Unit   string // "line" for text formats, "row" for Parquet
	Number int64  // 1-based; in text formats the header is line 1
	Reason Reason
	Err    error
}

func (e *RowError) Error() string {
	return fmt.Sprintf("%s %d: %s: %v", e.Unit, e.Number, e.Reason, e.Err)
}

func (e *RowError) Unwrap() error { return e.Err }

// Format is a log's file format.
type Format int

// The formats a Source reads.
const (
	FormatAuto Format = iota // by file extension
	FormatCSV
	FormatNDJSON
	FormatParquet
)

// ParseFormat reads a format name: auto, csv, ndjson (or jsonl, json) or
// parquet.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return FormatAuto, nil
	case "csv":
		return FormatCSV, nil
	case "ndjson", "jsonl", "json":
		return FormatNDJSON, nil
	case "parquet":
		return FormatParquet, nil
	}
	return 0, fmt.Errorf("replay: format %q: want auto, csv, ndjson or parquet", s)
}

// String returns the format's name.
func (f Format) String() string {
	switch f {
	case FormatAuto:
		return "auto"
	case FormatCSV:
		return "csv"
	case FormatNDJSON:
		return "ndjson"
	case FormatParquet:
		return "parquet"
	}
	return "Format(" + strconv.Itoa(int(f)) + ")"
}

// DetectFormat tells a file's format from its name, looking through a
// trailing .gz.
func DetectFormat(path string) (Format, error) {
	name := strings.TrimSuffix(strings.ToLower(filepath.Base(path)), ".gz")
	switch filepath.Ext(name) {
	case ".csv":
		return FormatCSV, nil
	case ".ndjson", ".jsonl", ".json":
		return FormatNDJSON, nil
	case ".parquet", ".parq":
		return FormatParquet, nil
	}
	return 0, fmt.Errorf("replay: %s: cannot tell the format from the name "+
		"(.csv, .ndjson, .jsonl, .json, .parquet, with .gz for text); "+
		"name it (--format in the command)", path)
}

// Open opens a log file as a Source. Format FormatAuto goes by the name;
// a name ending in .gz is decompressed on the fly (not for Parquet, which
// needs random access and compresses its pages itself).
func Open(path string, f Format, m Mapping) (Source, error) {
	if f == FormatAuto {
		var err error
		if f, err = DetectFormat(path); err != nil {
			return nil, err
		}
	}
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	info, err := file.Stat()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("replay: %w", err)
	}
	gz := strings.HasSuffix(strings.ToLower(path), ".gz")

	src, err := openFile(file, info.Size(), f, gz, m)
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("replay: %s: %w", path, err)
	}
	return src, nil
}

func openFile(file *os.File, size int64, f Format, gz bool, m Mapping) (Source, error) {
	if f == FormatParquet {
		if gz {
			return nil, errors.New("parquet cannot be read through gzip: decompress it first")
		}
		return newParquet(file, size, m, file)
	}

	cr := &countingReader{r: file, total: size}
	var r io.Reader = bufio.NewReaderSize(cr, 256<<10)
	var zr *gzip.Reader
	if gz {
		var err error
		if zr, err = gzip.NewReader(r); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		r = zr
	}
	closer := &multiCloser{file: file, zr: zr}
	switch f {
	case FormatCSV:
		return newCSV(r, m, cr, closer)
	case FormatNDJSON:
		return newNDJSON(r, m, cr, closer)
	}
	return nil, fmt.Errorf("format %v: unknown", f)
}

// countingReader counts the bytes read from the file, for progress.
type countingReader struct {
	r     io.Reader
	n     atomic.Int64
	total int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReader) progress() (done, total int64) {
	if c == nil {
		return 0, 0
	}
	return c.n.Load(), c.total
}

// multiCloser closes the gzip stream, then the file, once.
type multiCloser struct {
	file   io.Closer
	zr     *gzip.Reader
	closed bool
}

func (c *multiCloser) Close() error {
	if c == nil || c.closed {
		return nil
	}
	c.closed = true
	var errs []error
	if c.zr != nil {
		errs = append(errs, c.zr.Close())
	}
	if c.file != nil {
		errs = append(errs, c.file.Close())
	}
	return errors.Join(errs...)
}
