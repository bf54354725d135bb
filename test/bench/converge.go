package bench

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/weftnet/weft/pkg/subnetenv"
	"github.com/weftnet/weft/test/cluster"
)

// Method texts recorded with the results (Documentation/benchmarks.md says more).
const (
	kernelMethod = "t0: the bench's own etcd watch (opened before weftd starts) delivers the new lease's creation " +
		"(a PUT whose create revision is its mod revision). Nodes: netlink route notification " +
		"(RTNLGRP_IPV4_ROUTE, main table, exact subnet) in each fixed node's namespace, time of receipt. " +
		"Pods: first echo reply to an in-process ping (raw ICMP socket opened in each fixed pod before the join, " +
		"one request every 2 ms) sent to the new node's first pod once that pod exists (the bench makes it as a " +
		"CNI plugin would, as soon as weftd has written its subnet file, looked for every 1 ms). Leave: weftd stopped (SIGTERM), then the bench deletes its lease; from the " +
		"Delete request (etcd's commit included) to each node's route deletion notification."
	userspaceMethod = "t0: the bench's own etcd watch (opened before weftd starts) delivers the new lease's creation " +
		"(a PUT whose create revision is its mod revision). Nodes: first echo reply to an in-process ping (raw " +
		"ICMP socket opened in each fixed node's namespace before the join, one request every 2 ms from t0) sent " +
		"to the new node's tunnel address, its subnet's network address (the peer table is in weftd, not in the " +
		"kernel, so only traffic shows it). Pods: as for the kernel backends. Leave: weftd " +
		"stopped (SIGTERM), then the bench deletes its lease; from the Delete request (etcd's commit included) " +
		"until every fixed node's weft_peers gauge (polled every 10 ms) has dropped."
)

// converge times r.o.Joins joins, each on a fresh node (node fixedNodes+k), each followed
// by that node's leave. It returns the result and the joiners' weftds (for their logs).
func (r *runner) converge(ctx context.Context, c *cluster.Cluster, spec Spec, pods []*cluster.Pod) (*Convergence, []*cluster.Weftd) {
	conv := &Convergence{Method: kernelMethod}
	if spec.Userspace {
		conv.Method = userspaceMethod
	}
	cv := &joiner{r: r, c: c, spec: spec, pods: pods}
	defer cv.close()
	var weftds []*cluster.Weftd
	if err := cv.open(ctx); err != nil {
		conv.Joins = append(conv.Joins, &Join{Node: fixedNodes, Error: err.Error()})
		return conv, nil
	}
	var nodes, podsMs, afterPod, leave, lease []float64
	for k := range r.o.Joins {
		if ctx.Err() != nil {
			conv.Joins = append(conv.Joins, &Join{Node: fixedNodes + k, Error: stopReason(ctx)})
			break
		}
		j, w := cv.join(ctx, fixedNodes+k)
		conv.Joins = append(conv.Joins, j)
		if w != nil {
			weftds = append(weftds, w)
		}
		if j.Error != "" {
			r.step("%s: join %d/%d on node %d: ERROR %s", spec.Name, k+1, r.o.Joins, j.Node, j.Error)
			continue
		}
		n, p := maxOf(j.NodesMs), maxOf(j.PodsMs)
		nodes, podsMs, lease = append(nodes, n), append(podsMs, p), append(lease, j.LeaseMs)
		afterPod = append(afterPod, p-j.PodCreatedMs)
		if j.LeaveMs >= 0 {
			leave = append(leave, j.LeaveMs)
		}
		r.step("%s: join %d/%d (%s): nodes %.1f ms, pods %.1f ms (pod made at %.1f ms), leave %.1f ms",
			spec.Name, k+1, r.o.Joins, j.Subnet, n, p, j.PodCreatedMs, j.LeaveMs)
	}
	conv.NodesMs, conv.PodsMs, conv.LeaveMs, conv.LeaseMs = Summarize(nodes), Summarize(podsMs), Summarize(leave), Summarize(lease)
	conv.PodsAfterPodMs = Summarize(afterPod)
	return conv, weftds
}

// maxOf is the largest value (the last node or pod to converge).
func maxOf(xs []float64) float64 {
	m := 0.0
	for i, x := range xs {
		if i == 0 || x > m {
			m = x
		}
	}
	return m
}

// joiner holds what the joins of one backend phase share.
type joiner struct {
	r      *runner
	c      *cluster.Cluster
	spec   Spec
	pods   []*cluster.Pod // one per fixed node
	cli    *clientv3.Client
	routes []*routeWatch // per fixed node; nil for userspace backends
}

func (cv *joiner) open(ctx context.Context) error {
	cli, err := cv.c.Etcd(ctx)
	if err != nil {
		return err
	}
	cv.cli = cli
	if cv.spec.Userspace {
		return nil
	}
	for i := range fixedNodes {
		w, err := watchRoutes(cv.c.NodeNS(i))
		if err != nil {
			return err
		}
		cv.routes = append(cv.routes, w)
	}
	return nil
}

func (cv *joiner) close() {
	for _, w := range cv.routes {
		w.Close()
	}
	if cv.cli != nil {
		_ = cv.cli.Close()
	}
}

