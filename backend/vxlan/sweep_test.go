package vxlan

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/subnet"
	"golang.org/x/sys/unix"
)

// vxlanLease is the lease of a peer at pub (which need not exist) for subnet sn.
func vxlanLease(sn, pub string) subnet.Lease {
	a := netip.MustParseAddr(pub)
	return subnet.Lease{Subnet: netip.MustParsePrefix(sn), Attrs: subnet.LeaseAttrs{
		PublicIP: a, BackendType: Name, BackendData: marshalLeaseData(1, vtepMAC(a, 1)),
	}}
}

// TestLeftoversSweptAfterRestart: peers that left while weftd was down leave their
// route, neighbour and FDB entry on the VXLAN device (and, with DirectRouting, a route on
// eth0); the first Apply after a restart removes them, and nothing that weft does not
// own. A reconcile before that Apply (Run starts concurrently) removes nothing. The ipv6
// node is dual stack, its leftovers a dual-stack peer and an IPv6-only one: the entries
// of both families go.
func TestLeftoversSweptAfterRestart(t *testing.T) {
	t.Run("ipv4", func(t *testing.T) {
		for _, direct := range []bool{false, true} {
			t.Run(map[bool]string{false: "tunnel", true: "DirectRouting"}[direct], func(t *testing.T) {
				ka, kb := kerneltest.TwoNodes(t)
				keys := map[string]any{"DirectRouting": direct}
				a := startNode(t, ka, subnetA, keys)
				b := startNode(t, kb, subnetB, keys)
				kerneltest.MustRun(t, ka.NS, "ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.254")
				far := vxlanLease("10.244.3.0/24", "198.51.100.3") // through the tunnel
				near := vxlanLease("10.244.4.0/24", "192.0.2.4")   // direct with DirectRouting
				if err := a.nw.Apply(context.Background(), added(b.lease(), far, near)); err != nil {
					t.Fatal(err)
				}
				// Not weft's: a route with a metric and one outside the Network, on eth0.
				kerneltest.MustRun(t, ka.NS, "ip", "route", "add", "10.244.8.0/24", "via", "192.0.2.9", "dev", "eth0", "metric", "10")
				kerneltest.MustRun(t, ka.NS, "ip", "route", "add", "172.16.0.0/12", "via", "192.0.2.9", "dev", "eth0")

				sweptAfterRestart(t, ipv4, a, b, []subnet.Lease{far, near},
					"10.244.2.0/24 via", "10.244.8.0/24 via 192.0.2.9 dev eth0 metric 10", "172.16.0.0/12 via 192.0.2.9")
				if !direct {
					if err := peerInPlace(ipv4, a, b)(); err != nil {
						t.Error(err)
					}
				}
			})
		}
	})
	t.Run("ipv6", func(t *testing.T) {
		a, b, _, _ := twoNodes6(t, true, nil)
		gone := lease6("10.244.3.0/24", "fd00:0:0:3::/64", netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("2001:db8::3"))
		gone6 := lease6("", "fd00:0:0:4::/64", netip.Addr{}, netip.MustParseAddr("2001:db8::4")) // IPv6 only
		if err := a.nw.Apply(context.Background(), added(gone, gone6)); err != nil {
			t.Fatal(err)
		}
		if out := kerneltest.MustRun(t, a.NS, "ip", "-6", "route", "show", "fd00:0:0:4::/64"); !strings.Contains(out, "via fd00:0:0:4:: dev flannel-v6.1") {
			t.Fatalf("IPv6-only peer not programmed: %q", out)
		}
		// Not weft's: an IPv6 route elsewhere in the main table.
		kerneltest.MustRun(t, a.NS, "ip", "-6", "route", "add", "2001:db8:9::/48", "via", "2001:db8::9", "dev", "eth0")

		sweptAfterRestart(t, ipv6, a, b, []subnet.Lease{gone, gone6},
			"fd00:0:0:2::/64 via", "2001:db8:9::/48 via 2001:db8::9", "fe80::/64 dev flannel-v6.1")
		if out := kerneltest.MustRun(t, a.NS, "ip", "-4", "route", "show", "10.244.3.0/24"); out != "" {
			t.Errorf("IPv4 route of the dual-stack leftover kept: %q", out)
		}
		for _, f := range []inet{ipv6, ipv4} {
			if err := peerInPlace(f, a, b)(); err != nil {
				t.Error(err)
			}
		}
	})
}

