//go:build linux

package gre

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/backend/internal/tundev/tundevtest"
	"github.com/weftnet/weft/subnet"
	weftcluster "github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/nstest"
)

// The dual-stack test cluster: the cluster of newCluster, plus IPv6 on the pod side.
//
//	pod A fd00:10:244:1::2 -- fd00:10:244:1::1 node A 192.0.2.1 == 192.0.2.2 node B fd00:10:244:2::1 -- fd00:10:244:2::2 pod B
//
// The underlay stays IPv4: IPv6 travels in GRE with protocol type 0x86DD.
const (
	network6 = "fd00:10:244::/56"
	dualJSON = `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"` + network6 + `","Backend":{"Type":"gre"}}`
)

func newDualCluster(t *testing.T) *cluster {
	t.Helper()
	c := newCluster(t)
	cfg, err := subnet.ParseConfig([]byte(dualJSON))
	if err != nil {
		t.Fatal(err)
	}
	c.cfg = cfg
	for _, p := range []struct{ node, pod, gw, addr string }{
		{c.nodeA, c.podA, "fd00:10:244:1::1", "fd00:10:244:1::2"},
		{c.nodeB, c.podB, "fd00:10:244:2::1", "fd00:10:244:2::2"},
	} {
		run(t, p.node, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
		run(t, p.node, "ip", "-6", "addr", "add", p.gw+"/64", "dev", "cni0", "nodad")
		run(t, p.pod, "ip", "-6", "addr", "add", p.addr+"/64", "dev", "eth0", "nodad")
		run(t, p.pod, "ip", "-6", "route", "add", "default", "via", p.gw)
	}
	return c
}

func dualLease(sn, sn6, pub string) subnet.Lease {
	l := greLease(sn, pub)
	l.IPv6Subnet = netip.MustParsePrefix(sn6)
	return l
}

// startDualNode is startNode with a dual-stack own lease.
func startDualNode(t *testing.T, c *cluster, ns, addr, own, own6, backendJSON string, peers ...subnet.Lease) *node {
	t.Helper()
	repairs := &kerneltest.Repairs{}
	be := newBackendReporting(t, c, ns, addr, backendJSON, repairs.Report)
	lease := dualLease(own, own6, addr)
	return &node{Node: tundevtest.StartNode(t, ns, be, lease, nil, peers...), be: be, repairs: repairs}
}

// tun6InPlace returns a check that node A's TUN has its IPv6 address and route.
func tun6InPlace(ns string) func() error {
	return func() error {
		for _, c := range []struct{ argv, want string }{
			{"ip -6 -o addr show dev " + TUNName, "inet6 fd00:10:244:1::/128"},
			{"ip -6 route show exact " + network6, network6 + " dev " + TUNName},
		} {
			out, err := nstest.Run(ns, strings.Fields(c.argv)...)
			if err != nil || !strings.Contains(out, c.want) {
				return fmt.Errorf("%s: %q (%v), want %q", c.argv, strings.TrimSpace(out), err, c.want)
			}
		}
		return nil
	}
}

// TestUserspaceDualStack runs two dual-stack nodes (node B in auto mode, which a
// dual-stack network runs in userspace): pods exchange IPv6 and IPv4 pings and a TCP
// transfer over IPv6, the wire carries GRE 0x86DD, and deleted IPv6 state comes back.
func TestUserspaceDualStack(t *testing.T) {
	skipWithoutNamespaces(t)
	base := runtime.NumGoroutine()
	top := t // nodes started in subtests must outlive them
	c := newDualCluster(t)
	a := startDualNode(t, c, c.nodeA, "192.0.2.1", "10.244.1.0/24", "fd00:10:244:1::/64", `{"Type":"gre","Mode":"userspace"}`,
		dualLease("10.244.2.0/24", "fd00:10:244:2::/64", "192.0.2.2"))
	b := startDualNode(t, c, c.nodeB, "192.0.2.2", "10.244.2.0/24", "fd00:10:244:2::/64", `{"Type":"gre"}`,
		dualLease("10.244.1.0/24", "fd00:10:244:1::/64", "192.0.2.1"))
	if b.be.mode != ModeUserspace {
		t.Fatalf("auto mode in a dual-stack network chose %q", b.be.mode)
	}

	t.Run("device", func(t *testing.T) {
		if err := tun6InPlace(c.nodeA)(); err != nil {
			t.Fatal(err)
		}
		if err := tunInPlace(c.nodeA)(); err != nil {
			t.Fatal(err)
		}
		d := a.NW.(backend.Describer).Describe()
		if d.Info["ipv6Address"] != "fd00:10:244:1::/128" {
			t.Fatalf("Describe().Info = %v, want ipv6Address fd00:10:244:1::/128", d.Info)
		}
		for _, sn := range []string{"10.244.2.0/24", "fd00:10:244:2::/64"} {
			if d.Peers[netip.MustParsePrefix(sn)].State != backend.PeerProgrammed {
				t.Fatalf("Describe() = %+v: peer %s not programmed", d, sn)
			}
		}
	})

	t.Run("ping both families", func(t *testing.T) {
		ping(t, c.podA, true, "-6", "-c", "3", "-i", "0.2", "fd00:10:244:2::2")
		ping(t, c.podB, true, "-6", "-c", "2", "-i", "0.2", "fd00:10:244:1::2")
		ping(t, c.podA, true, "-c", "2", "-i", "0.2", "10.244.2.2")
		ping(t, c.podB, true, "-c", "2", "-i", "0.2", "10.244.1.2")
		// An MTU-sized IPv6 packet (1476 - 40 - 8) passes.
		ping(t, c.podA, true, "-6", "-c", "1", "-M", "do", "-s", "1428", "fd00:10:244:2::2")
	})

	t.Run("wire format", func(t *testing.T) {
		fd := capture(t, c.nodeB)
		sendUDP(t, c.podA, "[fd00:10:244:2::2]:7000", "wire check 6")
		pkt := nextGRE(t, fd, "192.0.2.1", "192.0.2.2", func(inner []byte) bool { return bytes.HasSuffix(inner, []byte("wire check 6")) })
		if want := []byte{0, 0, 0x86, 0xdd}; !bytes.Equal(pkt[20:24], want) {
			t.Fatalf("GRE header % x, want % x", pkt[20:24], want)
		}
		inner := pkt[24:]
		src, dst := netip.MustParseAddr("fd00:10:244:1::2").As16(), netip.MustParseAddr("fd00:10:244:2::2").As16()
		if inner[0]>>4 != 6 || int(binary.BigEndian.Uint16(inner[4:]))+40 != len(inner) || inner[6] != 17 ||
			inner[7] != 62 || !bytes.Equal(inner[8:24], src[:]) || !bytes.Equal(inner[24:40], dst[:]) {
			t.Fatalf("inner packet % x: want IPv6/UDP %s -> %s, hop limit 62 (pod 64, node A's kernel and forwarder -1 each)", inner, "fd00:10:244:1::2", "fd00:10:244:2::2")
		}
	})

	t.Run("tcp transfer over IPv6", func(t *testing.T) {
		start := time.Now()
		from, to := &weftcluster.Pod{NS: c.podA}, &weftcluster.Pod{NS: c.podB, IP: netip.MustParseAddr("fd00:10:244:2::2")}
		if err := weftcluster.TCPTransfer(from, to, 16<<20, time.Minute); err != nil {
			t.Fatal(err)
		}
		t.Logf("16 MiB in %v (A stats %+v)", time.Since(start), a.stats())
	})

	t.Run("IPv6 drift is repaired (time logged)", func(t *testing.T) {
		routes, addrs := a.repairs.Count("route"), a.repairs.Count("address")
		run(t, c.nodeA, "ip", "-6", "route", "del", network6, "dev", TUNName)
		run(t, c.nodeA, "ip", "-6", "addr", "del", "fd00:10:244:1::/128", "dev", TUNName)
		run(t, c.nodeA, "ip", "-6", "addr", "add", "fd00:10:244:99::/128", "dev", TUNName, "nodad")
		d := kerneltest.WaitFor(t, time.Second, "IPv6 route and address repaired", func() error {
			if err := tun6InPlace(c.nodeA)(); err != nil {
				return err
			}
			if out := run(t, c.nodeA, "ip", "-6", "-o", "addr", "show", "dev", TUNName); contains(out, "fd00:10:244:99::") {
				return fmt.Errorf("stale address kept: %s", out)
			}
			if a.repairs.Count("route") <= routes || a.repairs.Count("address") <= addrs {
				return fmt.Errorf("repairs not counted: %s", a.repairs)
			}
			return nil
		})
		t.Logf("repaired after %v", d)
		ping(t, c.podA, true, "-6", "-c", "1", "fd00:10:244:2::2")
	})

	t.Run("link down and up: IPv6 side comes back", func(t *testing.T) {
		run(t, c.nodeA, "ip", "link", "set", TUNName, "down")
		kerneltest.WaitFor(t, 2*time.Second, "TUN up with its IPv6 side", func() error {
			if err := tunInPlace(c.nodeA)(); err != nil {
				return err
			}
			return tun6InPlace(c.nodeA)()
		})
		kerneltest.WaitFor(t, 2*time.Second, "pods ping over IPv6", func() error {
			_, err := nstest.Run(c.podA, "ping", "-6", "-n", "-c", "1", "-W", "0.3", "fd00:10:244:2::2")
			return err
		})
	})

	t.Run("deleted TUN comes back with its IPv6 side", func(t *testing.T) {
		run(t, c.nodeA, "ip", "link", "del", TUNName)
		kerneltest.WaitFor(t, 2*time.Second, "TUN re-created with its IPv6 side", func() error {
			if err := tunInPlace(c.nodeA)(); err != nil {
				return err
			}
			return tun6InPlace(c.nodeA)()
		})
		kerneltest.WaitFor(t, 2*time.Second, "pods ping over IPv6", func() error {
			_, err := nstest.Run(c.podA, "ping", "-6", "-n", "-c", "1", "-W", "0.3", "fd00:10:244:2::2")
			return err
		})
	})

	t.Run("restart keeps the IPv6 address and route and adopts them", func(t *testing.T) {
		a.Stop(t)
		if err := tun6InPlace(c.nodeA)(); err != nil {
			t.Fatalf("after Close: %v", err)
		}
		a = startDualNode(top, c, c.nodeA, "192.0.2.1", "10.244.1.0/24", "fd00:10:244:1::/64", `{"Type":"gre","Mode":"userspace"}`,
			dualLease("10.244.2.0/24", "fd00:10:244:2::/64", "192.0.2.2"))
		if n := a.repairs.Count("address") + a.repairs.Count("route"); n != 0 {
			t.Fatalf("restart counted %d repairs of state that was in place: %s", n, a.repairs)
		}
		ping(t, c.podA, true, "-6", "-c", "2", "-i", "0.2", "fd00:10:244:2::2")
	})

	t.Run("IPv6 from a non-peer subnet is dropped as spoofed", func(t *testing.T) {
		before := a.stats().Drops
		// Node B's address (a peer endpoint) sends an inner source outside its IPv6 subnet.
		inner := innerUDP6("fd00:10:244:7::2", "fd00:10:244:1::2", 64, "spoof")
		sendForgedGRE(t, c.nodeB, "192.0.2.2", "192.0.2.1", []byte{0, 0, 0x86, 0xdd}, inner)
		kerneltest.WaitFor(t, time.Second, "spoofed IPv6 counted", func() error {
			if got := a.stats().Drops; got[fastpath.DropSpoofedSource] <= before[fastpath.DropSpoofedSource] {
				return fmt.Errorf("spoofed drops %d, before %d", got[fastpath.DropSpoofedSource], before[fastpath.DropSpoofedSource])
			}
			return nil
		})
	})

	t.Run("peer removal takes both families", func(t *testing.T) {
		if err := a.NW.Apply(t.Context(), []subnet.Event{{Type: subnet.Removed, Lease: dualLease("10.244.2.0/24", "fd00:10:244:2::/64", "192.0.2.2")}}); err != nil {
			t.Fatal(err)
		}
		before := a.stats().Drops[fastpath.DropNoRoute]
		ping(t, c.podA, false, "-6", "-c", "1", "-W", "1", "fd00:10:244:2::2")
		ping(t, c.podA, false, "-c", "1", "-W", "1", "10.244.2.2")
		if got := a.stats().Drops[fastpath.DropNoRoute]; got < before+2 {
			t.Fatalf("no-route drops %d, want at least %d", got, before+2)
		}
		if d := a.NW.(backend.Describer).Describe(); len(d.Peers) != 0 {
			t.Fatalf("Describe() after removal = %+v", d)
		}
	})

	// Both nodes stop without leaving goroutines behind (the Plane's IPv6 watch included).
	a.Stop(t)
	b.Stop(t)
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines left, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}

// innerUDP6 builds an IPv6/UDP packet (UDP checksum 0: the forwarder does not read it).
func innerUDP6(src, dst string, hops uint8, data string) []byte {
	b := make([]byte, 48+len(data))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(8+len(data)))
	b[6], b[7] = 17, hops
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	binary.BigEndian.PutUint16(b[40:], 5000)
	binary.BigEndian.PutUint16(b[42:], 7000)
	binary.BigEndian.PutUint16(b[44:], uint16(8+len(data)))
	copy(b[48:], data)
	return b
}

