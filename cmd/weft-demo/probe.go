package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// converge pings every ordered pod pair until each has answered once, recording for each
// node when its pod became reachable from all the others. Bounded by reachTimeout and ctx.
func (d *demo) converge(ctx context.Context) {
	var pods []int
	for i, n := range d.nodes {
		if n.pod != nil {
			pods = append(pods, i)
		}
	}
	if len(pods) < 2 {
		return
	}
	d.step("waiting for every pod to reach every other pod (ping, %v per probe, at most %v)", pingTimeout, reachTimeout)
	firstOK := make(map[pair]time.Time)
	deadline := time.Now().Add(reachTimeout)
	nextNote := time.Now().Add(progressEvery)
	total := len(pods) * (len(pods) - 1)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		var todo []pair
		for _, s := range pods {
			for _, t := range pods {
				if s != t && firstOK[pair{s, t}].IsZero() {
					todo = append(todo, pair{s, t})
				}
			}
		}
		if len(todo) == 0 {
			break
		}
		if time.Now().After(nextNote) {
			d.step("still waiting: %d of %d pod pairs answer; not yet: %s", total-len(todo), total, pairList(todo, 6))
			nextNote = time.Now().Add(progressEvery)
		}
		for p, res := range d.pingAll(todo, 1, pingTimeout) {
			if res.err == nil {
				firstOK[p] = res.at
			}
		}
		for _, dst := range pods {
			n := d.nodes[dst]
			if n.reached != 0 {
				continue
			}
			var last time.Time
			n.reachedFrom = 0
			for _, src := range pods {
				if at := firstOK[pair{src, dst}]; src != dst && !at.IsZero() {
					n.reachedFrom++
					if at.After(last) {
						last = at
					}
				}
			}
			if n.reachedFrom == len(pods)-1 {
				n.reached = last.Sub(n.started)
				d.step("node%d: pod %s reachable from %s, %s after weftd started",
					dst, n.pod.IP, otherPods(len(pods)-1), secs(n.reached))
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pair is an ordered (source node, destination node) pair.
type pair struct{ src, dst int }

type pingResult struct {
	at  time.Time // when the ping ended
	err error
}

// pingAll pings, in parallel, from each pair's source pod to its destination pod.
func (d *demo) pingAll(pairs []pair, count int, timeout time.Duration) map[pair]pingResult {
	var mu sync.Mutex // guards results
	results := make(map[pair]pingResult, len(pairs))
	sem := make(chan struct{}, maxParallelPings)
	var wg sync.WaitGroup
	for _, p := range pairs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			res := pingResult{err: errors.New("ping did not run")}
			defer func() {
				if r := recover(); r != nil {
					res.err = fmt.Errorf("panic: %v", r)
				}
				mu.Lock()
				results[p] = res
				mu.Unlock()
			}()
			err := d.nodes[p.src].pod.Ping(d.nodes[p.dst].pod.IP, count, timeout)
			res = pingResult{at: time.Now(), err: err}
		}()
	}
	wg.Wait()
	return results
}

// report prints the matrix, the transfer, the timings and the logs of failed nodes. It
// returns whether everything worked.
func (d *demo) report(ctx context.Context) bool {
	n := len(d.nodes)
	heads := make([]string, n)
	cells := make([][]cell, n)
	var pairs []pair
	for i, nd := range d.nodes {
		heads[i] = fmt.Sprintf("node%d (no pod)", i)
		if nd.pod != nil {
			heads[i] = fmt.Sprintf("node%d %s", i, nd.pod.IP)
		}
		cells[i] = make([]cell, n)
		for j := range d.nodes {
			switch {
			case i == j:
				cells[i][j] = cellSelf
			case nd.pod == nil || d.nodes[j].pod == nil:
				cells[i][j] = cellFail
			default:
				pairs = append(pairs, pair{i, j})
			}
		}
	}
	var res map[pair]pingResult
	if len(pairs) > 0 {
		d.step("final check: 2 pings per pod pair, %d pairs", len(pairs))
		res = d.pingAll(pairs, 2, 3*time.Second)
	}
	var why []string // the first failed pings, one line each
	for _, p := range pairs {
		cells[p.src][p.dst] = cellOK
		if err := res[p].err; err != nil {
			cells[p.src][p.dst] = cellFail
			if len(why) < 6 {
				why = append(why, fmt.Sprintf("  node%d -> node%d: %s", p.src, p.dst, firstLine(err)))
			}
		}
	}
	d.print("\nconnectivity (rows: from the pod on that node, columns: to the pod on that node)\n%s", renderMatrix(heads, cells))
	for _, w := range why {
		d.print("%s\n", w)
	}
	d.print("\n")
	problems := groupFailures(d.failures())
	if bad := countFail(cells, pairs); bad > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d pod pairs cannot ping", bad, len(pairs)))
	}
	if trOK, line := d.transfer(ctx, cells); line != "" {
		d.print("%s\n\n", line)
		if !trOK {
			problems = append(problems, "the TCP transfer failed")
		}
	}
	d.print("timings (from each node's weftd start)\n%s\n", d.timingsTable())

	for i, nd := range d.nodes {
		if nd.failure != "" || pingFailed(cells, pairs, i) {
			d.printLog(i)
		}
	}
	ok := allOK(cells) && len(problems) == 0
	if ok {
		d.step("RESULT: ok: every pod reaches every other pod over %s", d.opts.backend)
	} else {
		d.step("RESULT: FAIL (backend %s): %s", d.opts.backend, strings.Join(problems, "; "))
	}
	return ok
}

