package forward_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2/ktesting"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/fastpathtest"
	"github.com/weftnet/weft/backend/internal/fastpath/forward"
	"github.com/weftnet/weft/backend/internal/fastpath/packettest"
)

// node is one Forwarder on a fake device, attached to a shared fake underlay.
type node struct {
	f    *forward.Forwarder
	dev  *fastpathtest.Device
	conn *fastpathtest.Conn
	done chan error
}

var (
	subnetA = netip.MustParsePrefix("10.244.1.0/24")
	subnetB = netip.MustParsePrefix("10.244.2.0/24")
	epA     = netip.MustParseAddrPort("192.0.2.1:8285")
	epB     = netip.MustParseAddrPort("192.0.2.2:8285")
)

func startNode(t *testing.T, ctx context.Context, hub *fastpathtest.Hub, subnet netip.Prefix, ep netip.AddrPort, batch int, peers ...forward.Peer) *node {
	t.Helper()
	dev := fastpathtest.NewDevice(batch, 1024)
	conn := hub.Conn(ep, batch, 1024)
	f, err := forward.New(forward.Config{Subnet: subnet, MTU: 1472, BatchSize: batch, Log: ktesting.NewLogger(t, ktesting.NewConfig())}, dev, conn)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := forward.NewPeerTable(peers)
	if err != nil {
		t.Fatal(err)
	}
	f.SetPeers(tab)
	n := &node{f: f, dev: dev, conn: conn, done: make(chan error, 1)}
	go func() { n.done <- f.Run(ctx) }()
	return n
}

// ipv4UDP builds an IPv4/UDP packet with a correct header checksum (UDP checksum 0).
func ipv4UDP(src, dst string, ttl uint8, data []byte) []byte {
	return packettest.UDP(src, dst, ttl, string(data)).Build()
}

func receive(t *testing.T, ch <-chan []byte) []byte {
	t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("no packet within 5s")
		return nil
	}
}

func expectNothing(t *testing.T, ch <-chan []byte, d time.Duration) {
	t.Helper()
	select {
	case b := <-ch:
		t.Fatalf("unexpected packet: % x", b)
	case <-time.After(d):
	}
}

// statsWhen waits (bounded) until f's counters satisfy done and returns them. A loop adds
// a batch's counts after it has written the batch out, so a packet seen to arrive does
// not mean its batch is counted yet.
func statsWhen(t *testing.T, f *forward.Forwarder, done func(fastpath.Stats) bool) fastpath.Stats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := f.Stats()
		if done(s) || time.Now().After(deadline) {
			return s
		}
		time.Sleep(time.Millisecond)
	}
}

