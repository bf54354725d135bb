package gre

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/subnet"
)

// TestStaleEntries: on weft.gre, a route is a leftover unless it is exactly a peer's
// "<subnet> via <public IP> onlink"; the kernel's own routes stay; a permanent neighbour
// is a leftover unless a peer has its address.
func TestStaleEntries(t *testing.T) {
	s := newPeerSet()
	s.apply(add("10.244.2.0/24", "192.0.2.2", Name))
	s.apply(add("10.244.3.0/24", "192.0.2.3", Name))
	p, a := netip.MustParsePrefix, netip.MustParseAddr
	peerRoute := kernel.ListedRoute{Dst: p("10.244.2.0/24"), Gw: a("192.0.2.2"), LinkIndex: 5, Type: unix.RTN_UNICAST,
		Protocol: unix.RTPROT_BOOT, Onlink: true}
	for _, c := range []struct {
		name string
		edit func(r *kernel.ListedRoute)
		want bool
	}{
		{"a peer's route", func(*kernel.ListedRoute) {}, false},
		{"a peer that left", func(r *kernel.ListedRoute) { r.Dst = p("10.244.7.0/24") }, true},
		{"a peer's old address", func(r *kernel.ListedRoute) { r.Gw = a("192.0.2.9") }, true},
		{"another peer's address", func(r *kernel.ListedRoute) { r.Gw = a("192.0.2.3") }, true},
		{"not onlink", func(r *kernel.ListedRoute) { r.Onlink = false }, true},
		{"another metric", func(r *kernel.ListedRoute) { r.Priority = 10 }, true},
		{"blackhole", func(r *kernel.ListedRoute) { r.Type = unix.RTN_BLACKHOLE }, true},
		{"outside the Network, still weft's device", func(r *kernel.ListedRoute) { r.Dst = p("172.16.0.0/12") }, true},
		{"the kernel's route of an address", func(r *kernel.ListedRoute) {
			r.Dst, r.Gw, r.Protocol, r.Onlink = p("10.244.9.0/24"), netip.Addr{}, unix.RTPROT_KERNEL, false
		}, false},
	} {
		r := peerRoute
		c.edit(&r)
		if got := staleRoute(r, s.peers); got != c.want {
			t.Errorf("%s: staleRoute = %v, want %v", c.name, got, c.want)
		}
	}
	for _, c := range []struct {
		n    kernel.ListedNeigh
		want bool
	}{
		{kernel.ListedNeigh{Addr: a("192.0.2.2"), Permanent: true}, false},
		{kernel.ListedNeigh{Addr: a("192.0.2.7"), Permanent: true}, true},
		{kernel.ListedNeigh{Addr: a("192.0.2.7")}, false}, // not weft's kind
	} {
		if got := staleNeigh(c.n, s); got != c.want {
			t.Errorf("staleNeigh(%+v) = %v, want %v", c.n, got, c.want)
		}
	}
	s.apply(subnet.Event{Type: subnet.Removed, Lease: lease("10.244.2.0/24", "192.0.2.2", Name)})
	if !staleRoute(peerRoute, s.peers) || !staleNeigh(kernel.ListedNeigh{Addr: a("192.0.2.2"), Permanent: true}, s) {
		t.Error("the entries of a removed peer are not stale")
	}
}

func TestKernelRelevant(t *testing.T) {
	n := &kernelNetwork{spec: deviceSpec{name: DeviceName}, cidr: netip.MustParsePrefix("10.244.0.0/16")}
	n.devIdx.Store(7)
	p := netip.MustParsePrefix
	for _, c := range []struct {
		name string
		c    kernel.Change
		want bool
	}{
		{"device down", kernel.Change{Kind: kernel.LinkChange, LinkIndex: 7}, true},
		{"device re-created", kernel.Change{Kind: kernel.LinkChange, LinkIndex: 9, LinkName: DeviceName}, true},
		{"other link", kernel.Change{Kind: kernel.LinkChange, LinkIndex: 2, LinkName: "eth0"}, false},
		{"device address", kernel.Change{Kind: kernel.AddrChange, LinkIndex: 7}, true},
		{"eth0 address", kernel.Change{Kind: kernel.AddrChange, LinkIndex: 2}, false},
		{"peer route", kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 7, Prefix: p("10.244.2.0/24")}, true},
		{"peer route moved to lo", kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 1, Prefix: p("10.244.2.0/24")}, true},
		{"other table", kernel.Change{Kind: kernel.RouteChange, Table: 255, LinkIndex: 7, Prefix: p("10.244.2.0/24")}, false},
		{"unrelated route", kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 2, Prefix: p("0.0.0.0/0")}, false},
		{"device neighbour", kernel.Change{Kind: kernel.NeighChange, LinkIndex: 7}, true},
		{"ARP on eth0", kernel.Change{Kind: kernel.NeighChange, LinkIndex: 2}, false},
	} {
		if got := n.relevant(c.c); got != c.want {
			t.Errorf("%s: relevant = %v, want %v", c.name, got, c.want)
		}
	}
}
