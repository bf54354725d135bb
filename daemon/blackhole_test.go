package daemon

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/pkg/ip"
	"github.com/weftnet/weft/test/nstest"
)

var (
	bhNetwork = netip.MustParsePrefix("10.244.0.0/16")
	bhSubnet  = netip.MustParsePrefix("10.244.3.0/24")
	bhOther   = netip.MustParsePrefix("10.244.9.0/24")
)

func TestBlackholePlan(t *testing.T) {
	route := func(dst string, typ, metric, table int) netlink.Route {
		return netlink.Route{Dst: ip.IPNet(netip.MustParsePrefix(dst)), Type: typ, Priority: metric, Table: table}
	}
	ours := func(dst string) netlink.Route { return *blackholeRoute(netip.MustParsePrefix(dst)) }
	for _, tc := range []struct {
		name   string
		have   []netlink.Route
		want   netip.Prefix
		add    bool
		remove []netip.Prefix
	}{
		{name: "nothing yet", want: bhSubnet, add: true},
		{name: "in place", have: []netlink.Route{ours("10.244.3.0/24")}, want: bhSubnet},
		{name: "the subnet changed", have: []netlink.Route{ours("10.244.9.0/24")}, want: bhSubnet, add: true, remove: []netip.Prefix{bhOther}},
		{name: "flag off: ours go", have: []netlink.Route{ours("10.244.3.0/24"), ours("10.244.9.0/24")}, remove: []netip.Prefix{bhSubnet, bhOther}},
		{name: "flag off, nothing there"},
		{name: "table unset in a dump counts as main", have: []netlink.Route{route("10.244.3.0/24", unix.RTN_BLACKHOLE, blackholeMetric, 0)}, want: bhSubnet},
		{name: "flanneld's (metric 0) is not ours", have: []netlink.Route{route("10.244.3.0/24", unix.RTN_BLACKHOLE, 0, unix.RT_TABLE_MAIN)}, want: bhSubnet, add: true},
		{name: "flanneld's is left alone with the flag off", have: []netlink.Route{route("10.244.3.0/24", unix.RTN_BLACKHOLE, 0, unix.RT_TABLE_MAIN)}},
		{name: "another table is not ours", have: []netlink.Route{route("10.244.9.0/24", unix.RTN_BLACKHOLE, blackholeMetric, 100)}, want: bhSubnet, add: true},
		{name: "not a blackhole", have: []netlink.Route{route("10.244.9.0/24", unix.RTN_UNICAST, blackholeMetric, unix.RT_TABLE_MAIN)}, want: bhSubnet, add: true},
		{name: "outside the Network", have: []netlink.Route{ours("10.99.0.0/24")}, want: bhSubnet, add: true},
		{name: "a supernet of the Network", have: []netlink.Route{ours("10.0.0.0/8")}, want: bhSubnet, add: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			add, remove := blackholePlan(tc.have, bhNetwork, tc.want)
			if add != tc.add || !slices.Equal(remove, tc.remove) {
				t.Errorf("plan = add %v remove %v, want add %v remove %v", add, remove, tc.add, tc.remove)
			}
		})
	}
}

