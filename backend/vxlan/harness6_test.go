package vxlan

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/subnet"
	"github.com/weftnet/weft/test/nstest"
)

// The IPv6 test topology: the kerneltest nodes' eth0 also carry 2001:db8::1/64 and
// 2001:db8::2/64 (the IPv6 underlay), and the pods fd00:0:0:<n>::2 behind cni0
// (fd00:0:0:<n>::1/64) in the node's IPv6 subnet fd00:0:0:<n>::/64 of fd00::/48.
const (
	subnetA6 = "fd00:0:0:1::/64"
	subnetB6 = "fd00:0:0:2::/64"
)

var (
	ipv6Network = netip.MustParsePrefix("fd00::/48")
	underA6     = netip.MustParseAddr("2001:db8::1")
	underB6     = netip.MustParseAddr("2001:db8::2")
	podA6       = netip.MustParseAddr("fd00:0:0:1::2")
	podB6       = netip.MustParseAddr("fd00:0:0:2::2")
)

// enableIPv6 switches IPv6 on in ns (new namespaces may inherit disable_ipv6=1) for
// the namespace's defaults and the given devices.
func enableIPv6(t *testing.T, ns string, devs ...string) {
	t.Helper()
	for _, d := range append([]string{"all", "default", "lo"}, devs...) {
		kerneltest.MustRun(t, ns, "sysctl", "-qw", "net.ipv6.conf."+d+".disable_ipv6=0")
	}
}

// addUnderlay6 gives node kn's eth0 the IPv6 address a/64, without duplicate address
// detection so that it is usable at once.
func addUnderlay6(t *testing.T, kn kerneltest.Node, a netip.Addr) {
	t.Helper()
	enableIPv6(t, kn.NS, kn.Iface)
	kerneltest.MustRun(t, kn.NS, "ip", "-6", "addr", "add", a.String()+"/64", "dev", kn.Iface, "nodad")
}

// startNode6 runs New, Prepare and Activate on kn for an IPv6 network: dual stack when
// sn (the IPv4 subnet) is not "", else IPv6 only.
func startNode6(t *testing.T, kn kerneltest.Node, sn, sn6 string, addr6 netip.Addr, keys map[string]any) *testNode {
	t.Helper()
	n := &testNode{Node: kn, subnet6: netip.MustParsePrefix(sn6), addr6: addr6}
	if sn != "" {
		n.subnet = netip.MustParsePrefix(sn)
	}
	n.be = newBackendWith(t, kn, keys, func(env *backend.Env) {
		cfg := env.Network
		cfg.EnableIPv4 = sn != ""
		cfg.EnableIPv6, cfg.IPv6Network, cfg.IPv6SubnetLen = true, ipv6Network, 64
		if sn == "" {
			cfg.Network, cfg.SubnetLen = netip.Prefix{}, 0
			env.Ext.IfaceAddr, env.Ext.PublicIP = netip.Addr{}, netip.Addr{}
		}
		env.Ext.IfaceAddrV6, env.Ext.PublicIPv6, env.Ext.PublicIPv6Iface = addr6, addr6, kn.Iface
	})
	activate(t, n)
	return n
}

// addPod6 gives a pod of kn the IPv6 address pod behind cni0 holding gw: in podNS (a pod
// made by kerneltest.AddPod, dual stack) or, when podNS is "", in a new IPv6-only pod.
// It returns the pod namespace.
func addPod6(t *testing.T, kn kerneltest.Node, gw netip.Prefix, pod netip.Addr, mtu int, podNS string) string {
	t.Helper()
	enableIPv6(t, kn.NS)
	kerneltest.MustRun(t, kn.NS, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	if _, err := nstest.Run(kn.NS, "ip", "link", "show", "cni0"); err != nil {
		kerneltest.MustRun(t, kn.NS, "ip", "link", "add", "cni0", "type", "bridge")
		kerneltest.MustRun(t, kn.NS, "ip", "link", "set", "cni0", "up")
	}
	enableIPv6(t, kn.NS, "cni0")
	if out := kerneltest.MustRun(t, kn.NS, "ip", "-6", "addr", "show", "dev", "cni0"); !strings.Contains(out, gw.String()) {
		kerneltest.MustRun(t, kn.NS, "ip", "-6", "addr", "add", gw.String(), "dev", "cni0", "nodad")
	}
	if podNS == "" {
		podNS = nstest.Temp(t, "pod6")
		host := fmt.Sprintf("veth6x%d", pod.As16()[15])
		kerneltest.MustRun(t, kn.NS, "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", podNS)
		kerneltest.MustRun(t, kn.NS, "ip", "link", "set", host, "master", "cni0", "up")
		if mtu > 0 {
			kerneltest.MustRun(t, podNS, "ip", "link", "set", "eth0", "mtu", fmt.Sprint(mtu))
		}
		kerneltest.MustRun(t, podNS, "ip", "link", "set", "eth0", "up")
	}
	enableIPv6(t, podNS, "eth0")
	kerneltest.MustRun(t, podNS, "ip", "-6", "addr", "add", netip.PrefixFrom(pod, gw.Bits()).String(), "dev", "eth0", "nodad")
	kerneltest.MustRun(t, podNS, "ip", "-6", "route", "add", "default", "via", gw.Addr().String())
	return podNS
}

// twoNodes6 starts the backend on two nodes with an IPv6 underlay, dual stack (dual) or
// IPv6 only, each with one pod, and exchanges their leases.
func twoNodes6(t *testing.T, dual bool, keys map[string]any) (a, b *testNode, podNSA, podNSB string) {
	t.Helper()
	ka, kb := kerneltest.TwoNodes(t)
	addUnderlay6(t, ka, underA6)
	addUnderlay6(t, kb, underB6)
	snA, snB := "", ""
	if dual {
		snA, snB = subnetA, subnetB
	}
	a = startNode6(t, ka, snA, subnetA6, underA6, keys)
	b = startNode6(t, kb, snB, subnetB6, underB6, keys)
	connect(t, a, b)
	if dual {
		podNSA = kerneltest.AddPod(t, ka, netip.MustParsePrefix("10.244.1.1/24"), podA, a.nw.MTU())
		podNSB = kerneltest.AddPod(t, kb, netip.MustParsePrefix("10.244.2.1/24"), podB, b.nw.MTU())
	}
	podNSA = addPod6(t, ka, netip.MustParsePrefix("fd00:0:0:1::1/64"), podA6, a.nw.MTU(), podNSA)
	podNSB = addPod6(t, kb, netip.MustParsePrefix("fd00:0:0:2::1/64"), podB6, b.nw.MTU(), podNSB)
	return a, b, podNSA, podNSB
}

// lease6 is a dual-stack (sn != "") or IPv6-only peer lease as flanneld writes it.
func lease6(sn, sn6 string, pub, pub6 netip.Addr) subnet.Lease {
	l := subnet.Lease{IPv6Subnet: netip.MustParsePrefix(sn6), Attrs: subnet.LeaseAttrs{
		PublicIPv6: pub6, BackendType: Name, BackendV6Data: marshalLeaseData(1, vtepMAC(pub6, 1))}}
	if sn != "" {
		l.Subnet = netip.MustParsePrefix(sn)
		l.Attrs.PublicIP, l.Attrs.BackendData = pub, marshalLeaseData(1, vtepMAC(pub, 1))
	}
	return l
}
