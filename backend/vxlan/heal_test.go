package vxlan

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/test/nstest"
)

// TestRunRestores: whatever is deleted or changed on the VXLAN device of either family
// comes back, from the kernel's notifications alone (no periodic pass), and is counted;
// the time each repair took is logged (a second is expected, 15 s fails). The ipv6 node is dual stack, and its IPv4 side stays in
// place.
func TestRunRestores(t *testing.T) {
	forEachFamily(t, runRestores)
}

func runRestores(t *testing.T, f inet) {
	a, b, pa, _ := f.twoNodes(t, nil)
	runInBackground(t, a.nw, time.Hour) // no periodic pass: only the kernel's notifications can help
	ping(t, pa, f.pod(b))
	sn, dev, ip := f.subnet(b).String(), f.dev, "ip "+f.ip
	vtep, underB := f.subnet(b).Masked().Addr(), f.underlay(b)
	macB := vtepMAC(underB, 1).String()
	for _, c := range []struct {
		name  string
		argv  string
		kinds []string // repairs that must be counted
	}{
		{"route deleted", ip + " route del " + sn, []string{"route"}},
		{"route gateway changed", ip + " route replace " + sn + " via " + withLast(vtep, 9).String() + " dev " + dev + " onlink" + f.metric, []string{"route"}},
		{"route moved to eth0", ip + " route replace " + sn + " via " + underB.String() + " dev eth0" + f.metric, []string{"route"}},
		{"neighbour deleted", ip + " neigh del " + vtep.String() + " dev " + dev, []string{"neighbour"}},
		{"neighbour MAC changed", ip + " neigh replace " + vtep.String() + " lladdr 02:00:00:00:00:09 dev " + dev + " nud permanent", []string{"neighbour"}},
		{"fdb deleted", "bridge fdb del " + macB + " dev " + dev + " dst " + underB.String() + " self", []string{"fdb"}},
		{"fdb remote changed", "bridge fdb replace " + macB + " dev " + dev + " dst " + withLast(underB, 9).String() + " self permanent", []string{"fdb"}},
		{"address deleted", fmt.Sprintf("%s addr del %s/%d dev %s", ip, f.subnet(a).Masked().Addr(), f.hostBits, dev), []string{"address"}},
		{"device down", "ip link set " + dev + " down", []string{"device", "route"}},
		{"device MTU changed", "ip link set " + dev + " mtu 1300", []string{"device"}},
		{"device deleted", "ip link del " + dev, []string{"device", "address", "route", "neighbour", "fdb"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := map[string]int{}
			for _, k := range c.kinds {
				before[k] = a.repairs.Count(k)
			}
			kerneltest.MustRun(t, a.NS, strings.Fields(c.argv)...)
			d := kerneltest.WaitFor(t, time.Second, c.name, peerInPlace(f, a, b))
			t.Logf("%s: restored after %v", c.name, d)
			ping(t, pa, f.pod(b))
			kerneltest.WaitFor(t, time.Second, "repairs counted", func() error {
				for _, k := range c.kinds {
					if a.repairs.Count(k) <= before[k] {
						return fmt.Errorf("no %s repair counted: %s", k, a.repairs)
					}
				}
				return nil
			})
			time.Sleep(100 * time.Millisecond) // the next incident is a separate one
		})
	}
	if n := a.repairs.Count("peer"); n != 0 {
		t.Errorf("%d repairs of the old kind \"peer\"", n)
	}
	if f == ipv6 {
		kerneltest.WaitFor(t, time.Second, "IPv4 entries", peerInPlace(ipv4, a, b))
		ping(t, pa, podB)
	}
}

