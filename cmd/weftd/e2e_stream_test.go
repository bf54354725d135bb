package main

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// Helpers for the fault tests: a continuous ping between pods whose losses and gaps are
// counted, and log-line counting.

// streamPing is a running `ping -D -i <interval> -c <count>` between two pods.
type streamPing struct {
	from     *cluster.Pod
	dst      netip.Addr
	interval time.Duration
	count    int
	started  time.Time
	cmd      *exec.Cmd
	out      *lockedBuffer // ping's output so far
	stopped  chan struct{} // closed by Stop before it interrupts ping
	done     chan pingStream
}

// pingStream is what a streamPing saw.
type pingStream struct {
	Transmitted, Received int
	// Lost lists the icmp_seq numbers with no reply.
	Lost []int
	// Replies maps icmp_seq to the time ping printed the reply (-D).
	Replies map[int]time.Time
	Output  string
	Err     error
}

// startStreamPing starts pinging dst from p every interval, count times, in the background.
// The ping ends on its own after about count*interval; Wait collects it. It is killed when
// the test ends.
func startStreamPing(t *testing.T, p *cluster.Pod, dst netip.Addr, interval time.Duration, count int) *streamPing {
	t.Helper()
	sp := &streamPing{from: p, dst: dst, interval: interval, count: count, started: time.Now(),
		stopped: make(chan struct{}), done: make(chan pingStream, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(count)*interval+30*time.Second)
	t.Cleanup(cancel)
	argv := []string{"netns", "exec", p.NS, "ping", "-n", "-D", "-W", "1", "-c", strconv.Itoa(count),
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64), dst.String()}
	cmd := exec.CommandContext(ctx, "ip", argv...) // ip netns exec execs ping: same PID
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sp.cmd, sp.out = cmd, out
	go func() {
		err := cmd.Wait()
		interrupted := false
		select {
		case <-sp.stopped:
			interrupted = true
		default:
		}
		sp.done <- parseStream(out.String(), interrupted, err)
	}()
	return sp
}

// Stop interrupts the ping (SIGINT: it prints its summary) and returns what it saw. The
// request sent last may still be in flight when ping stops: it is not counted.
func (sp *streamPing) Stop(t *testing.T) pingStream {
	t.Helper()
	close(sp.stopped)
	_ = sp.cmd.Process.Signal(syscall.SIGINT)
	return sp.Wait(t)
}

// WaitReplyAfter waits, polling ping's output, for a reply received after since, and
// returns when it was received. It fails the test if none comes within bound (a hang
// bound, not a measure: the caller logs the times).
func (sp *streamPing) WaitReplyAfter(t *testing.T, since time.Time, bound time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		r := parseStream(sp.out.String(), false, nil)
		for _, at := range r.Replies {
			if at.After(since) {
				return at
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("ping from %s to %s: no reply after %s within %v: %s\n%s",
				sp.from, sp.dst, since.Format("15:04:05.000"), bound, r.Summary(), lastLines(r.Output, 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Wait waits for the ping to end (bounded by its own context) and returns what it saw.
func (sp *streamPing) Wait(t *testing.T) pingStream {
	t.Helper()
	select {
	case r := <-sp.done:
		return r
	case <-time.After(time.Duration(sp.count)*sp.interval + 40*time.Second):
		t.Fatalf("ping from %s to %s never ended", sp.from, sp.dst)
		return pingStream{}
	}
}

var (
	streamSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)
	streamReply   = regexp.MustCompile(`^\[(\d+)\.(\d+)\] \d+ bytes from [0-9a-f.:]+: icmp_seq=(\d+) `)
)

func parseStream(out string, interrupted bool, err error) pingStream {
	r := pingStream{Output: out, Err: err, Replies: map[int]time.Time{}}
	if m := streamSummary.FindStringSubmatch(out); m != nil {
		r.Transmitted, _ = strconv.Atoi(m[1])
		r.Received, _ = strconv.Atoi(m[2])
	}
	for _, line := range strings.Split(out, "\n") {
		m := streamReply.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		sec, _ := strconv.ParseInt(m[1], 10, 64)
		frac := m[2]
		for len(frac) < 9 {
			frac += "0"
		}
		nsec, _ := strconv.ParseInt(frac[:9], 10, 64)
		seq, _ := strconv.Atoi(m[3])
		r.Replies[seq] = time.Unix(sec, nsec)
	}
	if _, ok := r.Replies[r.Transmitted]; interrupted && !ok && r.Transmitted > 0 {
		r.Transmitted-- // in flight when ping was stopped
	}
	if interrupted && err != nil && r.Transmitted > 0 {
		r.Err = nil // ping exits 1 when a reply is missing, as the in-flight one is
	}
	for seq := 1; seq <= r.Transmitted; seq++ {
		if _, ok := r.Replies[seq]; !ok {
			r.Lost = append(r.Lost, seq)
		}
	}
	return r
}

// LongestGapAfter is the longest time between two consecutive replies (by arrival) of
// which the second came after since, and when that reply came: the outage that since (a
// kill, say) caused, even if replies already in flight arrived just after it.
func (r pingStream) LongestGapAfter(since time.Time) (time.Duration, time.Time) {
	var ts []time.Time
	for _, at := range r.Replies {
		ts = append(ts, at)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	var gap time.Duration
	var end time.Time
	for i := 1; i < len(ts); i++ {
		if d := ts[i].Sub(ts[i-1]); ts[i].After(since) && d > gap {
			gap, end = d, ts[i]
		}
	}
	return gap, end
}

// LostCount is the number of requests without a reply.
func (r pingStream) LostCount() int { return len(r.Lost) }

// LongestGap is the longest time between two consecutive replies (by arrival), and the
// reply that ended it.
func (r pingStream) LongestGap() (time.Duration, time.Time) { return r.LongestGapAfter(time.Time{}) }

// Summary is one line for t.Logf.
func (r pingStream) Summary() string {
	gap, _ := r.LongestGap()
	return fmt.Sprintf("%d transmitted, %d received, %d lost, longest gap between replies %s",
		r.Transmitted, r.Received, r.LostCount(), gap.Round(time.Millisecond))
}

// countLines counts the log lines that contain substr.
func countLines(log, substr string) int {
	n := 0
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, substr) {
			n++
		}
	}
	return n
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// outageLogged counts the log lines that contain down and back, and checks that there is at
// least one of each, that the first outage line comes before the first recovery line and
// that the last of them is a recovery (the outage ended recovered).
func outageLogged(log, down, back string) (downs, backs int, err error) {
	firstDown, firstBack, lastDown, lastBack := -1, -1, -1, -1
	for i, line := range strings.Split(log, "\n") {
		switch {
		case strings.Contains(line, down):
			downs++
			lastDown = i
			if firstDown < 0 {
				firstDown = i
			}
		case strings.Contains(line, back):
			backs++
			lastBack = i
			if firstBack < 0 {
				firstBack = i
			}
		}
	}
	switch {
	case downs == 0:
		return downs, backs, fmt.Errorf("the outage was not logged (%q)", down)
	case backs == 0:
		return downs, backs, fmt.Errorf("the recovery was not logged (%q)", back)
	case firstBack < firstDown:
		return downs, backs, fmt.Errorf("a recovery (%q) was logged before the outage (%q)", back, down)
	case lastBack < lastDown:
		return downs, backs, fmt.Errorf("the last outage line (%q) has no recovery (%q) after it", down, back)
	}
	return downs, backs, nil
}
