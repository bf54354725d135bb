package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"

	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/test/cluster"
)

const (
	// fakePublicIPs holds the fake peers' PublicIPs: RFC 2544's benchmarking range. vxlan
	// needs no route to a peer's PublicIP to program it (the FDB entry's dst is just an
	// address), and nothing is ever sent to these peers: no traffic goes to their subnets.
	fakePublicIPs = "198.18.0.0/15"
	scaleWriters  = 16
	scaleLeaseTTL = 3600 // seconds; the fake leases outlive the test, which deletes etcd
	scalePoll     = 50 * time.Millisecond

	scaleMethod = "One weftd (vxlan) on one node; the fake peers' leases are written concurrently " +
		"(16 writers, one etcd TTL lease shared by all) with subnets of " + ScaleNetwork + ", PublicIPs " +
		"from " + fakePublicIPs + " and made-up VtepMACs. Programmed: polled every 50 ms, weft_peers from " +
		"/metrics, and the kernel's main-table routes through flannel.1 (netlink dump), both timed from the " +
		"first write. Join/leave at size: one more lease Put (Delete), from the bench's request (etcd's " +
		"commit included) to the route's netlink notification. Restart: weftd stopped, flannel.1 deleted (its routes go with it, as after a " +
		"reboot), weftd started: from the start until every route is back."
)