// sweptAfterRestart stops a's network as weftd stopping would and starts it again with
// node b as its only peer, then checks, in family f: that a reconcile before the first
// Apply swept nothing (the route of gone[0] is still there); that after the Apply no
// route, neighbour or FDB entry of the leases gone is left and the routes keep (shown
// by ip(8) so) are; and that a reconcile then has nothing to do.
func sweptAfterRestart(t *testing.T, f inet, a, b *testNode, gone []subnet.Lease, keep ...string) {
	t.Helper()
	ctx := context.Background()
	a.nw.Close()
	nw, err := a.be.Activate(ctx, a.lease())
	if err != nil {
		t.Fatal(err)
	}
	a.nw = nw.(*network)
	if _, err := a.nw.reconcile(); err != nil {
		t.Fatal(err)
	}
	if sn, _ := f.ofLease(gone[0]); kerneltest.MustRun(t, a.NS, "ip", f.ip, "route", "show", sn.String()) == "" {
		t.Fatalf("a reconcile before the first Apply swept the %s route to %s", f.name, sn)
	}
	if err := a.nw.Apply(ctx, added(b.lease())); err != nil {
		t.Fatal(err)
	}

	routes := kerneltest.MustRun(t, a.NS, "ip", f.ip, "route", "show")
	neigh := kerneltest.MustRun(t, a.NS, "ip", "neigh", "show", "dev", f.dev) // of both families
	fdb := kerneltest.MustRun(t, a.NS, "bridge", "fdb", "show", "dev", f.dev)
	for _, l := range gone {
		sn, pub := f.ofLease(l)
		if strings.Contains(routes, sn.String()) {
			t.Errorf("route to %s kept:\n%s", sn, routes)
		}
		mac := vtepMAC(pub, 1).String()
		if strings.Contains(neigh, sn.Addr().String()+" ") || strings.Contains(neigh, mac) {
			t.Errorf("neighbour of %s kept:\n%s", sn, neigh)
		}
		if strings.Contains(fdb, mac) {
			t.Errorf("fdb entry of %s kept:\n%s", sn, fdb)
		}
	}
	for _, k := range keep {
		if !strings.Contains(routes, k) {
			t.Errorf("route %q removed:\n%s", k, routes)
		}
	}
	if drift, err := a.nw.reconcile(); err != nil || drift {
		t.Fatalf("reconcile after the sweep = %v, %v; want nothing to do", drift, err)
	}
}

