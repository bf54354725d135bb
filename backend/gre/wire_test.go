package gre

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/weftnet/weft/backend/internal/fastpath"
)

func TestPutHeader(t *testing.T) {
	for _, tc := range []struct {
		inner byte // the inner packet's first byte
		want  []byte
	}{
		{0x45, []byte{0x00, 0x00, 0x08, 0x00}},
		{0x60, []byte{0x00, 0x00, 0x86, 0xdd}},
	} {
		b := []byte{0xff, 0xff, 0xff, 0xff, tc.inner}
		putHeader(b, protoOf(b[4:]))
		if !bytes.Equal(b[:4], tc.want) || b[4] != tc.inner {
			t.Fatalf("header for inner %#x: % x, want % x", tc.inner, b, tc.want)
		}
		// What putHeader writes, decodeDatagram accepts.
		d := outer(20, b[:4], b[4:])
		if off, werr := decodeDatagram(d); werr != wireOK || off != 24 {
			t.Fatalf("decode of an encoded header for inner %#x: %d, %v", tc.inner, off, werr)
		}
	}
}

// outer builds a datagram as a raw socket returns it: an outer IPv4 header of ihl bytes
// (protocol 47), then gre and payload.
func outer(ihl int, gre, payload []byte) []byte {
	b := make([]byte, ihl, ihl+len(gre)+len(payload))
	b[0] = 0x40 | byte(ihl/4)
	b[8], b[9] = 64, ipProtoGRE
	copy(b[12:], []byte{192, 0, 2, 1})
	copy(b[16:], []byte{192, 0, 2, 2})
	b = append(b, gre...)
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

func TestDecodeDatagram(t *testing.T) {
	plain := []byte{0, 0, 0x08, 0x00}
	inner := []byte{0x45, 0, 0, 20}
	withProto := func(b []byte, proto byte) []byte { b[9] = proto; return b }
	withVersion := func(b []byte, v byte) []byte { b[0] = v<<4 | b[0]&0x0f; return b }
	for _, tc := range []struct {
		name string
		b    []byte
		off  int
		err  wireError
	}{
		{"plain", outer(20, plain, inner), 24, wireOK},
		{"plain, empty payload", outer(20, plain, nil), 24, wireOK},
		{"outer options", outer(24, plain, inner), 28, wireOK},
		{"largest outer header", outer(60, plain, inner), 64, wireOK},
		{"empty", nil, 0, wireShort},
		{"outer header only", outer(20, nil, nil), 0, wireShort},
		{"three GRE bytes", outer(20, plain[:3], nil), 0, wireShort},
		{"outer IPv6", withVersion(outer(20, plain, inner), 6), 0, wireOuterNotV4},
		{"IHL 4", outer(16, append(make([]byte, 4), plain...), inner), 0, wireOuterHeader},
		{"IHL beyond datagram", outer(60, nil, nil)[:40], 0, wireOuterHeader},
		{"IHL leaves no GRE header", outer(24, nil, nil), 0, wireOuterHeader},
		{"outer UDP", withProto(outer(20, plain, inner), 17), 0, wireNotGRE},
		{"checksum present (C)", outer(20, []byte{0x80, 0, 0x08, 0, 0, 0, 0, 0}, inner), 0, wireFlags},
		{"routing present (R)", outer(20, []byte{0x40, 0, 0x08, 0}, inner), 0, wireFlags},
		{"key present (K)", outer(20, []byte{0x20, 0, 0x08, 0, 0, 0, 0, 1}, inner), 0, wireFlags},
		{"sequence present (S)", outer(20, []byte{0x10, 0, 0x08, 0, 0, 0, 0, 1}, inner), 0, wireFlags},
		{"strict source route (s)", outer(20, []byte{0x08, 0, 0x08, 0}, inner), 0, wireFlags},
		{"recursion control", outer(20, []byte{0x01, 0, 0x08, 0}, inner), 0, wireFlags},
		{"reserved flags", outer(20, []byte{0x00, 0x80, 0x08, 0}, inner), 0, wireFlags},
		{"version 1 (PPTP)", outer(20, []byte{0x00, 0x01, 0x88, 0x0b}, inner), 0, wireVersion},
		{"version 7", outer(20, []byte{0x00, 0x07, 0x08, 0x00}, inner), 0, wireVersion},
		{"IPv6 payload", outer(20, []byte{0, 0, 0x86, 0xdd}, []byte{0x60, 0, 0, 0}), 24, wireOK},
		{"IPv6, empty payload", outer(20, []byte{0, 0, 0x86, 0xdd}, nil), 24, wireOK},
		{"IPv6 type, IPv4 payload", outer(20, []byte{0, 0, 0x86, 0xdd}, inner), 0, wireInnerVersion},
		{"IPv4 type, IPv6 payload", outer(20, plain, []byte{0x60, 0, 0, 0}), 0, wireInnerVersion},
		{"Ethernet payload (gretap)", outer(20, []byte{0, 0, 0x65, 0x58}, inner), 0, wireProtocol},
		{"ERSPAN", outer(20, []byte{0x10, 0, 0x88, 0xbe}, inner), 0, wireFlags},
	} {
		t.Run(tc.name, func(t *testing.T) {
			off, werr := decodeDatagram(tc.b)
			if off != tc.off || werr != tc.err {
				t.Fatalf("decodeDatagram(% x) = %d, %v; want %d, %v", tc.b, off, werr, tc.off, tc.err)
			}
		})
	}
}

func TestStripHeaders(t *testing.T) {
	inner := []byte{0x45, 1, 2, 3, 4}
	d := outer(24, []byte{0, 0, 8, 0}, inner)
	p := fastpath.Packet{Buf: make([]byte, fastpath.Headroom+100), Off: fastpath.Headroom}
	p.Len = copy(p.Buf[p.Off:], d)
	stripHeaders(&p, true)
	if !bytes.Equal(p.Bytes(), inner) || p.Off != fastpath.Headroom+28 {
		t.Fatalf("after strip: Off %d, % x", p.Off, p.Bytes())
	}
	p = fastpath.Packet{Buf: make([]byte, fastpath.Headroom+100), Off: fastpath.Headroom}
	p.Len = copy(p.Buf[p.Off:], outer(20, []byte{0x20, 0, 8, 0, 0, 0, 0, 1}, inner))
	stripHeaders(&p, true)
	if p.Len != 0 || p.Off != fastpath.Headroom {
		t.Fatalf("a keyed GRE packet must become an empty (malformed) one: Off %d Len %d", p.Off, p.Len)
	}
}

func TestWirePathDoesNotAllocate(t *testing.T) {
	d := outer(20, []byte{0, 0, 8, 0}, make([]byte, 1400))
	p := fastpath.Packet{Buf: make([]byte, fastpath.Headroom+len(d)), Off: fastpath.Headroom}
	allocs := testing.AllocsPerRun(1000, func() {
		p.Off = fastpath.Headroom
		p.Len = copy(p.Buf[p.Off:], d)
		stripHeaders(&p, true)
		p.Off -= headerLen
		putHeader(p.Buf[p.Off:], protoOf(p.Buf[p.Off+headerLen:]))
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per packet", allocs)
	}
}

func TestWireErrorString(t *testing.T) {
	for e := wireOK; e <= wireInnerVersion; e++ {
		if s := e.String(); s == "" || s == "unknown" {
			t.Errorf("wireError(%d) has no name", e)
		}
	}
	if wireError(200).String() != "unknown" {
		t.Error("out-of-range wireError")
	}
}

// FuzzDecodeDatagram checks that the decoder never panics, that an accepted datagram has
// the plain GRE header at the offset it returns, and that stripping keeps the packet
// inside its buffer.
func FuzzDecodeDatagram(f *testing.F) {
	f.Add(outer(20, []byte{0, 0, 8, 0}, []byte{0x45, 0, 0, 20}))
	f.Add(outer(24, []byte{0, 0, 8, 0}, nil))
	f.Add(outer(20, []byte{0x20, 0, 8, 0, 0, 0, 0, 1}, nil))
	f.Add(outer(20, []byte{0, 0, 0x86, 0xdd}, []byte{0x60, 0, 0, 0}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		off, werr := decodeDatagram(b)
		if werr != wireOK {
			if off != 0 {
				t.Fatalf("rejected (%v) with offset %d", werr, off)
			}
			return
		}
		ihl := int(b[0]&0x0f) * 4
		if off != ihl+headerLen || off > len(b) || b[9] != ipProtoGRE {
			t.Fatalf("offset %d for IHL %d, len %d", off, ihl, len(b))
		}
		g := b[ihl : ihl+4]
		proto := binary.BigEndian.Uint16(g[2:])
		if g[0] != 0 || g[1] != 0 || (proto != protoIPv4 && proto != protoIPv6) {
			t.Fatalf("accepted GRE header % x", g)
		}
		if len(b) > off && protoOf(b[off:]) != proto {
			t.Fatalf("accepted protocol type %#04x with inner version %d", proto, b[off]>>4)
		}
		p := fastpath.Packet{Buf: make([]byte, fastpath.Headroom+len(b)), Off: fastpath.Headroom}
		p.Len = copy(p.Buf[p.Off:], b)
		stripHeaders(&p, true)
		if p.Off+p.Len != fastpath.Headroom+len(b) || p.Len != len(b)-off {
			t.Fatalf("strip: Off %d Len %d of %d", p.Off, p.Len, len(b))
		}
	})
}

// TestEncapDecap6Bytes follows one IPv6 inner packet through Write's encapsulation and
// Read's decapsulation, byte for byte: the GRE header 00 00 86 dd in the headroom, the
// inner packet untouched, and back.
func TestEncapDecap6Bytes(t *testing.T) {
	inner := []byte{0x60, 0, 0, 0, 0, 0, 59, 64} // IPv6, no next header, hop limit 64
	inner = append(inner, make([]byte, 32)...)   // source and destination
	p := fastpath.Packet{Buf: make([]byte, fastpath.Headroom+len(inner)), Off: fastpath.Headroom}
	p.Len = copy(p.Buf[p.Off:], inner)
	proto := protoOf(p.Bytes())
	p.Off -= headerLen
	p.Len += headerLen
	putHeader(p.Buf[p.Off:], proto)
	want := append([]byte{0, 0, 0x86, 0xdd}, inner...)
	if !bytes.Equal(p.Bytes(), want) {
		t.Fatalf("encapsulated % x\nwant          % x", p.Bytes(), want)
	}
	// The kernel adds the outer IPv4 header; a raw socket hands it back with it.
	d := outer(20, p.Bytes()[:headerLen], inner)
	r := fastpath.Packet{Buf: make([]byte, fastpath.Headroom+len(d)), Off: fastpath.Headroom}
	r.Len = copy(r.Buf[r.Off:], d)
	stripHeaders(&r, true)
	if !bytes.Equal(r.Bytes(), inner) || r.Off != fastpath.Headroom+24 {
		t.Fatalf("decapsulated (Off %d) % x, want % x", r.Off, r.Bytes(), inner)
	}
}

// TestStripHeadersIPv6Socket: a raw IPv6 socket's datagram starts at the GRE header (the
// kernel strips the outer IPv6 header), so only the GRE header is skipped, and the same
// checks reject what is not plain GRE.
func TestStripHeadersIPv6Socket(t *testing.T) {
	inner := []byte{0x60, 0, 0, 0, 0, 0, 59, 64}
	for _, tc := range []struct {
		name    string
		d       []byte
		wantOff int
		wantLen int
	}{
		{"IPv6 in GRE", append([]byte{0, 0, 0x86, 0xdd}, inner...), headerLen, len(inner)},
		{"IPv4 in GRE", []byte{0, 0, 8, 0, 0x45, 0, 0, 20}, headerLen, 4},
		{"keyed GRE", append([]byte{0x20, 0, 0x86, 0xdd, 0, 0, 0, 1}, inner...), 0, 0},
		{"version 1", append([]byte{0, 1, 0x86, 0xdd}, inner...), 0, 0},
		{"protocol type says IPv4, packet is IPv6", append([]byte{0, 0, 8, 0}, inner...), 0, 0},
		{"transparent Ethernet", append([]byte{0, 0, 0x65, 0x58}, inner...), 0, 0},
		{"short", []byte{0, 0, 0x86}, 0, 0},
		// What an IPv4 socket's datagram looks like is not GRE here: its first byte,
		// 0x45, sets GRE flags.
		{"outer IPv4 header", outer(20, []byte{0, 0, 0x86, 0xdd}, inner), 0, 0},
	} {
		p := fastpath.Packet{Buf: make([]byte, fastpath.Headroom+100), Off: fastpath.Headroom}
		p.Len = copy(p.Buf[p.Off:], tc.d)
		stripHeaders(&p, false)
		if p.Off != fastpath.Headroom+tc.wantOff || p.Len != tc.wantLen {
			t.Errorf("%s: Off %d Len %d, want %d %d", tc.name, p.Off-fastpath.Headroom, p.Len, tc.wantOff, tc.wantLen)
		}
		if tc.wantLen > 0 && !bytes.Equal(p.Bytes(), tc.d[headerLen:]) {
			t.Errorf("%s: payload % x, want % x", tc.name, p.Bytes(), tc.d[headerLen:])
		}
	}
}
