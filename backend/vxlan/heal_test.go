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

// peerInPlace returns a check that node a has flannel.1 up with its address, and the
// route, neighbour and FDB entry for peer b.
func peerInPlace(a, b *testNode) func() error {
	macA, macB := vtepMAC(a.Addr, 1).String(), vtepMAC(b.Addr, 1).String()
	vtep := b.subnet.Masked().Addr().String()
	return func() error {
		for _, c := range []struct{ argv, want string }{
			{"ip -o link show flannel.1", "link/ether " + macA},
			{"ip -o link show flannel.1", ",UP"},
			{"ip -o link show flannel.1", " mtu 1450 "},
			{"ip -4 -o addr show dev flannel.1", a.subnet.Masked().Addr().String() + "/32"},
			{"ip route show exact " + b.subnet.String(), "via " + vtep + " dev flannel.1 onlink"},
			{"ip neigh show dev flannel.1", vtep + " lladdr " + macB + " PERMANENT"},
			{"bridge fdb show dev flannel.1", macB + " dst " + b.Addr.String() + " self permanent"},
		} {
			out, err := nstest.Run(a.NS, strings.Fields(c.argv)...)
			if err != nil || !strings.Contains(out, c.want) {
				return fmt.Errorf("%s: %q (%v), want %q", c.argv, strings.TrimSpace(out), err, c.want)
			}
		}
		return nil
	}
}

func TestRunRestoresWithinASecond(t *testing.T) {
	a, b, pa, _ := twoNodes(t, nil)
	runInBackground(t, a.nw, time.Hour) // no periodic pass: only the kernel's notifications can help
	ping(t, pa, podB)
	macB := vtepMAC(b.Addr, 1).String()
	for _, c := range []struct {
		name  string
		argv  []string
		kinds []string // repairs that must be counted
	}{
		{"route deleted", []string{"ip route del 10.244.2.0/24"}, []string{"route"}},
		{"route gateway changed", []string{"ip route replace 10.244.2.0/24 via 10.244.2.9 dev flannel.1 onlink"}, []string{"route"}},
		{"route moved to eth0", []string{"ip route replace 10.244.2.0/24 via 192.0.2.2 dev eth0"}, []string{"route"}},
		{"neighbour deleted", []string{"ip neigh del 10.244.2.0 dev flannel.1"}, []string{"neighbour"}},
		{"neighbour MAC changed", []string{"ip neigh replace 10.244.2.0 lladdr 02:00:00:00:00:09 dev flannel.1 nud permanent"}, []string{"neighbour"}},
		{"fdb deleted", []string{"bridge fdb del " + macB + " dev flannel.1 dst 192.0.2.2 self"}, []string{"fdb"}},
		{"fdb remote changed", []string{"bridge fdb replace " + macB + " dev flannel.1 dst 192.0.2.9 self permanent"}, []string{"fdb"}},
		{"address deleted", []string{"ip addr del 10.244.1.0/32 dev flannel.1"}, []string{"address"}},
		{"device down", []string{"ip link set flannel.1 down"}, []string{"device", "route"}},
		{"device MTU changed", []string{"ip link set flannel.1 mtu 1300"}, []string{"device"}},
		{"device deleted", []string{"ip link del flannel.1"}, []string{"device", "address", "route", "neighbour", "fdb"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := map[string]int{}
			for _, k := range c.kinds {
				before[k] = a.repairs.Count(k)
			}
			for _, argv := range c.argv {
				kerneltest.MustRun(t, a.NS, strings.Fields(argv)...)
			}
			d := kerneltest.WaitFor(t, time.Second, c.name, peerInPlace(a, b))
			t.Logf("%s: restored after %v", c.name, d)
			ping(t, pa, podB)
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
	kerneltest.WaitFor(t, time.Second, "restored", peerInPlace(a, b))
	mon.Settle(100 * time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	if n, last := mon.Settle(50 * time.Millisecond); n != 0 {
		t.Fatalf("after the repair, Run made %d more changes (last: %s)", n, last)
	}
	if n := a.repairs.Count("device"); n != 1 {
		t.Fatalf("%d device repairs counted, want 1 (%s)", n, a.repairs)
	}
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
