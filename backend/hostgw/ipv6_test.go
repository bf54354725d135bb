package hostgw

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/test/nstest"
)

// The IPv6 side of the test networks: the underlay 2001:db8::/64 on the node links (node
// i has 2001:db8::i), pod subnets fd00:10:0:i::/64 in fd00:10::/48.
var (
	podNet6 = netip.MustParsePrefix("fd00:10::/48")
	podNet4 = netip.MustParsePrefix("10.244.0.0/16")
)

func underlay6(i byte) netip.Addr { return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: i}) }
func subnet6(i byte) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0x00, 0x00, 0x10, 6: 0, 7: i}), 64)
}
func subnet4(i byte) netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, i, 0}), 24)
}

// enableIPv6 switches IPv6 on in ns (new namespaces may inherit disable_ipv6=1) for the
// existing links and new ones.
func enableIPv6(t *testing.T, ns string, links ...string) {
	t.Helper()
	for _, c := range append([]string{"all", "default"}, links...) {
		kerneltest.MustRun(t, ns, "sysctl", "-qw", "net.ipv6.conf."+c+".disable_ipv6=0")
	}
}

// node6 is a node of an IPv6 test network: v4 and v6 say which families the network runs.
type node6 struct {
	kerneltest.Node
	i       byte
	v4, v6  bool
	nw      *network
	repairs *kerneltest.Repairs
	pod     string
	pod4    netip.Addr
	pod6    netip.Addr
}

func (n *node6) lease() subnet.Lease {
	l := subnet.Lease{Attrs: subnet.LeaseAttrs{BackendType: Name}}
	if n.v4 {
		l.Subnet, l.Attrs.PublicIP = subnet4(n.i), n.Addr
	}
	if n.v6 {
		l.IPv6Subnet, l.Attrs.PublicIPv6 = subnet6(n.i), underlay6(n.i)
	}
	return l
}

