package hostgw

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/subnet"
	"golang.org/x/sys/unix"
)

// TestLeftoversSweptOnFirstApply: routes of peers that left while weftd was down are
// removed by the first Apply (the complete peer list), and only those: the current
// peer's route, the default route, routes outside the Network, routes of another shape
// (no gateway, another metric, another protocol, the whole Network) stay. Before the
// first Apply, a reconcile pass (Run starts concurrently) must not sweep anything.
func TestLeftoversSweptOnFirstApply(t *testing.T) {
	ka, kb := kerneltest.TwoNodes(t)
	b := startNode(t, kb, "10.244.2.0/24", 2, false)
	keep := []string{
		"10.244.2.0/24 via 192.0.2.2 dev eth0",            // the current peer, adopted
		"default via 192.0.2.254 dev eth0",                // not in the Network
		"172.16.0.0/12 via 192.0.2.9 dev eth0",            // not in the Network
		"10.244.0.0/16 via 192.0.2.9 dev eth0",            // the whole Network: not a peer's
		"10.244.7.0/24 dev eth0 scope link",               // no gateway
		"10.244.8.0/24 via 192.0.2.9 dev eth0 metric 10",  // another metric
		"10.244.6.0/24 via 192.0.2.9 dev eth0 proto bird", // another routing daemon's
	}
	gone := []string{
		"10.244.9.0/24 via 192.0.2.9 dev eth0",  // a peer that left while weftd was down
		"10.244.1.0/24 via 192.0.2.3 dev eth0",  // the own subnet, once a peer's
		"10.244.10.0/25 via 192.0.2.2 dev eth0", // a left peer's, with another length
	}
	for _, r := range append(append([]string{}, keep...), gone...) {
		kerneltest.MustRun(t, ka.NS, append([]string{"ip", "route", "add"}, strings.Fields(r)...)...)
	}
	a := startNode(t, ka, "10.244.1.0/24", 1, false)
	if _, err := a.nw.reconcile(); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, ka.NS, "ip", "route", "show", "10.244.9.0/24"); out == "" {
		t.Fatal("a reconcile before the first Apply swept a route")
	}
	if err := a.nw.Apply(context.Background(), []subnet.Event{{Type: subnet.Added, Lease: b.lease()}}); err != nil {
		t.Fatal(err)
	}
	out := kerneltest.MustRun(t, ka.NS, "ip", "-4", "route", "show")
	for _, r := range keep {
		if !strings.Contains(out, strings.TrimSuffix(r, " proto bird")) {
			t.Errorf("route %q was removed:\n%s", r, out)
		}
	}
	for _, r := range gone {
		if strings.Contains(out, strings.Fields(r)[0]+" ") {
			t.Errorf("leftover %q kept:\n%s", r, out)
		}
	}
	if drift, err := a.nw.reconcile(); err != nil || drift {
		t.Fatalf("reconcile after the sweep = %v, %v; want nothing to do", drift, err)
	}
}

// TestMovedPeerKeepsNoOldRoute: a peer whose new public IP cannot be routed (behind a
// gateway) loses its route via the old address at once, and a leftover route to it via
// someone else's address goes at the next pass.
func TestMovedPeerKeepsNoOldRoute(t *testing.T) {
	a, b := twoNodes(t, false)
	kerneltest.MustRun(t, a.NS, "ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.254")
	moved := b.lease()
	moved.Attrs.PublicIP = netip.MustParseAddr("198.51.100.7")
	if err := a.nw.Apply(context.Background(), []subnet.Event{{Type: subnet.Added, Lease: moved}}); err == nil {
		t.Fatal("Apply of a peer behind a gateway: want an error")
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "route", "show", "10.244.2.0/24"); out != "" {
		t.Fatalf("route via the old address kept: %q", out)
	}
	if d := a.nw.Describe().Peers[moved.Subnet]; d.State != "error" {
		t.Fatalf("moved peer: %+v", d)
	}
	// Someone puts a route to the peer via another node back; the next pass removes it.
	kerneltest.MustRun(t, a.NS, "ip", "route", "add", "10.244.2.0/24", "via", "192.0.2.2", "dev", "eth0")
	if _, err := a.nw.reconcile(); err == nil {
		t.Fatal("reconcile with an unroutable peer: want an error")
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "route", "show", "10.244.2.0/24"); out != "" {
		t.Fatalf("route via another address kept: %q", out)
	}
}