// TestIPv6NewChecks checks New's family checks: Mode "kernel" is refused with an error
// naming the key in a dual-stack and in an IPv6-only network; an IPv6-only network needs
// an IPv6 interface address and public IPv6, and gets the MTU of GRE over IPv6.
func TestIPv6NewChecks(t *testing.T) {
	const only6 = `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"gre"%s}}`
	full := backend.ExternalInterface{Iface: &net.Interface{Name: "eth0", MTU: 1500},
		IfaceAddr: netip.MustParseAddr("192.0.2.1"), PublicIP: netip.MustParseAddr("192.0.2.1"),
		IfaceAddrV6: netip.MustParseAddr("2001:db8::1"), PublicIPv6: netip.MustParseAddr("2001:db8::1")}
	v4only := full
	v4only.IfaceAddrV6, v4only.PublicIPv6 = netip.Addr{}, netip.Addr{}
	for _, tc := range []struct {
		name, json string
		ext        backend.ExternalInterface
		want       string // substring of the error; "" for none
		mtu        int
	}{
		{"IPv6-only kernel", fmt.Sprintf(only6, `,"Mode":"kernel"`), full, `key Mode: value "kernel" carries IPv4 only, but the network has EnableIPv4=false`, 0},
		{"dual-stack kernel", `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"gre","Mode":"kernel"}}`, full, `Mode: value "kernel"`, 0},
		{"IPv6-only without IPv6 underlay", fmt.Sprintf(only6, ""), v4only, "IPv6-only network needs an external interface with an IPv6 address", 0},
		{"IPv6-only MTU too large", fmt.Sprintf(only6, `,"MTU":1457`), full, "key MTU: value 1457 is larger than the external interface's MTU 1500 minus the 44-byte GRE overhead (1456)", 0},
		{"IPv6-only", fmt.Sprintf(only6, ""), full, "", 1456},
		{"IPv6-only MTU key", fmt.Sprintf(only6, `,"MTU":1400`), full, "", 1400},
	} {
		cfg, err := subnet.ParseConfig([]byte(tc.json))
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(backend.Env{Ext: tc.ext, Network: cfg, Log: ktesting.NewLogger(t, ktesting.NewConfig())})
		if tc.want != "" {
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: New = %v, want an error naming %q", tc.name, err, tc.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: New: %v", tc.name, err)
			continue
		}
		if g := b.(*greBackend); g.spec.mtu != tc.mtu || g.spec.local != tc.ext.TunnelSourceV6() {
			t.Errorf("%s: MTU %d local %s, want %d %s", tc.name, g.spec.mtu, g.spec.local, tc.mtu, tc.ext.TunnelSourceV6())
		}
	}
}
