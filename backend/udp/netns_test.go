//go:build linux

package udp

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/tun"
	"github.com/weftnet/weft/pkg/nsutil"
	weftcluster "github.com/weftnet/weft/test/cluster"
	"github.com/weftnet/weft/test/nstest"
)

func TestTwoNodesInNamespaces(t *testing.T) {
	if err := nstest.Available(); err != nil {
		t.Skip(err)
	}
	if err := tun.Check(); err != nil {
		t.Skip(err)
	}
	base := runtime.NumGoroutine()
	top := t // nodes started in subtests must outlive them
	c := newCluster(t)
	// Node A batches; node B moves one packet per system call. They must interoperate.
	a := startNode(t, c, c.nodeA, "192.0.2.1", "10.244.1.0/24", `{"Type":"udp"}`, peerLease("10.244.2.0/24", "192.0.2.2"))
	b := startNode(t, c, c.nodeB, "192.0.2.2", "10.244.2.0/24", `{"Type":"udp","Batch":false}`, peerLease("10.244.1.0/24", "192.0.2.1"))

	t.Run("lease value as flanneld writes it", func(t *testing.T) {
		attrs := a.Attrs
		attrs.PublicIP = netip.MustParseAddr("192.0.2.1") // the daemon fills it in
		got, err := json.Marshal(attrs)
		if err != nil || string(got) != `{"PublicIP":"192.0.2.1","PublicIPv6":null}` {
			t.Fatalf("lease value %s (%v)", got, err)
		}
	})

	t.Run("device", func(t *testing.T) {
		if out := run(t, c.nodeA, "ip", "-d", "link", "show", "flannel0"); !contains(out, "mtu 1472") || !contains(out, "tun type tun") || !contains(out, "UP") {
			t.Fatalf("flannel0: %s", out)
		}
		if out := run(t, c.nodeA, "ip", "-4", "-o", "addr", "show", "dev", "flannel0"); !contains(out, "inet 10.244.1.0/32") || strings.Count(out, "inet ") != 1 {
			t.Fatalf("flannel0 addresses: %s", out)
		}
		if out := run(t, c.nodeA, "ip", "route", "show", "10.244.0.0/16"); !contains(out, "10.244.0.0/16 dev flannel0") {
			t.Fatalf("route: %s", out)
		}
		if out := run(t, c.nodeA, "cat", "/proc/sys/net/ipv4/conf/flannel0/accept_local"); strings.TrimSpace(out) != "1" {
			t.Fatalf("accept_local = %q", out)
		}
		if a.NW.MTU() != 1472 {
			t.Fatalf("MTU() = %d", a.NW.MTU())
		}
	})

	t.Run("ping", func(t *testing.T) {
		// TTL 64 lowered by node B's kernel, both proxies and node A's kernel, as with
		// flanneld.
		if out := ping(t, c.podA, true, "-c", "3", "-i", "0.2", "10.244.2.2"); !contains(out, "ttl=60") {
			t.Fatalf("pod A -> pod B:\n%s", out)
		}
		ping(t, c.podB, true, "-c", "2", "-i", "0.2", "10.244.1.2")
		// From the node itself: the source is flannel0's 10.244.1.0.
		ping(t, c.nodeA, true, "-c", "2", "-i", "0.2", "10.244.2.2")
		ping(t, c.nodeB, true, "-c", "2", "-i", "0.2", "10.244.1.0")
	})

	t.Run("wire format", func(t *testing.T) {
		fd := capture(t, c.nodeB)
		var conn *net.UDPConn
		if err := nsutil.Do(c.podA, func() (err error) {
			conn, err = net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.244.2.2:7000")))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write([]byte("wire check")); err != nil {
			t.Fatal(err)
		}
		outer := nextUDP(t, fd, "192.0.2.1", "192.0.2.2", 8285)
		if sport := binary.BigEndian.Uint16(outer[20:]); sport != 8285 {
			t.Fatalf("outer source port %d, want 8285", sport)
		}
		inner := outer[28:]
		if int(binary.BigEndian.Uint16(inner[2:])) != len(inner) {
			t.Fatalf("UDP payload (%d bytes) is not exactly the inner packet (total length %d)", len(inner), binary.BigEndian.Uint16(inner[2:]))
		}
		if inner[0] != 0x45 || inner[8] != 62 || inner[9] != 17 ||
			!bytes.Equal(inner[12:16], []byte{10, 244, 1, 2}) || !bytes.Equal(inner[16:20], []byte{10, 244, 2, 2}) ||
			ipChecksum(inner[:20]) != binary.BigEndian.Uint16(inner[10:]) || !bytes.HasSuffix(inner, []byte("wire check")) {
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
			t.Fatalf("no time exceeded from node A's proxy:\n%s", out)
		}
		if out := ping(t, c.podA, false, "-c", "1", "-t", "3", "10.244.2.2"); !contains(out, "From 10.244.2.0") || !contains(out, "Time to live exceeded") {
			t.Fatalf("no time exceeded from node B's proxy:\n%s", out)
		}
	})

	t.Run("forged datagrams never reach the pod", func(t *testing.T) {
		var sink *net.UDPConn
		if err := nsutil.Do(c.podB, func() (err error) {
			sink, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("10.244.2.2:7777")))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer sink.Close()
		before := b.stats()
		to := netip.MustParseAddrPort("192.0.2.2:8285")
		sendForged(t, c.nodeA, netip.MustParseAddrPort("192.0.2.9:8285"), to, innerUDP("10.244.1.2", "10.244.2.2", 7777, 64, "from a non-peer address"))
		sendForged(t, c.nodeA, netip.MustParseAddrPort("192.0.2.1:9999"), to, innerUDP("10.244.1.2", "10.244.2.2", 7777, 64, "from a non-peer port"))
		sendForged(t, c.nodeA, netip.MustParseAddrPort("192.0.2.1:8285"), to, innerUDP("10.244.7.7", "10.244.2.2", 7777, 64, "bad inner source"))
		sendForged(t, c.nodeA, netip.MustParseAddrPort("192.0.2.1:8285"), to, innerUDP("10.244.2.7", "10.244.2.2", 7777, 64, "inner source of B itself"))
		sendForged(t, c.nodeA, netip.MustParseAddrPort("192.0.2.1:8285"), to, innerUDP("10.244.1.2", "10.244.3.3", 7777, 64, "not for B"))
		sendForged(t, c.nodeA, netip.MustParseAddrPort("192.0.2.1:8285"), to, []byte{0x45, 0, 0, 99, 'n', 'o', 't', ' ', 'I', 'P'})
		// The control datagram is valid and comes last: when it arrives, all forged
		// ones have been processed (one socket, one FIFO queue).
		sendForged(t, c.nodeA, netip.MustParseAddrPort("192.0.2.1:8285"), to, innerUDP("10.244.1.2", "10.244.2.2", 7777, 64, "control"))
		buf := make([]byte, 2000)
		sink.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := sink.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != "control" || from.Addr().String() != "10.244.1.2" {
			t.Fatalf("pod B received %q from %s (%v), want only the control datagram", buf[:n], from, err)
		}
		sink.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, _, err := sink.ReadFromUDPAddrPort(buf); err == nil {
			t.Fatalf("pod B received %q after the control", buf[:n])
		}
		after := b.stats()
		for r, want := range map[DropReason]uint64{
			fastpath.DropNotPeer:          2,
			fastpath.DropSpoofedSource:    2,
			fastpath.DropWrongDestination: 1,
			fastpath.DropMalformed:        1,
		} {
			if d := after.Drops[r] - before.Drops[r]; d != want {
				t.Errorf("drops %s grew by %d, want %d", r, d, want)
			}
		}
		if d := after.ConnIn.Packets - before.ConnIn.Packets; d < 7 {
			t.Errorf("ConnIn grew by %d, want at least 7", d)
		}
	})

	t.Run("flannel0 goes with the backend and comes back with it", func(t *testing.T) {
		// flanneld opens "flannel%d": a flannel0 left behind would send it to flannel1,
		// with the route to the Network stuck on the orphan.
		a.Stop(t)
		if out, err := nstest.Run(c.nodeA, "ip", "link", "show", "flannel0"); err == nil {
			t.Fatalf("flannel0 still there after Close: %s", out)
		}
		if out := run(t, c.nodeA, "ip", "route", "show", "10.244.0.0/16"); out != "" {
			t.Fatalf("route left after Close: %s", out)
		}
		a = startNode(top, c, c.nodeA, "192.0.2.1", "10.244.1.0/24", `{"Type":"udp"}`, peerLease("10.244.2.0/24", "192.0.2.2"))
		if out := run(t, c.nodeA, "ip", "-d", "link", "show", "flannel0"); !contains(out, "persist off") {
			t.Fatalf("flannel0 after the restart: %s", out)
		}
		ping(t, c.podA, true, "-c", "2", "-i", "0.2", "10.244.2.2")
	})

	t.Run("peer removal stops traffic", func(t *testing.T) {
		if err := a.NW.Apply(t.Context(), []subnetEvent{removal(peerLease("10.244.2.0/24", "192.0.2.2"))}); err != nil {
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

// TestAdoptsPersistentFlannel0 starts the backend on a node where an earlier weftd left a
// persistent flannel0 (with the virtio-net header flag, its address and route): it is
// adopted, made non-persistent, carries traffic, and goes away when the backend closes.
func TestAdoptsPersistentFlannel0(t *testing.T) {
	if err := nstest.Available(); err != nil {
		t.Skip(err)
	}
	if err := tun.Check(); err != nil {
		t.Skip(err)
	}
	c := newCluster(t)
	for _, argv := range [][]string{
		{"ip", "tuntap", "add", "dev", "flannel0", "mode", "tun", "vnet_hdr"},
		{"ip", "addr", "add", "10.244.1.0/32", "dev", "flannel0"},
		{"ip", "link", "set", "flannel0", "up"},
		{"ip", "route", "add", "10.244.0.0/16", "dev", "flannel0"},
	} {
		run(t, c.nodeA, argv...)
	}
	index := run(t, c.nodeA, "cat", "/sys/class/net/flannel0/ifindex")
	a := startNode(t, c, c.nodeA, "192.0.2.1", "10.244.1.0/24", `{"Type":"udp"}`, peerLease("10.244.2.0/24", "192.0.2.2"))
	startNode(t, c, c.nodeB, "192.0.2.2", "10.244.2.0/24", `{"Type":"udp"}`, peerLease("10.244.1.0/24", "192.0.2.1"))
	if again := run(t, c.nodeA, "cat", "/sys/class/net/flannel0/ifindex"); again != index {
		t.Errorf("flannel0 index %s, was %s: not adopted", again, index)
	}
	if out := run(t, c.nodeA, "ip", "-d", "link", "show", "flannel0"); !contains(out, "persist off") {
		t.Fatalf("flannel0 still persistent: %s", out)
	}
	ping(t, c.podA, true, "-c", "2", "-i", "0.2", "10.244.2.2")
	a.Stop(t)
	if out, err := nstest.Run(c.nodeA, "ip", "link", "show", "flannel0"); err == nil {
		t.Fatalf("flannel0 still there after Close: %s", out)
	}
}
