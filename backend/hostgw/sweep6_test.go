package hostgw

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/subnet"
)

// TestV6LeftoversSwept: IPv6 routes of peers that left while weftd was down are removed
// by the first Apply and only those (the current peer's route, routes outside the
// IPv6Network, of another metric or protocol, without a gateway or to the whole network
// stay); a reconcile before the first Apply removes nothing; a removed peer's IPv6 route
// is deleted, and a stale one written later goes at the next pass.
func TestV6LeftoversSwept(t *testing.T) {
	ka, kb := kerneltest.TwoNodes(t)
	b := startNode6(t, kb, 2, true, true)
	enableIPv6(t, ka.NS, ka.Iface)
	kerneltest.MustRun(t, ka.NS, "ip", "-6", "addr", "add", "2001:db8::1/64", "dev", "eth0", "nodad")
	keep := []string{
		"fd00:10:0:2::/64 via 2001:db8::2 dev eth0 metric 1024", // the current peer, adopted
		"2001:db8:1::/64 via 2001:db8::9 dev eth0 metric 1024",  // not in the IPv6Network
		"fd00:10::/48 via 2001:db8::9 dev eth0 metric 1024",     // the whole network
		"fd00:10:0:7::/64 dev eth0 metric 1024",                 // no gateway
		"fd00:10:0:8::/64 via 2001:db8::9 dev eth0 metric 10",   // another metric
		"fd00:10:0:6::/64 via 2001:db8::9 dev eth0 proto bird",  // another routing daemon's
	}
	gone := []string{
		"fd00:10:0:9::/64 via 2001:db8::9 dev eth0",      // a peer that left while weftd was down
		"fd00:10:0:1::/64 via 2001:db8::3 dev eth0",      // the own subnet, once a peer's
		"fd00:10:0:a:8000::/65 via 2001:db8::2 dev eth0", // a left peer's, with another length
	}
	for _, r := range append(append([]string{}, keep...), gone...) {
		kerneltest.MustRun(t, ka.NS, append([]string{"ip", "-6", "route", "add"}, strings.Fields(r)...)...)
	}
	kerneltest.MustRun(t, ka.NS, "ip", "-4", "route", "add", "10.244.9.0/24", "via", "192.0.2.9", "dev", "eth0")
	a := startNode6(t, ka, 1, true, true)
	if _, err := a.nw.reconcile(); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, ka.NS, "ip", "-6", "route", "show", "fd00:10:0:9::/64"); out == "" {
		t.Fatal("a reconcile before the first Apply swept a route")
	}
	if err := a.nw.Apply(context.Background(), []subnet.Event{{Type: subnet.Added, Lease: b.lease()}}); err != nil {
		t.Fatal(err)
	}
	out := kerneltest.MustRun(t, ka.NS, "ip", "-6", "route", "show")
	for _, r := range keep {
		if !strings.Contains(out, strings.Fields(r)[0]+" ") {
			t.Errorf("route %q was removed:\n%s", r, out)
		}
	}
	for _, r := range gone {
		if strings.Contains(out, strings.Join(strings.Fields(r)[:3], " ")) {
			t.Errorf("leftover %q kept:\n%s", r, out)
		}
	}
	if out := kerneltest.MustRun(t, ka.NS, "ip", "-4", "route", "show", "10.244.9.0/24"); out != "" {
		t.Errorf("IPv4 leftover kept in a dual-stack network: %q", out)
	}
	if drift, err := a.nw.reconcile(); err != nil || drift {
		t.Fatalf("reconcile after the sweep = %v, %v; want nothing to do", drift, err)
	}
	// A stale route written now goes at the next pass.
	kerneltest.MustRun(t, ka.NS, "ip", "-6", "route", "add", "fd00:10:0:9::/64", "via", "2001:db8::9", "dev", "eth0")
	if drift, err := a.nw.reconcile(); err != nil || !drift {
		t.Fatalf("reconcile with a leftover = %v, %v; want drift", drift, err)
	}
	if out := kerneltest.MustRun(t, ka.NS, "ip", "-6", "route", "show", "fd00:10:0:9::/64"); out != "" {
		t.Fatalf("leftover kept: %q", out)
	}
	// The peer leaves: both its routes go.
	if err := a.nw.Apply(context.Background(), []subnet.Event{{Type: subnet.Removed, Lease: b.lease()}}); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, ka.NS, "ip", "route", "show", "10.244.2.0/24"); out != "" {
		t.Errorf("IPv4 route of the removed peer kept: %q", out)
	}
	if out := kerneltest.MustRun(t, ka.NS, "ip", "-6", "route", "show", "fd00:10:0:2::/64"); out != "" {
		t.Errorf("IPv6 route of the removed peer kept: %q", out)
	}
}

