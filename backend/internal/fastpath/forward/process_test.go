package forward

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packet"
	"github.com/weftnet/weft/backend/internal/fastpath/packettest"
)

// The decision tests run as node 10.244.1.0/24 with testPeers: 10.244.2.0/24 behind
// 192.0.2.2:8285, 10.244.3.0/24 and 10.244.4.0/24 behind 192.0.2.3:8285.

func TestFromDevice(t *testing.T) {
	tests := []struct {
		name     string
		p        packettest.IPv4
		trailing int
		want     fastpath.DropReason
		wantTo   string // endpoint when forwarded
		wantICMP uint8  // ICMP type written back, 0 for none
	}{
		{"to peer", packettest.UDP("10.244.1.2", "10.244.2.3", 64, "hi"), 0, fastpath.DropNone, "192.0.2.2:8285", 0},
		{"to second subnet of a peer", packettest.UDP("10.244.1.2", "10.244.4.9", 64, "hi"), 0, fastpath.DropNone, "192.0.2.3:8285", 0},
		{"from host address", packettest.UDP("10.244.1.0", "10.244.3.1", 64, "hi"), 0, fastpath.DropNone, "192.0.2.3:8285", 0},
		{"trailing bytes trimmed", packettest.UDP("10.244.1.2", "10.244.2.3", 64, "hi"), 5, fastpath.DropNone, "192.0.2.2:8285", 0},
		{"TTL 2 still forwarded", packettest.UDP("10.244.1.2", "10.244.2.3", 2, "hi"), 0, fastpath.DropNone, "192.0.2.2:8285", 0},
		{"TTL 1 expires", packettest.UDP("10.244.1.2", "10.244.2.3", 1, "hi"), 0, fastpath.DropTTLExceeded, "", packet.ICMPTimeExceeded},
		{"TTL 0 expires", packettest.UDP("10.244.1.2", "10.244.2.3", 0, "hi"), 0, fastpath.DropTTLExceeded, "", packet.ICMPTimeExceeded},
		{"no peer in network", packettest.UDP("10.244.1.2", "10.244.9.9", 64, "hi"), 0, fastpath.DropNoRoute, "", packet.ICMPDestUnreachable},
		{"outside network", packettest.UDP("10.244.1.2", "8.8.8.8", 64, "hi"), 0, fastpath.DropNoRoute, "", packet.ICMPDestUnreachable},
		{"no peer, about an ICMP error", packettest.IPv4{Src: "10.244.1.2", Dst: "10.244.9.9", TTL: 64, Proto: packettest.ProtoICMP, Payload: make([]byte, 8)}.WithICMPType(3), 0, fastpath.DropNoRoute, "", 0},
		{"no peer, multicast", packettest.UDP("10.244.1.2", "239.0.0.1", 64, "hi"), 0, fastpath.DropNoRoute, "", 0},
		{"own subnet", packettest.UDP("10.244.1.2", "10.244.1.3", 64, "hi"), 0, fastpath.DropOwnSubnet, "", 0},
		{"IPv6", packettest.IPv4{Src: "10.244.1.2", Dst: "10.244.2.3", TTL: 64}.WithVersion(6), 0, fastpath.DropNotIPv4, "", 0},
		{"bad checksum", packettest.UDP("10.244.1.2", "10.244.2.3", 64, "hi").WithBadChecksum(), 0, fastpath.DropMalformed, "", 0},
	}
	f := testForwarder(t)
	tab := testPeers(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := tt.p.Build()
			b := append(append([]byte(nil), orig...), make([]byte, tt.trailing)...)
			p := packetOf(b, netip.AddrPort{})
			icmp := make([]byte, packet.ICMPMaxLen)
			r, n := f.fromDevice(tab, &p, icmp)
			if r != tt.want {
				t.Fatalf("fromDevice = %v, want %v", r, tt.want)
			}
			if r == fastpath.DropNone {
				checkForwarded(t, p.Bytes(), orig)
				if p.Addr.String() != tt.wantTo {
					t.Fatalf("sent to %s, want %s", p.Addr, tt.wantTo)
				}
			}
			if tt.wantICMP == 0 {
				if n != 0 {
					t.Fatalf("unexpected ICMP error of %d bytes", n)
				}
				return
			}
			code := uint8(0)
			checkICMPError(t, icmp[:n], orig, "10.244.1.0", tt.p.Src, tt.wantICMP, code)
		})
	}
}