// join starts weftd on the fresh node, times how the fixed nodes and pods learn of it, then
// stops it, deletes its lease and times the leave.
func (cv *joiner) join(ctx context.Context, node int) (*Join, *cluster.Weftd) {
	j := &Join{Node: node, LeaveMs: -1, PodCreatedMs: -1}
	timeout := cv.r.o.JoinTimeout
	prefix := cv.c.Prefix() + "/subnets/"
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	get, err := cv.cli.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		j.Error = fmt.Sprintf("etcd: %v", err)
		return j, nil
	}
	ws := &watchStream{ch: cv.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(get.Header.Revision+1))}

	probes, err := cv.openProbes()
	if err != nil {
		j.Error = err.Error()
		return j, nil
	}
	defer probes.close()

	start := time.Now()
	w, err := cv.c.TryStartNode(node, weftdOptions(cv.c, node))
	if err != nil {
		j.Error = err.Error()
		return j, nil
	}
	defer func() {
		if w.Running() {
			w.Kill()
		}
	}()
	ev, t0, err := ws.next(ctx, timeout, func(ev *clientv3.Event) bool {
		return ev.Type == mvccpb.PUT && ev.Kv.CreateRevision == ev.Kv.ModRevision
	})
	if err != nil {
		j.Error = fmt.Sprintf("no new lease in etcd: %v", err)
		return j, w
	}
	j.LeaseMs = ms(t0.Sub(start))
	key := string(ev.Kv.Key)
	sn, err := leaseSubnet(key, prefix, ev.Kv.Value, cv.c.NodeIP(node))
	if err != nil {
		j.Error = err.Error()
		return j, w
	}
	j.Subnet, j.Revision = sn.String(), ev.Kv.CreateRevision

	var errs []error
	var errMu sync.Mutex
	addErr := func(err error) {
		errMu.Lock()
		errs = append(errs, err)
		errMu.Unlock()
	}
	j.NodesMs = make([]float64, fixedNodes)
	j.PodsMs = make([]float64, len(cv.pods))
	var wg sync.WaitGroup
	// (a) each fixed node has the peer.
	for i := range fixedNodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var at time.Time
			var err error
			if cv.spec.Userspace {
				at, err = probes.nodes[i].firstReply(ctx, sn.Addr(), timeout)
			} else {
				at, err = cv.routes[i].wait(ctx, sn, true, start, timeout)
			}
			j.NodesMs[i] = -1
			if err != nil {
				addErr(fmt.Errorf("node %d: %w", i, err))
				return
			}
			j.NodesMs[i] = ms(at.Sub(t0))
		}()
	}
	// (b) every fixed pod reaches the new node's pod, made as a CNI plugin would once the
	// subnet file is written.
	pod, err := cv.newPod(ctx, node, timeout)
	if err != nil {
		addErr(err)
		for i := range j.PodsMs {
			j.PodsMs[i] = -1
		}
	} else {
		j.PodCreatedMs = ms(time.Since(t0))
		for i, from := range cv.pods {
			wg.Add(1)
			go func() {
				defer wg.Done()
				j.PodsMs[i] = -1
				at, err := probes.pods[i].firstReply(ctx, pod.IP, timeout)
				if err != nil {
					addErr(fmt.Errorf("pod %s -> %s: %w", from, pod, err))
					return
				}
				j.PodsMs[i] = ms(at.Sub(t0))
			}()
		}
	}
	wg.Wait()

	// Leave: stop weftd, delete its lease, time how the fixed nodes forget it. The bench
	// deletes the lease itself, so t0 is its request (etcd's commit is included).
	_ = w.Stop() // its exit status on SIGTERM is not what is measured
	tDel := time.Now()
	if _, err := cv.cli.Delete(ctx, key); err != nil {
		addErr(fmt.Errorf("delete lease: %w", err))
	}
	if _, _, err := ws.next(ctx, timeout, func(ev *clientv3.Event) bool {
		return ev.Type == mvccpb.DELETE && string(ev.Kv.Key) == key
	}); err != nil {
		addErr(fmt.Errorf("lease deletion not seen: %w", err))
	} else if leave, err := cv.leave(ctx, sn, tDel, timeout); err != nil {
		addErr(fmt.Errorf("leave: %w", err))
	} else {
		j.LeaveMs = ms(leave.Sub(tDel))
	}
	if len(errs) > 0 {
		j.Error = joinErrs(errs)
	}
	return j, w
}

// subnetFilePoll is how often newPod looks for the joiner's subnet file: often enough that
// the wait adds next to nothing to the pod figures.
const subnetFilePoll = time.Millisecond

// newPod waits for the joiner's subnet file (weftd writes it atomically) and adds its pod.
func (cv *joiner) newPod(ctx context.Context, node int, timeout time.Duration) (*cluster.Pod, error) {
	path := cv.c.SubnetFile(node)
	deadline := time.Now().Add(timeout)
	for {
		_, err := subnetenv.Read(path)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("node %d: no subnet file within %v: %w", node, timeout, err)
		}
		time.Sleep(subnetFilePoll)
	}
	return cv.c.TryAddPod(node)
}

// leave returns when the last fixed node forgot the subnet: its route deleted (kernel
// backends) or its weft_peers gauge back to the fixed nodes' count (userspace backends).
func (cv *joiner) leave(ctx context.Context, sn netip.Prefix, after time.Time, timeout time.Duration) (time.Time, error) {
	var last time.Time
	if !cv.spec.Userspace {
		for i, rw := range cv.routes {
			at, err := rw.wait(ctx, sn, false, after, timeout)
			if err != nil {
				return time.Time{}, fmt.Errorf("node %d: %w", i, err)
			}
			if at.After(last) {
				last = at
			}
		}
		return last, nil
	}
	deadline := time.Now().Add(timeout)
	for i := range fixedNodes {
		for {
			n, err := peersGauge(ctx, cv.c.NodeNS(i))
			if err == nil && n == fixedNodes-1 {
				break
			}
			if ctx.Err() != nil {
				return time.Time{}, ctx.Err()
			}
			if time.Now().After(deadline) {
				return time.Time{}, fmt.Errorf("node %d: weft_peers %d (%v), want %d after %v", i, n, err, fixedNodes-1, timeout)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return time.Now(), nil
}
