package kernel_test

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/pkg/ip"
)

// v6Node is node a of TwoNodes with IPv6 underlay addresses (2001:db8::1 and ::2) and an
// IPv6 VXLAN device vx6, as flannel-v6.<VNI> is made. It returns a's handle and the
// indexes of vx6 and eth0.
func v6Node(t *testing.T) (a kerneltest.Node, h *kernel.Handle, vx, eth int) {
	t.Helper()
	a, b := kerneltest.TwoNodes(t)
	kerneltest.MustRun(t, a.NS, "ip", "addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad")
	kerneltest.MustRun(t, b.NS, "ip", "addr", "add", "2001:db8::2/64", "dev", "eth0", "nodad")
	kerneltest.MustRun(t, a.NS, "ip", "link", "add", "vx6", "type", "vxlan", "id", "8", "local", "2001:db8::1",
		"dev", "eth0", "dstport", "8472", "nolearning")
	kerneltest.MustRun(t, a.NS, "ip", "link", "set", "vx6", "up")
	h = openIn(t, a.NS)
	return a, h, linkIndex(t, h, "vx6"), linkIndex(t, h, "eth0")
}

// batchPeers6 are IPv6 vxlan-style peers: fd00:0:0:<i>::/64 via fd00:0:0:<i>:: onlink,
// metric 1024, remote 2001:db8::1:<i>.
func batchPeers6(n int) []batchPeer {
	var ps []batchPeer
	for i := range n {
		sn := netip.PrefixFrom(netip.AddrFrom16([16]byte{0: 0xfd, 7: byte(i + 1)}), 64)
		ps = append(ps, batchPeer{sn: sn, mac: net.HardwareAddr{2, 0, 0, 0, 6, byte(i)},
			pub: netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 13: 1, 15: byte(i + 1)}), vtep: sn.Addr()})
	}
	return ps
}

