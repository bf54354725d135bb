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
	fams := d.opts.family.probeFamilies()
	d.step("waiting for every pod to reach every other pod over %s (ping, %v per probe, at most %v)",
		famNames(fams), pingTimeout, reachTimeout)
	firstOK := make([]map[pair]time.Time, len(fams)) // per family
	for f := range fams {
		firstOK[f] = make(map[pair]time.Time)
	}
	deadline := time.Now().Add(reachTimeout)
	nextNote := time.Now().Add(progressEvery)
	total := len(fams) * len(pods) * (len(pods) - 1)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		todo := make([][]pair, len(fams))
		left := 0
		for f := range fams {
			for _, s := range pods {
				for _, t := range pods {
					if s != t && firstOK[f][pair{s, t}].IsZero() {
						todo[f] = append(todo[f], pair{s, t})
					}
				}
			}
			left += len(todo[f])
		}
		if left == 0 {
			break
		}
		if time.Now().After(nextNote) {
			var not []string
			for f, fam := range fams {
				if len(todo[f]) > 0 {
					not = append(not, fam.name+": "+pairList(todo[f], 6))
				}
			}
			d.step("still waiting: %d of %d pod pairs answer; not yet: %s", total-left, total, strings.Join(not, "; "))
			nextNote = time.Now().Add(progressEvery)
		}
		for f, fam := range fams {
			for p, res := range d.pingAll(todo[f], fam, 1, pingTimeout) {
				if res.err == nil {
					firstOK[f][p] = res.at
				}
			}
		}
		for _, dst := range pods {
			d.noteReached(dst, pods, firstOK)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// noteReached records when node dst's pod has been reached from every other pod over every
// family (firstOK, one map per family), once that has happened.
func (d *demo) noteReached(dst int, pods []int, firstOK []map[pair]time.Time) {
	n := d.nodes[dst]
	if n.reached != 0 {
		return
	}
	var last time.Time
	n.reachedFrom = 0
	for _, src := range pods {
		all := src != dst
		for _, ok := range firstOK {
			at := ok[pair{src, dst}]
			all = all && !at.IsZero()
			if at.After(last) {
				last = at
			}
		}
		if all {
			n.reachedFrom++
		}
	}
	if n.reachedFrom == len(pods)-1 {
		n.reached = last.Sub(n.started)
		d.step("node%d: pod %s reachable from %s over %s, %s after weftd started",
			dst, n.pod.IP, otherPods(len(pods)-1), famNames(d.opts.family.probeFamilies()), secs(n.reached))
	}
}

// famNames names the families: "IPv4", "IPv4 and IPv6".
func famNames(fams []probeFamily) string {
	var s []string
	for _, f := range fams {
		s = append(s, f.name)
	}
	return strings.Join(s, " and ")
}

// podOf is node i's pod addressed over fam.
func (d *demo) podOf(i int, fam probeFamily) *cluster.Pod {
	if fam.v6 {
		return d.nodes[i].pod.V6()
	}
	return d.nodes[i].pod
}

// pair is an ordered (source node, destination node) pair.
type pair struct{ src, dst int }

type pingResult struct {
	at  time.Time // when the ping ended
	err error
}

// pingAll pings, in parallel, from each pair's source pod to its destination pod over fam.
func (d *demo) pingAll(pairs []pair, fam probeFamily, count int, timeout time.Duration) map[pair]pingResult {
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
			err := d.podOf(p.src, fam).Ping(d.podOf(p.dst, fam).IP, count, timeout)
			res = pingResult{at: time.Now(), err: err}
		}()
	}
	wg.Wait()
	return results
}

