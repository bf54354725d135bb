package packet

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packettest"
)

// tcp6 wraps the TCP segment (header and payload) of the IPv4 packet v4 in an IPv6
// header from src to dst, as the kernel's TCPv6 GSO hands it over.
func tcp6(v4 []byte, src, dst string) []byte {
	tcp := v4[packettest.IHL(v4):]
	b := make([]byte, IPv6HeaderLen+len(tcp))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[offPayloadLen:], uint16(len(tcp)))
	b[offNextHeader], b[offHopLimit] = protoTCP, 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[offSrc6:], s[:])
	copy(b[offDst6:], d[:])
	copy(b[IPv6HeaderLen:], tcp)
	return b
}

// refTCP6Valid checks the TCP checksum of an IPv6 packet bit by bit from RFC 8200's
// pseudo header, independently of pseudoSum6 and checksum.
func refTCP6Valid(b []byte) bool {
	l := len(b) - IPv6HeaderLen
	ph := make([]byte, 0, 40+l+1)
	ph = append(ph, b[offSrc6:IPv6HeaderLen]...)
	ph = binary.BigEndian.AppendUint32(ph, uint32(l))
	ph = append(ph, 0, 0, 0, protoTCP)
	ph = append(ph, b[IPv6HeaderLen:]...)
	return packettest.RefChecksum(ph) == 0
}

// TestTSOSplitIPv6: a TCP/IPv6 superpacket (TUN_F_TSO6) is cut into segments with the
// payload length and TCP checksum of each, the sequence numbers following on, FIN/PSH on
// the last only and CWR on the first only; every other byte of the headers is copied.
func TestTSOSplitIPv6(t *testing.T) {
	for _, c := range []struct{ payload, mss int }{{5000, 1000}, {4999, 1000}, {65000, 1428}, {10, 1428}} {
		t.Run(fmt.Sprintf("%d by %d", c.payload, c.mss), func(t *testing.T) {
			v4 := packettest.Flow(7000, c.payload).With(func(p *packettest.TCP) {
				p.Flags |= tcpPSH | tcpFIN | tcpCWR
				p.TCPOptions = packettest.TSOption(1, 2)
			}).Build()
			super := tcp6(v4, "fd00:0:0:1::2", "fd00:0:0:2::2")
			thl := packettest.THL(v4)
			h := VirtioHdr{Flags: VnetNeedsCsum, GSOType: GSOTCPv6 | GSOECN, HdrLen: uint16(IPv6HeaderLen + thl),
				GSOSize: uint16(c.mss), CsumStart: IPv6HeaderLen, CsumOffset: 16}
			segs := splitAll(t, super, h, IPv6HeaderLen+thl+c.mss)
			if want := (c.payload + c.mss - 1) / c.mss; len(segs) != want {
				t.Fatalf("%d segments, want %d", len(segs), want)
			}
			var got []byte
			for i, seg := range segs {
				last := i == len(segs)-1
				if pl := int(binary.BigEndian.Uint16(seg[offPayloadLen:])); pl != len(seg)-IPv6HeaderLen {
					t.Fatalf("segment %d: payload length %d, segment is %d", i, pl, len(seg))
				}
				mustEqualBytes(t, "IPv6 header but the payload length", append(seg[:4:4], seg[6:IPv6HeaderLen]...),
					append(super[:4:4], super[6:IPv6HeaderLen]...))
				if !refTCP6Valid(seg) {
					t.Fatalf("segment %d: TCP checksum wrong", i)
				}
				st := seg[IPv6HeaderLen:]
				if s := binary.BigEndian.Uint32(st[4:]); s != 7000+uint32(i*c.mss) {
					t.Fatalf("segment %d: seq %d", i, s)
				}
				want := super[IPv6HeaderLen+13]
				if !last {
					want &^= tcpFIN | tcpPSH
				}
				if i > 0 {
					want &^= tcpCWR
				}
				if st[13] != want {
					t.Fatalf("segment %d: flags %#02x, want %#02x", i, st[13], want)
				}
				mustEqualBytes(t, "ports", st[:4], super[IPv6HeaderLen:IPv6HeaderLen+4])
				mustEqualBytes(t, "ack .. options", st[8:13], super[IPv6HeaderLen+8:IPv6HeaderLen+13])
				mustEqualBytes(t, "window .. options", st[14:16], super[IPv6HeaderLen+14:IPv6HeaderLen+16])
				mustEqualBytes(t, "urgent, options", st[18:thl], super[IPv6HeaderLen+18:IPv6HeaderLen+thl])
				got = append(got, st[thl:]...)
			}
			mustEqualBytes(t, "payload", got, super[IPv6HeaderLen+thl:])
		})
	}
}

// TestTSORefusesIPv6: TCPv6 superpackets the kernel does not produce are refused.
func TestTSORefusesIPv6(t *testing.T) {
	good := tcp6(packettest.Flow(1, 3000).Build(), "fd00::1", "fd00::2")
	h := VirtioHdr{Flags: VnetNeedsCsum, GSOType: GSOTCPv6, HdrLen: 60, GSOSize: 1000, CsumStart: IPv6HeaderLen, CsumOffset: 16}
	var s TSOSplitter
	if r := s.Start(good, h); r != fastpath.DropNone {
		t.Fatalf("the good superpacket is refused: %v", r)
	}
	for name, c := range map[string]struct {
		mod  func([]byte)
		modH func(*VirtioHdr)
	}{
		"IPv4 GSO type":        {modH: func(h *VirtioHdr) { h.GSOType = GSOTCPv4 }},
		"version 4":            {mod: func(b []byte) { b[0] = 0x45 }},
		"extension header":     {mod: func(b []byte) { b[offNextHeader] = 0 }},
		"UDP":                  {mod: func(b []byte) { b[offNextHeader] = 17 }},
		"payload length":       {mod: func(b []byte) { binary.BigEndian.PutUint16(b[offPayloadLen:], 100) }},
		"checksum start":       {modH: func(h *VirtioHdr) { h.CsumStart = 20 }},
		"zero segment size":    {modH: func(h *VirtioHdr) { h.GSOSize = 0 }},
		"jumbogram (length 0)": {mod: func(b []byte) { binary.BigEndian.PutUint16(b[offPayloadLen:], 0) }},
	} {
		b, hh := append([]byte(nil), good...), h
		if c.mod != nil {
			c.mod(b)
		}
		if c.modH != nil {
			c.modH(&hh)
		}
		if r := s.Start(b, hh); r != fastpath.DropMalformed || s.Pending() {
			t.Errorf("%s: %v, pending %v; want refused", name, r, s.Pending())
		}
	}
}