// TestBlackholeInNamespace runs the route's whole life in a throwaway namespace: added at
// once, idempotent, never in the way of a bridge's route to the subnet, back after a manual
// delete, moved when the subnet changes, gone when the flag is dropped, and nobody else's
// blackhole route touched.
func TestBlackholeInNamespace(t *testing.T) {
	name := nstest.Temp(t, "blackhole")
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	// The node's uplink with a default route: without a blackhole, a packet to an unassigned
	// address of the subnet would leave through it.
	la := netlink.NewLinkAttrs()
	la.Name = "eth0"
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth0p"}); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{
		{"ip", "addr", "add", "192.0.2.1/24", "dev", "eth0"}, {"ip", "link", "set", "eth0", "up"},
		{"ip", "link", "set", "eth0p", "up"}, {"ip", "route", "add", "default", "via", "192.0.2.254"},
	} {
		if out, err := nstest.Run(name, cmd...); err != nil {
			t.Fatal(out, err)
		}
	}
	// Someone else's blackhole route inside the Network (flanneld's, at metric 0, for a
	// subnet this node no longer has).
	foreign := &netlink.Route{Dst: ip.IPNet(bhOther), Type: unix.RTN_BLACKHOLE, Table: unix.RT_TABLE_MAIN}
	if err := h.RouteAdd(foreign); err != nil {
		t.Fatal(err)
	}
	blackholed := func(addr string) bool {
		t.Helper()
		_, err := h.RouteGet(net.ParseIP(addr))
		if err != nil && !errors.Is(err, unix.EINVAL) {
			t.Fatalf("route get %s: %v", addr, err)
		}
		return err != nil // the kernel answers a lookup that hits a blackhole with EINVAL
	}
	showRoutes := func() string { out, _ := nstest.Run(name, "ip", "route", "show"); return out }

	added, removed, err := syncBlackhole(h, bhNetwork, bhSubnet)
	if err != nil || !added || len(removed) != 0 {
		t.Fatalf("first sync: added %v removed %v err %v", added, removed, err)
	}
	if !blackholed("10.244.3.77") {
		t.Fatalf("an unassigned address of the subnet is routed:\n%s", showRoutes())
	}
	if added, removed, err = syncBlackhole(h, bhNetwork, bhSubnet); err != nil || added || len(removed) != 0 {
		t.Fatalf("second sync changed something: added %v removed %v err %v", added, removed, err)
	}

	// A bridge holding the subnet (cni0 with <subnet>.1/24) comes up after the route: its link
	// route wins, so the node still reaches its pods; weft's route stays for the rest.
	la = netlink.NewLinkAttrs()
	la.Name = "cni0"
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "cni0p"}); err != nil {
		t.Fatal(err)
	}
	cni0, err := h.LinkByName("cni0")
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("10.244.3.1/24")
	if err := h.AddrAdd(cni0, addr); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"cni0", "cni0p"} {
		if out, err := nstest.Run(name, "ip", "link", "set", l, "up"); err != nil {
			t.Fatal(out, err)
		}
	}
	if blackholed("10.244.3.77") {
		t.Fatalf("weft's blackhole route shadows the bridge's route to the subnet:\n%s", showRoutes())
	}
	if _, _, err = syncBlackhole(h, bhNetwork, bhSubnet); err != nil {
		t.Fatalf("sync beside the bridge's route: %v", err)
	}
	if out, err := nstest.Run(name, "ip", "link", "del", "cni0"); err != nil {
		t.Fatal(out, err)
	}

	// Deleted by hand: the next check puts it back and counts a repair.
	logger, _ := ktesting.NewTestContext(t)
	d := New(Config{BlackholeRoute: true, IPTablesSync: 20 * time.Millisecond}, logger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.keepBlackhole(ctx, h, bhNetwork, bhSubnet) }()
	if err := h.RouteDel(blackholeRoute(bhSubnet)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !blackholed("10.244.3.77") {
		if time.Now().After(deadline) {
			t.Fatalf("the deleted route did not come back:\n%s", showRoutes())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// The lease moved to another subnet: the old route goes, the new one comes.
	moved := netip.MustParsePrefix("10.244.4.0/24")
	added, removed, err = syncBlackhole(h, bhNetwork, moved)
	if err != nil || !added || !slices.Equal(removed, []netip.Prefix{bhSubnet}) {
		t.Fatalf("move: added %v removed %v err %v", added, removed, err)
	}
	if blackholed("10.244.3.77") || !blackholed("10.244.4.77") {
		t.Fatalf("after the move:\n%s", showRoutes())
	}

	// The next start without the flag removes weft's route, and only weft's.
	off := New(Config{BlackholeRoute: false}, logger)
	if err := off.keepBlackhole(context.Background(), h, bhNetwork, moved); err != nil {
		t.Fatal(err)
	}
	if blackholed("10.244.4.77") {
		t.Fatalf("weft's route stayed without the flag:\n%s", showRoutes())
	}
	if !blackholed("10.244.9.77") {
		t.Fatalf("someone else's blackhole route was removed:\n%s", showRoutes())
	}
}
