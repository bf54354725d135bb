//go:build linux

package gre

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/backend"
	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/tun"
	"github.com/weftnet/weft/backend/internal/kernel/kerneltest"
	"github.com/weftnet/weft/backend/internal/kernelmode"
	"github.com/weftnet/weft/pkg/nsutil"
	"github.com/weftnet/weft/subnet"
	weftcluster "github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/nstest"
)

func skipWithoutNamespaces(t *testing.T) {
	t.Helper()
	if err := nstest.Available(); err != nil {
		t.Skip(err)
	}
	if err := tun.Check(); err != nil {
		t.Skip(err)
	}
}

// TestUserspaceTwoNodes runs node A in userspace mode and node B in auto mode: on a kernel
// without ip_gre (as in CI) both forward in userspace; on one with ip_gre, B uses the
// kernel device and the test checks that the two modes interoperate.
func TestUserspaceTwoNodes(t *testing.T) {
	skipWithoutNamespaces(t)
	base := runtime.NumGoroutine()
	top := t // nodes started in subtests must outlive them
	c := newCluster(t)
	a := startNode(t, c, c.nodeA, "192.0.2.1", "10.244.1.0/24", `{"Type":"gre","Mode":"userspace"}`, greLease("10.244.2.0/24", "192.0.2.2"))
	b := startNode(t, c, c.nodeB, "192.0.2.2", "10.244.2.0/24", `{"Type":"gre"}`, greLease("10.244.1.0/24", "192.0.2.1"))
	t.Logf("node B (auto) runs in %s mode", b.be.mode)

	t.Run("lease value", func(t *testing.T) {
		got, err := json.Marshal(a.Attrs)
		if want := `{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"gre"}`; err != nil || string(got) != want {
			t.Fatalf("lease value %s (%v), want %s", got, err, want)
		}
	})

	t.Run("device", func(t *testing.T) {
		if out := run(t, c.nodeA, "ip", "-d", "link", "show", TUNName); !contains(out, "mtu 1476") || !contains(out, "tun type tun") || !contains(out, "UP") {
			t.Fatalf("%s: %s", TUNName, out)
		}
		if out := run(t, c.nodeA, "ip", "-4", "-o", "addr", "show", "dev", TUNName); !contains(out, "inet 10.244.1.0/32") || strings.Count(out, "inet ") != 1 {
			t.Fatalf("%s addresses: %s", TUNName, out)
		}
		if out := run(t, c.nodeA, "ip", "route", "show", "10.244.0.0/16"); !contains(out, "10.244.0.0/16 dev "+TUNName) {
			t.Fatalf("route: %s", out)
		}
		if out := run(t, c.nodeA, "cat", "/proc/sys/net/ipv4/conf/"+TUNName+"/accept_local"); strings.TrimSpace(out) != "1" {
			t.Fatalf("accept_local = %q", out)
		}
		if a.NW.MTU() != 1476 {
			t.Fatalf("MTU() = %d", a.NW.MTU())
		}
		if proto, port := a.NW.(backend.Tunnel).TunnelPort(); proto != "gre" || port != 0 {
			t.Fatalf("TunnelPort() = %q, %d", proto, port)
		}
		if _, err := nstest.Run(c.nodeA, "ip", "link", "show", DeviceName); err == nil {
			t.Fatalf("userspace mode made the kernel device %s", DeviceName)
		}
		d := a.NW.(backend.Describer).Describe()
		if d.Device != TUNName || d.Info["mode"] != "userspace" || d.Peers[netip.MustParsePrefix("10.244.2.0/24")].State != backend.PeerProgrammed {
			t.Fatalf("Describe() = %+v", d)
		}
	})

	t.Run("ping", func(t *testing.T) {
		ping(t, c.podA, true, "-c", "3", "-i", "0.2", "10.244.2.2")
		ping(t, c.podB, true, "-c", "2", "-i", "0.2", "10.244.1.2")
		// From the node itself: the source is the TUN's 10.244.1.0.
		ping(t, c.nodeA, true, "-c", "2", "-i", "0.2", "10.244.2.2")
	})

	t.Run("MTU-sized DF ping passes, one byte more is refused", func(t *testing.T) {
		ping(t, c.podA, true, "-c", "2", "-i", "0.2", "-M", "do", "-s", "1448", "10.244.2.2")
		if out := ping(t, c.podA, false, "-c", "1", "-M", "do", "-s", "1449", "10.244.2.2"); !contains(out, "1476") {
			t.Fatalf("DF ping of 1477 bytes:\n%s", out)
		}
	})

	t.Run("wire format", func(t *testing.T) {
		fd := capture(t, c.nodeB)
		sendUDP(t, c.podA, "10.244.2.2:7000", "wire check")
		pkt := nextGRE(t, fd, "192.0.2.1", "192.0.2.2", func(inner []byte) bool { return bytes.HasSuffix(inner, []byte("wire check")) })
		if pkt[0] != 0x45 || pkt[9] != 47 || binary.BigEndian.Uint16(pkt[6:])&0x4000 == 0 || pkt[8] != 64 {
			t.Fatalf("outer header % x: want IPv4, no options, protocol 47, DF, TTL 64", pkt[:20])
		}
		if !bytes.Equal(pkt[20:24], plainGRE) {
			t.Fatalf("GRE header % x, want % x", pkt[20:24], plainGRE)
		}
		inner := pkt[24:]
		if int(binary.BigEndian.Uint16(inner[2:])) != len(inner) || inner[0] != 0x45 || inner[9] != 17 ||
			!bytes.Equal(inner[12:16], []byte{10, 244, 1, 2}) || !bytes.Equal(inner[16:20], []byte{10, 244, 2, 2}) ||
			ipChecksum(inner[:20]) != binary.BigEndian.Uint16(inner[10:]) {
			t.Fatalf("inner packet % x", inner)
		}
	})

	t.Run("tcp transfer", func(t *testing.T) {
		start := time.Now()
		from, to := &weftcluster.Pod{NS: c.podA}, &weftcluster.Pod{NS: c.podB, IP: netip.MustParseAddr("10.244.2.2")}
		if err := weftcluster.TCPTransfer(from, to, 16<<20, time.Minute); err != nil {
			t.Fatal(err)
		}
		t.Logf("16 MiB in %v (A stats %+v)", time.Since(start), a.stats())
	})

	t.Run("icmp errors", func(t *testing.T) {
		if out := ping(t, c.podA, false, "-c", "1", "10.244.9.9"); !contains(out, "From 10.244.1.0") || !contains(out, "Destination Net Unreachable") {
			t.Fatalf("no net unreachable from 10.244.1.0:\n%s", out)
		}
		if out := ping(t, c.podA, false, "-c", "1", "-t", "2", "10.244.2.2"); !contains(out, "From 10.244.1.0") || !contains(out, "Time to live exceeded") {
			t.Fatalf("no time exceeded from node A's forwarder:\n%s", out)
		}
	})

	t.Run("spoofed and malformed GRE never reaches the pod and is counted", func(t *testing.T) {
		sink := listenUDP(t, c.podA, "10.244.1.2:7777")
		before := a.stats()
		to := "192.0.2.1"
		// From a non-peer address, with a well-formed inner packet.
		sendForgedGRE(t, c.nodeB, "192.0.2.9", to, plainGRE, innerUDP("10.244.2.2", "10.244.1.2", 7777, 64, "from a non-peer"))
		// From the peer, with an inner source outside its subnet, and inside A's own.
		sendForgedGRE(t, c.nodeB, "192.0.2.2", to, plainGRE, innerUDP("10.244.7.7", "10.244.1.2", 7777, 64, "bad inner source"))
		sendForgedGRE(t, c.nodeB, "192.0.2.2", to, plainGRE, innerUDP("10.244.1.9", "10.244.1.2", 7777, 64, "inner source of A itself"))
		// From the peer, to an inner destination that is not A's.
		sendForgedGRE(t, c.nodeB, "192.0.2.2", to, plainGRE, innerUDP("10.244.2.2", "10.244.3.3", 7777, 64, "not for A"))
		// From the peer, GRE that weft does not speak: a key, version 1, an IPv6 payload,
		// and a valid header with a broken inner packet.
		sendForgedGRE(t, c.nodeB, "192.0.2.2", to, []byte{0x20, 0, 8, 0, 0, 0, 0, 1}, innerUDP("10.244.2.2", "10.244.1.2", 7777, 64, "keyed"))
		sendForgedGRE(t, c.nodeB, "192.0.2.2", to, []byte{0, 1, 8, 0}, innerUDP("10.244.2.2", "10.244.1.2", 7777, 64, "version 1"))
		sendForgedGRE(t, c.nodeB, "192.0.2.2", to, []byte{0, 0, 0x86, 0xdd}, innerUDP("10.244.2.2", "10.244.1.2", 7777, 64, "ipv6 type"))
		sendForgedGRE(t, c.nodeB, "192.0.2.2", to, plainGRE, []byte{0x45, 0, 0, 99, 'n', 'o', 't', ' ', 'I', 'P'})
		// The control packet is valid and comes last: when it arrives, all forged ones
		// have been processed (one socket, one queue).
		sendForgedGRE(t, c.nodeB, "192.0.2.2", to, plainGRE, innerUDP("10.244.2.2", "10.244.1.2", 7777, 64, "control"))
		buf := make([]byte, 2000)
		sink.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := sink.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != "control" || from.Addr().String() != "10.244.2.2" {
			t.Fatalf("pod A received %q from %s (%v), want only the control datagram", buf[:n], from, err)
		}
		sink.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, _, err := sink.ReadFromUDPAddrPort(buf); err == nil {
			t.Fatalf("pod A received %q after the control", buf[:n])
		}
		after := a.stats()
		for r, want := range map[DropReason]uint64{
			fastpath.DropNotPeer:          1,
			fastpath.DropSpoofedSource:    2,
			fastpath.DropWrongDestination: 1,
			fastpath.DropMalformed:        4,
		} {
			if d := after.Drops[r] - before.Drops[r]; d != want {
				t.Errorf("drops %s grew by %d, want %d", r, d, want)
			}
		}
		if d := after.ConnIn.Packets - before.ConnIn.Packets; d < 9 {
			t.Errorf("ConnIn grew by %d, want at least 9", d)
		}
		ps := a.NW.(backend.PacketCounter).PacketStats()
		if ps.Drops["not-peer"] != after.Drops[fastpath.DropNotPeer] || ps.Drops["malformed"] != after.Drops[fastpath.DropMalformed] {
			t.Errorf("PacketStats drops %v disagree with Stats %v", ps.Drops, after.Drops)
		}
	})

	t.Run("drift is repaired (time logged)", func(t *testing.T) {
		routes, addrs := a.repairs.Count("route"), a.repairs.Count("address")
		run(t, c.nodeA, "ip", "route", "del", "10.244.0.0/16", "dev", TUNName)
		run(t, c.nodeA, "ip", "addr", "add", "10.244.200.0/32", "dev", TUNName)
		d := kerneltest.WaitFor(t, time.Second, "route and address repaired", func() error {
			if out := run(t, c.nodeA, "ip", "route", "show", "10.244.0.0/16"); !contains(out, "dev "+TUNName) {
				return fmt.Errorf("route not repaired: %s", out)
			}
			if out := run(t, c.nodeA, "ip", "-4", "-o", "addr", "show", "dev", TUNName); contains(out, "10.244.200.0") {
				return fmt.Errorf("stale address kept: %s", out)
			}
			if a.repairs.Count("route") <= routes || a.repairs.Count("address") <= addrs {
				return fmt.Errorf("repairs not counted: %s", a.repairs)
			}
			return nil
		})
		t.Logf("repaired after %v", d)
		ping(t, c.podA, true, "-c", "1", "10.244.2.2")
	})

	t.Run("restart adopts the device and keeps the route", func(t *testing.T) {
		index := run(t, c.nodeA, "cat", "/sys/class/net/"+TUNName+"/ifindex")
		a.Stop(t)
		if out := run(t, c.nodeA, "ip", "route", "show", "10.244.0.0/16"); !contains(out, "dev "+TUNName) {
			t.Fatalf("route gone after Close: %s", out)
		}
		a = startNode(top, c, c.nodeA, "192.0.2.1", "10.244.1.0/24", `{"Type":"gre","Mode":"userspace"}`, greLease("10.244.2.0/24", "192.0.2.2"))
		if again := run(t, c.nodeA, "cat", "/sys/class/net/"+TUNName+"/ifindex"); again != index {
			t.Fatalf("%s index %s after restart, was %s: not adopted", TUNName, again, index)
		}
		ping(t, c.podA, true, "-c", "2", "-i", "0.2", "10.244.2.2")
	})

	t.Run("peer removal stops traffic", func(t *testing.T) {
		if err := a.NW.Apply(t.Context(), []subnet.Event{{Type: subnet.Removed, Lease: greLease("10.244.2.0/24", "192.0.2.2")}}); err != nil {
			t.Fatal(err)
		}
		if out := ping(t, c.podA, false, "-c", "1", "10.244.2.2"); !contains(out, "Destination Net Unreachable") {
			t.Fatalf("after removal:\n%s", out)
		}
	})

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

// TestKernelModeWithoutGRE checks, on a kernel without ip_gre, that Mode kernel fails
// with the typed error and leaves nothing behind, and that auto falls back to userspace.
func TestKernelModeWithoutGRE(t *testing.T) {
	skipWithoutNamespaces(t)
	if err := kernelHasGRE(t); err == nil {
		t.Skip("this kernel has GRE support (ip_gre); TestKernelMode covers it")
	}
	c := newCluster(t)
	be := newBackend(t, c, c.nodeA, "192.0.2.1", `{"Type":"gre","Mode":"kernel"}`)
	var err error
	if nerr := nsutil.Do(c.nodeA, func() error { _, err = be.Prepare(t.Context()); return nil }); nerr != nil {
		t.Fatal(nerr)
	}
	var ke *kernelmode.Error
	if !errors.Is(err, ErrNoKernelGRE) || !errors.As(err, &ke) || ke.Device != DeviceName || !contains(err.Error(), "ip_gre") {
		t.Fatalf("Prepare in kernel mode on a kernel without GRE: %v", err)
	}
	t.Logf("kernel mode: %v", err)
	if out := run(t, c.nodeA, "ip", "-o", "link", "show"); contains(out, DeviceName) || contains(out, TUNName) {
		t.Fatalf("devices left behind:\n%s", out)
	}

	auto := newBackend(t, c, c.nodeA, "192.0.2.1", `{"Type":"gre"}`)
	var attrs subnet.LeaseAttrs
	if nerr := nsutil.Do(c.nodeA, func() error { attrs, err = auto.Prepare(t.Context()); return nil }); nerr != nil {
		t.Fatal(nerr)
	}
	if err != nil || auto.mode != ModeUserspace || !contains(auto.reason, "ip_gre") || attrs.BackendType != Name {
		t.Fatalf("auto mode: %v, mode %q, reason %q, attrs %+v", err, auto.mode, auto.reason, attrs)
	}
	if out := run(t, c.nodeA, "ip", "-d", "link", "show", TUNName); !contains(out, "tun type tun") {
		t.Fatalf("auto mode made no TUN: %s", out)
	}
}
