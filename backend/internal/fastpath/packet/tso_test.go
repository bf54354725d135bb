package packet

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packettest"
)

// tsoHdr is the virtio-net header the kernel puts before a TCPv4 superpacket b.
func tsoHdr(b []byte, mss int) VirtioHdr {
	ihl := packettest.IHL(b)
	return VirtioHdr{Flags: VnetNeedsCsum, GSOType: GSOTCPv4, HdrLen: uint16(ihl + packettest.THL(b)),
		GSOSize: uint16(mss), CsumStart: uint16(ihl), CsumOffset: 16}
}

// splitAll cuts super into slots of slotLen bytes, resuming the splitter as a TUN would.
func splitAll(t *testing.T, super []byte, h VirtioHdr, slotLen int) [][]byte {
	t.Helper()
	var s TSOSplitter
	if r := s.Start(super, h); r != fastpath.DropNone {
		t.Fatalf("start: %v", r)
	}
	var out [][]byte
	for s.Pending() {
		dst := make([]byte, slotLen)
		n := s.Next(dst)
		if n == 0 {
			t.Fatal("next returned 0 for a superpacket that fits")
		}
		out = append(out, dst[:n])
		if len(out) > 70000 {
			t.Fatal("no end")
		}
	}
	return out
}

// checkSegments verifies segments against the superpacket they were cut from, with the
// reference checksums: every header field the kernel's GSO sets, flags by position, and
// the payload in order.
func checkSegments(t *testing.T, super []byte, segs [][]byte, mss int) {
	t.Helper()
	ihl, thl := packettest.IHL(super), packettest.THL(super)
	payload := packettest.TCPPayload(super)
	wantSegs := max(1, (len(payload)+mss-1)/mss)
	if len(segs) != wantSegs {
		t.Fatalf("%d segments, want %d", len(segs), wantSegs)
	}
	id0 := binary.BigEndian.Uint16(super[4:])
	flags0 := packettest.TCPFlags(super)
	var got []byte
	for i, seg := range segs {
		last := i == len(segs)-1
		if packettest.RefChecksum(seg[:ihl]) != 0 {
			t.Fatalf("segment %d: IPv4 header checksum wrong", i)
		}
		if int(binary.BigEndian.Uint16(seg[2:])) != len(seg) {
			t.Fatalf("segment %d: total length %d, segment is %d", i, binary.BigEndian.Uint16(seg[2:]), len(seg))
		}
		if id := binary.BigEndian.Uint16(seg[4:]); id != id0+uint16(i) {
			t.Fatalf("segment %d: IP id %d, want %d", i, id, id0+uint16(i))
		}
		// Every other IPv4 header byte as in the superpacket (options included).
		for _, r := range [][2]int{{0, 2}, {6, 10}, {12, ihl}} {
			mustEqualBytes(t, fmt.Sprintf("segment %d IPv4 bytes %d-%d", i, r[0], r[1]), seg[r[0]:r[1]], super[r[0]:r[1]])
		}
		if !packettest.RefTCPValid(seg, ihl) {
			t.Fatalf("segment %d: TCP checksum wrong", i)
		}
		if s := packettest.TCPSeq(seg); s != packettest.TCPSeq(super)+uint32(i*mss) {
			t.Fatalf("segment %d: seq %d, want %d", i, s, packettest.TCPSeq(super)+uint32(i*mss))
		}
		want := flags0
		if !last {
			want &^= tcpFIN | tcpPSH
		}
		if i > 0 {
			want &^= tcpCWR
		}
		if f := packettest.TCPFlags(seg); f != want {
			t.Fatalf("segment %d: flags %#02x, want %#02x", i, f, want)
		}
		// Ports, ack, offset, window, urgent pointer and options as in the superpacket.
		st, ht := seg[ihl:], super[ihl:]
		mustEqualBytes(t, "ports", st[0:4], ht[0:4])
		mustEqualBytes(t, "ack, offset", st[8:13], ht[8:13])
		mustEqualBytes(t, "window", st[14:16], ht[14:16])
		mustEqualBytes(t, "urgent pointer, options", st[18:thl], ht[18:thl])
		if p := len(packettest.TCPPayload(seg)); !last && p != mss || p > mss {
			t.Fatalf("segment %d: %d payload bytes with MSS %d", i, p, mss)
		}
		got = append(got, packettest.TCPPayload(seg)...)
	}
	mustEqualBytes(t, "payload", got, payload)
}

