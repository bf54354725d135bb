//go:build linux

package gre

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/backend/internal/tundev/tundevtest"
	"github.com/weftnet/weft/pkg/firewall"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/subnet"
	weftcluster "github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/nstest"
)

// The IPv6-only test cluster: no IPv4 anywhere, underlay included.
//
//	pod A fd00:10:244:1::2 -- fd00:10:244:1::1 node A 2001:db8::1 == 2001:db8::2 node B fd00:10:244:2::1 -- fd00:10:244:2::2 pod B
//
// Pods' IPv6 packets travel in GRE (0x86DD) inside IPv6 (next header 47).
const only6JSON = `{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"` + network6 + `","Backend":{"Type":"gre"}}`

func newOnly6Cluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{nodeA: nstest.Temp(t, "nodeA"), nodeB: nstest.Temp(t, "nodeB"), podA: nstest.Temp(t, "podA"), podB: nstest.Temp(t, "podB")}
	cfg, err := subnet.ParseConfig([]byte(only6JSON))
	if err != nil {
		t.Fatal(err)
	}
	c.cfg = cfg
	for _, ns := range []string{c.nodeA, c.nodeB, c.podA, c.podB} {
		run(t, ns, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
		run(t, ns, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0")
	}
	run(t, c.nodeA, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0b")
	run(t, c.nodeA, "ip", "link", "set", "eth0b", "netns", c.nodeB)
	run(t, c.nodeB, "ip", "link", "set", "eth0b", "name", "eth0")
	for ns, addr := range map[string]string{c.nodeA: "2001:db8::1/64", c.nodeB: "2001:db8::2/64"} {
		run(t, ns, "ip", "-6", "addr", "add", addr, "dev", "eth0", "nodad")
		run(t, ns, "ip", "link", "set", "eth0", "up")
		run(t, ns, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	}
	for _, p := range []struct{ node, pod, gw, addr string }{
		{c.nodeA, c.podA, "fd00:10:244:1::1", "fd00:10:244:1::2"},
		{c.nodeB, c.podB, "fd00:10:244:2::1", "fd00:10:244:2::2"},
	} {
		run(t, p.node, "ip", "link", "add", "cni0", "type", "veth", "peer", "name", "pod0")
		run(t, p.node, "ip", "link", "set", "pod0", "netns", p.pod)
		run(t, p.node, "ip", "-6", "addr", "add", p.gw+"/64", "dev", "cni0", "nodad")
		run(t, p.node, "ip", "link", "set", "cni0", "up")
		run(t, p.pod, "ip", "link", "set", "pod0", "name", "eth0")
		run(t, p.pod, "ip", "-6", "addr", "add", p.addr+"/64", "dev", "eth0", "nodad")
		run(t, p.pod, "ip", "link", "set", "eth0", "up")
		run(t, p.pod, "ip", "-6", "route", "add", "default", "via", p.gw)
	}
	for _, ns := range []string{c.nodeA, c.nodeB} {
		if out := run(t, ns, "ip", "-4", "addr", "show", "dev", "eth0"); strings.TrimSpace(out) != "" {
			t.Fatalf("the underlay has IPv4: %s", out)
		}
	}
	return c
}

func only6Lease(sn6, pub6 string) subnet.Lease {
	return subnet.Lease{IPv6Subnet: netip.MustParsePrefix(sn6), Attrs: subnet.LeaseAttrs{PublicIPv6: netip.MustParseAddr(pub6), BackendType: Name}}
}

// startOnly6Node builds the backend for node namespace ns with an IPv6-only external
// interface (eth0, addr6) and starts it with the own lease.
func startOnly6Node(t *testing.T, c *cluster, ns, addr6, own6, backendJSON string, peers ...subnet.Lease) *node {
	t.Helper()
	var ext backend.ExternalInterface
	if err := nsutil.Do(ns, func() error {
		iface, err := net.InterfaceByName("eth0")
		ext = backend.ExternalInterface{Iface: iface, IfaceAddrV6: netip.MustParseAddr(addr6), PublicIPv6: netip.MustParseAddr(addr6)}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	cfg := *c.cfg
	cfg.Backend = []byte(backendJSON)
	repairs := &kerneltest.Repairs{}
	logger := ktesting.NewLogger(t, ktesting.NewConfig(ktesting.Verbosity(2)))
	b, err := New(backend.Env{Ext: ext, Network: &cfg, Log: logger.WithValues("node", addr6), OnRepair: repairs.Report})
	if err != nil {
		t.Fatal(err)
	}
	be := b.(*greBackend)
	n := &node{Node: tundevtest.StartNode(t, ns, be, only6Lease(own6, addr6), nil, peers...), be: be, repairs: repairs}
	if n.Attrs.PublicIP.IsValid() || n.Attrs.PublicIPv6 != ext.PublicIPv6 || n.Attrs.BackendType != Name {
		t.Fatalf("lease attributes %+v, want no PublicIP and PublicIPv6 %s", n.Attrs, addr6)
	}
	return n
}

// tunOnly6InPlace returns a check that node ns's TUN has its IPv6 address and route and
// no IPv4 address or route.
func tunOnly6InPlace(ns string) func() error {
	return func() error {
		if err := tun6InPlace(ns)(); err != nil {
			return err
		}
		for _, argv := range []string{"ip -4 -o addr show dev " + TUNName, "ip -4 route show dev " + TUNName} {
			if out, err := nstest.Run(ns, strings.Fields(argv)...); err != nil || strings.TrimSpace(out) != "" {
				return fmt.Errorf("%s: %q (%v), want nothing", argv, strings.TrimSpace(out), err)
			}
		}
		return nil
	}
}

// TestIPv6OnlyUserspace runs two IPv6-only nodes (node A in auto mode, which an IPv6-only
// network runs in userspace) over an underlay without IPv4: pods ping and carry TCP, the
// wire carries GRE 0x86DD in IPv6 next header 47, drift is repaired, forged GRE from a
// non-peer is dropped and counted, and ip6tables rules like weft's tunnel rules admit
// the peer's GRE and drop others'.
func TestIPv6OnlyUserspace(t *testing.T) {
	skipWithoutNamespaces(t)
	c := newOnly6Cluster(t)
	a := startOnly6Node(t, c, c.nodeA, "2001:db8::1", "fd00:10:244:1::/64", `{"Type":"gre"}`, only6Lease("fd00:10:244:2::/64", "2001:db8::2"))
	b := startOnly6Node(t, c, c.nodeB, "2001:db8::2", "fd00:10:244:2::/64", `{"Type":"gre","Mode":"userspace"}`, only6Lease("fd00:10:244:1::/64", "2001:db8::1"))
	if a.be.mode != ModeUserspace || !strings.Contains(a.be.reason, "IPv6-only") {
		t.Fatalf("auto mode in an IPv6-only network chose %q (reason %q)", a.be.mode, a.be.reason)
	}

	t.Run("device", func(t *testing.T) {
		if err := tunOnly6InPlace(c.nodeA)(); err != nil {
			t.Fatal(err)
		}
		if out := run(t, c.nodeA, "ip", "-o", "link", "show", TUNName); !contains(out, "mtu 1456 ") {
			t.Fatalf("TUN %s, want MTU 1500 - 40 - 4", out)
		}
		d := a.NW.(backend.Describer).Describe()
		if d.Peers[netip.MustParsePrefix("fd00:10:244:2::/64")].State != backend.PeerProgrammed || len(d.Peers) != 1 ||
			d.Info["local"] != "2001:db8::1" || d.Info["mode"] != string(ModeUserspace) {
			t.Fatalf("Describe() = %+v", d)
		}
	})

	t.Run("ping", func(t *testing.T) {
		ping(t, c.podA, true, "-6", "-c", "3", "-i", "0.2", "fd00:10:244:2::2")
		ping(t, c.podB, true, "-6", "-c", "2", "-i", "0.2", "fd00:10:244:1::2")
		// An MTU-sized packet (1456 - 40 - 8) passes without fragments.
		ping(t, c.podA, true, "-6", "-c", "1", "-M", "do", "-s", "1408", "fd00:10:244:2::2")
	})

	t.Run("tcp transfer", func(t *testing.T) {
		start := time.Now()
		from, to := &weftcluster.Pod{NS: c.podA}, &weftcluster.Pod{NS: c.podB, IP: netip.MustParseAddr("fd00:10:244:2::2")}
		if err := weftcluster.TCPTransfer(from, to, 16<<20, time.Minute); err != nil {
			t.Fatal(err)
		}
		t.Logf("16 MiB (SHA-256 checked) in %v (A stats %+v)", time.Since(start), a.stats())
	})

	t.Run("wire format", func(t *testing.T) { checkOnly6Wire(t, c) })

	t.Run("drift is repaired", func(t *testing.T) {
		routes, addrs := a.repairs.Count("route"), a.repairs.Count("address")
		run(t, c.nodeA, "ip", "-6", "route", "del", network6, "dev", TUNName)
		run(t, c.nodeA, "ip", "-6", "addr", "del", "fd00:10:244:1::/128", "dev", TUNName)
		run(t, c.nodeA, "ip", "addr", "add", "10.9.9.9/32", "dev", TUNName)
		run(t, c.nodeA, "ip", "route", "add", "10.99.0.0/16", "dev", TUNName)
		d := kerneltest.WaitFor(t, 2*time.Second, "IPv6 side back, IPv4 removed", func() error {
			if err := tunOnly6InPlace(c.nodeA)(); err != nil {
				return err
			}
			if a.repairs.Count("route") <= routes || a.repairs.Count("address") <= addrs {
				return fmt.Errorf("repairs not counted: %s", a.repairs)
			}
			return nil
		})
		t.Logf("repaired after %v", d)
		ping(t, c.podA, true, "-6", "-c", "1", "fd00:10:244:2::2")
	})

	t.Run("deleted TUN comes back", func(t *testing.T) {
		run(t, c.nodeA, "ip", "link", "del", TUNName)
		kerneltest.WaitFor(t, 3*time.Second, "TUN re-created with its IPv6 side", tunOnly6InPlace(c.nodeA))
		kerneltest.WaitFor(t, 3*time.Second, "pods ping", func() error {
			_, err := nstest.Run(c.podA, "ping", "-6", "-n", "-c", "1", "-W", "0.3", "fd00:10:244:2::2")
			return err
		})
	})

	// A stranger on the underlay: 2001:db8::99 on node B's link.
	run(t, c.nodeB, "ip", "-6", "addr", "add", "2001:db8::99/64", "dev", "eth0", "nodad")
	forged := innerUDP6("fd00:10:244:2::2", "fd00:10:244:1::2", 64, "forged")

	t.Run("forged GRE from a non-peer is dropped and counted", func(t *testing.T) {
		before := a.stats().Drops
		sendGRE6(t, c.nodeB, "2001:db8::99", "2001:db8::1", append([]byte{0, 0, 0x86, 0xdd}, forged...))
		kerneltest.WaitFor(t, time.Second, "not-peer counted", func() error {
			if got := a.stats().Drops[fastpath.DropNotPeer]; got != before[fastpath.DropNotPeer]+1 {
				return fmt.Errorf("not-peer drops %d, before %d", got, before[fastpath.DropNotPeer])
			}
			return nil
		})
		// From the peer's address, an inner source outside its subnet: spoofed.
		sendGRE6(t, c.nodeB, "2001:db8::2", "2001:db8::1", append([]byte{0, 0, 0x86, 0xdd}, innerUDP6("fd00:10:244:7::2", "fd00:10:244:1::2", 64, "spoof")...))
		kerneltest.WaitFor(t, time.Second, "spoofed counted", func() error {
			if got := a.stats().Drops[fastpath.DropSpoofedSource]; got <= before[fastpath.DropSpoofedSource] {
				return fmt.Errorf("spoofed drops %d, before %d", got, before[fastpath.DropSpoofedSource])
			}
			return nil
		})
		if got := a.stats().Drops; got[fastpath.DropNotPeer] != before[fastpath.DropNotPeer]+1 {
			t.Fatalf("not-peer drops %d, want %d", got[fastpath.DropNotPeer], before[fastpath.DropNotPeer]+1)
		}
	})

	t.Run("ip6tables tunnel rules admit the peer only", func(t *testing.T) { checkOnly6Firewall(t, c, a, forged) })

	t.Run("peer removed", func(t *testing.T) {
		if err := a.NW.Apply(t.Context(), []subnet.Event{{Type: subnet.Removed, Lease: only6Lease("fd00:10:244:2::/64", "2001:db8::2")}}); err != nil {
			t.Fatal(err)
		}
		ping(t, c.podA, false, "-6", "-c", "1", "-W", "1", "fd00:10:244:2::2")
		if d := a.NW.(backend.Describer).Describe(); len(d.Peers) != 0 {
			t.Fatalf("Describe() after removal = %+v", d)
		}
	})
	a.Stop(t)
	b.Stop(t)
}

// checkOnly6Wire captures node B's underlay while pod A sends a datagram: an IPv6 packet
// 2001:db8::1 -> 2001:db8::2, next header 47, hop limit 64, carrying GRE 0x86DD and pod
// A's IPv6 packet (hop limit 62).
func checkOnly6Wire(t *testing.T, c *cluster) {
	fd := tundevtest.CaptureEtherType(t, c.nodeB, unix.ETH_P_IPV6)
	sendUDP(t, c.podA, "[fd00:10:244:2::2]:7000", "wire check only6")
	outerSrc, outerDst := netip.MustParseAddr("2001:db8::1").As16(), netip.MustParseAddr("2001:db8::2").As16()
	buf := make([]byte, 65536)
	for i := 0; i < 200; i++ {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue
		}
		pkt := buf[:n]
		if len(pkt) < 44 || pkt[6] != ipProtoGRE || !bytes.Equal(pkt[8:24], outerSrc[:]) || !bytes.Equal(pkt[24:40], outerDst[:]) ||
			!bytes.HasSuffix(pkt, []byte("wire check only6")) {
			continue
		}
		if pkt[0]>>4 != 6 || int(binary.BigEndian.Uint16(pkt[4:]))+40 != len(pkt) || pkt[7] != 64 {
			t.Fatalf("outer header % x: want IPv6, payload length %d, hop limit 64", pkt[:40], len(pkt)-40)
		}
		if want := []byte{0, 0, 0x86, 0xdd}; !bytes.Equal(pkt[40:44], want) {
			t.Fatalf("GRE header % x, want % x", pkt[40:44], want)
		}
		inner := pkt[44:]
		src, dst := netip.MustParseAddr("fd00:10:244:1::2").As16(), netip.MustParseAddr("fd00:10:244:2::2").As16()
		if inner[0]>>4 != 6 || int(binary.BigEndian.Uint16(inner[4:]))+40 != len(inner) || inner[6] != 17 ||
			inner[7] != 62 || !bytes.Equal(inner[8:24], src[:]) || !bytes.Equal(inner[24:40], dst[:]) {
			t.Fatalf("inner packet % x: want IPv6/UDP fd00:10:244:1::2 -> fd00:10:244:2::2, hop limit 62", inner)
		}
		return
	}
	t.Fatal("no GRE-in-IPv6 packet 2001:db8::1 -> 2001:db8::2 captured")
}

// checkOnly6Firewall installs in node A the IPv6 tunnel rules weft's iptables firewall
// keeps for gre with --restrict-tunnel-port (firewall.TunnelRules: protocol 47 from the
// IPv6 peer set accepted, from anyone else dropped; an ipset of family inet6 holding the
// peer's PublicIPv6), checks that the peer's GRE passes (pods ping, the ACCEPT counter
// moves) and that forged GRE from a non-peer is dropped by the rule before the raw socket
// sees it, then removes them.
func checkOnly6Firewall(t *testing.T, c *cluster, a *node, forged []byte) {
	const set, chain = "weft-test-peers6", "WEFT-TEST-INPUT"
	rules, err := firewall.TunnelRules(firewall.TunnelGRE, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	run(t, c.nodeA, "ipset", "create", set, "hash:ip", "family", "inet6")
	run(t, c.nodeA, "ipset", "add", set, "2001:db8::2")
	run(t, c.nodeA, "ip6tables", "-w", "-N", chain)
	for _, r := range rules {
		argv := []string{"ip6tables", "-w", "-A", chain, "-p", strconv.Itoa(firewall.ProtoGRE)}
		if r.FromPeers {
			argv = append(argv, "-m", "set", "--match-set", set, "src")
		}
		verdict := map[firewall.Verdict]string{firewall.Accept: "ACCEPT", firewall.Drop: "DROP"}[r.Verdict]
		run(t, c.nodeA, append(argv, "-m", "comment", "--comment", r.Comment, "-j", verdict)...)
	}
	run(t, c.nodeA, "ip6tables", "-w", "-I", "INPUT", "-j", chain)
	defer func() {
		run(t, c.nodeA, "ip6tables", "-w", "-D", "INPUT", "-j", chain)
		run(t, c.nodeA, "ip6tables", "-w", "-F", chain)
		run(t, c.nodeA, "ip6tables", "-w", "-X", chain)
		run(t, c.nodeA, "ipset", "destroy", set)
	}()
	counter := func(verdict string) int {
		for _, l := range strings.Split(run(t, c.nodeA, "ip6tables", "-w", "-nvxL", chain), "\n") {
			if f := strings.Fields(l); len(f) > 2 && f[2] == verdict {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
		t.Fatalf("no %s rule in %s", verdict, chain)
		return 0
	}
	ping(t, c.podA, true, "-6", "-c", "2", "-i", "0.2", "fd00:10:244:2::2")
	if n := counter("ACCEPT"); n < 2 {
		t.Fatalf("ACCEPT counter %d after 2 pings, want at least 2 (the peer's replies)", n)
	}
	before, drops := a.stats().Drops[fastpath.DropNotPeer], counter("DROP")
	for range 3 {
		sendGRE6(t, c.nodeB, "2001:db8::99", "2001:db8::1", append([]byte{0, 0, 0x86, 0xdd}, forged...))
	}
	kerneltest.WaitFor(t, time.Second, "DROP counter moved by 3", func() error {
		if n := counter("DROP"); n != drops+3 {
			return fmt.Errorf("DROP counter %d, want %d", n, drops+3)
		}
		return nil
	})
	if got := a.stats().Drops[fastpath.DropNotPeer]; got != before {
		t.Fatalf("not-peer drops %d -> %d: forged GRE reached the raw socket through the firewall", before, got)
	}
	t.Logf("ip6tables:\n%s", run(t, c.nodeA, "ip6tables", "-w", "-S", chain))
}

// sendGRE6 sends payload (a GRE header and what follows) from a raw IPv6 socket for
// protocol 47 bound to from, inside ns, to to: the kernel adds the IPv6 header.
func sendGRE6(t *testing.T, ns, from, to string, payload []byte) {
	t.Helper()
	if err := nsutil.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, ipProtoGRE)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet6{Addr: netip.MustParseAddr(from).As16()}); err != nil {
			return fmt.Errorf("bind %s: %w", from, err)
		}
		return unix.Sendto(fd, payload, 0, &unix.SockaddrInet6{Addr: netip.MustParseAddr(to).As16()})
	}); err != nil {
		t.Fatal(err)
	}
}
