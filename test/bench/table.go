package bench

import (
	"fmt"
	"strings"
)

// derive fills the ratios: each path's median throughput and p50 latency against the
// underlay's of its family (IPv6 paths against underlay-v6), and udp batched against udp
// Batch:false. It is pure.
func derive(res *Results) {
	for _, p := range res.Paths {
		under := res.path("underlay")
		if p.IPv6 {
			under = res.path("underlay-v6")
		}
		if p.Kind == "underlay" || under == nil {
			continue
		}
		for _, tp := range p.Throughput {
			if u := under.throughput(tp.Streams); u != nil {
				tp.RatioToUnderlay = Ratio(tp.Gbps.Median, u.Gbps.Median)
			}
		}
		if p.Latency != nil && under.Latency != nil {
			p.Latency.RatioToUnderlay = Ratio(p.Latency.RTTms.P50, under.Latency.RTTms.P50)
		}
	}
	for _, under := range []*Path{res.path("underlay"), res.path("underlay-v6")} {
		if under != nil && under.Latency != nil {
			under.Latency.RatioToUnderlay = 1
			for _, tp := range under.Throughput {
				tp.RatioToUnderlay = Ratio(tp.Gbps.Median, tp.Gbps.Median)
			}
		}
	}
	for _, p := range res.Paths {
		vx := res.path("vxlan")
		if p.IPv6 {
			vx = res.path("vxlan-v6")
		}
		if p.IdleLatency != nil && vx != nil && vx.IdleLatency != nil {
			p.IdleLatency.RatioToVXLAN = Ratio(p.IdleLatency.RTTms.P50, vx.IdleLatency.RTTms.P50)
		}
	}
	batched, plain := res.path("udp"), res.path("udp-nobatch")
	if batched == nil || plain == nil {
		return
	}
	br := &BatchRatio{}
	for _, tp := range batched.Throughput {
		q := plain.throughput(tp.Streams)
		if q == nil {
			continue
		}
		at := BatchRatioAt{Streams: tp.Streams, Throughput: Ratio(tp.Gbps.Median, q.Gbps.Median)}
		if tp.CPUPerGB != nil && q.CPUPerGB != nil {
			at.CPUPerGB = Ratio(tp.CPUPerGB.Median, q.CPUPerGB.Median)
		}
		br.Streams = append(br.Streams, at)
	}
	if len(br.Streams) > 0 {
		res.BatchRatio = br
	}
}

func (res *Results) path(name string) *Path {
	for _, p := range res.Paths {
		if p.Name == name && p.Skipped == "" {
			return p
		}
	}
	return nil
}

func (p *Path) throughput(streams int) *Throughput {
	for _, tp := range p.Throughput {
		if tp.Streams == streams && tp.Gbps.N > 0 {
			return tp
		}
	}
	return nil
}

