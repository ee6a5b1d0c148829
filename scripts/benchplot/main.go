// Command benchplot draws the live heap per entity that BenchmarkMemory
// reports, against the entity count, as an SVG line chart: one line per
// traffic pattern, medians over the benchmark's rounds.
//
// Usage: go run ./scripts/benchplot -o docs/memory.svg docs/bench/memory.txt
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

func main() {
	outPath := flag.String("o", "memory.svg", "SVG file to write")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: benchplot -o OUT.svg BENCH-OUTPUT.txt")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), *outPath); err != nil {
		fmt.Fprintln(os.Stderr, "benchplot:", err)
		os.Exit(1)
	}
}

func run(inPath, outPath string) error {
	in, err := os.Open(inPath)
	if err != nil {
		return err
	}
	defer in.Close()
	series, err := parse(in)
	if err != nil {
		return err
	}
	if len(series) == 0 {
		return fmt.Errorf("no BenchmarkMemory lines with bytes/entity in %s", inPath)
	}
	out, err := os.Create(outPath)
	if err != nil {
		return err
	}
	draw(out, series)
	return out.Close()
}

// point is one (entity count, bytes per entity) pair.
type point struct{ x, y float64 }

var lineRE = regexp.MustCompile(`^BenchmarkMemory/entities=(\d+)/traffic=(\w+)\S*\s.*?([\d.e+]+) bytes/entity`)

// parse reads benchmark output and returns, per traffic pattern, the median
// bytes per entity at each entity count, sorted by entity count.
func parse(r io.Reader) (map[string][]point, error) {
	samples := map[string]map[float64][]float64{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := lineRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		n, _ := strconv.ParseFloat(m[1], 64)
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			return nil, fmt.Errorf("bad value in %q: %w", sc.Text(), err)
		}
		if samples[m[2]] == nil {
			samples[m[2]] = map[float64][]float64{}
		}
		samples[m[2]][n] = append(samples[m[2]][n], v)
	}
	series := map[string][]point{}
	for traffic, byN := range samples {
		for n, vs := range byN {
			slices.Sort(vs)
			series[traffic] = append(series[traffic], point{n, vs[len(vs)/2]})
		}
		slices.SortFunc(series[traffic], func(a, b point) int { return int(a.x - b.x) })
	}
	return series, sc.Err()
}

// draw writes a log-log chart of the series.
func draw(w io.Writer, series map[string][]point) {
	const width, height, left, right, top, bottom = 640, 400, 80, 140, 30, 50
	var xs, ys []float64
	for _, pts := range series {
		for _, p := range pts {
			xs, ys = append(xs, math.Log10(p.x)), append(ys, math.Log10(p.y))
		}
	}
	x0, x1 := math.Floor(slices.Min(xs)), math.Ceil(slices.Max(xs))
	y0, y1 := math.Floor(slices.Min(ys)), math.Ceil(slices.Max(ys))
	if x1 == x0 {
		x1++
	}
	if y1 == y0 {
		y1++
	}
	px := func(v float64) float64 { return left + (math.Log10(v)-x0)/(x1-x0)*(width-left-right) }
	py := func(v float64) float64 { return height - bottom - (math.Log10(v)-y0)/(y1-y0)*(height-top-bottom) }

	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(w, `<text x="%d" y="18" font-size="14">Live heap per entity after one hour of event time</text>`+"\n", left)
	for e := x0; e <= x1; e++ {
		x := px(math.Pow(10, e))
		fmt.Fprintf(w, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x, top, x, height-bottom)
		fmt.Fprintf(w, `<text x="%.1f" y="%d" text-anchor="middle">1e%d</text>`+"\n", x, height-bottom+16, int(e))
	}
	for e := y0; e <= y1; e++ {
		y := py(math.Pow(10, e))
		fmt.Fprintf(w, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, width-right, y)
		fmt.Fprintf(w, `<text x="%d" y="%.1f" text-anchor="end">%s B</text>`+"\n", left-6, y+4, humanBytes(math.Pow(10, e)))
	}
	fmt.Fprintf(w, `<text x="%d" y="%d" text-anchor="middle">entities</text>`+"\n", (left+width-right)/2, height-12)

	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}
	names := make([]string, 0, len(series))
	for name := range series {
		names = append(names, name)
	}
	slices.Sort(names)
	for i, name := range names {
		c := colors[i%len(colors)]
		var pts []string
		for _, p := range series[name] {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(p.x), py(p.y)))
			fmt.Fprintf(w, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", px(p.x), py(p.y), c)
		}
		fmt.Fprintf(w, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(pts, " "), c)
		fmt.Fprintf(w, `<text x="%d" y="%d" fill="%s">%s traffic</text>`+"\n", width-right+10, top+20+i*18, c, name)
	}
	fmt.Fprintln(w, "</svg>")
}

func humanBytes(v float64) string {
	switch {
	case v >= 1<<20:
		return fmt.Sprintf("%.0fM", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.0fK", v/(1<<10))
	}
	return fmt.Sprintf("%.0f", v)
}