// startNode6 gives kn the IPv6 underlay address 2001:db8::i (and, in an IPv6-only network,
// takes its IPv4 address away), activates the backend there and gives the node a pod with
// an address of each family the network runs.
func startNode6(t *testing.T, kn kerneltest.Node, i byte, v4, v6 bool) *node6 {
	t.Helper()
	n := &node6{Node: kn, i: i, v4: v4, v6: v6, repairs: &kerneltest.Repairs{}}
	enableIPv6(t, kn.NS, kn.Iface)
	kerneltest.MustRun(t, kn.NS, "ip", "-6", "addr", "replace", underlay6(i).String()+"/64", "dev", kn.Iface, "nodad")
	cfg := &subnet.Config{EnableIPv4: v4, EnableIPv6: v6, BackendType: Name}
	ext := backend.ExternalInterface{IfaceAddrV6: underlay6(i), PublicIPv6: underlay6(i), PublicIPv6Iface: kn.Iface}
	if v4 {
		cfg.Network, cfg.SubnetLen = podNet4, 24
		ext.IfaceAddr, ext.PublicIP, ext.PublicIPIface = kn.Addr, kn.Addr, kn.Iface
	} else {
		kerneltest.MustRun(t, kn.NS, "ip", "-4", "addr", "flush", "dev", kn.Iface)
	}
	if v6 {
		cfg.IPv6Network, cfg.IPv6SubnetLen = podNet6, 64
	}
	err := nsutil.Do(kn.NS, func() error {
		ifc, err := net.InterfaceByName(kn.Iface)
		if err != nil {
			return err
		}
		ext.Iface = ifc
		be, err := newBackend(backend.Env{Ext: ext, Network: cfg, Log: testr.New(t).WithValues("node", i), OnRepair: n.repairs.Report})
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
	n.addPod(t)
	return n
}

// addPod puts a pod behind the node: a bridge cni0 holding the first address of each own
// subnet, and a pod namespace with the second, default routes via the bridge.
func (n *node6) addPod(t *testing.T) {
	t.Helper()
	n.pod = nstest.Temp(t, "pod")
	enableIPv6(t, n.pod)
	kerneltest.MustRun(t, n.NS, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	kerneltest.MustRun(t, n.NS, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	kerneltest.MustRun(t, n.NS, "ip", "link", "add", "cni0", "type", "bridge")
	kerneltest.MustRun(t, n.NS, "ip", "link", "add", "vethpod", "type", "veth", "peer", "name", "eth0", "netns", n.pod)
	kerneltest.MustRun(t, n.NS, "ip", "link", "set", "vethpod", "master", "cni0", "up")
	kerneltest.MustRun(t, n.NS, "ip", "link", "set", "cni0", "up")
	kerneltest.MustRun(t, n.pod, "ip", "link", "set", "eth0", "up")
	l := n.lease()
	if n.v4 {
		gw := l.Subnet.Addr().Next()
		n.pod4 = gw.Next()
		kerneltest.MustRun(t, n.NS, "ip", "addr", "add", netip.PrefixFrom(gw, 24).String(), "dev", "cni0")
		kerneltest.MustRun(t, n.pod, "ip", "addr", "add", netip.PrefixFrom(n.pod4, 24).String(), "dev", "eth0")
		kerneltest.MustRun(t, n.pod, "ip", "route", "add", "default", "via", gw.String())
	}
	if n.v6 {
		gw := l.IPv6Subnet.Addr().Next()
		n.pod6 = gw.Next()
		kerneltest.MustRun(t, n.NS, "ip", "addr", "add", netip.PrefixFrom(gw, 64).String(), "dev", "cni0", "nodad")
		kerneltest.MustRun(t, n.pod, "ip", "addr", "add", netip.PrefixFrom(n.pod6, 64).String(), "dev", "eth0", "nodad")
		kerneltest.MustRun(t, n.pod, "ip", "-6", "route", "add", "default", "via", gw.String())
	}
}

// twoNodes6 starts two nodes of a network running the given families and exchanges their
// leases.
func twoNodes6(t *testing.T, v4, v6 bool) (a, b *node6) {
	t.Helper()
	ka, kb := kerneltest.TwoNodes(t)
	a, b = startNode6(t, ka, 1, v4, v6), startNode6(t, kb, 2, v4, v6)
	ctx := context.Background()
	if err := a.nw.Apply(ctx, []subnet.Event{{Type: subnet.Added, Lease: b.lease()}}); err != nil {
		t.Fatal(err)
	}
	if err := b.nw.Apply(ctx, []subnet.Event{{Type: subnet.Added, Lease: a.lease()}}); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// pingAll pings from a's pod to b's pod over each family the network runs.
func pingAll(t *testing.T, a, b *node6) {
	t.Helper()
	for _, dst := range []netip.Addr{b.pod4, b.pod6} {
		if !dst.IsValid() {
			continue
		}
		var out string
		var err error
		for range 3 { // the first IPv6 ping may wait for neighbour discovery
			if out, err = nstest.Run(a.pod, "ping", "-c", "1", "-W", "2", dst.String()); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatalf("ping %s from %s: %v\n%s", dst, a.pod, err, out)
		}
	}
}

// route6Is returns a check that the node's IPv6 route to dst reads want.
func route6Is(ns string, dst netip.Prefix, want string) func() error {
	return func() error {
		out, err := nstest.Run(ns, "ip", "-6", "route", "show", "exact", dst.String())
		if err != nil || !strings.Contains(out, want) {
			return fmt.Errorf("route to %s = %q (%v), want %q", dst, strings.TrimSpace(out), err, want)
		}
		return nil
	}
}

// TestDualStackPodsTalkAndV6RoutesHeal: in a dual-stack network each node routes the
// peer's IPv4 subnet via its IPv4 address and its IPv6 subnet via its IPv6 address; pods
// ping each other over both families; a deleted or changed IPv6 route is put back (Run,
// with no periodic pass, hears the kernel's IPv6 route notifications; the time is logged),
// and the IPv4 route too.
func TestDualStackPodsTalkAndV6RoutesHeal(t *testing.T) {
	a, b := twoNodes6(t, true, true)
	run(t, a.nw, time.Hour)
	pingAll(t, a, b)
	pingAll(t, b, a)
	want6 := "via 2001:db8::2 dev eth0 metric 1024"
	kerneltest.WaitFor(t, time.Second, "IPv6 route", route6Is(a.NS, subnet6(2), want6))
	kerneltest.WaitFor(t, time.Second, "IPv4 route", routeIs(a.NS, "10.244.2.0/24", "via 192.0.2.2 dev eth0"))
	for i, argv := range []string{
		"ip -6 route del fd00:10:0:2::/64",
		"ip -6 route replace fd00:10:0:2::/64 via 2001:db8::9 dev eth0 metric 1024",
		"ip -6 route replace fd00:10:0:2::/64 dev lo metric 1024",
		"ip -4 route del 10.244.2.0/24",
	} {
		kerneltest.MustRun(t, a.NS, strings.Fields(argv)...)
		d := kerneltest.WaitFor(t, time.Second, argv, func() error {
			if err := route6Is(a.NS, subnet6(2), want6)(); err != nil {
				return err
			}
			return routeIs(a.NS, "10.244.2.0/24", "via 192.0.2.2 dev eth0")()
		})
		t.Logf("%s: restored after %v", argv, d)
		kerneltest.WaitFor(t, time.Second, "repair counted", func() error {
			if n := a.repairs.Count("route"); n != i+1 {
				return fmt.Errorf("%d route repairs counted, want %d", n, i+1)
			}
			return nil
		})
		time.Sleep(100 * time.Millisecond) // the next incident is a separate one
	}
	pingAll(t, a, b)
	if drift, err := a.nw.reconcile(); err != nil || drift {
		t.Fatalf("reconcile after the repairs = %v, %v; want nothing to do", drift, err)
	}
	d := a.nw.Describe()
	for _, sn := range []netip.Prefix{subnet4(2), subnet6(2)} {
		if d.Peers[sn].State != backend.PeerProgrammed {
			t.Errorf("Describe: peer %s = %+v", sn, d.Peers[sn])
		}
	}
}

// TestIPv6OnlyPodsTalk: in an IPv6-only network (no IPv4 on the underlay either) the
// leases have no IPv4 subnet; every peer is kept by its key (several IPv6-only leases,
// whose IPv4 subnets are all the zero Prefix, each get their route), pods ping over IPv6,
// no IPv4 route is written, and a deleted IPv6 route comes back (the time is logged).
func TestIPv6OnlyPodsTalk(t *testing.T) {
	a, b := twoNodes6(t, false, true)
	third := subnet.Lease{IPv6Subnet: subnet6(3), Attrs: subnet.LeaseAttrs{PublicIPv6: underlay6(3), BackendType: Name}}
	if err := a.nw.Apply(context.Background(), []subnet.Event{{Type: subnet.Added, Lease: third}}); err != nil {
		t.Fatal(err)
	}
	run(t, a.nw, time.Hour)
	pingAll(t, a, b)
	pingAll(t, b, a)
	kerneltest.WaitFor(t, time.Second, "route to b", route6Is(a.NS, subnet6(2), "via 2001:db8::2 dev eth0"))
	kerneltest.WaitFor(t, time.Second, "route to the third", route6Is(a.NS, subnet6(3), "via 2001:db8::3 dev eth0"))
	if out := kerneltest.MustRun(t, a.NS, "ip", "-4", "route", "show"); strings.Contains(out, "10.244.") || strings.Contains(out, "0.0.0.0") {
		t.Fatalf("IPv4 routes in an IPv6-only network:\n%s", out)
	}
	kerneltest.MustRun(t, a.NS, "ip", "-6", "route", "del", subnet6(2).String())
	d := kerneltest.WaitFor(t, time.Second, "restored", route6Is(a.NS, subnet6(2), "via 2001:db8::2 dev eth0"))
	t.Logf("deleted IPv6 route restored after %v", d)
	pingAll(t, a, b)
	// The third peer leaves: its route goes, b's stays.
	if err := a.nw.Apply(context.Background(), []subnet.Event{{Type: subnet.Removed, Lease: third}}); err != nil {
		t.Fatal(err)
	}
	if out := kerneltest.MustRun(t, a.NS, "ip", "-6", "route", "show", "exact", subnet6(3).String()); out != "" {
		t.Fatalf("route of the removed peer kept: %q", out)
	}
	kerneltest.WaitFor(t, time.Second, "route to b kept", route6Is(a.NS, subnet6(2), "via 2001:db8::2 dev eth0"))
}
