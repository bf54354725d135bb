package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/weftnet/weft/test/cluster"
)

// underlayPhase measures node namespace to node namespace over the hub bridge, without
// weftd: the limit of this machine for everything that follows. round counts from 1.
func (r *runner) underlayPhase(ctx context.Context, p *Path, round int) {
	r.step("%s: building a 2-node cluster", p.Name)
	c, err := r.startCluster(ctx, p.Name, 2)
	if err != nil {
		r.pathFail(p, "cluster: %v", err)
		return
	}
	defer func() { r.closeCluster(roundLabel(p.Name, round), c, false, nil) }()
	from, to := c.NodeHost(0), c.NodeHost(1)
	if p.IPv6 {
		from, to = from.V6(), to.V6()
	}
	p.Endpoints = fmt.Sprintf("node0 eth0 %s -> node1 eth0 %s over the hub bridge br0 (MTU %d)", from.IP, to.IP, p.MTU)
	r.measurePath(ctx, p, from, to, nil, round)
}

// backendPhase runs weftd with spec on three fixed nodes, a pod on each, then measures pod
// (node 0) to pod (node 1): one round of throughput, and the latency and the joins until
// a round has measured them.
func (r *runner) backendPhase(ctx context.Context, spec Spec, p *Path, round int) {
	label := spec.Name
	joins := 0
	if p.Convergence == nil && !spec.IPv6 {
		joins = r.o.Joins
	}
	r.step("%s: building a %d-node cluster (%d fixed, %d for joins)", label, fixedNodes+joins, fixedNodes, joins)
	c, err := r.startCluster(ctx, label, fixedNodes+joins)
	if err != nil {
		r.pathFail(p, "cluster: %v", err)
		return
	}
	var weftds []*cluster.Weftd
	failed := len(p.Errors)
	defer func() { r.closeCluster(roundLabel(label, round), c, len(p.Errors) > failed, weftds) }()

	if err := c.TryPutConfig(spec.NetworkConfig(Network)); err != nil {
		r.pathFail(p, "%v", err)
		return
	}
	for i := range fixedNodes {
		w, err := c.TryStartNode(i, weftdOptions(c, i))
		if err != nil {
			r.pathFail(p, "%v", err)
			return
		}
		weftds = append(weftds, w)
	}
	p.WeftdArgs = weftds[0].Args()
	var pods []*cluster.Pod
	for i := range fixedNodes {
		env, err := c.WaitSubnetEnv(i, leaseWaitLimit)
		if err != nil {
			r.pathFail(p, "%v", err)
			return
		}
		p.MTU = env.MTU
		pod, err := c.TryAddPod(i)
		if err != nil {
			r.pathFail(p, "%v", err)
			return
		}
		pods = append(pods, pod)
	}
	if spec.IPv6 {
		for i, pod := range pods {
			pods[i] = pod.V6()
		}
	}
	if err := waitMesh(ctx, pods, meshWaitLimit); err != nil {
		r.pathFail(p, "pods do not reach each other: %v", err)
		return
	}
	p.Endpoints = fmt.Sprintf("pod %s on node0 -> pod %s on node1 (FLANNEL_MTU %d)", pods[0].IP, pods[1].IP, p.MTU)
	r.measurePath(ctx, p, pods[0], pods[1], weftds[:2], round)
	if joins > 0 && ctx.Err() == nil {
		conv, joiners := r.converge(ctx, c, spec, pods)
		weftds = append(weftds, joiners...)
		p.Convergence = conv
		for _, j := range conv.Joins {
			if j.Error != "" {
				r.pathFail(p, "join on node %d: %s", j.Node, j.Error)
			}
		}
	}
}