// waitGoroutines waits (bounded) until no more than n goroutines run.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > n {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutine leak: %d running, want <= %d\n%s", runtime.NumGoroutine(), n, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestForwardingBetweenTwoNodes(t *testing.T) {
	for _, batch := range []int{1, 8, 64} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			base := runtime.NumGoroutine()
			ctx, cancel := context.WithCancel(context.Background())
			hub := fastpathtest.NewHub()
			a := startNode(t, ctx, hub, subnetA, epA, batch, forward.Peer{Subnet: subnetB, Endpoint: epB})
			b := startNode(t, ctx, hub, subnetB, epB, batch, forward.Peer{Subnet: subnetA, Endpoint: epA})

			// A burst from a pod on A to a pod on B arrives in order, TTL lowered twice.
			const burst = 300
			for i := 0; i < burst; i++ {
				a.dev.Inject(ipv4UDP("10.244.1.2", "10.244.2.3", 64, []byte(fmt.Sprintf("packet %d", i))))
			}
			for i := 0; i < burst; i++ {
				got := receive(t, b.dev.Written())
				want := ipv4UDP("10.244.1.2", "10.244.2.3", 62, []byte(fmt.Sprintf("packet %d", i)))
				if !bytes.Equal(got, want) {
					t.Fatalf("packet %d arrived as\n% x\nwant\n% x", i, got, want)
				}
			}
			// And back.
			b.dev.Inject(ipv4UDP("10.244.2.3", "10.244.1.2", 64, []byte("reply")))
			if got, want := receive(t, a.dev.Written()), ipv4UDP("10.244.2.3", "10.244.1.2", 62, []byte("reply")); !bytes.Equal(got, want) {
				t.Fatalf("reply arrived as % x", got)
			}

			// Forged datagrams reach no pod and are counted.
			hub.Send(netip.MustParseAddrPort("192.0.2.66:8285"), epB, ipv4UDP("10.244.1.2", "10.244.2.3", 64, []byte("not a peer")))
			hub.Send(netip.MustParseAddrPort("192.0.2.1:9999"), epB, ipv4UDP("10.244.1.2", "10.244.2.3", 64, []byte("wrong port")))
			hub.Send(epA, epB, ipv4UDP("10.244.7.7", "10.244.2.3", 64, []byte("spoofed source")))
			hub.Send(epA, epB, ipv4UDP("10.244.1.2", "10.244.3.3", 64, []byte("not for B")))
			hub.Send(epA, epB, []byte{0x45, 0, 0})
			// A marker proves the forged ones were processed (the queue is FIFO).
			hub.Send(epA, epB, ipv4UDP("10.244.1.2", "10.244.2.3", 64, []byte("marker")))
			if got := receive(t, b.dev.Written()); !bytes.Contains(got, []byte("marker")) {
				t.Fatalf("a forged packet reached the device: % x", got)
			}
			// The marker's batch is counted after it is written: wait for the counts.
			s := statsWhen(t, b.f, func(s fastpath.Stats) bool {
				return s.ConnIn.Packets >= burst+6 && s.DeviceOut.Packets >= burst+1 && s.ConnOut.Packets >= 1
			})
			for r, want := range map[fastpath.DropReason]uint64{
				fastpath.DropNotPeer: 2, fastpath.DropSpoofedSource: 1, fastpath.DropWrongDestination: 1, fastpath.DropMalformed: 1,
			} {
				if s.Drops[r] != want {
					t.Errorf("B drops %s = %d, want %d", r, s.Drops[r], want)
				}
			}
			if s.ConnIn.Packets != burst+6 || s.DeviceOut.Packets != burst+1 || s.DeviceIn.Packets != 1 || s.ConnOut.Packets != 1 {
				t.Errorf("B stats %+v", s)
			}
			sa := statsWhen(t, a.f, func(s fastpath.Stats) bool { return s.ConnOut.Packets >= burst })
			if sa.DeviceIn.Packets != burst || sa.ConnOut.Packets != burst || sa.Dropped() != 0 || sa.ConnOut.Bytes != sa.DeviceIn.Bytes {
				t.Errorf("A stats %+v", sa)
			}

			// Unroutable and expiring packets come back as ICMP errors from 10.244.1.0.
			a.dev.Inject(ipv4UDP("10.244.1.2", "10.244.9.9", 64, []byte("nowhere")))
			if icmp := receive(t, a.dev.Written()); icmp[9] != 1 || icmp[20] != 3 || !bytes.Equal(icmp[12:16], []byte{10, 244, 1, 0}) {
				t.Fatalf("no net-unreachable: % x", icmp)
			}
			a.dev.Inject(ipv4UDP("10.244.1.2", "10.244.2.3", 1, []byte("expiring")))
			if icmp := receive(t, a.dev.Written()); icmp[9] != 1 || icmp[20] != 11 {
				t.Fatalf("no time-exceeded: % x", icmp)
			}
			// A packet that expires on arrival at B produces a time-exceeded from B's
			// 10.244.2.0, sent back over the underlay to A and written into A's device.
			a.dev.Inject(ipv4UDP("10.244.1.2", "10.244.2.3", 2, []byte("expires at B")))
			if icmp := receive(t, a.dev.Written()); icmp[20] != 11 || !bytes.Equal(icmp[12:16], []byte{10, 244, 2, 0}) || !bytes.Equal(icmp[16:20], []byte{10, 244, 1, 2}) {
				t.Fatalf("no time-exceeded from B: % x", icmp)
			}
			if s := a.f.Stats(); s.ICMPOut != 2 || s.Drops[fastpath.DropNoRoute] != 1 || s.Drops[fastpath.DropTTLExceeded] != 1 {
				t.Errorf("A stats after ICMP: %+v", s)
			}

			cancel()
			for _, n := range []*node{a, b} {
				select {
				case err := <-n.done:
					if err != nil {
						t.Fatalf("Run returned %v", err)
					}
				case <-time.After(5 * time.Second):
					t.Fatal("Run did not return after cancel")
				}
			}
			waitGoroutines(t, base)
		})
	}
}