// FormatTable renders the results as the text table the run prints. It is pure.
func FormatTable(res *Results) string {
	var b strings.Builder
	pf := func(f string, a ...any) { fmt.Fprintf(&b, f, a...) }
	o := res.Options
	quick := ""
	if o.Quick {
		quick = "  (QUICK: smoke-test settings, figures mean little)"
	}
	m := res.Machine
	pf("weft benchmark %s, %.0f s%s\n", res.Started.Format("2006-01-02 15:04:05"), res.Seconds, quick)
	pf("machine: %d CPUs (%s), kernel %s, %s, %s; load average at start %s\n",
		m.NProc, orDash(m.CPUModel), orDash(firstWord(m.Kernel)), orDash(m.GoVersion), orDash(m.Iperf3Version), orDash(m.LoadAvgStart))
	pf("source: %s (%d modified files); weftd: %s\n", orDash(m.Source), m.SourceChanged, orDash(m.WeftdVersion))
	pf("results: %s\n", res.Dir)
	pf("paths: underlay = node to node over the hub bridge, no weftd; the others pod (node 0) to pod (node 1);\n")
	pf("       -v6 = over IPv6 (a dual-stack network; its x against underlay-v6);\n")
	pf("       udp = udp Batch:true, udp-nobatch = udp Batch:false, gre = gre Mode:userspace\n")

	pf("\nTCP throughput (iperf3 -t %g, %d run(s) each, in interleaved rounds): Gbit/s median [min-max], x = median / underlay median\n", o.DurationS, o.Reps)
	pf("%-12s %5s", "path", "MTU")
	for _, s := range o.Streams {
		pf("  %-26s", fmt.Sprintf("%d stream(s)", s))
	}
	pf("\n")
	for _, p := range res.Paths {
		pf("%-12s %5s", p.Name, mtuText(p.MTU))
		if p.Skipped != "" {
			pf("  skipped: %s\n", p.Skipped)
			continue
		}
		for _, s := range o.Streams {
			tp := p.throughput(s)
			if tp == nil {
				pf("  %-26s", "-")
				continue
			}
			pf("  %-26s", fmt.Sprintf("%s x%.2f", spread(tp.Gbps, "%.2f"), tp.RatioToUnderlay))
		}
		pf("\n")
	}

	if hasCPU(res) {
		pf("\nweftd CPU seconds per GB received (both ends, utime+stime / 10^9 bytes): median [min-max]\n")
		pf("%-12s", "path")
		for _, s := range o.Streams {
			pf("  %-22s", fmt.Sprintf("%d stream(s)", s))
		}
		pf("\n")
		for _, p := range res.Paths {
			if !p.Userspace || p.Skipped != "" {
				continue
			}
			pf("%-12s", p.Name)
			for _, s := range o.Streams {
				tp := p.throughput(s)
				if tp == nil || tp.CPUPerGB == nil {
					pf("  %-22s", "-")
					continue
				}
				pf("  %-22s", spread(*tp.CPUPerGB, "%.2f"))
			}
			pf("\n")
		}
	}
	if br := res.BatchRatio; br != nil {
		pf("\nudp batched / udp Batch:false:")
		for _, at := range br.Streams {
			pf("  %d stream(s): throughput x%.2f, CPU per GB x%.2f;", at.Streams, at.Throughput, at.CPUPerGB)
		}
		pf("\n")
	}

	pf("\nRound trip time (ping -c %d -i %gs): ms, x = p50 / underlay p50\n", o.PingCount, o.PingIntervalMs/1000)
	pf("%-12s %8s %8s %8s %8s %9s %7s\n", "path", "p50", "p99", "min", "max", "replies", "x")
	for _, p := range res.Paths {
		l := p.Latency
		if l == nil || l.RTTms.N == 0 {
			pf("%-12s %8s\n", p.Name, "-")
			continue
		}
		pf("%-12s %8.3f %8.3f %8.3f %8.3f %9s %7.2f\n", p.Name, l.RTTms.P50, l.RTTms.P99, l.RTTms.Min, l.RTTms.Max,
			fmt.Sprintf("%d/%d", l.Received, l.Sent), l.RatioToUnderlay)
	}

	if o.IdlePings > 0 {
		pf("\nIdle round trip time (ping -c %d -i %gs in each of %d round(s), pooled: one request at a time, as a request/response service sees an idle path): ms, x = p50 / vxlan p50 (IPv6 rows: / vxlan-v6 p50)\n",
			o.IdlePings, IdlePingInterval.Seconds(), max(o.Reps, 1))
		pf("%-12s %8s %8s %8s %8s %9s %7s\n", "path", "p50", "p99", "min", "max", "replies", "x vxlan")
		for _, p := range res.Paths {
			l := p.IdleLatency
			if l == nil || l.RTTms.N == 0 {
				pf("%-12s %8s\n", p.Name, "-")
				continue
			}
			pf("%-12s %8.3f %8.3f %8.3f %8.3f %9s %7.2f\n", p.Name, l.RTTms.P50, l.RTTms.P99, l.RTTms.Min, l.RTTms.Max,
				fmt.Sprintf("%d/%d", l.Received, l.Sent), l.RatioToVXLAN)
		}
	}

	if o.Joins > 0 {
		pf("\nConvergence over %d joins: ms, p50 / p99 over the joins of each join's last node or pod\n", o.Joins)
		pf("  nodes: new lease in etcd -> every other node has the peer\n")
		pf("  pods: new lease in etcd -> every pod reaches the new pod (includes the bench making that pod)\n")
		pf("  after pod: the new pod made -> every pod reaches it\n")
		pf("  leave: the bench's request deleting the lease -> every node forgot it\n")
		pf("  lease: weftd started -> its lease in etcd\n")
		pf("%-12s %5s %16s %16s %16s %16s %16s\n", "backend", "joins", "nodes", "pods", "after pod", "leave", "lease")
		for _, p := range res.Paths {
			c := p.Convergence
			if c == nil {
				continue
			}
			pf("%-12s %5d %16s %16s %16s %16s %16s\n", p.Name, c.NodesMs.N, pq(c.NodesMs), pq(c.PodsMs), pq(c.PodsAfterPodMs), pq(c.LeaveMs), pq(c.LeaseMs))
		}
	}

	if s := res.Scale; s != nil {
		pf("\nScale: one weftd (%s) and %d fake peers (%s)\n", s.Backend, s.Peers, s.Network)
		pf("  leases written in %.2f s; weft_peers = %d after %s; every route after %s (%s after the last write)\n",
			s.WriteS, s.Peers, secs(s.PeersKnownS), secs(s.RoutesS), secs(s.RoutesAfterLast))
		pf("  weftd CPU while programming %.2f s; RSS %s idle, %s with %d peers, %s after the restart\n",
			s.WeftdCPUS, mib(s.RSSIdleKiB), mib(s.RSSKiB), s.Peers, mib(s.RestartRSSKiB))
		pf("  at that size: one more join %s, one leave %s (the bench's etcd request to the kernel's route)\n", msText(s.JoinMs), msText(s.LeaveMs))
		pf("  restart after deleting flannel.1: every route back %s after weftd started (weft_peers after %s)\n",
			secs(s.RestartRoutesS), secs(s.RestartPeersS))
		pf("  kernel state on flannel.1: %d routes, %d neighbours, %d FDB entries\n", s.Routes, s.Neighbours, s.FDB)
	}

	b.WriteString(kubeScaleText(res.KubeScale))

	if len(res.Errors) > 0 {
		pf("\nERRORS (measurements that could not be made):\n")
		for _, e := range res.Errors {
			pf("  - %s\n", e)
		}
	}
	return b.String()
}

func hasCPU(res *Results) bool {
	for _, p := range res.Paths {
		for _, tp := range p.Throughput {
			if tp.CPUPerGB != nil {
				return true
			}
		}
	}
	return false
}

func spread(s Summary, f string) string {
	if s.N == 0 {
		return "-"
	}
	return fmt.Sprintf(f+" ["+f+"-"+f+"]", s.Median, s.Min, s.Max)
}

func pq(s Summary) string {
	if s.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f / %.1f", s.P50, s.P99)
}

func secs(v float64) string {
	if v < 0 {
		return "(not reached)"
	}
	return fmt.Sprintf("%.2f s", v)
}

func msText(v float64) string {
	if v < 0 {
		return "(not measured)"
	}
	return fmt.Sprintf("%.1f ms", v)
}

func mib(kib int64) string {
	if kib <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(kib)/1024)
}

func mtuText(mtu int) string {
	if mtu == 0 {
		return "-"
	}
	return fmt.Sprint(mtu)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func firstWord(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
