package fastpath

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// The decision tests run as node 10.244.1.0/24 with testPeers: 10.244.2.0/24 behind
// 192.0.2.2:8285, 10.244.3.0/24 and 10.244.4.0/24 behind 192.0.2.3:8285.

func TestFromDevice(t *testing.T) {
	tests := []struct {
		name     string
		p        pkt
		trailing int
		want     DropReason
		wantTo   string // endpoint when forwarded
		wantICMP uint8  // ICMP type written back, 0 for none
	}{
		{"to peer", udp("10.244.1.2", "10.244.2.3", 64, "hi"), 0, DropNone, "192.0.2.2:8285", 0},
		{"to second subnet of a peer", udp("10.244.1.2", "10.244.4.9", 64, "hi"), 0, DropNone, "192.0.2.3:8285", 0},
		{"from host address", udp("10.244.1.0", "10.244.3.1", 64, "hi"), 0, DropNone, "192.0.2.3:8285", 0},
		{"trailing bytes trimmed", udp("10.244.1.2", "10.244.2.3", 64, "hi"), 5, DropNone, "192.0.2.2:8285", 0},
		{"TTL 2 still forwarded", udp("10.244.1.2", "10.244.2.3", 2, "hi"), 0, DropNone, "192.0.2.2:8285", 0},
		{"TTL 1 expires", udp("10.244.1.2", "10.244.2.3", 1, "hi"), 0, DropTTLExceeded, "", icmpTimeExceeded},
		{"TTL 0 expires", udp("10.244.1.2", "10.244.2.3", 0, "hi"), 0, DropTTLExceeded, "", icmpTimeExceeded},
		{"no peer in network", udp("10.244.1.2", "10.244.9.9", 64, "hi"), 0, DropNoRoute, "", icmpDestUnreachable},
		{"outside network", udp("10.244.1.2", "8.8.8.8", 64, "hi"), 0, DropNoRoute, "", icmpDestUnreachable},
		{"no peer, about an ICMP error", pkt{src: "10.244.1.2", dst: "10.244.9.9", ttl: 64, proto: protoICMP, payload: make([]byte, 8)}.withICMPType(3), 0, DropNoRoute, "", 0},
		{"no peer, multicast", udp("10.244.1.2", "239.0.0.1", 64, "hi"), 0, DropNoRoute, "", 0},
		{"own subnet", udp("10.244.1.2", "10.244.1.3", 64, "hi"), 0, DropOwnSubnet, "", 0},
		{"IPv6", pkt{src: "10.244.1.2", dst: "10.244.2.3", ttl: 64}.withVersion(6), 0, DropNotIPv4, "", 0},
		{"bad checksum", udp("10.244.1.2", "10.244.2.3", 64, "hi").withBadChecksum(), 0, DropMalformed, "", 0},
	}
	f := testForwarder(t)
	tab := testPeers(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := tt.p.build()
			b := append(append([]byte(nil), orig...), make([]byte, tt.trailing)...)
			p := packetOf(b, netip.AddrPort{})
			icmp := make([]byte, icmpMaxLen)
			r, n := f.fromDevice(tab, &p, icmp)
			if r != tt.want {
				t.Fatalf("fromDevice = %v, want %v", r, tt.want)
			}
			if r == DropNone {
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
			checkICMPError(t, icmp[:n], orig, "10.244.1.0", tt.p.src, tt.wantICMP, code)
		})
	}
}