// waitMesh waits until every pod answers a ping from every other pod.
func waitMesh(ctx context.Context, pods []*cluster.Pod, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for _, from := range pods {
		for _, to := range pods {
			if from == to {
				continue
			}
			for {
				err := from.Ping(to.IP, 1, time.Second)
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("%s -> %s: %w", from, to, err)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	return nil
}

// measurePath takes round's iperf3 run at each stream count and idle latency sample, and
// the latency until a round has measured it. weftds, when given, are the processes whose
// CPU time is charged to the traffic (both ends).
func (r *runner) measurePath(ctx context.Context, p *Path, from, to *cluster.Pod, weftds []*cluster.Weftd, round int) {
	if p.Latency == nil {
		lat, err := measureLatency(ctx, from.NS, to.IP, r.o.PingCount, r.o.PingInterval)
		if err != nil {
			r.pathFail(p, "latency: %v", err)
		} else {
			p.Latency = lat
			r.step("%s: latency p50 %.3f ms, p99 %.3f ms (%d/%d replies)", p.Name, lat.RTTms.P50, lat.RTTms.P99, lat.Received, lat.Sent)
		}
	}
	if r.o.IdlePings > 0 && ctx.Err() == nil {
		lat, err := measureLatency(ctx, from.NS, to.IP, r.o.IdlePings, IdlePingInterval)
		if err != nil {
			r.pathFail(p, "idle latency (round %d): %v", round, err)
		} else {
			p.addIdle(lat)
			all := p.IdleLatency
			r.step("%s: idle latency (every %s) p50 %.3f ms, p99 %.3f ms; over %d round(s) p50 %.3f ms", p.Name, IdlePingInterval,
				lat.RTTms.P50, lat.RTTms.P99, all.Rounds, all.RTTms.P50)
		}
	}
	withCPU := p.Userspace && len(weftds) > 0
	for _, streams := range r.o.Streams {
		tp := p.throughputEntry(streams)
		if ctx.Err() != nil {
			r.pathFail(p, "throughput: %v", ctx.Err())
			return
		}
		var meter *cpuMeter
		var around func(bool)
		if withCPU {
			meter = &cpuMeter{hz: r.hz, weftds: weftds}
			around = meter.mark
		}
		run, err := iperfOnce(ctx, from, to, r.o.Duration, streams, around)
		if err != nil {
			r.pathFail(p, "throughput (-P %d, run %d): %v", streams, round, err)
			continue
		}
		if meter != nil {
			cpu, err := meter.result(run.BytesRecv)
			if err != nil {
				r.pathFail(p, "weftd CPU: %v", err)
			}
			run.WeftdCPU = cpu
		}
		tp.Runs = append(tp.Runs, run)
		tp.summarize()
		msg := fmt.Sprintf("%s: -P %d run %d/%d: %.2f Gbit/s", p.Name, streams, round, r.o.Reps, run.Gbps)
		if run.WeftdCPU != nil {
			msg += fmt.Sprintf(", weftd %.2f CPU s/GB", run.WeftdCPU.PerGB)
		}
		r.step("%s", msg)
	}
}

// roundLabel names a round's cluster in logs and in the weftd logs kept from it.
func roundLabel(label string, round int) string { return fmt.Sprintf("%s-round%d", label, round) }

// throughputEntry returns p's entry for a stream count, adding it on first use.
func (p *Path) throughputEntry(streams int) *Throughput {
	for _, tp := range p.Throughput {
		if tp.Streams == streams {
			return tp
		}
	}
	tp := &Throughput{Streams: streams}
	p.Throughput = append(p.Throughput, tp)
	return tp
}

// summarize fills Gbps and CPUPerGB from the runs.
func (tp *Throughput) summarize() {
	var gbps, cpu []float64
	for _, run := range tp.Runs {
		gbps = append(gbps, run.Gbps)
		if run.WeftdCPU != nil {
			cpu = append(cpu, run.WeftdCPU.PerGB)
		}
	}
	tp.Gbps = Summarize(gbps)
	if len(cpu) > 0 {
		s := Summarize(cpu)
		tp.CPUPerGB = &s
	}
}

// cpuMeter reads the weftd processes' CPU time around one iperf3 run.
type cpuMeter struct {
	hz     int64
	weftds []*cluster.Weftd
	pids   []int
	before []uint64
	after  []uint64
	t0, t1 time.Time
	err    error
}

// mark is called just before (start) and just after the client runs.
func (m *cpuMeter) mark(start bool) {
	now := time.Now()
	var ticks []uint64
	for i, w := range m.weftds {
		pid := w.PID()
		if start {
			m.pids = append(m.pids, pid)
		} else if pid != m.pids[i] {
			m.err = fmt.Errorf("weftd on node %d restarted during the run (pid %d -> %d)", w.Node(), m.pids[i], pid)
		}
		t, err := procCPUTicks(pid)
		if err != nil && m.err == nil {
			m.err = fmt.Errorf("weftd on node %d: %w", w.Node(), err)
		}
		ticks = append(ticks, t)
	}
	if start {
		m.before, m.t0 = ticks, now
	} else {
		m.after, m.t1 = ticks, now
	}
}

// result is the CPU time per end and per GB received.
func (m *cpuMeter) result(bytes int64) (*CPU, error) {
	if m.err != nil {
		return nil, m.err
	}
	if len(m.after) != len(m.weftds) || len(m.before) != len(m.weftds) {
		return nil, fmt.Errorf("CPU not read around the run")
	}
	cpu := &CPU{Interval: m.t1.Sub(m.t0).Seconds()}
	for i, w := range m.weftds {
		s := float64(m.after[i]-m.before[i]) / float64(m.hz)
		cpu.Ends = append(cpu.Ends, ProcCPU{Node: w.Node(), PID: m.pids[i], Seconds: s})
		cpu.Seconds += s
	}
	if bytes > 0 {
		cpu.PerGB = cpu.Seconds / (float64(bytes) / 1e9)
	}
	return cpu, nil
}