func TestPeerTableSwapIsSeen(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hub := fastpathtest.NewHub()
	a := startNode(t, ctx, hub, subnetA, epA, 8)
	b := startNode(t, ctx, hub, subnetB, epB, 8, forward.Peer{Subnet: subnetA, Endpoint: epA})
	a.dev.Inject(ipv4UDP("10.244.1.2", "10.244.2.3", 64, []byte("before")))
	if icmp := receive(t, a.dev.Written()); icmp[20] != 3 {
		t.Fatalf("want net-unreachable before B is a peer: % x", icmp)
	}
	tab, err := forward.NewPeerTable([]forward.Peer{{Subnet: subnetB, Endpoint: epB}})
	if err != nil {
		t.Fatal(err)
	}
	a.f.SetPeers(tab)
	a.dev.Inject(ipv4UDP("10.244.1.2", "10.244.2.3", 64, []byte("after")))
	if got := receive(t, b.dev.Written()); !bytes.Contains(got, []byte("after")) {
		t.Fatalf("got % x", got)
	}
	// B forgets A: A's packets are no longer accepted.
	b.f.SetPeers(nil)
	a.dev.Inject(ipv4UDP("10.244.1.2", "10.244.2.3", 64, []byte("forgotten")))
	expectNothing(t, b.dev.Written(), 100*time.Millisecond)
	if s := statsWhen(t, b.f, func(s fastpath.Stats) bool { return s.Drops[fastpath.DropNotPeer] >= 1 }); s.Drops[fastpath.DropNotPeer] != 1 {
		t.Fatalf("B stats %+v", s)
	}
}

func TestCloseEndsRun(t *testing.T) {
	base := runtime.NumGoroutine()
	hub := fastpathtest.NewHub()
	n := startNode(t, context.Background(), hub, subnetA, epA, 4)
	if err := n.f.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-n.done:
		if err != nil {
			t.Fatalf("Run after Close returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	if err := n.f.Run(context.Background()); err == nil {
		t.Fatal("second Run succeeded")
	}
	if err := n.f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	waitGoroutines(t, base)
}

// brokenDevice fails every Read with a non-close error.
type brokenDevice struct{ *fastpathtest.Device }

func (brokenDevice) Read([]fastpath.Packet) (int, error) { return 0, errors.New("device is broken") }

func TestPersistentReadErrorsEndRun(t *testing.T) {
	base := runtime.NumGoroutine()
	hub := fastpathtest.NewHub()
	f, err := forward.New(forward.Config{Subnet: subnetA, MTU: 1472}, brokenDevice{fastpathtest.NewDevice(1, 1)}, hub.Conn(epA, 1, 1))
	if err != nil {
		t.Fatal(err)
	}
	err = f.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "device is broken") {
		t.Fatalf("Run = %v, want the device error", err)
	}
	if f.Stats().ReadErrors == 0 {
		t.Fatal("read errors not counted")
	}
	waitGoroutines(t, base)
}