func TestStaleEntries(t *testing.T) {
	p, a := netip.MustParsePrefix, netip.MustParseAddr
	mac := vtepMAC(a("192.0.2.2"), 1)
	tunnel := &peer{subnet: p("10.244.2.0/24"), publicIP: a("192.0.2.2"), mac: mac}
	direct := &peer{subnet: p("10.244.3.0/24"), publicIP: a("192.0.2.3"), mac: vtepMAC(a("192.0.2.3"), 1), direct: true}
	leaving := &peer{subnet: p("10.244.4.0/24"), publicIP: a("192.0.2.4"), mac: vtepMAC(a("192.0.2.4"), 1), direct: true}
	peers := map[netip.Prefix]*peer{tunnel.subnet: tunnel, direct.subnet: direct}
	const dev, ext = 7, 2

	onDev := kernel.ListedRoute{Dst: tunnel.subnet, Gw: tunnel.vtepAddr(), LinkIndex: dev, Type: unix.RTN_UNICAST,
		Protocol: unix.RTPROT_BOOT, Onlink: true}
	for _, c := range []struct {
		name string
		edit func(r *kernel.ListedRoute)
		want bool
	}{
		{"a tunnel peer's route", func(*kernel.ListedRoute) {}, false},
		{"no peer", func(r *kernel.ListedRoute) { r.Dst, r.Gw = p("10.244.9.0/24"), a("10.244.9.0") }, true},
		{"a direct peer's subnet", func(r *kernel.ListedRoute) { r.Dst, r.Gw = direct.subnet, direct.vtepAddr() }, true},
		{"another gateway", func(r *kernel.ListedRoute) { r.Gw = a("10.244.2.9") }, true},
		{"not onlink", func(r *kernel.ListedRoute) { r.Onlink = false }, true},
		{"a metric", func(r *kernel.ListedRoute) { r.Priority = 5 }, true},
		{"blackhole", func(r *kernel.ListedRoute) { r.Type = unix.RTN_BLACKHOLE }, true},
		{"the kernel's", func(r *kernel.ListedRoute) { r.Dst, r.Protocol = p("10.244.1.0/24"), unix.RTPROT_KERNEL }, false},
	} {
		r := onDev
		c.edit(&r)
		if got := staleTunnelRoute(r, peers, 0); got != c.want {
			t.Errorf("staleTunnelRoute: %s = %v, want %v", c.name, got, c.want)
		}
	}

	cidr := p("10.244.0.0/16")
	onExt := kernel.ListedRoute{Dst: direct.subnet, Gw: direct.publicIP, LinkIndex: ext, Type: unix.RTN_UNICAST, Protocol: unix.RTPROT_BOOT}
	for _, c := range []struct {
		name string
		edit func(r *kernel.ListedRoute)
		want bool
	}{
		{"a direct peer's route", func(*kernel.ListedRoute) {}, false},
		{"via its old address", func(r *kernel.ListedRoute) { r.Gw = a("192.0.2.33") }, true},
		{"a tunnel peer's subnet", func(r *kernel.ListedRoute) { r.Dst, r.Gw = tunnel.subnet, tunnel.publicIP }, true},
		{"no peer", func(r *kernel.ListedRoute) { r.Dst = p("10.244.9.0/24") }, true},
		{"the default route", func(r *kernel.ListedRoute) { r.Dst = p("0.0.0.0/0") }, false},
		{"the whole Network", func(r *kernel.ListedRoute) { r.Dst = cidr }, false},
		{"outside the Network", func(r *kernel.ListedRoute) { r.Dst = p("172.16.0.0/12") }, false},
		{"a metric", func(r *kernel.ListedRoute) { r.Dst, r.Priority = p("10.244.9.0/24"), 10 }, false},
		{"another daemon's", func(r *kernel.ListedRoute) { r.Dst, r.Protocol = p("10.244.9.0/24"), 12 }, false},
		{"no gateway", func(r *kernel.ListedRoute) { r.Dst, r.Gw = p("10.244.9.0/24"), netip.Addr{} }, false},
		{"another link", func(r *kernel.ListedRoute) { r.Dst, r.LinkIndex = p("10.244.9.0/24"), 5 }, false},
	} {
		r := onExt
		c.edit(&r)
		if got := staleDirectRoute(r, cidr, ext, peers, 0); got != c.want {
			t.Errorf("staleDirectRoute: %s = %v, want %v", c.name, got, c.want)
		}
	}

	w := wantedOf(peers, map[netip.Prefix]*peer{leaving.subnet: leaving})
	if !w.vteps[tunnel.vtepAddr()] || w.vteps[direct.vtepAddr()] || !w.vteps[leaving.vtepAddr()] {
		t.Errorf("wanted neighbours %v", w.vteps)
	}
	if !w.fdb[keyOf(string(mac), tunnel.publicIP)] || w.fdb[keyOf(mac, a("192.0.2.9"))] ||
		w.fdb[keyOf(direct.mac, direct.publicIP)] || !w.fdb[keyOf(leaving.mac, leaving.publicIP)] ||
		w.fdb[keyOf("\x01\x02", tunnel.publicIP)] {
		t.Errorf("wanted fdb %v", w.fdb)
	}
}

// TestPeerMovedWhileDownKeepsNoOldEntries: a peer that took a new address (and so a new
// VTEP MAC) while weftd was down keeps no FDB entry to its old address after the restart,
// and with DirectRouting a direct peer that moves behind a router keeps no direct route.
func TestPeerMovedWhileDownKeepsNoOldEntries(t *testing.T) {
	ka, kb := kerneltest.TwoNodes(t)
	a := startNode(t, ka, subnetA, map[string]any{"DirectRouting": true})
	b := startNode(t, kb, subnetB, nil)
	kerneltest.MustRun(t, ka.NS, "ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.254")
	ctx := context.Background()
	far := vxlanLease("10.244.3.0/24", "198.51.100.3")
	if err := a.nw.Apply(ctx, added(b.lease(), far)); err != nil {
		t.Fatal(err)
	}
	oldMAC := vtepMAC(far.Attrs.PublicIP, 1).String()
	a.nw.Close()
	nw, err := a.be.Activate(ctx, a.lease())
	if err != nil {
		t.Fatal(err)
	}
	a.nw = nw.(*network)
	movedFar := vxlanLease("10.244.3.0/24", "198.51.100.4") // still behind the router
	movedNear := vxlanLease(subnetB, "198.51.100.2")        // from the segment to behind the router
	if err := a.nw.Apply(ctx, added(movedFar, movedNear)); err != nil {
		t.Fatal(err)
	}
	fdb := kerneltest.MustRun(t, ka.NS, "bridge", "fdb", "show", "dev", "flannel.1")
	if strings.Contains(fdb, oldMAC) || strings.Contains(fdb, "198.51.100.3") {
		t.Errorf("fdb entry to the old address kept:\n%s", fdb)
	}
	if !strings.Contains(fdb, vtepMAC(movedFar.Attrs.PublicIP, 1).String()+" dst 198.51.100.4") {
		t.Errorf("fdb entry of the moved peer missing:\n%s", fdb)
	}
	if out := kerneltest.MustRun(t, ka.NS, "ip", "route", "show", subnetB); !strings.Contains(out, "via 10.244.2.0 dev flannel.1 onlink") {
		t.Errorf("route of the peer that left the segment: %q", out)
	}
	if out := kerneltest.MustRun(t, ka.NS, "ip", "route", "show", "dev", "eth0"); strings.Contains(out, "10.244.") {
		t.Errorf("direct route kept:\n%s", out)
	}
}