func TestFromConn(t *testing.T) {
	tests := []struct {
		name     string
		from     string
		p        packettest.IPv4
		want     fastpath.DropReason
		wantICMP bool // a time-exceeded back to the sender
	}{
		{"from peer", "192.0.2.2:8285", packettest.UDP("10.244.2.3", "10.244.1.2", 63, "hi"), fastpath.DropNone, false},
		{"from peer's second subnet", "192.0.2.3:8285", packettest.UDP("10.244.4.3", "10.244.1.2", 63, "hi"), fastpath.DropNone, false},
		{"to own host address", "192.0.2.2:8285", packettest.UDP("10.244.2.0", "10.244.1.0", 63, "hi"), fastpath.DropNone, false},
		{"unknown sender address", "192.0.2.9:8285", packettest.UDP("10.244.2.3", "10.244.1.2", 63, "hi"), fastpath.DropNotPeer, false},
		{"peer address, other port", "192.0.2.2:9999", packettest.UDP("10.244.2.3", "10.244.1.2", 63, "hi"), fastpath.DropNotPeer, false},
		{"no sender", "0.0.0.0:0", packettest.UDP("10.244.2.3", "10.244.1.2", 63, "hi"), fastpath.DropNotPeer, false},
		{"source of another peer", "192.0.2.2:8285", packettest.UDP("10.244.3.3", "10.244.1.2", 63, "hi"), fastpath.DropSpoofedSource, false},
		{"source outside all peers", "192.0.2.2:8285", packettest.UDP("10.244.7.3", "10.244.1.2", 63, "hi"), fastpath.DropSpoofedSource, false},
		{"source in own subnet", "192.0.2.2:8285", packettest.UDP("10.244.1.5", "10.244.1.2", 63, "hi"), fastpath.DropSpoofedSource, false},
		{"source outside network", "192.0.2.2:8285", packettest.UDP("192.0.2.2", "10.244.1.2", 63, "hi"), fastpath.DropSpoofedSource, false},
		{"destination of another peer", "192.0.2.2:8285", packettest.UDP("10.244.2.3", "10.244.3.2", 63, "hi"), fastpath.DropWrongDestination, false},
		{"destination outside network", "192.0.2.2:8285", packettest.UDP("10.244.2.3", "1.1.1.1", 63, "hi"), fastpath.DropWrongDestination, false},
		{"malformed from peer", "192.0.2.2:8285", packettest.UDP("10.244.2.3", "10.244.1.2", 63, "hi").WithBadChecksum(), fastpath.DropMalformed, false},
		{"IPv6 from peer", "192.0.2.2:8285", packettest.IPv4{Src: "10.244.2.3", Dst: "10.244.1.2", TTL: 63}.WithVersion(6), fastpath.DropNotIPv4, false},
		{"TTL 1", "192.0.2.2:8285", packettest.UDP("10.244.2.3", "10.244.1.2", 1, "hi"), fastpath.DropTTLExceeded, true},
	}
	f := testForwarder(t)
	tab := testPeers(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := tt.p.Build()
			p := packetOf(orig, ap(tt.from))
			icmp := make([]byte, packet.ICMPMaxLen)
			r, n := f.fromConn(tab, &p, icmp)
			if r != tt.want {
				t.Fatalf("fromConn = %v, want %v", r, tt.want)
			}
			if r == fastpath.DropNone {
				checkForwarded(t, p.Bytes(), orig)
			}
			if (n > 0) != tt.wantICMP {
				t.Fatalf("ICMP error length %d, want one: %v", n, tt.wantICMP)
			}
			if n > 0 {
				checkICMPError(t, icmp[:n], orig, "10.244.1.0", tt.p.Src, packet.ICMPTimeExceeded, packet.ICMPTTLExceeded)
			}
		})
	}
}