func TestIdleRunWritesNothing(t *testing.T) {
	ka, kb := kerneltest.TwoNodes(t)
	a := startNode(t, ka, subnetA, nil)
	b := startNode(t, kb, subnetB, nil)
	connect(t, a, b)
	mon := kerneltest.Watch(t, ka.NS)
	runInBackground(t, a.nw, 20*time.Millisecond) // many full passes
	time.Sleep(300 * time.Millisecond)
	if n, last := mon.Settle(50 * time.Millisecond); n != 0 {
		t.Fatalf("idle Run made %d changes (last: %s)", n, last)
	}
	// After a repair, the pass that hears its own writes changes nothing more.
	kerneltest.MustRun(t, ka.NS, "ip", "link", "del", "flannel.1")
	kerneltest.WaitFor(t, time.Second, "restored", peerInPlace(ipv4, a, b))
	mon.Settle(100 * time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	if n, last := mon.Settle(50 * time.Millisecond); n != 0 {
		t.Fatalf("after the repair, Run made %d more changes (last: %s)", n, last)
	}
	if n := a.repairs.Count("device"); n != 1 {
		t.Fatalf("%d device repairs counted, want 1 (%s)", n, a.repairs)
	}
}

// tables6 lists weft's IPv6 state on node a: routes, neighbours, FDB entries and global
// addresses. The kernel's own link-local address and route (which it adds, and whose DAD
// ends, when it likes) are left out: they are not weft's.
const tables6 = "ip -6 route show table main | grep -v '^fe80:'; ip -6 neigh show dev flannel-v6.1 | grep -v '^fe80:'; " +
	"bridge fdb show dev flannel-v6.1; ip -6 addr show dev flannel-v6.1 scope global"

// TestIdleRunWritesNothingIPv6: with everything in place, reconcile passes of a
// dual-stack network find nothing and change nothing, also after repairing a deleted
// flannel-v6.1. (TestIdleRunWritesNothing watches netlink instead, which the kernel's own
// IPv6 link-local work would disturb.)
func TestIdleRunWritesNothingIPv6(t *testing.T) {
	a, b, _, _ := twoNodes6(t, true, nil)
	quiet := func(what string) {
		t.Helper()
		before := kerneltest.MustRun(t, a.NS, "sh", "-c", tables6)
		for i := 0; i < 5; i++ {
			drift, err := a.nw.reconcile()
			if drift || err != nil {
				t.Fatalf("%s: pass %d found drift=%v err=%v", what, i, drift, err)
			}
		}
		after := kerneltest.MustRun(t, a.NS, "sh", "-c", tables6)
		if before != after {
			t.Fatalf("%s: idle passes changed the tables:\n%s\n---\n%s", what, before, after)
		}
	}
	quiet("after connect")
	kerneltest.MustRun(t, a.NS, "ip", "link", "del", "flannel-v6.1")
	drift, err := a.nw.reconcile()
	if !drift || err != nil {
		t.Fatalf("repair pass: drift=%v err=%v", drift, err)
	}
	kerneltest.WaitFor(t, time.Second, "restored", peerInPlace(ipv6, a, b))
	quiet("after the repair")
}

func TestRunRestoresDirectRoute(t *testing.T) {
	a, b, pa, _ := twoNodes(t, map[string]any{"DirectRouting": true})
	runInBackground(t, a.nw, time.Hour)
	want := "10.244.2.0/24 via 192.0.2.2 dev eth0"
	for _, argv := range []string{"ip route del 10.244.2.0/24", "ip route replace 10.244.2.0/24 via 192.0.2.9 dev eth0"} {
		kerneltest.MustRun(t, a.NS, strings.Fields(argv)...)
		d := kerneltest.WaitFor(t, time.Second, argv, func() error {
			out, err := nstest.Run(a.NS, "ip", "route", "show", "exact", b.subnet.String())
			if err != nil || !strings.Contains(out, want) {
				return fmt.Errorf("route %q (%v), want %q", out, err, want)
			}
			return nil
		})
		t.Logf("direct route after %q: restored after %v", argv, d)
		ping(t, pa, podB)
		time.Sleep(100 * time.Millisecond)
	}
	if n := a.repairs.Count("route"); n != 2 {
		t.Errorf("%d route repairs counted, want 2", n)
	}
}

func TestRelevant(t *testing.T) {
	f := newFamily(false, deviceSpec{name: "flannel.1"}, netip.MustParsePrefix("10.244.0.0/16"), false)
	n := &network{extIdx: 2, fams: []*family{f}}
	f.devIdx.Store(5)
	p := netip.MustParsePrefix
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	for _, c := range []struct {
		name   string
		direct bool
		c      kernel.Change
		want   bool
	}{
		{"device", false, kernel.Change{Kind: kernel.LinkChange, LinkIndex: 5}, true},
		{"device re-created by name", false, kernel.Change{Kind: kernel.LinkChange, LinkIndex: 9, LinkName: "flannel.1"}, true},
		{"other link", false, kernel.Change{Kind: kernel.LinkChange, LinkIndex: 7, LinkName: "cni0"}, false},
		{"eth0 without DirectRouting", false, kernel.Change{Kind: kernel.LinkChange, LinkIndex: 2}, false},
		{"eth0 with DirectRouting", true, kernel.Change{Kind: kernel.LinkChange, LinkIndex: 2}, true},
		{"device address", false, kernel.Change{Kind: kernel.AddrChange, LinkIndex: 5}, true},
		{"eth0 address", false, kernel.Change{Kind: kernel.AddrChange, LinkIndex: 2}, false},
		{"peer route anywhere", false, kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 1, Prefix: p("10.244.2.0/24")}, true},
		{"route via device", false, kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 5, Prefix: p("192.168.0.0/16")}, true},
		{"local table", false, kernel.Change{Kind: kernel.RouteChange, Table: 255, LinkIndex: 5, Prefix: p("10.244.1.0/32")}, false},
		{"unrelated route", false, kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 2, Prefix: p("0.0.0.0/0")}, false},
		{"route via eth0 with DirectRouting", true, kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 2, Prefix: p("0.0.0.0/0")}, true},
		{"neighbour on device", false, kernel.Change{Kind: kernel.NeighChange, LinkIndex: 5, MAC: mac}, true},
		{"ARP churn on eth0", true, kernel.Change{Kind: kernel.NeighChange, LinkIndex: 2, MAC: mac}, false},
		{"fdb on device", false, kernel.Change{Kind: kernel.FDBChange, LinkIndex: 5, MAC: mac}, true},
		{"fdb on a bridge", false, kernel.Change{Kind: kernel.FDBChange, LinkIndex: 7, MAC: mac}, false},
	} {
		f.direct = c.direct
		if got := n.relevant(c.c); got != c.want {
			t.Errorf("%s: relevant = %v, want %v", c.name, got, c.want)
		}
	}
}