// TestIPv6PeerChangesAndLeaves: a peer that publishes a new IPv6 address (and VTEP MAC)
// under the same key is reprogrammed, the old FDB entry and neighbour MAC gone; a peer
// that leaves (Removed, which carries only the subnets) loses the entries of both
// families; an IPv6-only peer and a dual-stack one live side by side.
func TestIPv6PeerChangesAndLeaves(t *testing.T) {
	a, _, _, _ := twoNodes6(t, true, nil)
	ctx := context.Background()
	p := lease6("10.244.3.0/24", "fd00:0:0:3::/64", netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("2001:db8::3"))
	only6 := lease6("", "fd00:0:0:4::/64", netip.Addr{}, netip.MustParseAddr("2001:db8::4"))
	if err := a.nw.Apply(ctx, added(p, only6)); err != nil {
		t.Fatal(err)
	}
	moved := lease6("10.244.3.0/24", "fd00:0:0:3::/64", netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("2001:db8::33"))
	if err := a.nw.Apply(ctx, added(moved)); err != nil {
		t.Fatal(err)
	}
	oldMAC, newMAC := vtepMAC(p.Attrs.PublicIPv6, 1).String(), vtepMAC(moved.Attrs.PublicIPv6, 1).String()
	fdb := kerneltest.MustRun(t, a.NS, "bridge", "fdb", "show", "dev", "flannel-v6.1")
	if strings.Contains(fdb, oldMAC) || !strings.Contains(fdb, newMAC+" dst 2001:db8::33 self permanent") {
		t.Errorf("fdb after the peer moved:\n%s", fdb)
	}
	neigh := kerneltest.MustRun(t, a.NS, "ip", "-6", "neigh", "show", "fd00:0:0:3::", "dev", "flannel-v6.1")
	if !strings.Contains(neigh, "lladdr "+newMAC+" PERMANENT") {
		t.Errorf("neighbour after the peer moved: %q", neigh)
	}
	if d := a.nw.Describe(); d.Peers[p.Subnet].State != "programmed" || d.Peers[p.IPv6Subnet].State != "programmed" || d.Peers[only6.IPv6Subnet].State != "programmed" {
		t.Errorf("Describe peers = %v", d.Peers)
	}

	if err := a.nw.Apply(ctx, removed(moved, only6)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ argv, gone string }{
		{"ip -6 route show", "fd00:0:0:3::/64"},
		{"ip -6 route show", "fd00:0:0:4::/64"},
		{"ip -4 route show", "10.244.3.0/24"},
		{"ip -6 neigh show dev flannel-v6.1", "fd00:0:0:3::"},
		{"bridge fdb show dev flannel-v6.1", newMAC},
		{"bridge fdb show dev flannel-v6.1", vtepMAC(only6.Attrs.PublicIPv6, 1).String()},
		{"bridge fdb show dev flannel.1", vtepMAC(p.Attrs.PublicIP, 1).String()},
	} {
		if out := kerneltest.MustRun(t, a.NS, strings.Fields(c.argv)...); strings.Contains(out, c.gone) {
			t.Errorf("%s still shows %s:\n%s", c.argv, c.gone, out)
		}
	}
	a.nw.mu.Lock()
	defer a.nw.mu.Unlock()
	for _, f := range a.nw.fams {
		if len(f.peers) != 1 || len(f.gone) != 0 {
			t.Errorf("%s: peers %v, gone %v; want only node b", f, f.peers, f.gone)
		}
	}
}
