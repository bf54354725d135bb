package bench

import (
	"math"
	"slices"
)

// Summary is the spread of a set of samples. Percentiles use the nearest-rank method: the
// p-th percentile of n sorted samples is sample number ceil(p/100*n) (1-based), so every
// reported figure is a measured value, and with 20 samples p99 is the largest.
type Summary struct {
	N      int     `json:"n"`
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	P50    float64 `json:"p50"`
	P99    float64 `json:"p99"`
	Max    float64 `json:"max"`
	Mean   float64 `json:"mean"`
}

// Summarize returns the summary of xs (all zero for no samples). Median is the middle
// sample, or the mean of the two middle samples for an even count; P50 is nearest-rank.
func Summarize(xs []float64) Summary {
	if len(xs) == 0 {
		return Summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	var sum float64
	for _, x := range s {
		sum += x
	}
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Summary{
		N: n, Min: s[0], Max: s[n-1], Median: med, Mean: sum / float64(n),
		P50: nearestRank(s, 50), P99: nearestRank(s, 99),
	}
}

// nearestRank is the p-th percentile of sorted, non-empty s.
func nearestRank(s []float64, p float64) float64 {
	k := int(math.Ceil(p / 100 * float64(len(s))))
	return s[min(max(k, 1), len(s))-1]
}

// Ratio is a/b, or 0 when either is not a positive number (no measurement).
func Ratio(a, b float64) float64 {
	if !(a > 0) || !(b > 0) || math.IsInf(a, 0) || math.IsInf(b, 0) {
		return 0
	}
	return a / b
}