// TestFailedDeleteIsRetried: a removed peer whose route delete fails stays known until a
// retry works; reconcile reports the failure (so Run retries soon) and neither it nor a
// sweep forgets the route.
func TestFailedDeleteIsRetried(t *testing.T) {
	a, b := twoNodes(t, false)
	fail := errors.New("injected delete failure")
	failing := true
	a.nw.mu.Lock()
	real := a.nw.del
	a.nw.del = func(b routeTable, dst netip.Prefix, link int) error {
		if failing {
			return fail
		}
		return real(b, dst, link)
	}
	a.nw.mu.Unlock()
	if err := a.nw.Apply(context.Background(), []subnet.Event{{Type: subnet.Removed, Lease: b.lease()}}); !errors.Is(err, fail) {
		t.Fatalf("Apply(Removed) = %v, want the delete's error", err)
	}
	for range 2 {
		if _, err := a.nw.reconcile(); !errors.Is(err, fail) {
			t.Fatalf("reconcile while the delete fails = %v, want its error", err)
		}
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "route", "show", "10.244.2.0/24"); out == "" {
		t.Fatal("the route went without its delete")
	}
	failing = false
	if _, err := a.nw.reconcile(); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "route", "show", "10.244.2.0/24"); out != "" {
		t.Fatalf("route of the removed peer kept after a retry: %q", out)
	}
	if drift, err := a.nw.reconcile(); err != nil || drift {
		t.Fatalf("reconcile after the retry = %v, %v", drift, err)
	}
	a.nw.mu.Lock()
	defer a.nw.mu.Unlock()
	if len(a.nw.gone) != 0 || len(a.nw.peers) != 0 || len(a.nw.routes) != 0 {
		t.Fatalf("state left: peers %v, routes %v, gone %v", a.nw.peers, a.nw.routes, a.nw.gone)
	}
}

func TestStaleRoute(t *testing.T) {
	p, a := netip.MustParsePrefix, netip.MustParseAddr
	cidr := p("10.244.0.0/16")
	peers := map[netip.Prefix]peerRoute{
		p("10.244.2.0/24"): {key: "10.244.2.0-24", gw: a("192.0.2.2"), ok: true},
		p("10.244.3.0/24"): {key: "10.244.3.0-24", gw: a("198.51.100.3"), err: "not direct"},
	}
	base := kernel.ListedRoute{Dst: p("10.244.2.0/24"), Gw: a("192.0.2.2"), LinkIndex: 2, Type: unix.RTN_UNICAST, Protocol: unix.RTPROT_BOOT}
	for _, c := range []struct {
		name string
		edit func(r *kernel.ListedRoute)
		want bool
	}{
		{"a peer's route", func(*kernel.ListedRoute) {}, false},
		{"a peer's route via its old address", func(r *kernel.ListedRoute) { r.Gw = a("192.0.2.9") }, true},
		{"an unroutable peer's route via another address", func(r *kernel.ListedRoute) { r.Dst = p("10.244.3.0/24") }, true},
		{"a peer's route, onlink", func(r *kernel.ListedRoute) { r.Onlink = true }, true},
		{"no peer", func(r *kernel.ListedRoute) { r.Dst = p("10.244.9.0/24") }, true},
		{"no peer, longer prefix", func(r *kernel.ListedRoute) { r.Dst = p("10.244.9.128/25") }, true},
		{"the whole Network", func(r *kernel.ListedRoute) { r.Dst = cidr }, false},
		{"a wider network", func(r *kernel.ListedRoute) { r.Dst = p("10.0.0.0/8") }, false},
		{"outside the Network", func(r *kernel.ListedRoute) { r.Dst = p("10.245.9.0/24") }, false},
		{"the default route", func(r *kernel.ListedRoute) { r.Dst = p("0.0.0.0/0") }, false},
		{"another link", func(r *kernel.ListedRoute) { r.Dst, r.LinkIndex = p("10.244.9.0/24"), 5 }, false},
		{"no gateway", func(r *kernel.ListedRoute) { r.Dst, r.Gw = p("10.244.9.0/24"), netip.Addr{} }, false},
		{"a metric", func(r *kernel.ListedRoute) { r.Dst, r.Priority = p("10.244.9.0/24"), 10 }, false},
		{"another daemon's", func(r *kernel.ListedRoute) { r.Dst, r.Protocol = p("10.244.9.0/24"), 12 }, false},
		{"blackhole", func(r *kernel.ListedRoute) { r.Dst, r.Type = p("10.244.9.0/24"), unix.RTN_BLACKHOLE }, false},
		{"multipath", func(r *kernel.ListedRoute) { r.Dst, r.Multipath = p("10.244.9.0/24"), true }, false},
	} {
		r := base
		c.edit(&r)
		if got := staleRoute(r, cidr, 2, peers); got != c.want {
			t.Errorf("%s: staleRoute = %v, want %v", c.name, got, c.want)
		}
	}
}
