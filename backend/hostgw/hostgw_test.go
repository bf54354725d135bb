package hostgw

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/test/nstest"
)

// testNode is one node namespace with an active host-gw network.
type testNode struct {
	kerneltest.Node
	subnet  netip.Prefix
	nw      *network
	repairs *kerneltest.Repairs
	pod     string // the pod namespace
	podIP   netip.Addr
}

func (n *testNode) lease() subnet.Lease {
	return subnet.Lease{Subnet: n.subnet, Attrs: subnet.LeaseAttrs{PublicIP: n.Addr, BackendType: Name}}
}

// startNode builds and activates the backend inside kn's namespace (its sockets stay
// there) and, with pod, gives the node a pod.
func startNode(t *testing.T, kn kerneltest.Node, sn string, third byte, pod bool) *testNode {
	t.Helper()
	n := &testNode{Node: kn, subnet: netip.MustParsePrefix(sn), repairs: &kerneltest.Repairs{}}
	err := nsutil.Do(kn.NS, func() error {
		ifc, err := net.InterfaceByName(kn.Iface)
		if err != nil {
			return err
		}
		be, err := newBackend(backend.Env{
			Ext:      backend.ExternalInterface{Iface: ifc, IfaceAddr: kn.Addr, PublicIP: kn.Addr},
			Network:  &subnet.Config{EnableIPv4: true, Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24, BackendType: Name},
			Log:      testr.New(t).WithValues("node", kn.Addr),
			OnRepair: n.repairs.Report,
		})
		if err != nil {
			return err
		}
		nw, err := be.Activate(context.Background(), n.lease())
		if err != nil {
			return err
		}
		n.nw = nw.(*network)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.nw.Close() })
	if !pod {
		return n
	}
	n.podIP = netip.AddrFrom4([4]byte{10, 244, third, 2})
	n.pod = kerneltest.AddPod(t, kn, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, third, 1}), 24), n.podIP, 0)
	return n
}