func TestNewRejectsBadConfig(t *testing.T) {
	hub := fastpathtest.NewHub()
	dev, conn := fastpathtest.NewDevice(1, 1), hub.Conn(epA, 1, 1)
	for _, cfg := range []forward.Config{
		{Subnet: netip.MustParsePrefix("10.244.1.1/24"), MTU: 1472},
		{Subnet: netip.MustParsePrefix("fd00::/64"), MTU: 1472},
		{Subnet: subnetA, MTU: 20},
		{Subnet: subnetA, MTU: 70000},
		{Subnet: subnetA, MTU: 1472, BatchSize: -1},
		{Subnet: subnetA, MTU: 1472, Self: netip.MustParseAddr("fd00::1")},
	} {
		if _, err := forward.New(cfg, dev, conn); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
	if _, err := forward.New(forward.Config{Subnet: subnetA, MTU: 1472}, nil, conn); err == nil {
		t.Error("New without a device succeeded")
	}
	f, err := forward.New(forward.Config{Subnet: subnetA, MTU: 1472, BatchSize: 500}, fastpathtest.NewDevice(16, 1), hub.Conn(epB, 32, 1))
	if err != nil || f.BatchSize() != 16 {
		t.Fatalf("batch size %d (%v), want the device's 16", f.BatchSize(), err)
	}
}

// headerConn is a Conn that reads each datagram behind a 4-byte outer header into the
// slot and advances Off past it, as a GRE Conn reading a raw socket would.
type headerConn struct{ *fastpathtest.Conn }

func (c headerConn) Read(pkts []fastpath.Packet) (int, error) {
	for i := range pkts {
		if pkts[i].Off != fastpath.Headroom {
			panic("slot handed to Read without its headroom reset")
		}
		pkts[i].Off -= 4 // read the outer header into the headroom...
	}
	n, err := c.Conn.Read(pkts)
	for i := range pkts {
		pkts[i].Off += 4 // ...and skip it
	}
	for i := range pkts[:n] {
		pkts[i].Len -= 4
	}
	return n, err
}

func TestReadMayAdvanceOff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hub := fastpathtest.NewHub()
	dev := fastpathtest.NewDevice(4, 64)
	f, err := forward.New(forward.Config{Subnet: subnetB, MTU: 1472, BatchSize: 4}, dev, headerConn{hub.Conn(epB, 4, 64)})
	if err != nil {
		t.Fatal(err)
	}
	tab, _ := forward.NewPeerTable([]forward.Peer{{Subnet: subnetA, Endpoint: epA}})
	f.SetPeers(tab)
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	for i := 0; i < 20; i++ {
		inner := ipv4UDP("10.244.1.2", "10.244.2.3", 64, []byte(fmt.Sprintf("gre %d", i)))
		hub.Send(epA, epB, append([]byte{0xde, 0xad, 0xbe, 0xef}, inner...))
	}
	for i := 0; i < 20; i++ {
		if got, want := receive(t, dev.Written()), ipv4UDP("10.244.1.2", "10.244.2.3", 63, []byte(fmt.Sprintf("gre %d", i))); !bytes.Equal(got, want) {
			t.Fatalf("packet %d: % x", i, got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// runConn is a Conn that hands out datagrams from one buffer of its own, back to back, as
// a UDP GRO socket does, and checks that each Read gets the slots' own buffers back.
type runConn struct {
	*fastpathtest.Conn
	own   []byte
	slots [][]byte
}

func (c *runConn) Read(pkts []fastpath.Packet) (int, error) {
	for i := range pkts {
		if len(pkts[i].Buf) > 0 && &pkts[i].Buf[0] == &c.own[0] {
			panic("slot handed to Read with the Conn's buffer still in it")
		}
	}
	tmp := make([]fastpath.Packet, len(pkts))
	for i := range tmp {
		tmp[i] = fastpath.Packet{Buf: c.slots[i], Off: 0}
	}
	n, err := c.Conn.Read(tmp)
	off := 0
	for i := range tmp[:n] {
		l := copy(c.own[off:], tmp[i].Bytes())
		pkts[i] = fastpath.Packet{Buf: c.own, Off: off, Len: l, Addr: tmp[i].Addr}
		off += l
	}
	return n, err
}

func TestReadMayHandOutOwnBuffers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hub := fastpathtest.NewHub()
	dev := fastpathtest.NewDevice(8, 64)
	c := &runConn{Conn: hub.Conn(epB, 8, 64), own: make([]byte, 8*2000)}
	for range 8 {
		c.slots = append(c.slots, make([]byte, 2000))
	}
	f, err := forward.New(forward.Config{Subnet: subnetB, MTU: 1472, BatchSize: 8}, dev, c)
	if err != nil {
		t.Fatal(err)
	}
	tab, _ := forward.NewPeerTable([]forward.Peer{{Subnet: subnetA, Endpoint: epA}})
	f.SetPeers(tab)
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	for i := 0; i < 50; i++ {
		hub.Send(epA, epB, ipv4UDP("10.244.1.2", "10.244.2.3", 64, []byte(fmt.Sprintf("run %d", i))))
	}
	for i := 0; i < 50; i++ {
		if got, want := receive(t, dev.Written()), ipv4UDP("10.244.1.2", "10.244.2.3", 63, []byte(fmt.Sprintf("run %d", i))); !bytes.Equal(got, want) {
			t.Fatalf("packet %d: % x", i, got)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := f.Offloads(); got != "none" {
		t.Fatalf("Offloads() = %q for fakes", got)
	}
}