// checkForwarded verifies a forwarded packet: the original with TTL one lower and a
// correct checksum, nothing else changed.
func checkForwarded(t *testing.T, got, orig []byte) {
	t.Helper()
	if len(got) != len(orig) {
		t.Fatalf("forwarded %d bytes, want %d", len(got), len(orig))
	}
	if got[8] != orig[8]-1 {
		t.Fatalf("TTL %d, want %d", got[8], orig[8]-1)
	}
	if !packettest.HeaderValid(got) {
		t.Fatal("forwarded header checksum wrong")
	}
	g, o := append([]byte(nil), got...), append([]byte(nil), orig...)
	g[8], g[10], g[11] = 0, 0, 0
	o[8], o[10], o[11] = 0, 0, 0
	if !bytes.Equal(g, o) {
		t.Fatal("forwarding changed more than TTL and checksum")
	}
}

func TestPerPacketFunctionsDoNotAllocate(t *testing.T) {
	f := testForwarder(t)
	tab := testPeers(t)
	icmp := make([]byte, packet.ICMPMaxLen)
	cases := []struct {
		name string
		run  func()
	}{
		{"fromDevice forward", perPacket(packettest.UDP("10.244.1.2", "10.244.2.3", 200, "payload"), ap("0.0.0.0:0"), func(p *fastpath.Packet) { f.fromDevice(tab, p, icmp) })},
		{"fromDevice no route + ICMP", perPacket(packettest.UDP("10.244.1.2", "10.244.9.3", 200, "payload"), ap("0.0.0.0:0"), func(p *fastpath.Packet) { f.fromDevice(tab, p, icmp) })},
		{"fromDevice TTL + ICMP", perPacket(packettest.UDP("10.244.1.2", "10.244.2.3", 1, "payload"), ap("0.0.0.0:0"), func(p *fastpath.Packet) { f.fromDevice(tab, p, icmp) })},
		{"fromConn forward", perPacket(packettest.UDP("10.244.2.3", "10.244.1.2", 200, "payload"), ap("192.0.2.2:8285"), func(p *fastpath.Packet) { f.fromConn(tab, p, icmp) })},
		{"fromConn spoofed", perPacket(packettest.UDP("10.244.3.3", "10.244.1.2", 200, "payload"), ap("192.0.2.2:8285"), func(p *fastpath.Packet) { f.fromConn(tab, p, icmp) })},
		{"fromConn not peer", perPacket(packettest.UDP("10.244.2.3", "10.244.1.2", 200, "payload"), ap("192.0.2.77:8285"), func(p *fastpath.Packet) { f.fromConn(tab, p, icmp) })},
		{"fromConn TTL + ICMP", perPacket(packettest.UDP("10.244.2.3", "10.244.1.2", 1, "payload"), ap("192.0.2.2:8285"), func(p *fastpath.Packet) { f.fromConn(tab, p, icmp) })},
	}
	for _, c := range cases {
		if n := testing.AllocsPerRun(1000, c.run); n != 0 {
			t.Errorf("%s: %v allocations per packet", c.name, n)
		}
	}
}

// perPacket returns a function that restores the packet and runs fn on it, so the TTL
// does not run out over many runs.
func perPacket(p packettest.IPv4, from netip.AddrPort, fn func(*fastpath.Packet)) func() {
	orig := p.Build()
	slot := packetOf(orig, from)
	return func() {
		copy(slot.Buf[slot.Off:], orig)
		slot.Len = len(orig)
		slot.Addr = from
		fn(&slot)
	}
}

// checkICMPError verifies an ICMP error independently of the code that built it.
func checkICMPError(t *testing.T, msg, orig []byte, src, dst string, typ, code uint8) {
	t.Helper()
	if err := packettest.CheckICMPError(msg, orig, src, dst, typ, code); err != nil {
		t.Fatal(err)
	}
}
