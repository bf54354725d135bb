package bench

import (
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	seq := func(n int) []float64 {
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = float64(n - i) // descending: Summarize must sort
		}
		return xs
	}
	tests := []struct {
		name string
		in   []float64
		want Summary
	}{
		{"empty", nil, Summary{}},
		{"one", []float64{7}, Summary{N: 1, Min: 7, Median: 7, P50: 7, P99: 7, Max: 7, Mean: 7}},
		{"odd", []float64{3, 1, 2}, Summary{N: 3, Min: 1, Median: 2, P50: 2, P99: 3, Max: 3, Mean: 2}},
		{"even median is the mean of the middle two", []float64{4, 1, 2, 3}, Summary{N: 4, Min: 1, Median: 2.5, P50: 2, P99: 4, Max: 4, Mean: 2.5}},
		{"20 samples: p99 is the largest", seq(20), Summary{N: 20, Min: 1, Median: 10.5, P50: 10, P99: 20, Max: 20, Mean: 10.5}},
		{"100 samples: p99 is the 99th", seq(100), Summary{N: 100, Min: 1, Median: 50.5, P50: 50, P99: 99, Max: 100, Mean: 50.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Summarize(tt.in); got != tt.want {
				t.Errorf("Summarize(%v) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		a, b, want float64
	}{
		{10, 5, 2},
		{1, 4, 0.25},
		{0, 5, 0},
		{5, 0, 0},
		{-1, 5, 0},
		{math.NaN(), 5, 0},
		{math.Inf(1), 5, 0},
	}
	for _, tt := range tests {
		if got := Ratio(tt.a, tt.b); got != tt.want {
			t.Errorf("Ratio(%v, %v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

// The idle latency of every round is pooled: the summary is over all replies, the counts
// are sums, and the first round's command stays.
func TestAddIdlePoolsRounds(t *testing.T) {
	p := &Path{Name: "udp"}
	first := &Latency{Command: "ping a", Sent: 3, Received: 3, RTTms: Summarize([]float64{3, 1, 2}), samples: []float64{3, 1, 2}}
	p.addIdle(first)
	if got := p.IdleLatency; got != first || got.Rounds != 1 || got.RTTms.P50 != 2 {
		t.Fatalf("after one round: %+v, want the round itself with Rounds 1 and p50 2", got)
	}
	p.addIdle(&Latency{Command: "ping b", Sent: 4, Received: 3, RTTms: Summarize([]float64{6, 5, 4}), samples: []float64{6, 5, 4}})
	got := p.IdleLatency
	want := Summarize([]float64{1, 2, 3, 4, 5, 6})
	if got.Rounds != 2 || got.Sent != 7 || got.Received != 6 || got.RTTms != want || got.Command != "ping a" {
		t.Errorf("after two rounds: rounds %d, sent %d, received %d, rtt %+v, command %q; want 2, 7, 6, %+v, %q",
			got.Rounds, got.Sent, got.Received, got.RTTms, got.Command, want, "ping a")
	}
}