func TestStaleRouteV6(t *testing.T) {
	p, a := netip.MustParsePrefix, netip.MustParseAddr
	routes := map[netip.Prefix]peerRoute{p("fd00:10:0:2::/64"): {gw: a("2001:db8::2"), ok: true}}
	base := kernel.ListedRoute{Dst: p("fd00:10:0:2::/64"), Gw: a("2001:db8::2"), LinkIndex: 2, Priority: metric6,
		Type: unix.RTN_UNICAST, Protocol: unix.RTPROT_BOOT}
	for _, c := range []struct {
		name string
		edit func(r *kernel.ListedRoute)
		want bool
	}{
		{"a peer's route", func(*kernel.ListedRoute) {}, false},
		{"via its old address", func(r *kernel.ListedRoute) { r.Gw = a("2001:db8::9") }, true},
		{"no peer", func(r *kernel.ListedRoute) { r.Dst = p("fd00:10:0:9::/64") }, true},
		{"metric 0", func(r *kernel.ListedRoute) { r.Dst, r.Priority = p("fd00:10:0:9::/64"), 0 }, false},
		{"outside the network", func(r *kernel.ListedRoute) { r.Dst = p("fd00:11::/64") }, false},
		{"the whole network", func(r *kernel.ListedRoute) { r.Dst = podNet6 }, false},
		{"the default route", func(r *kernel.ListedRoute) { r.Dst = p("::/0") }, false},
	} {
		r := base
		c.edit(&r)
		if got := staleRoute(r, podNet6, 2, routes); got != c.want {
			t.Errorf("%s: staleRoute = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestRoutesOf(t *testing.T) {
	dual := subnet.Lease{Subnet: subnet4(5), IPv6Subnet: subnet6(5),
		Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.0.2.5"), PublicIPv6: underlay6(5)}}
	v4only := subnet.Lease{Subnet: subnet4(6), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("192.0.2.6")}}
	v6only := subnet.Lease{IPv6Subnet: subnet6(7), Attrs: subnet.LeaseAttrs{PublicIPv6: underlay6(7)}}
	for _, c := range []struct {
		name   string
		l      subnet.Lease
		v4, v6 bool
		want   []wanted
	}{
		{"dual lease, dual network", dual, true, true, []wanted{{subnet4(5), dual.Attrs.PublicIP}, {subnet6(5), underlay6(5)}}},
		{"dual lease, IPv4 network", dual, true, false, []wanted{{subnet4(5), dual.Attrs.PublicIP}}},
		{"dual lease, IPv6 network", dual, false, true, []wanted{{subnet6(5), underlay6(5)}}},
		{"IPv4 lease, dual network", v4only, true, true, []wanted{{subnet4(6), v4only.Attrs.PublicIP}}},
		{"IPv6 lease, dual network", v6only, true, true, []wanted{{subnet6(7), underlay6(7)}}},
		{"IPv6 lease, IPv4 network", v6only, true, false, nil},
	} {
		got := routesOf(c.l, c.v4, c.v6)
		if len(got) != len(c.want) {
			t.Errorf("%s: routesOf = %v, want %v", c.name, got, c.want)
			continue
		}
		for i := range got {
			if got[i] != c.want[i] {
				t.Errorf("%s: routesOf = %v, want %v", c.name, got, c.want)
			}
		}
	}
}

func TestNewBackendChecksIPv6Addresses(t *testing.T) {
	ifc := &net.Interface{Index: 2, Name: "eth0"}
	cfg := &subnet.Config{EnableIPv6: true, IPv6Network: podNet6, IPv6SubnetLen: 64}
	for _, c := range []struct {
		name string
		ext  backend.ExternalInterface
		want string // in the error; "" for none
	}{
		{"ok", backend.ExternalInterface{Iface: ifc, IfaceAddrV6: underlay6(1), PublicIPv6: underlay6(1)}, ""},
		{"no IPv6 address", backend.ExternalInterface{Iface: ifc}, "needs an IPv6 address on eth0"},
		{"NAT", backend.ExternalInterface{Iface: ifc, IfaceAddrV6: underlay6(1), PublicIPv6: underlay6(9)}, "2001:db8::9"},
	} {
		_, err := newBackend(backend.Env{Ext: c.ext, Network: cfg})
		if (err == nil) != (c.want == "") || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: newBackend = %v, want %q", c.name, err, c.want)
		}
	}
}
