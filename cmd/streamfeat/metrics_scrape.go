package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/streamfeat/streamfeat/promexport"
)

// maxScrapeBytes bounds what a scrape reads. A server with 64 shards exposes
// well under 100 KiB.
const maxScrapeBytes = 16 << 20

// dropReasons are the values of the label reason, in the order printed.
var dropReasons = []string{
	promexport.ReasonTooOld, promexport.ReasonTooNew,
	promexport.ReasonInvalid, promexport.ReasonOverloaded,
}

// checkMetricsURL refuses a URL that is not http(s), or whose host is not a
// loopback address unless allowRemote, like the gRPC target.
func checkMetricsURL(raw string, allowRemote bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("--metrics-url: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("--metrics-url %q: want an http:// or https:// URL", raw)
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	if checkLoopback(net.JoinHostPort(u.Hostname(), port), allowRemote) != nil {
		return fmt.Errorf("--metrics-url %q: host is not a loopback address; "+
			"pass --allow-remote to scrape it", raw)
	}
	return nil
}

// serverFigures are the server's drop counters and queue gauges at one
// scrape.
type serverFigures struct {
	accepted   float64
	dropped    map[string]float64 // by reason
	queueDepth []float64          // by shard
	queueCap   []float64          // by shard
}

// scrapeServer fetches a /metrics page and reads the families that load
// reports. It follows no redirect, so that a loopback URL cannot lead
// elsewhere.
func scrapeServer(ctx context.Context, metricsURL string, timeout time.Duration) (
	*serverFigures, error) {
	client := &http.Client{
		Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", metricsURL, resp.Status)
	}

	body := io.LimitReader(resp.Body, maxScrapeBytes)
	fams, err := decodeFamilies(body, expfmt.ResponseFormat(resp.Header))
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", metricsURL, err)
	}
	if fams["streamfeat_events_accepted_total"] == nil {
		return nil, fmt.Errorf("scrape %s: no streamfeat_events_accepted_total; "+
			"is it a streamfeat server's /metrics?", metricsURL)
	}
	return figuresOf(fams), nil
}

// decodeFamilies reads every metric family of an exposition, by name.
func decodeFamilies(r io.Reader, format expfmt.Format) (map[string]*dto.MetricFamily, error) {
	dec := expfmt.NewDecoder(r, format)
	fams := make(map[string]*dto.MetricFamily)
	for {
		f := new(dto.MetricFamily)
		err := dec.Decode(f)
		if errors.Is(err, io.EOF) {
			return fams, nil
		}
		if err != nil {
			return nil, err
		}
		fams[f.GetName()] = f
	}
}

func figuresOf(fams map[string]*dto.MetricFamily) *serverFigures {
	s := &serverFigures{dropped: make(map[string]float64)}
	for _, m := range fams["streamfeat_events_accepted_total"].GetMetric() {
		s.accepted += m.GetCounter().GetValue()
	}
	for _, m := range fams["streamfeat_events_dropped_total"].GetMetric() {
		s.dropped[label(m, "reason")] += m.GetCounter().GetValue()
	}
	s.queueDepth = byShard(fams["streamfeat_queue_depth"])
	s.queueCap = byShard(fams["streamfeat_queue_capacity"])
	return s
}

// byShard returns a gauge family's values indexed by the label shard.
// Values with a shard label that is not a small number are left out.
func byShard(f *dto.MetricFamily) []float64 {
	var out []float64
	for _, m := range f.GetMetric() {
		i, err := strconv.Atoi(label(m, "shard"))
		if err != nil || i < 0 || i >= 1<<16 {
			continue
		}
		for len(out) <= i {
			out = append(out, 0)
		}
		out[i] = m.GetGauge().GetValue()
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// serverReport is what the server's metrics said about a load run. The
// counters are server-wide: other clients' traffic during the run counts
// too.
type serverReport struct {
	URL            string           `json:"url"`
	EventsAccepted int64            `json:"events_accepted"` // during the run
	Dropped        map[string]int64 `json:"dropped"`         // during the run, by reason
	QueueDepth     []int64          `json:"queue_depth"`     // by shard, after the run
	QueueCapacity  []int64          `json:"queue_capacity"`  // by shard
}

// newServerReport compares the scrapes before and after a run.
func newServerReport(metricsURL string, before, after *serverFigures) *serverReport {
	r := &serverReport{
		URL:            metricsURL,
		EventsAccepted: int64(after.accepted - before.accepted),
		Dropped:        make(map[string]int64, len(dropReasons)),
	}
	for _, reason := range dropReasons {
		r.Dropped[reason] = int64(after.dropped[reason] - before.dropped[reason])
	}
	for _, v := range after.queueDepth {
		r.QueueDepth = append(r.QueueDepth, int64(v))
	}
	for _, v := range after.queueCap {
		r.QueueCapacity = append(r.QueueCapacity, int64(v))
	}
	return r
}

func (r *serverReport) print(w io.Writer) {
	fmt.Fprintf(w, "server        %d accepted during the run, dropped: too_old %d, too_new %d, "+
		"invalid %d, overloaded %d\n", r.EventsAccepted, r.Dropped[promexport.ReasonTooOld],
		r.Dropped[promexport.ReasonTooNew], r.Dropped[promexport.ReasonInvalid],
		r.Dropped[promexport.ReasonOverloaded])
	fmt.Fprintf(w, "server queues")
	for i, d := range r.QueueDepth {
		c := int64(0)
		if i < len(r.QueueCapacity) {
			c = r.QueueCapacity[i]
		}
		fmt.Fprintf(w, " %d/%d", d, c)
	}
	fmt.Fprintf(w, " (depth/capacity by shard, after the run)\n")
}