// report prints, for each family, the matrix and the transfer, then the timings and the logs
// of failed nodes. It returns whether everything worked over every family.
func (d *demo) report(ctx context.Context) bool {
	problems := groupFailures(d.failures())
	cellsOK := true
	logged := make(map[int]bool) // nodes whose log to print
	for i, nd := range d.nodes {
		logged[i] = nd.failure != ""
	}
	for _, fam := range d.opts.family.probeFamilies() {
		if len(d.podNodes()) == 0 && len(d.nodes) > 1 { // every node failed: a matrix of FAILs says nothing more
			d.print("\nconnectivity over %s: not tested: no node has a pod\n", fam.name)
			cellsOK = false
			continue
		}
		cells, pairs := d.matrix(fam)
		if bad := countFail(cells, pairs); bad > 0 {
			problems = append(problems, fmt.Sprintf("%d of %d pod pairs cannot ping over %s", bad, len(pairs), fam.name))
		}
		cellsOK = cellsOK && allOK(cells)
		if trOK, line := d.transfer(ctx, cells, fam); line != "" {
			d.print("%s\n\n", line)
			if !trOK {
				problems = append(problems, "the TCP transfer over "+fam.name+" failed")
			}
		}
		for i := range d.nodes {
			logged[i] = logged[i] || pingFailed(cells, pairs, i)
		}
	}
	if !cellsOK && len(d.podNodes()) == 0 {
		d.print("\n")
	}
	d.print("timings (from each node's weftd start)\n%s\n", d.timingsTable())

	for i := range d.nodes {
		if logged[i] {
			d.printLog(i)
		}
	}
	fams := famNames(d.opts.family.probeFamilies())
	ok := cellsOK && len(problems) == 0
	if ok {
		d.step("RESULT: ok: every pod reaches every other pod over %s (%s)", d.opts.backend, fams)
	} else {
		d.step("RESULT: FAIL (backend %s, %s): %s", d.opts.backend, fams, strings.Join(problems, "; "))
	}
	return ok
}

// matrix pings every pod pair over fam and prints the matrix. It returns the cells and the
// pairs tested (a pod on both ends).
func (d *demo) matrix(fam probeFamily) ([][]cell, []pair) {
	n := len(d.nodes)
	heads := make([]string, n)
	cells := make([][]cell, n)
	var pairs []pair
	for i, nd := range d.nodes {
		heads[i] = fmt.Sprintf("node%d (no pod)", i)
		if nd.pod != nil {
			heads[i] = fmt.Sprintf("node%d %s", i, d.podOf(i, fam).IP)
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
		d.step("final check over %s: 2 pings per pod pair, %d pairs", fam.name, len(pairs))
		res = d.pingAll(pairs, fam, 2, 3*time.Second)
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
	d.print("\nconnectivity over %s (rows: from the pod on that node, columns: to the pod on that node)\n%s",
		fam.name, renderMatrix(heads, cells))
	for _, w := range why {
		d.print("%s\n", w)
	}
	d.print("\n")
	return cells, pairs
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
// other both ways over fam (by its matrix). Without such a pair it is skipped: the matrix already
// tells what is wrong.
func (d *demo) transfer(ctx context.Context, cells [][]cell, fam probeFamily) (bool, string) {
	if len(d.nodes) < 2 {
		return true, ""
	}
	src, dst, found := transferPair(cells)
	if !found || d.nodes[src].pod == nil || d.nodes[dst].pod == nil {
		return true, "TCP transfer over " + fam.name + ": skipped: no two pods on different nodes ping each other"
	}
	from, to := d.podOf(src, fam), d.podOf(dst, fam)
	if ctx.Err() != nil {
		return false, ""
	}
	d.step("TCP transfer over %s: %s -> %s (node%d -> node%d), %d MiB", fam.name, from.IP, to.IP, from.Node, to.Node, transferBytes>>20)
	start := time.Now()
	if err := cluster.TCPTransfer(from, to, transferBytes, transferTimeout); err != nil {
		return false, fmt.Sprintf("TCP transfer over %s: FAIL: %v", fam.name, err)
	}
	el := time.Since(start)
	return true, fmt.Sprintf("TCP transfer over %s node%d -> node%d: %d MiB in %v, %s (SHA-256 checked)",
		fam.name, from.Node, to.Node, transferBytes>>20, el.Round(100*time.Microsecond), throughput(transferBytes, el))
}

func (d *demo) timingsTable() string {
	rows := [][]string{{"node", "namespace", "subnet", "public IP", "weftd -> subnet file", "weftd -> pod reachable from all"}}
	for i, n := range d.nodes {
		sub, pub, leased, reached := "-", d.publicIPs(i), "FAIL", "FAIL"
		if n.leased != 0 {
			sub, leased = subnets(n.env.Subnet, n.env.IPv6Subnet), secs(n.leased)
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

// publicIPs are node i's underlay addresses of the network's families.
func (d *demo) publicIPs(i int) string {
	var s []string
	if d.opts.family.v4() {
		s = append(s, d.c.NodeIP(i).String())
	}
	if d.opts.family.v6() {
		s = append(s, d.c.NodeIPv6(i).String())
	}
	return strings.Join(s, " ")
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