// failures lists the nodes that failed before the matrix, in node order.
func (d *demo) failures() []nodeFailure {
	var out []nodeFailure
	for i, n := range d.nodes {
		if n.failure != "" {
			out = append(out, nodeFailure{i, n.failure})
		}
	}
	return out
}

// transfer sends transferBytes between the pods of the first two nodes that ping each
// other both ways (by the matrix). Without such a pair it is skipped: the matrix already
// tells what is wrong.
func (d *demo) transfer(ctx context.Context, cells [][]cell) (bool, string) {
	if len(d.nodes) < 2 {
		return true, ""
	}
	src, dst, found := transferPair(cells)
	if !found || d.nodes[src].pod == nil || d.nodes[dst].pod == nil {
		return true, "TCP transfer: skipped: no two pods on different nodes ping each other"
	}
	from, to := d.nodes[src].pod, d.nodes[dst].pod
	if ctx.Err() != nil {
		return false, ""
	}
	d.step("TCP transfer: %s -> %s (node%d -> node%d), %d MiB", from.IP, to.IP, from.Node, to.Node, transferBytes>>20)
	start := time.Now()
	if err := cluster.TCPTransfer(from, to, transferBytes, transferTimeout); err != nil {
		return false, fmt.Sprintf("TCP transfer: FAIL: %v", err)
	}
	el := time.Since(start)
	return true, fmt.Sprintf("TCP transfer node%d -> node%d: %d MiB in %v, %s (SHA-256 checked)",
		from.Node, to.Node, transferBytes>>20, el.Round(100*time.Microsecond), throughput(transferBytes, el))
}

func (d *demo) timingsTable() string {
	rows := [][]string{{"node", "namespace", "subnet", "public IP", "weftd -> subnet file", "weftd -> pod reachable from all"}}
	for i, n := range d.nodes {
		sub, pub, leased, reached := "-", d.c.NodeIP(i).String(), "FAIL", "FAIL"
		if n.leased != 0 {
			sub, leased = n.env.Subnet.Masked().String(), secs(n.leased)
		}
		switch {
		case n.reached != 0:
			reached = secs(n.reached)
		case n.pod != nil && len(d.podNodes()) < 2:
			reached = "n/a (no other pod)"
		case n.pod != nil:
			reached = fmt.Sprintf("FAIL (from %d of %d)", n.reachedFrom, len(d.podNodes())-1)
		}
		rows = append(rows, []string{fmt.Sprintf("node%d", i), d.c.NodeNS(i), sub, pub, leased, reached})
	}
	return renderTable(rows)
}

func (d *demo) podNodes() []int {
	var out []int
	for i, n := range d.nodes {
		if n.pod != nil {
			out = append(out, i)
		}
	}
	return out
}

// printLog prints the tail of node i's weftd output (its latest run).
func (d *demo) printLog(i int) {
	w := d.nodes[i].weftd
	log := w.RunLog()
	if strings.TrimSpace(log) == "" {
		log = "(empty)"
	}
	d.print("weftd log of node%d (last %d lines of %s):\n%s\n\n", i, logTailLines, w.LogPath(),
		indent(tail(log, logTailLines), "    "))
}
