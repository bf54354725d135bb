package bench

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var (
	pingTime    = regexp.MustCompile(` bytes from .* time=([0-9.]+) ms`)
	pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)
)

// parsePingRTTs returns the per-reply round trip times (ms) and the summary counts of
// iputils ping output. It is pure.
func parsePingRTTs(out string) (rtts []float64, sent, received int) {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := pingTime.FindStringSubmatch(line); m != nil {
			if v, err := strconv.ParseFloat(m[1], 64); err == nil {
				rtts = append(rtts, v)
			}
		}
		if m := pingSummary.FindStringSubmatch(line); m != nil {
			sent, _ = strconv.Atoi(m[1])
			received, _ = strconv.Atoi(m[2])
		}
	}
	return rtts, sent, received
}

// pingArgv builds the latency command: -c samples, -i interval, -W per-reply wait, -w bound.
func pingArgv(dst netip.Addr, count int, interval time.Duration) []string {
	deadline := int(math.Ceil((time.Duration(count)*interval + 5*time.Second).Seconds()))
	return []string{"ping", "-n", "-c", strconv.Itoa(count), "-i", secondsArg(interval),
		"-W", "1", "-w", strconv.Itoa(deadline), dst.String()}
}

func secondsArg(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}

// measureLatency pings dst from namespace ns and summarises the round trip times.
func measureLatency(ctx context.Context, ns string, dst netip.Addr, count int, interval time.Duration) (*Latency, error) {
	argv := pingArgv(dst, count, interval)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(count)*interval+30*time.Second)
	defer cancel()
	out, err := nsCommand(ctx, ns, argv...).CombinedOutput()
	rtts, sent, recv := parsePingRTTs(string(out))
	lat := &Latency{Command: nsCommandLine(ns, argv...), Sent: sent, Received: recv, RTTms: Summarize(rtts), samples: rtts}
	if len(rtts) == 0 {
		return lat, fmt.Errorf("%s: no replies (%v): %s", lat.Command, err, lastLines(string(out), 3))
	}
	return lat, nil
}

// lastLines returns the last n non-empty lines of s, joined with " | ".
func lastLines(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
