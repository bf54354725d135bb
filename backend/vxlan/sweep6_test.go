package vxlan

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/subnet"
)

// TestIPv6LeftoversSweptAfterRestart: dual-stack peers that left while weftd was down
// leave IPv6 routes, neighbours and FDB entries on flannel-v6.1 (and IPv4 ones on
// flannel.1); the first Apply after the restart removes them, both families, and keeps
// the current peer's and routes that are not weft's.
func TestIPv6LeftoversSweptAfterRestart(t *testing.T) {
	a, b, _, _ := twoNodes6(t, true, nil)
	ctx := context.Background()
	gone := lease6("10.244.3.0/24", "fd00:0:0:3::/64", netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("2001:db8::3"))
	gone6 := lease6("", "fd00:0:0:4::/64", netip.Addr{}, netip.MustParseAddr("2001:db8::4")) // IPv6 only
	if err := a.nw.Apply(ctx, added(gone, gone6)); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "-6", "route", "show", "fd00:0:0:4::/64"); !strings.Contains(out, "via fd00:0:0:4:: dev flannel-v6.1") {
		t.Fatalf("IPv6-only peer not programmed: %q", out)
	}
	// Not weft's: an IPv6 route elsewhere in the main table.
	kerneltest.MustRun(t, a.NS, "ip", "-6", "route", "add", "2001:db8:9::/48", "via", "2001:db8::9", "dev", "eth0")

	a.nw.Close()
	nw, err := a.be.Activate(ctx, a.lease())
	if err != nil {
		t.Fatal(err)
	}
	a.nw = nw.(*network)
	if _, err := a.nw.reconcile(); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "-6", "route", "show", "fd00:0:0:3::/64"); out == "" {
		t.Fatal("a reconcile before the first Apply swept an IPv6 route")
	}
	if err := a.nw.Apply(ctx, added(b.lease())); err != nil {
		t.Fatal(err)
	}
	routes := kerneltest.MustRun(t, a.NS, "ip", "-6", "route", "show")
	for _, left := range []string{"fd00:0:0:3::/64", "fd00:0:0:4::/64"} {
		if strings.Contains(routes, left) {
			t.Errorf("route to %s kept:\n%s", left, routes)
		}
	}
	for _, keep := range []string{"fd00:0:0:2::/64 via", "2001:db8:9::/48 via 2001:db8::9", "fe80::/64 dev flannel-v6.1"} {
		if !strings.Contains(routes, keep) {
			t.Errorf("route %q removed:\n%s", keep, routes)
		}
	}
	neigh := kerneltest.MustRun(t, a.NS, "ip", "-6", "neigh", "show", "dev", "flannel-v6.1")
	fdb := kerneltest.MustRun(t, a.NS, "bridge", "fdb", "show", "dev", "flannel-v6.1")
	for _, l := range []subnet.Lease{gone, gone6} {
		mac := vtepMAC(l.Attrs.PublicIPv6, 1).String()
		if strings.Contains(neigh, l.IPv6Subnet.Addr().String()+" ") || strings.Contains(neigh, mac) {
			t.Errorf("neighbour of %s kept:\n%s", l.IPv6Subnet, neigh)
		}
		if strings.Contains(fdb, mac) {
			t.Errorf("fdb entry of %s kept:\n%s", l.IPv6Subnet, fdb)
		}
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "-4", "route", "show", "10.244.3.0/24"); out != "" {
		t.Errorf("IPv4 route of the dual-stack leftover kept: %q", out)
	}
	if err := peer6InPlace(a, b)(); err != nil {
		t.Error(err)
	}
	if err := peerInPlace(a, b)(); err != nil {
		t.Error(err)
	}
	if drift, err := a.nw.reconcile(); err != nil || drift {
		t.Fatalf("reconcile after the sweep = %v, %v; want nothing to do", drift, err)
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
