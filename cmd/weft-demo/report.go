package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// refusal returns weftd's complaint about the network config from its log, or "" when
// there is none. weftd does not exit on an invalid config: it logs it once and waits, e.g.
//
//	E1122 02:18:46.238185   10994 config.go:28] "Invalid network config {...}; waiting for a valid config" err="invalid network config: Backend.Type \"bogus\" is not a known backend (known: [host-gw])"
//
// The result is klog's err value, unquoted, or the line without klog's header.
func refusal(log string) string { return logError(log, "Invalid network config") }

// fatal returns the error weftd exited with, from its log, or "" when there is none, e.g.
// for a backend that does not carry the network's address families:
//
//	E1206 05:21:32.853877   21169 main.go:48] "weftd failed" err="backend udp: invalid network config: the udp backend carries IPv4 only, ..."
func fatal(log string) string { return logError(log, `"weftd failed"`) }

// logError returns, from the first log line containing marker, klog's err value unquoted,
// or the line without klog's header; "" when no line has marker.
func logError(log, marker string) string {
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, marker) {
			continue
		}
		if _, quoted, ok := strings.Cut(line, " err="); ok {
			if q, err := strconv.QuotedPrefix(quoted); err == nil {
				if msg, err := strconv.Unquote(q); err == nil {
					return msg
				}
			}
		}
		if _, rest, ok := strings.Cut(line, "] "); ok {
			line = rest
		}
		return strings.TrimSpace(line)
	}
	return ""
}

// cell is one entry of the connectivity matrix.
type cell int

const (
	cellFail cell = iota
	cellOK
	cellSelf // a pod and itself: not tested
)

func (c cell) String() string {
	switch c {
	case cellOK:
		return "ok"
	case cellSelf:
		return "-"
	default:
		return "FAIL"
	}
}

// renderMatrix draws cells (rows: source, columns: destination) with heads naming both the
// rows and the columns.
func renderMatrix(heads []string, cells [][]cell) string {
	rows := make([][]string, 0, len(cells)+1)
	rows = append(rows, append([]string{"from \\ to"}, heads...))
	for i, r := range cells {
		row := []string{heads[i]}
		for _, c := range r {
			row = append(row, c.String())
		}
		rows = append(rows, row)
	}
	return renderTable(rows)
}

// allOK reports whether every cell off the diagonal is ok.
func allOK(cells [][]cell) bool {
	for _, r := range cells {
		for _, c := range r {
			if c == cellFail {
				return false
			}
		}
	}
	return true
}

// pingFailed reports whether node i's pod failed to reach, or be reached by, another pod:
// a failed cell among the pairs tested (pairs with a pod on both ends).
func pingFailed(cells [][]cell, tested []pair, i int) bool {
	for _, p := range tested {
		if (p.src == i || p.dst == i) && cells[p.src][p.dst] == cellFail {
			return true
		}
	}
	return false
}

// renderTable aligns rows in columns, two spaces apart; the first row is the header.
func renderTable(rows [][]string) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush() // writes to a strings.Builder never fail
	// tabwriter pads the last cell of a row only when rows differ; trim for clean output.
	lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n") + "\n"
}

// secs formats a duration in seconds with two decimals.
func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

// throughput formats n bytes moved in d as MiB/s and Mbit/s.
func throughput(n int, d time.Duration) string {
	if d <= 0 {
		return "too fast to measure"
	}
	s := d.Seconds()
	return fmt.Sprintf("%.1f MiB/s (%.0f Mbit/s)", float64(n)/(1<<20)/s, float64(n)*8/1e6/s)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// nodeFailure is why a node failed before the matrix.
type nodeFailure struct {
	node int
	why  string
}

// groupFailures renders failures one line per distinct reason, naming the nodes:
// "node0, node1: weftd refused ...".
func groupFailures(fs []nodeFailure) []string {
	var order []string
	nodes := make(map[string][]string)
	for _, f := range fs {
		if _, seen := nodes[f.why]; !seen {
			order = append(order, f.why)
		}
		nodes[f.why] = append(nodes[f.why], fmt.Sprintf("node%d", f.node))
	}
	out := make([]string, len(order))
	for i, why := range order {
		out[i] = strings.Join(nodes[why], ", ") + ": " + why
	}
	return out
}

// countFail counts the tested pairs whose cell is a failure.
func countFail(cells [][]cell, pairs []pair) int {
	n := 0
	for _, p := range pairs {
		if cells[p.src][p.dst] == cellFail {
			n++
		}
	}
	return n
}

// otherPods says "the other pod" or "all n other pods".
func otherPods(n int) string {
	if n == 1 {
		return "the other pod"
	}
	return fmt.Sprintf("all %d other pods", n)
}

// transferPair picks the first pair of nodes (src < dst) whose pods ping each other both
// ways.
func transferPair(cells [][]cell) (src, dst int, ok bool) {
	for i := range cells {
		for j := i + 1; j < len(cells); j++ {
			if cells[i][j] == cellOK && cells[j][i] == cellOK {
				return i, j, true
			}
		}
	}
	return 0, 0, false
}

// pairList names up to limit pairs as "node1->node0, node2->node0", then "and n more".
func pairList(ps []pair, limit int) string {
	var names []string
	for i, p := range ps {
		if i == limit {
			names = append(names, fmt.Sprintf("and %d more", len(ps)-limit))
			break
		}
		names = append(names, fmt.Sprintf("node%d->node%d", p.src, p.dst))
	}
	return strings.Join(names, ", ")
}

// firstLine shortens a Pod.Ping error to its summary: "ping 10.244.2.2 from 10.244.1.2(ns):
// 0/15 replies (2 wanted) in 3s", without the command line and ping's output.
func firstLine(err error) string {
	line, _, _ := strings.Cut(err.Error(), "\n")
	line, _, _ = strings.Cut(line, ": in ")
	return line
}