func TestFromConn(t *testing.T) {
	tests := []struct {
		name     string
		from     string
		p        pkt
		want     DropReason
		wantICMP bool // a time-exceeded back to the sender
	}{
		{"from peer", "192.0.2.2:8285", udp("10.244.2.3", "10.244.1.2", 63, "hi"), DropNone, false},
		{"from peer's second subnet", "192.0.2.3:8285", udp("10.244.4.3", "10.244.1.2", 63, "hi"), DropNone, false},
		{"to own host address", "192.0.2.2:8285", udp("10.244.2.0", "10.244.1.0", 63, "hi"), DropNone, false},
		{"unknown sender address", "192.0.2.9:8285", udp("10.244.2.3", "10.244.1.2", 63, "hi"), DropNotPeer, false},
		{"peer address, other port", "192.0.2.2:9999", udp("10.244.2.3", "10.244.1.2", 63, "hi"), DropNotPeer, false},
		{"no sender", "0.0.0.0:0", udp("10.244.2.3", "10.244.1.2", 63, "hi"), DropNotPeer, false},
		{"source of another peer", "192.0.2.2:8285", udp("10.244.3.3", "10.244.1.2", 63, "hi"), DropSpoofedSource, false},
		{"source outside all peers", "192.0.2.2:8285", udp("10.244.7.3", "10.244.1.2", 63, "hi"), DropSpoofedSource, false},
		{"source in own subnet", "192.0.2.2:8285", udp("10.244.1.5", "10.244.1.2", 63, "hi"), DropSpoofedSource, false},
		{"source outside network", "192.0.2.2:8285", udp("192.0.2.2", "10.244.1.2", 63, "hi"), DropSpoofedSource, false},
		{"destination of another peer", "192.0.2.2:8285", udp("10.244.2.3", "10.244.3.2", 63, "hi"), DropWrongDestination, false},
		{"destination outside network", "192.0.2.2:8285", udp("10.244.2.3", "1.1.1.1", 63, "hi"), DropWrongDestination, false},
		{"malformed from peer", "192.0.2.2:8285", udp("10.244.2.3", "10.244.1.2", 63, "hi").withBadChecksum(), DropMalformed, false},
		{"IPv6 from peer", "192.0.2.2:8285", pkt{src: "10.244.2.3", dst: "10.244.1.2", ttl: 63}.withVersion(6), DropNotIPv4, false},
		{"TTL 1", "192.0.2.2:8285", udp("10.244.2.3", "10.244.1.2", 1, "hi"), DropTTLExceeded, true},
	}
	f := testForwarder(t)
	tab := testPeers(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := tt.p.build()
			p := packetOf(orig, ap(tt.from))
			icmp := make([]byte, icmpMaxLen)
			r, n := f.fromConn(tab, &p, icmp)
			if r != tt.want {
				t.Fatalf("fromConn = %v, want %v", r, tt.want)
			}
			if r == DropNone {
				checkForwarded(t, p.Bytes(), orig)
			}
			if (n > 0) != tt.wantICMP {
				t.Fatalf("ICMP error length %d, want one: %v", n, tt.wantICMP)
			}
			if n > 0 {
				checkICMPError(t, icmp[:n], orig, "10.244.1.0", tt.p.src, icmpTimeExceeded, icmpTTLExceeded)
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
	if !headerValid(got) {
		t.Fatal("forwarded header checksum wrong")
	}
	g, o := append([]byte(nil), got...), append([]byte(nil), orig...)
	g[8], g[10], g[11] = 0, 0, 0
	o[8], o[10], o[11] = 0, 0, 0
	if !bytes.Equal(g, o) {
		t.Fatal("forwarding changed more than TTL and checksum")
	}
}

func (p pkt) withICMPType(typ byte) pkt {
	p.payload = append([]byte{typ}, p.payload[1:]...)
	return p
}

func (p pkt) withVersion(v byte) pkt {
	p.options = 0
	return p.post(func(b []byte) { b[0] = v<<4 | b[0]&0x0f })
}

func (p pkt) withBadChecksum() pkt {
	return p.post(func(b []byte) { binary.BigEndian.PutUint16(b[10:], ^binary.BigEndian.Uint16(b[10:])+1) })
}

func TestPerPacketFunctionsDoNotAllocate(t *testing.T) {
	f := testForwarder(t)
	tab := testPeers(t)
	icmp := make([]byte, icmpMaxLen)
	cases := []struct {
		name string
		run  func()
	}{
		{"fromDevice forward", perPacket(udp("10.244.1.2", "10.244.2.3", 200, "payload"), ap("0.0.0.0:0"), func(p *Packet) { f.fromDevice(tab, p, icmp) })},
		{"fromDevice no route + ICMP", perPacket(udp("10.244.1.2", "10.244.9.3", 200, "payload"), ap("0.0.0.0:0"), func(p *Packet) { f.fromDevice(tab, p, icmp) })},
		{"fromDevice TTL + ICMP", perPacket(udp("10.244.1.2", "10.244.2.3", 1, "payload"), ap("0.0.0.0:0"), func(p *Packet) { f.fromDevice(tab, p, icmp) })},
		{"fromConn forward", perPacket(udp("10.244.2.3", "10.244.1.2", 200, "payload"), ap("192.0.2.2:8285"), func(p *Packet) { f.fromConn(tab, p, icmp) })},
		{"fromConn spoofed", perPacket(udp("10.244.3.3", "10.244.1.2", 200, "payload"), ap("192.0.2.2:8285"), func(p *Packet) { f.fromConn(tab, p, icmp) })},
		{"fromConn not peer", perPacket(udp("10.244.2.3", "10.244.1.2", 200, "payload"), ap("192.0.2.77:8285"), func(p *Packet) { f.fromConn(tab, p, icmp) })},
		{"fromConn TTL + ICMP", perPacket(udp("10.244.2.3", "10.244.1.2", 1, "payload"), ap("192.0.2.2:8285"), func(p *Packet) { f.fromConn(tab, p, icmp) })},
	}
	for _, c := range cases {
		if n := testing.AllocsPerRun(1000, c.run); n != 0 {
			t.Errorf("%s: %v allocations per packet", c.name, n)
		}
	}
}

// perPacket returns a function that restores the packet and runs fn on it, so the TTL
// does not run out over many runs.
func perPacket(p pkt, from netip.AddrPort, fn func(*Packet)) func() {
	orig := p.build()
	slot := packetOf(orig, from)
	return func() {
		copy(slot.Buf[slot.Off:], orig)
		slot.Len = len(orig)
		slot.Addr = from
		fn(&slot)
	}
}