// scalePhase measures one weftd with r.o.Scale fake peers.
func (r *runner) scalePhase(ctx context.Context) *Scale {
	s := &Scale{Peers: r.o.Scale, Backend: "vxlan", Network: ScaleNetwork, PublicIPs: fakePublicIPs, Method: scaleMethod,
		PeersKnownS: -1, RoutesS: -1, RoutesAfterLast: -1, JoinMs: -1, LeaveMs: -1, RestartRoutesS: -1, RestartPeersS: -1}
	fail := func(format string, a ...any) {
		msg := fmt.Sprintf(format, a...)
		s.Errors = append(s.Errors, msg)
		r.fail("scale: %s", msg)
	}
	r.step("scale: building a 1-node cluster, vxlan over %s", ScaleNetwork)
	c, err := r.startCluster(ctx, "scale", 1)
	if err != nil {
		fail("cluster: %v", err)
		return s
	}
	var w *cluster.Weftd
	defer func() { r.closeCluster("scale", c, len(s.Errors) > 0, []*cluster.Weftd{w}) }()
	spec, _ := SpecFor("vxlan")
	if err := c.TryPutConfig(spec.NetworkConfig(ScaleNetwork)); err != nil {
		fail("%v", err)
		return s
	}
	if w, err = c.TryStartNode(0, weftdOptions(c, 0)); err != nil {
		fail("%v", err)
		return s
	}
	env, err := c.WaitSubnetEnv(0, leaseWaitLimit)
	if err != nil {
		fail("%v", err)
		return s
	}
	if s.RSSIdleKiB, err = procRSSKiB(w.PID()); err != nil {
		fail("rss: %v", err)
	}
	cli, err := c.Etcd(ctx)
	if err != nil {
		fail("%v", err)
		return s
	}
	defer cli.Close()
	network := netip.MustParsePrefix(ScaleNetwork)
	leases, err := fakeLeases(network, env.Subnet.Masked(), r.o.Scale+1)
	if err != nil {
		fail("%v", err)
		return s
	}
	extra, leases := leases[r.o.Scale], leases[:r.o.Scale]
	ns := c.NodeNS(0)
	prefix := c.Prefix() + "/subnets/"

	// Program them all.
	grant, err := cli.Grant(ctx, scaleLeaseTTL)
	if err != nil {
		fail("etcd lease grant: %v", err)
		return s
	}
	cpu0, _ := procCPUTicks(w.PID())
	first := time.Now()
	// A measured starting point for the progress chart: nothing is programmed yet.
	if peers, perr := peersGauge(ctx, ns); perr == nil {
		routes, _, _, _ := vxlanCounts(ns, network, false)
		s.Progress = append(s.Progress, ScaleSample{S: 0, Peers: peers, Routes: routes})
	}
	if err := putLeases(ctx, cli, prefix, grant.ID, leases); err != nil {
		fail("writing leases: %v", err)
		return s
	}
	last := time.Now()
	s.WriteS = last.Sub(first).Seconds()
	r.step("scale: %d leases written in %.2f s", len(leases), s.WriteS)
	peersAt, routesAt, samples := r.pollProgrammed(ctx, ns, network, first, r.o.Scale)
	s.Progress = append(s.Progress, samples...)
	if !peersAt.IsZero() {
		s.PeersKnownS = peersAt.Sub(first).Seconds()
	}
	if routesAt.IsZero() {
		got := 0
		if len(samples) > 0 {
			got = samples[len(samples)-1].Routes
		}
		fail("%d of %d routes programmed within %v", got, r.o.Scale, r.o.ScaleTimeout)
	} else {
		s.RoutesS = routesAt.Sub(first).Seconds()
		s.RoutesAfterLast = routesAt.Sub(last).Seconds()
	}
	cpu1, _ := procCPUTicks(w.PID())
	s.WeftdCPUS = float64(cpu1-cpu0) / float64(r.hz)
	s.Routes, s.Neighbours, s.FDB, err = vxlanCounts(ns, network, true)
	if err != nil {
		fail("%v", err)
	}
	if s.RSSKiB, err = procRSSKiB(w.PID()); err != nil {
		fail("rss: %v", err)
	}
	r.step("scale: %d peers known after %.2f s, routes after %.2f s; weftd %.2f CPU s, RSS %d KiB",
		r.o.Scale, s.PeersKnownS, s.RoutesS, s.WeftdCPUS, s.RSSKiB)

	// One join and one leave at that size.
	if jl, err := r.joinLeaveAtSize(ctx, cli, ns, prefix, grant.ID, extra); err != nil {
		fail("join/leave at size: %v", err)
	} else {
		s.JoinMs, s.LeaveMs = jl[0], jl[1]
		r.step("scale: one more join %.1f ms, one leave %.1f ms", s.JoinMs, s.LeaveMs)
	}

	// Restart from a node without flannel.1.
	if err := w.Stop(); err != nil {
		r.logf("scale: weftd stop: %v", err)
	}
	if _, err := c.ExecContext(ctx, ns, "ip", "link", "del", "flannel.1"); err != nil {
		fail("%v", err)
		return s
	}
	start := time.Now()
	if err := w.Start(); err != nil {
		fail("restart: %v", err)
		return s
	}
	peersAt, routesAt, _ = r.pollProgrammed(ctx, ns, network, start, r.o.Scale)
	if !peersAt.IsZero() {
		s.RestartPeersS = peersAt.Sub(start).Seconds()
	}
	if routesAt.IsZero() {
		fail("after restart: routes not all back within %v", r.o.ScaleTimeout)
	} else {
		s.RestartRoutesS = routesAt.Sub(start).Seconds()
	}
	if s.RestartRSSKiB, err = procRSSKiB(w.PID()); err != nil {
		fail("rss: %v", err)
	}
	r.step("scale: after a restart without flannel.1, all routes back in %.2f s, RSS %d KiB", s.RestartRoutesS, s.RestartRSSKiB)
	return s
}

// pollProgrammed polls weft_peers and the route count until both reach want or the scale
// timeout passes; zero times mean "not reached".
func (r *runner) pollProgrammed(ctx context.Context, ns string, network netip.Prefix, from time.Time, want int) (peersAt, routesAt time.Time, samples []ScaleSample) {
	deadline := from.Add(r.o.ScaleTimeout)
	for {
		now := time.Now()
		peers, perr := peersGauge(ctx, ns)
		routes, _, _, rerr := vxlanCounts(ns, network, false)
		samples = append(samples, ScaleSample{S: now.Sub(from).Seconds(), Peers: peers, Routes: routes})
		if perr == nil && peers >= want && peersAt.IsZero() {
			peersAt = now
		}
		if rerr == nil && routes >= want && routesAt.IsZero() {
			routesAt = now
		}
		if (!peersAt.IsZero() && !routesAt.IsZero()) || now.After(deadline) || ctx.Err() != nil {
			return peersAt, routesAt, samples
		}
		time.Sleep(scalePoll)
	}
}