// run starts Run and stops it (checking that it returns) when the test ends.
func run(t *testing.T, nw *network, resync time.Duration) {
	t.Helper()
	nw.resync = resync
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := nw.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// twoNodes starts the backend on two connected nodes (with a pod each when pods is set)
// and exchanges their leases.
func twoNodes(t *testing.T, pods bool) (a, b *testNode) {
	t.Helper()
	ka, kb := kerneltest.TwoNodes(t)
	a, b = startNode(t, ka, "10.244.1.0/24", 1, pods), startNode(t, kb, "10.244.2.0/24", 2, pods)
	ctx := context.Background()
	if err := a.nw.Apply(ctx, []subnet.Event{{Type: subnet.Added, Lease: b.lease()}}); err != nil {
		t.Fatal(err)
	}
	if err := b.nw.Apply(ctx, []subnet.Event{{Type: subnet.Added, Lease: a.lease()}}); err != nil {
		t.Fatal(err)
	}
	return a, b
}

func ping(t *testing.T, ns string, dst netip.Addr) {
	t.Helper()
	if out, err := nstest.Run(ns, "ping", "-c", "1", "-W", "2", dst.String()); err != nil {
		t.Fatalf("ping %s: %v\n%s", dst, err, out)
	}
}

// routeIs returns a check that the node's route to dst reads want.
func routeIs(ns, dst, want string) func() error {
	return func() error {
		out, err := nstest.Run(ns, "ip", "-4", "route", "show", "exact", dst)
		if err != nil || !strings.Contains(out, want) {
			return fmt.Errorf("route to %s = %q (%v), want %q", dst, strings.TrimSpace(out), err, want)
		}
		return nil
	}
}

// TestRunRestoresRoutes: a route to a peer that is deleted or changed comes back from the
// kernel's notifications alone (no periodic pass) and is counted, and pods ping again; the
// time each repair took is logged (a second is expected, 15 s fails).
func TestRunRestoresRoutes(t *testing.T) {
	a, b := twoNodes(t, true)
	run(t, a.nw, time.Hour) // no periodic pass: only the kernel's notifications can help
	ping(t, a.pod, b.podIP)
	const dst, want = "10.244.2.0/24", "10.244.2.0/24 via 192.0.2.2 dev eth0"
	for i, c := range []struct {
		name string
		argv string
	}{
		{"deleted", "ip route del 10.244.2.0/24"},
		{"other gateway", "ip route replace 10.244.2.0/24 via 192.0.2.9 dev eth0"},
		{"other device", "ip route replace 10.244.2.0/24 dev lo"},
		{"blackhole", "ip route replace blackhole 10.244.2.0/24"},
	} {
		kerneltest.MustRun(t, a.NS, strings.Fields(c.argv)...)
		d := kerneltest.WaitFor(t, time.Second, c.name, routeIs(a.NS, dst, want))
		t.Logf("route %s: restored after %v", c.name, d)
		ping(t, a.pod, b.podIP)
		kerneltest.WaitFor(t, time.Second, "repair counted", func() error {
			if n := a.repairs.Count("route"); n != i+1 {
				return fmt.Errorf("%d route repairs counted, want %d", n, i+1)
			}
			return nil
		})
		time.Sleep(100 * time.Millisecond) // the next incident is a separate one
	}
	// The external link goes down (its routes vanish without a notification each) and
	// comes back: the route returns with it.
	kerneltest.MustRun(t, a.NS, "ip", "link", "set", "eth0", "down")
	time.Sleep(100 * time.Millisecond)
	kerneltest.MustRun(t, a.NS, "ip", "link", "set", "eth0", "up")
	d := kerneltest.WaitFor(t, time.Second, "after link up", routeIs(a.NS, dst, want))
	t.Logf("route after the link came back up: restored after %v", d)
	ping(t, a.pod, b.podIP)
}

func TestIdleRunWritesNothing(t *testing.T) {
	a, _ := twoNodes(t, false) // a pod's bridge makes changes of its own for a while
	mon := kerneltest.Watch(t, a.NS)
	run(t, a.nw, 20*time.Millisecond) // many full passes
	time.Sleep(300 * time.Millisecond)
	if n, last := mon.Settle(50 * time.Millisecond); n != 0 {
		t.Fatalf("idle Run made %d changes (last: %s)", n, last)
	}
	// After a repair, the pass that hears its own write changes nothing more.
	kerneltest.MustRun(t, a.NS, "ip", "route", "del", "10.244.2.0/24")
	kerneltest.WaitFor(t, time.Second, "restored", routeIs(a.NS, "10.244.2.0/24", "via 192.0.2.2"))
	mon.Settle(100 * time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	if n, last := mon.Settle(50 * time.Millisecond); n != 0 {
		t.Fatalf("after the repair, Run made %d more changes (last: %s)", n, last)
	}
	if n := a.repairs.Count("route"); n != 1 {
		t.Fatalf("%d route repairs counted, want 1", n)
	}
}

func TestPeerProgrammedWhenItBecomesDirect(t *testing.T) {
	a, _ := twoNodes(t, false)
	run(t, a.nw, time.Hour)
	far := subnet.Lease{Subnet: netip.MustParsePrefix("10.244.7.0/24"), Attrs: subnet.LeaseAttrs{PublicIP: netip.MustParseAddr("198.51.100.7"), BackendType: Name}}
	kerneltest.MustRun(t, a.NS, "ip", "route", "add", "198.51.100.0/24", "via", "192.0.2.254")
	if err := a.nw.Apply(context.Background(), []subnet.Event{{Type: subnet.Added, Lease: far}}); err == nil {
		t.Fatal("Apply of a peer behind a gateway: want an error")
	}
	// The peer's address moves onto the segment: the route change through eth0 triggers
	// a pass that programs the peer.
	kerneltest.MustRun(t, a.NS, "ip", "route", "replace", "198.51.100.0/24", "dev", "eth0")
	kerneltest.WaitFor(t, time.Second, "peer programmed", routeIs(a.NS, "10.244.7.0/24", "via 198.51.100.7 dev eth0"))
	if n := a.repairs.Count("route"); n != 0 {
		t.Errorf("a retry counted as %d repairs", n)
	}
}

func TestRelevant(t *testing.T) {
	n := &network{ext: backend.ExternalInterface{Iface: &net.Interface{Index: 2}}, cidr: netip.MustParsePrefix("10.244.0.0/16"),
		cidr6: netip.MustParsePrefix("fd00:10::/48")}
	p := netip.MustParsePrefix
	for _, c := range []struct {
		name string
		c    kernel.Change
		want bool
	}{
		{"peer route", kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 9, Prefix: p("10.244.2.0/24")}, true},
		{"route via eth0", kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 2, Prefix: p("0.0.0.0/0")}, true},
		{"route in another table", kernel.Change{Kind: kernel.RouteChange, Table: 255, LinkIndex: 2, Prefix: p("10.244.2.0/24")}, false},
		{"unrelated route", kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 5, Prefix: p("172.16.0.0/12")}, false},
		{"route covering the network", kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 5, Prefix: p("10.0.0.0/8")}, false},
		{"peer IPv6 route", kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 9, Prefix: p("fd00:10:0:2::/64")}, true},
		{"IPv6 route via eth0", kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 2, Prefix: p("::/0")}, true},
		{"unrelated IPv6 route", kernel.Change{Kind: kernel.RouteChange, Table: 254, LinkIndex: 5, Prefix: p("fd00:11::/64")}, false},
		{"eth0 down", kernel.Change{Kind: kernel.LinkChange, LinkIndex: 2}, true},
		{"other link", kernel.Change{Kind: kernel.LinkChange, LinkIndex: 7}, false},
		{"eth0 address", kernel.Change{Kind: kernel.AddrChange, LinkIndex: 2}, true},
		{"ARP churn on eth0", kernel.Change{Kind: kernel.NeighChange, LinkIndex: 2}, false},
		{"fdb", kernel.Change{Kind: kernel.FDBChange, LinkIndex: 2}, false},
	} {
		if got := n.relevant(c.c); got != c.want {
			t.Errorf("%s: relevant = %v, want %v", c.name, got, c.want)
		}
	}
}
