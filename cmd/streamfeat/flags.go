package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// choiceValue is a string flag that accepts one of a fixed set of words.
type choiceValue struct {
	value   string
	choices []string
}

func newChoice(def string, choices ...string) *choiceValue {
	return &choiceValue{value: def, choices: choices}
}

func (c *choiceValue) String() string {
	if c == nil {
		return ""
	}
	return c.value
}

func (c *choiceValue) Set(s string) error {
	if !slices.Contains(c.choices, s) {
		return fmt.Errorf("want one of %s", strings.Join(c.choices, ", "))
	}
	c.value = s
	return nil
}

// byteSize is an int flag holding a number of bytes. It takes a plain count
// or one with a binary suffix, so that "64MiB" need not be spelled 67108864.
type byteSize int

var byteSuffixes = []struct {
	suffix string
	scale  int64
}{
	{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1},
}

func (b *byteSize) String() string {
	if b == nil {
		return "0"
	}
	for _, s := range byteSuffixes {
		if n := int64(*b); n != 0 && n%s.scale == 0 {
			return strconv.FormatInt(n/s.scale, 10) + s.suffix
		}
	}
	return "0"
}

func (b *byteSize) Set(s string) error {
	num, scale := s, int64(1)
	for _, suf := range byteSuffixes {
		if before, ok := strings.CutSuffix(s, suf.suffix); ok {
			num, scale = before, suf.scale
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n < 0 {
		return errors.New("want a byte count such as 67108864 or 64MiB")
	}
	if n > math.MaxInt32/scale {
		return fmt.Errorf("%s is over the gRPC limit of 2GiB", s)
	}
	*b = byteSize(n * scale)
	return nil
}

// printFlags lists every flag of fs in the form it is written, --name, with
// its default and, when env is set, the environment variable that sets it.
func printFlags(fs *flag.FlagSet, env bool) {
	w := fs.Output()
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		if c, ok := f.Value.(*choiceValue); ok {
			typ = strings.Join(c.choices, "|")
		}
		def := f.DefValue
		switch {
		case def != "":
		case env: // serve's empty settings turn something off
			def = "off"
		default:
			def = "none"
		}
		if env {
			def = envName(f.Name) + ", default " + def
		} else {
			def = "default " + def
		}
		fmt.Fprintf(w, "  %-28s %s\n", strings.TrimSpace("--"+f.Name+" "+typ), def)
		fmt.Fprintf(w, "      %s\n", usage)
	})
}