// joinLeaveAtSize writes one more lease and deletes it, timing the route each time from
// the bench's request (etcd's commit included; the watch only confirms the change).
func (r *runner) joinLeaveAtSize(ctx context.Context, cli *clientv3.Client, ns, prefix string, ttl clientv3.LeaseID, l subnet.Lease) ([2]float64, error) {
	var out [2]float64
	rw, err := watchRoutes(ns)
	if err != nil {
		return out, err
	}
	defer rw.Close()
	key := prefix + l.Key()
	value, err := json.Marshal(l.Attrs)
	if err != nil {
		return out, err
	}
	get, err := cli.Get(ctx, key)
	if err != nil {
		return out, err
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ws := &watchStream{ch: cli.Watch(wctx, key, clientv3.WithRev(get.Header.Revision+1))}
	for i, put := range []bool{true, false} {
		t0 := time.Now() // the bench writes the change: t0 is its request
		if put {
			_, err = cli.Put(ctx, key, string(value), clientv3.WithLease(ttl))
		} else {
			_, err = cli.Delete(ctx, key)
		}
		if err != nil {
			return out, err
		}
		want := mvccpb.DELETE
		if put {
			want = mvccpb.PUT
		}
		if _, _, err := ws.next(ctx, r.o.JoinTimeout, func(ev *clientv3.Event) bool { return ev.Type == want }); err != nil {
			return out, fmt.Errorf("watch: %w", err)
		}
		at, err := rw.wait(ctx, l.Subnet, put, t0, r.o.JoinTimeout)
		if err != nil {
			return out, err
		}
		out[i] = ms(at.Sub(t0))
	}
	return out, nil
}

// fakeLeases returns n vxlan leases for subnets of network other than own, in order from
// the network's second /24, with PublicIPs from fakePublicIPs and locally administered
// VtepMACs. It is pure.
func fakeLeases(network, own netip.Prefix, n int) ([]subnet.Lease, error) {
	pubs := netip.MustParsePrefix(fakePublicIPs)
	sn := netip.PrefixFrom(network.Addr(), 24)
	pub := pubs.Addr()
	var out []subnet.Lease
	for i := 0; len(out) < n; i++ {
		sn = nextSubnet(sn)
		if !network.Contains(sn.Addr()) {
			return nil, fmt.Errorf("%s has no %d free /24 subnets", network, n)
		}
		if sn == own {
			continue
		}
		pub = pub.Next()
		for b := pub.As4(); b[3] == 0 || b[3] == 255; b = pub.As4() { // readability only
			pub = pub.Next()
		}
		if !pubs.Contains(pub) {
			return nil, fmt.Errorf("%s has no %d addresses", fakePublicIPs, n)
		}
		k := len(out) + 1
		mac := net.HardwareAddr{0x0a, 0xfe, byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)}
		data := fmt.Sprintf(`{"VNI":1,"VtepMAC":%q}`, mac.String())
		out = append(out, subnet.Lease{Subnet: sn, Attrs: subnet.LeaseAttrs{
			PublicIP: pub, BackendType: "vxlan", BackendData: json.RawMessage(data)}})
	}
	return out, nil
}

// nextSubnet is the /24 after sn.
func nextSubnet(sn netip.Prefix) netip.Prefix {
	b := sn.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += 1 << (32 - sn.Bits())
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), sn.Bits())
}

// putLeases writes the leases with scaleWriters concurrent writers, all attached to the
// etcd TTL lease ttl (as nodes' leases carry TTLs; weftd treats TTL-less keys as
// reservations).
func putLeases(ctx context.Context, cli *clientv3.Client, prefix string, ttl clientv3.LeaseID, leases []subnet.Lease) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(scaleWriters)
	for _, l := range leases {
		value, err := json.Marshal(l.Attrs)
		if err != nil {
			return err
		}
		key := prefix + l.Key()
		g.Go(func() error {
			if _, err := cli.Put(gctx, key, string(value), clientv3.WithLease(ttl)); err != nil {
				return fmt.Errorf("put %s: %w", key, err)
			}
			return nil
		})
	}
	return g.Wait()
}
