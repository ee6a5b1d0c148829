package streamfeat_test

import (
	"context"
	"fmt"

	"github.com/streamfeat/streamfeat"
)

// start returns an engine on the event-time clock with two features, so
// that the examples' answers do not depend on the time they run at.
func start() (*streamfeat.Engine, map[string]int32) {
	e, err := streamfeat.New(streamfeat.Config{Clock: streamfeat.NewEventClock()})
	if err != nil {
		panic(err)
	}
	ids, err := e.RegisterSchema([]string{"latency_ms", "amount"})
	if err != nil {
		panic(err)
	}
	return e, ids
}

func Example() {
	e, ids := start()
	defer e.Close()
	ctx := context.Background()

	const t0 = 1_700_000_000_000 // Unix milliseconds
	var events []streamfeat.Event
	for i, v := range []float64{120, 80, 100, 95, 105} {
		events = append(events, streamfeat.Event{
			EntityID:    "user-42",
			TimestampMs: t0 + int64(i)*1000,
			Values:      []streamfeat.FeatureValue{{FeatureID: ids["latency_ms"], Value: v}},
		})
	}
	res, err := e.Ingest(ctx, events)
	if err != nil {
		panic(err)
	}
	fmt.Println("accepted:", res.AcceptedEvents)

	s, err := e.Stats(ctx, "user-42", ids["latency_ms"], streamfeat.Short)
	if err != nil {
		panic(err)
	}
	fmt.Printf("count %d, mean %.1f, variance %.1f, sample variance %.1f\n",
		s.Count, s.Mean, s.PopulationVariance, s.SampleVariance)
	// Output:
	// accepted: 5
	// count 5, mean 100.0, variance 170.0, sample variance 212.5
}

func ExampleEngine_Drift() {
	e, ids := start()
	defer e.Close()
	ctx := context.Background()
	amount := ids["amount"]

	// Fifty minutes of amounts around 20, then five minutes around 60.
	const t0 = 1_700_000_000_000
	var events []streamfeat.Event
	for i := range 660 {
		v := 20 + float64(i%5) - 2
		if i >= 600 {
			v += 40
		}
		events = append(events, streamfeat.Event{
			EntityID:    "card-7",
			TimestampMs: t0 + int64(i)*5000,
			Values:      []streamfeat.FeatureValue{{FeatureID: amount, Value: v}},
		})
	}
	if _, err := e.Ingest(ctx, events); err != nil {
		panic(err)
	}

	r, err := e.Drift(ctx, "card-7", amount, streamfeat.DriftOptions{
		ExcludeShortFromLong: true, // compare with the 55 minutes before
		MinCount:             30,
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("short mean %.0f over %d, baseline mean %.0f over %d\n",
		r.Short.Mean, r.Short.Count, r.Long.Mean, r.Long.Count)
	fmt.Printf("z %.1f, mean shift %v, variance shift %v, drifted %v\n",
		r.MeanZScore, r.MeanShift, r.VarianceShift, r.Drifted)
	// Output:
	// short mean 60 over 60, baseline mean 20 over 600
	// z 28.3, mean shift true, variance shift false, drifted true
}

func ExampleEngine_PopulationStats() {
	e, ids := start()
	defer e.Close()
	ctx := context.Background()

	const t0 = 1_700_000_000_000
	var events []streamfeat.Event
	for i, user := range []string{"ann", "bob", "cid", "dee"} {
		events = append(events, streamfeat.Event{
			EntityID:    user,
			TimestampMs: t0 + int64(i),
			Values:      []streamfeat.FeatureValue{{FeatureID: ids["latency_ms"], Value: float64(10 * (i + 1))}},
		})
	}
	if _, err := e.Ingest(ctx, events); err != nil {
		panic(err)
	}
	s, err := e.PopulationStats(ctx, ids["latency_ms"], streamfeat.Long)
	if err != nil {
		panic(err)
	}
	fmt.Printf("all users: count %d, mean %.0f, std dev %.2f\n", s.Count, s.Mean, s.StdDev())
	// Output:
	// all users: count 4, mean 25, std dev 11.18
}
