package replay

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// MaxLineBytes is the longest line that CSV and NDJSON sources read. A
// longer one is skipped and counted as malformed, so one runaway line cannot
// take all memory.
const MaxLineBytes = 1 << 20

// lineReader reads a text file a line at a time with bounded memory. Records
// never span lines, so a stray quote or brace spoils one row, not the rest of
// the file.
type lineReader struct {
	r    *bufio.Reader
	line int64  // number of the line last returned, from 1
	long []byte // holds a line longer than the reader's buffer
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next line without its line ending (LF or CRLF) and, on
// the first line, without a UTF-8 byte order mark. The slice is valid until
// the next call. A line over MaxLineBytes comes back as a RowError after the
// rest of it has been skipped.
func (l *lineReader) next() ([]byte, error) {
	line, err := l.read()
	if err != nil {
		return nil, err
	}
	line = bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r"))
	if l.line == 1 {
		line = bytes.TrimPrefix(line, []byte("\ufeff"))
	}
	return line, nil
}

func (l *lineReader) read() ([]byte, error) {
	l.line++
	l.long = l.long[:0]
	for {
		chunk, err := l.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			if len(l.long)+len(chunk) > MaxLineBytes {
				return nil, l.skipLong()
			}
			l.long = append(l.long, chunk...)
			continue
		}
		if len(l.long) > 0 {
			if len(l.long)+len(chunk) > MaxLineBytes+1 { // +1: the newline
				return nil, l.tooLong()
			}
			l.long = append(l.long, chunk...)
			chunk = l.long
		}
		if err == io.EOF && len(chunk) > 0 {
			err = nil // a last line without a newline
		}
		return chunk, err
	}
}

// skipLong discards the rest of an oversize line.
func (l *lineReader) skipLong() error {
	for {
		_, err := l.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil && err != io.EOF {
			return err
		}
		return l.tooLong()
	}
}

func (l *lineReader) tooLong() error {
	l.long = l.long[:0]
	return &RowError{Unit: "line", Number: l.line, Reason: Malformed,
		Err: fmt.Errorf("line longer than %d bytes", MaxLineBytes)}
}