// deleteAll deletes each peer's route, neighbour and FDB entry through b.
func deleteAll(t *testing.T, b *kernel.Batch, dev int, ps []batchPeer) {
	t.Helper()
	for _, p := range ps {
		for _, err := range []error{b.DeleteRoute(p.sn, dev), b.DeleteNeigh(dev, p.vtep), b.DeleteFDB(dev, p.mac, p.pub)} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// routeChanges counts the route, neighbour and FDB changes on ch until it is quiet for
// quiet (at most 2 s).
func routeChanges(ch <-chan kernel.Change, quiet time.Duration) (n int, last kernel.Change) {
	stop := time.After(2 * time.Second)
	for {
		select {
		case c := <-ch:
			// The kernel's own routes for the link-local addresses it adds (local table,
			// fe80::/64) come when it likes (after DAD, later on a loaded machine): they
			// are not the batch's.
			kernels := c.Kind == kernel.RouteChange && (c.Table == 255 || c.Prefix.Addr().IsLinkLocalUnicast())
			if !kernels && (c.Kind == kernel.RouteChange || c.Kind == kernel.NeighChange || c.Kind == kernel.FDBChange) {
				n, last = n+1, c
			}
		case <-time.After(quiet):
			return n, last
		case <-stop:
			return n, last
		}
	}
}

// TestIPv6BatchProgramsChecksAndStaysIdle: an IPv6 Batch writes IPv6 routes (metric 1024,
// given or not), NDP neighbours and FDB entries with IPv6 remotes, a second pass finds them
// all and writes nothing, and IPv4 entries are refused with an error naming them.
func TestIPv6BatchProgramsChecksAndStaysIdle(t *testing.T) {
	_, h, vx, _ := v6Node(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes, err := h.Subscribe(ctx, kernel.IPv6)
	if err != nil {
		t.Fatal(err)
	}
	ps := batchPeers6(3)
	b := h.NewFamilyBatch(kernel.IPv6)
	if b.Family() != kernel.IPv6 {
		t.Fatalf("Family = %v", b.Family())
	}
	checkAll(t, b, vx, ps, false)
	ensureAll(t, b, vx, ps) // written with metric 0: the kernel lists 1024
	checkAll(t, b, vx, ps, true)
	if n, _ := routeChanges(changes, 200*time.Millisecond); n < 9 {
		t.Fatalf("programming 3 IPv6 peers made %d route/neighbour/fdb notifications, want 9", n)
	}

	b = h.NewFamilyBatch(kernel.IPv6)
	checkAll(t, b, vx, ps, true)
	ensureAll(t, b, vx, ps)
	for _, p := range ps {
		r := p.route(vx)
		r.Priority = 1024
		if err := b.EnsureRoute(r); err != nil {
			t.Fatal(err)
		}
	}
	if n, last := routeChanges(changes, 200*time.Millisecond); n != 0 {
		t.Fatalf("a second pass over programmed IPv6 peers made %d changes (last %v)", n, last)
	}

	v4 := netip.MustParseAddr("10.244.2.0")
	for name, err := range map[string]error{
		"route":     b.EnsureRoute(&netlink.Route{LinkIndex: vx, Dst: ip.IPNet(netip.MustParsePrefix("10.244.2.0/24"))}),
		"neighbour": b.EnsureNeigh(vx, v4, ps[0].mac),
		"fdb":       b.EnsureFDB(vx, ps[0].mac, netip.MustParseAddr("192.0.2.2")),
		"delete":    b.DeleteRoute(netip.MustParsePrefix("10.244.2.0/24"), vx),
	} {
		if err == nil || !strings.Contains(err.Error(), "not an IPv6") {
			t.Errorf("%s of an IPv4 entry in an IPv6 batch: %v", name, err)
		}
	}
	if err := h.NewBatch().EnsureNeigh(vx, ps[0].vtep, ps[0].mac); err == nil || !strings.Contains(err.Error(), ps[0].vtep.String()) {
		t.Errorf("IPv6 neighbour in an IPv4 batch: %v", err)
	}
	if err := h.NewFamilyBatch(kernel.Family(99)).EnsureRoute(ps[0].route(vx)); err == nil || !strings.Contains(err.Error(), "99") {
		t.Errorf("a batch of family 99: %v", err)
	}

	// Deletes need no dump and leave nothing.
	deleteAll(t, h.NewFamilyBatch(kernel.IPv6), vx, ps)
	checkAll(t, h.NewFamilyBatch(kernel.IPv6), vx, ps, false)
}

// TestIPv6BatchMovesOnlinkRoute: a route that someone moved to another device is put back
// on its own, although the kernel refuses to replace an IPv6 onlink route across devices.
func TestIPv6BatchMovesOnlinkRoute(t *testing.T) {
	a, h, vx, _ := v6Node(t)
	kerneltest.MustRun(t, a.NS, "ip", "link", "add", "dum0", "type", "bridge")
	kerneltest.MustRun(t, a.NS, "ip", "link", "set", "dum0", "up")
	p := batchPeers6(1)[0]
	kerneltest.MustRun(t, a.NS, "ip", "-6", "route", "add", p.sn.String(), "via", p.vtep.String(), "dev", "dum0", "onlink", "metric", "1024")
	b := h.NewFamilyBatch(kernel.IPv6)
	if ok, err := b.HasRoute(p.route(vx)); err != nil || ok {
		t.Fatalf("HasRoute of the moved route = %v, %v", ok, err)
	}
	if err := b.EnsureRoute(p.route(vx)); err != nil {
		t.Fatal(err)
	}
	out := kerneltest.MustRun(t, a.NS, "ip", "-6", "route", "show", p.sn.String())
	if !strings.Contains(out, "dev vx6") || strings.Contains(out, "dum0") || !strings.Contains(out, "metric 1024") {
		t.Fatalf("routes after the repair: %q", out)
	}
	if ok, err := h.NewFamilyBatch(kernel.IPv6).HasRoute(p.route(vx)); err != nil || !ok {
		t.Fatalf("HasRoute after the repair = %v, %v", ok, err)
	}
}

// TestFamilyBatchesSeeTheirFamilyOnly: each Batch's dumps and sweeps list its own family's
// routes and neighbours, so sweeping one family never touches the other.
func TestFamilyBatchesSeeTheirFamilyOnly(t *testing.T) {
	a, h, vx, eth := v6Node(t)
	ensureAll(t, h.NewFamilyBatch(kernel.IPv6), vx, batchPeers6(2))
	for _, argv := range []string{
		"ip route add 10.244.9.0/24 via 192.0.2.2 dev eth0",
		"ip neigh add 192.0.2.77 lladdr 02:00:00:00:00:77 dev eth0 nud permanent",
		"ip -6 route add fd00:0:0:9::/64 via 2001:db8::2 dev eth0",
		"ip -6 neigh add 2001:db8::77 lladdr 02:00:00:00:00:78 dev eth0 nud permanent",
	} {
		kerneltest.MustRun(t, a.NS, strings.Fields(argv)...)
	}
	for _, f := range []kernel.Family{kernel.IPv4, kernel.IPv6} {
		b := h.NewFamilyBatch(f)
		var routes, neighs int
		if _, err := b.SweepRoutes(0, func(r kernel.ListedRoute) bool {
			routes++
			if kernel.FamilyOf(r.Dst.Addr()) != f || (r.Gw.IsValid() && kernel.FamilyOf(r.Gw) != f) {
				t.Errorf("%v batch lists route %+v", f, r)
			}
			return false
		}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.SweepNeighs(eth, func(n kernel.ListedNeigh) bool {
			neighs++
			if kernel.FamilyOf(n.Addr) != f {
				t.Errorf("%v batch lists neighbour %+v", f, n)
			}
			return false
		}); err != nil {
			t.Fatal(err)
		}
		if routes == 0 || neighs == 0 {
			t.Errorf("%v batch listed %d routes and %d neighbours", f, routes, neighs)
		}
	}

	// An IPv6 sweep deletes exactly the IPv6 routes and neighbours it picks.
	b := h.NewFamilyBatch(kernel.IPv6)
	got, err := b.SweepRoutes(eth, func(r kernel.ListedRoute) bool { return r.Gw == netip.MustParseAddr("2001:db8::2") })
	if err != nil || len(got) != 1 || got[0].Dst != netip.MustParsePrefix("fd00:0:0:9::/64") || got[0].Priority != 1024 {
		t.Fatalf("SweepRoutes(eth0, via 2001:db8::2) = %+v, %v", got, err)
	}
	gotN, err := b.SweepNeighs(eth, func(n kernel.ListedNeigh) bool { return n.Permanent })
	if err != nil || len(gotN) != 1 || gotN[0].Addr != netip.MustParseAddr("2001:db8::77") {
		t.Fatalf("SweepNeighs(eth0, permanent) = %+v, %v", gotN, err)
	}
	gotF, err := b.SweepFDB(vx, func(f kernel.ListedFDB) bool { return f.Dst == batchPeers6(2)[1].pub })
	if err != nil || len(gotF) != 1 {
		t.Fatalf("SweepFDB(vx6) = %+v, %v", gotF, err)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "route", "show", "10.244.9.0/24"); !strings.Contains(out, "192.0.2.2") {
		t.Fatalf("the IPv4 route went with the IPv6 sweep: %q", out)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "neigh", "show", "192.0.2.77", "dev", "eth0"); !strings.Contains(out, "PERMANENT") {
		t.Fatalf("the IPv4 neighbour went with the IPv6 sweep: %q", out)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "-6", "route", "show", "fd00:0:0:9::/64"); out != "" {
		t.Fatalf("swept IPv6 route still there: %q", out)
	}
}

// TestEnsureSoleAddrIPv6: the IPv6 address is added without DAD (usable at once), other
// IPv6 addresses go, the link-local and the IPv4 address stay, and a second call writes
// nothing.
func TestEnsureSoleAddrIPv6(t *testing.T) {
	a, h, vx, _ := v6Node(t)
	kerneltest.MustRun(t, a.NS, "ip", "addr", "add", "10.244.1.0/32", "dev", "vx6")
	kerneltest.MustRun(t, a.NS, "ip", "addr", "add", "fd00:0:0:7::/128", "dev", "vx6", "nodad")
	p := netip.MustParsePrefix("fd00:0:0:1::/128")
	if err := h.EnsureSoleAddr(vx, p); err != nil {
		t.Fatal(err)
	}
	out := kerneltest.MustRun(t, a.NS, "ip", "-6", "addr", "show", "dev", "vx6")
	if !strings.Contains(out, "fd00:0:0:1::/128") || strings.Contains(out, "fd00:0:0:7::") || !strings.Contains(out, "fe80::") {
		t.Fatalf("IPv6 addresses of vx6: %q", out)
	}
	as, err := h.AddrsOf(vx, kernel.IPv6)
	if err != nil || len(as) != 1 || !as[0].IP.Equal(net.IP(p.Addr().AsSlice())) ||
		as[0].Flags&unix.IFA_F_NODAD == 0 || as[0].Flags&unix.IFA_F_TENTATIVE != 0 {
		t.Fatalf("AddrsOf(vx6, IPv6) = %v, %v", as, err)
	}
	if v4, err := h.Addrs(vx); err != nil || len(v4) != 1 {
		t.Fatalf("the IPv4 address went: %v, %v", v4, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes, err := h.Subscribe(ctx, kernel.IPv6)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.EnsureSoleAddr(vx, p); err != nil {
		t.Fatal(err)
	}
	for quiet := time.After(200 * time.Millisecond); ; {
		select {
		case c := <-changes:
			if c.Kind == kernel.AddrChange && c.LinkIndex == vx && !c.Prefix.Addr().IsLinkLocalUnicast() {
				t.Fatalf("a second EnsureSoleAddr changed an address: %v", c)
			}
			continue
		case <-quiet:
		}
		break
	}
	if _, err := h.AddrsOf(vx, kernel.Family(99)); err == nil {
		t.Fatal("AddrsOf accepted family 99")
	}
}

// TestDirectlyConnectedIPv6: a neighbour on the IPv6 underlay is directly connected; an
// address behind a gateway and one of this host are not.
func TestDirectlyConnectedIPv6(t *testing.T) {
	a, h, _, eth := v6Node(t)
	kerneltest.MustRun(t, a.NS, "ip", "-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8::2", "dev", "eth0")
	for addr, want := range map[string]bool{"2001:db8::2": true, "2001:db8:1::5": false, "2001:db8::1": false} {
		got, err := h.DirectlyConnected(netip.MustParseAddr(addr), eth)
		if err != nil || got != want {
			t.Errorf("DirectlyConnected(%s) = %v, %v; want %v", addr, got, err, want)
		}
	}
}

// TestSubscribeIPv6: a subscription to IPv6 reports IPv6 routes and neighbours; the
// default (IPv4) subscription does not, but still reports IPv4 ones.
func TestSubscribeIPv6(t *testing.T) {
	a, h, _, _ := v6Node(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v4, err := h.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	both, err := h.Subscribe(ctx, kernel.IPv4, kernel.IPv6)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Subscribe(ctx, kernel.Family(99)); err == nil || !strings.Contains(err.Error(), "99") {
		t.Fatalf("Subscribe(family 99) = %v", err)
	}
	kerneltest.MustRun(t, a.NS, "ip", "-6", "route", "add", "fd00:0:0:9::/64", "via", "2001:db8::2", "dev", "eth0")
	kerneltest.MustRun(t, a.NS, "ip", "-6", "neigh", "add", "2001:db8::77", "lladdr", "02:00:00:00:00:77", "dev", "eth0", "nud", "permanent")
	kerneltest.MustRun(t, a.NS, "ip", "route", "add", "10.244.9.0/24", "via", "192.0.2.2", "dev", "eth0")
	var sawRoute6, sawNeigh6 bool
	for deadline := time.After(5 * time.Second); !sawRoute6 || !sawNeigh6; {
		select {
		case c := <-both:
			sawRoute6 = sawRoute6 || c.Kind == kernel.RouteChange && c.Prefix == netip.MustParsePrefix("fd00:0:0:9::/64") && c.Gateway == netip.MustParseAddr("2001:db8::2")
			sawNeigh6 = sawNeigh6 || c.Kind == kernel.NeighChange && c.Prefix == netip.MustParsePrefix("2001:db8::77/128")
		case <-deadline:
			t.Fatalf("IPv6 subscription: route seen %v, neighbour seen %v", sawRoute6, sawNeigh6)
		}
	}
	for deadline := time.After(5 * time.Second); ; {
		select {
		case c := <-v4:
			if c.Prefix.Addr().Is6() {
				t.Fatalf("the IPv4 subscription reported %v", c)
			}
			if c.Kind != kernel.RouteChange || c.Prefix != netip.MustParsePrefix("10.244.9.0/24") {
				continue
			}
		case <-deadline:
			t.Fatal("the IPv4 subscription did not report the IPv4 route")
		}
		break
	}
}