func TestTSOSplit(t *testing.T) {
	const mss = 1400
	ts := packettest.TSOption(123456, 654321)
	tests := []struct {
		name string
		p    packettest.TCP
		mss  int
	}{
		{"ack, 5 full segments", packettest.Flow(1000, 5*mss), mss},
		{"ack, last short", packettest.Flow(1000, 5*mss+123), mss},
		{"one byte more than a segment", packettest.Flow(7, mss+1), mss},
		{"less than one segment", packettest.Flow(7, 100), mss},
		{"no payload", packettest.Flow(7, 0), mss},
		{"largest superpacket", packettest.Flow(1, 65535-40), mss},
		{"timestamps", packettest.Flow(1000, 3*mss).With(func(p *packettest.TCP) { p.TCPOptions = ts }), mss - 12},
		{"PSH on the last only", packettest.Flow(1000, 3*mss+5).With(func(p *packettest.TCP) { p.Flags |= tcpPSH }), mss},
		{"FIN and PSH on the last only", packettest.Flow(1000, 3*mss+5).With(func(p *packettest.TCP) { p.Flags |= tcpPSH | tcpFIN }), mss},
		{"CWR on the first only, ECE on all", packettest.Flow(1000, 3*mss).With(func(p *packettest.TCP) { p.Flags |= tcpCWR | tcpECE }), mss},
		{"URG copied as the kernel's GSO does", packettest.Flow(1000, 2*mss).With(func(p *packettest.TCP) { p.Flags |= tcpURG }), mss},
		{"IPv4 options copied", packettest.Flow(1000, 3*mss).With(func(p *packettest.TCP) { p.IPOptions = 8 }), mss - 8},
		{"ECN CE in TOS kept", packettest.Flow(1000, 3*mss).With(func(p *packettest.TCP) { p.TOS = 0x03 }), mss},
		{"DF clear", packettest.Flow(1000, 3*mss).With(func(p *packettest.TCP) { p.Frag = 0xffff }), mss},
		{"IP id wraps", packettest.Flow(1000, 4*mss).With(func(p *packettest.TCP) { p.ID = 0xfffe }), mss},
		{"sequence wraps", packettest.Flow(0xffffff00, 4*mss), mss},
		{"tiny MSS", packettest.Flow(1000, 3000), 8},
		{"odd MSS and odd tail", packettest.Flow(1000, 3001), 333},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.p
			p.Partial = true
			super := p.Build()
			orig := append([]byte(nil), super...)
			segs := splitAll(t, super, tsoHdr(super, tt.mss), 1600)
			mustEqualBytes(t, "superpacket after the split", super, orig)
			checkSegments(t, super, segs, tt.mss)
		})
	}
}

func TestTSOSplitECNGSOType(t *testing.T) {
	p := packettest.Flow(1000, 3*1400).With(func(p *packettest.TCP) { p.Flags |= tcpCWR; p.Partial = true })
	super := p.Build()
	h := tsoHdr(super, 1400)
	h.GSOType |= GSOECN
	checkSegments(t, super, splitAll(t, super, h, 1600), 1400)
}

func TestTSORefuses(t *testing.T) {
	good := packettest.Flow(1000, 3000).With(func(p *packettest.TCP) { p.Partial = true })
	tests := []struct {
		name  string
		mod   func(b []byte, h *VirtioHdr)
		build func() []byte
	}{
		{name: "UDP GSO type", mod: func(b []byte, h *VirtioHdr) { h.GSOType = 3 }},
		{name: "UDP L4 GSO type", mod: func(b []byte, h *VirtioHdr) { h.GSOType = 5 }},
		{name: "TCPv6 GSO type", mod: func(b []byte, h *VirtioHdr) { h.GSOType = 4 }},
		{name: "GSO size 0", mod: func(b []byte, h *VirtioHdr) { h.GSOSize = 0 }},
		{name: "checksum start not at TCP", mod: func(b []byte, h *VirtioHdr) { h.CsumStart = 24 }},
		{name: "checksum offset not TCP's", mod: func(b []byte, h *VirtioHdr) { h.CsumOffset = 6 }},
		{name: "total length mismatch", mod: func(b []byte, h *VirtioHdr) { b[3]-- }},
		{name: "not TCP", mod: func(b []byte, h *VirtioHdr) { b[9] = protoUDP }},
		{name: "IPv6", mod: func(b []byte, h *VirtioHdr) { b[0] = 0x60 }},
		{name: "IHL below 5", mod: func(b []byte, h *VirtioHdr) { b[0] = 0x44 }},
		{name: "more fragments", mod: func(b []byte, h *VirtioHdr) { b[6] |= 0x20 }},
		{name: "fragment offset", mod: func(b []byte, h *VirtioHdr) { b[7] = 1 }},
		{name: "TCP data offset below 5", mod: func(b []byte, h *VirtioHdr) { b[32] = 0x40 }},
		{name: "TCP header beyond packet", build: func() []byte {
			b := packettest.Flow(1, 0).With(func(p *packettest.TCP) { p.Partial = true }).Build()
			b[32] = 0xf0
			return b
		}},
		{name: "too short", build: func() []byte { return []byte{0x45, 0, 0, 10, 0, 0, 0, 0, 64, 6} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b []byte
			if tt.build != nil {
				b = tt.build()
			} else {
				b = good.Build()
			}
			h := VirtioHdr{Flags: VnetNeedsCsum, GSOType: GSOTCPv4, HdrLen: 40, GSOSize: 1000, CsumStart: 20, CsumOffset: 16}
			if tt.mod != nil {
				tt.mod(b, &h)
			}
			var s TSOSplitter
			if r := s.Start(b, h); r != fastpath.DropMalformed {
				t.Fatalf("start: %v, want malformed", r)
			}
			if s.Pending() {
				t.Fatal("a refused superpacket is pending")
			}
		})
	}
}

// TestTSOSlotTooSmall: a segment larger than the slot abandons the superpacket.
func TestTSOSlotTooSmall(t *testing.T) {
	super := packettest.Flow(1, 3000).With(func(p *packettest.TCP) { p.Partial = true }).Build()
	var s TSOSplitter
	if r := s.Start(super, tsoHdr(super, 1400)); r != fastpath.DropNone {
		t.Fatal(r)
	}
	if n := s.Next(make([]byte, 1439)); n != 0 || s.Pending() {
		t.Fatalf("next into a short slot: %d, pending %v", n, s.Pending())
	}
}

func TestCompleteChecksum(t *testing.T) {
	tcp := packettest.Flow(5, 333).With(func(p *packettest.TCP) { p.Partial = true; p.Flags |= tcpPSH }).Build()
	if !CompleteChecksum(tcp, 20, 16) || !packettest.RefTCPValid(tcp, 20) {
		t.Fatal("TCP checksum not completed")
	}
	opt := packettest.Flow(5, 333).With(func(p *packettest.TCP) { p.Partial = true; p.IPOptions = 4 }).Build()
	if !CompleteChecksum(opt, 24, 16) || !packettest.RefTCPValid(opt, 24) {
		t.Fatal("TCP checksum behind IPv4 options not completed")
	}

	u := packettest.UDP("10.244.1.2", "10.244.2.3", 64, "hello, world").Build()
	binary.BigEndian.PutUint16(u[26:], ^packettest.RefChecksum(packettest.RefPseudo(u, 20)))
	if !CompleteChecksum(u, 20, 6) || packettest.RefChecksum(append(packettest.RefPseudo(u, 20), u[20:]...)) != 0 {
		t.Fatal("UDP checksum not completed")
	}

	for _, c := range []struct{ start, off int }{{-1, 6}, {20, -1}, {20, 5}, {20, len(u) - 21}, {len(u) + 1, 0}} {
		if CompleteChecksum(u, c.start, c.off) {
			t.Fatalf("offsets %d+%d accepted for a %d-byte packet", c.start, c.off, len(u))
		}
	}
}

// TestCompleteChecksumZeroIsSentAsFFFF: a UDP checksum that computes to 0 goes out as
// 0xffff (0 would mean "no checksum").
func TestCompleteChecksumZeroIsSentAsFFFF(t *testing.T) {
	u := packettest.UDP("10.244.1.2", "10.244.2.3", 64, "xx").Build()
	// Choose the two data bytes so that the whole sum is 0xffff.
	ph := packettest.RefPseudo(u, 20)
	binary.BigEndian.PutUint16(u[26:], 0)
	binary.BigEndian.PutUint16(u[28:], 0)
	rest := ^packettest.RefChecksum(append(ph, u[20:]...))
	binary.BigEndian.PutUint16(u[28:], ^rest)
	binary.BigEndian.PutUint16(u[26:], ^packettest.RefChecksum(ph))
	if !CompleteChecksum(u, 20, 6) {
		t.Fatal("refused")
	}
	if c := binary.BigEndian.Uint16(u[26:]); c != 0xffff {
		t.Fatalf("checksum %#04x, want 0xffff", c)
	}
}

func TestVirtioHdrRoundTrip(t *testing.T) {
	h := VirtioHdr{Flags: 1, GSOType: 0x81, HdrLen: 52, GSOSize: 1448, CsumStart: 20, CsumOffset: 16}
	b := make([]byte, VirtioHdrLen)
	h.Encode(b)
	got, ok := DecodeVirtioHdr(b)
	if !ok || got != h {
		t.Fatalf("round trip: %+v, %v", got, ok)
	}
	if _, ok := DecodeVirtioHdr(b[:9]); ok {
		t.Fatal("decoded a 9-byte header")
	}
}

func TestTSODoesNotAllocate(t *testing.T) {
	super := packettest.Flow(1, 40000).With(func(p *packettest.TCP) { p.Partial = true; p.TCPOptions = packettest.TSOption(1, 2) }).Build()
	h := tsoHdr(super, 1388)
	dst := make([]byte, 1600)
	var s TSOSplitter
	allocs := testing.AllocsPerRun(50, func() {
		s.Start(super, h)
		for s.Pending() {
			s.Next(dst)
		}
		CompleteChecksum(dst[:200], 20, 16)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per superpacket", allocs)
	}
}

func BenchmarkTSOSplit(b *testing.B) {
	super := packettest.Flow(1, 65535-52).With(func(p *packettest.TCP) { p.Partial = true; p.TCPOptions = packettest.TSOption(1, 2) }).Build()
	h := tsoHdr(super, 1420)
	dst := make([]byte, 1600)
	var s TSOSplitter
	b.SetBytes(int64(len(super)))
	for b.Loop() {
		s.Start(super, h)
		for s.Pending() {
			s.Next(dst)
		}
	}
}
