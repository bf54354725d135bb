package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packettest"
)

func TestParseIPv4(t *testing.T) {
	good := packettest.UDP("10.244.1.2", "10.244.2.3", 64, "hello").Build()
	withOptions := packettest.IPv4{Src: "10.0.0.1", Dst: "10.0.0.2", TTL: 5, Proto: 6, Options: 8, Payload: []byte("xyz")}.Build()
	mutate := func(b []byte, f func([]byte)) []byte {
		c := append([]byte(nil), b...)
		f(c)
		return c
	}
	fixSum := func(b []byte) {
		hlen := int(b[0]&0x0f) * 4
		if hlen > len(b) {
			return
		}
		binary.BigEndian.PutUint16(b[10:], 0)
		binary.BigEndian.PutUint16(b[10:], packettest.RefChecksum(b[:hlen]))
	}
	tests := []struct {
		name string
		b    []byte
		want fastpath.DropReason
	}{
		{"valid", good, fastpath.DropNone},
		{"valid with options", withOptions, fastpath.DropNone},
		{"trailing bytes after total length", append(append([]byte(nil), good...), 0, 0, 0), fastpath.DropNone},
		{"empty", nil, fastpath.DropMalformed},
		{"one byte", []byte{0x45}, fastpath.DropMalformed},
		{"19 bytes", good[:19], fastpath.DropMalformed},
		{"IPv6", mutate(good, func(b []byte) { b[0] = 0x60 }), fastpath.DropNotIPv4},
		{"version 0", mutate(good, func(b []byte) { b[0] = 0x05 }), fastpath.DropNotIPv4},
		{"IHL 4", mutate(good, func(b []byte) { b[0] = 0x44; fixSum(b) }), fastpath.DropMalformed},
		{"IHL 15 beyond packet", mutate(good, func(b []byte) { b[0] = 0x4f }), fastpath.DropMalformed},
		{"total length below header", mutate(good, func(b []byte) { binary.BigEndian.PutUint16(b[2:], 19); fixSum(b) }), fastpath.DropMalformed},
		{"total length beyond data", mutate(good, func(b []byte) { binary.BigEndian.PutUint16(b[2:], uint16(len(b)+1)); fixSum(b) }), fastpath.DropMalformed},
		{"bad checksum", mutate(good, func(b []byte) { b[10] ^= 0x01 }), fastpath.DropMalformed},
		{"bad checksum in options", mutate(withOptions, func(b []byte) { b[21] = 7 }), fastpath.DropMalformed},
		{"header only", packettest.IPv4{Src: "10.0.0.1", Dst: "10.0.0.2", TTL: 1, Proto: 17}.Build(), fastpath.DropNone},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, got := ParseIPv4(tt.b)
			if got != tt.want {
				t.Fatalf("ParseIPv4 = %v, want %v", got, tt.want)
			}
			if got != fastpath.DropNone {
				return
			}
			if h.HLen != int(tt.b[0]&0xf)*4 || h.Total != int(binary.BigEndian.Uint16(tt.b[2:])) ||
				h.TTL != tt.b[8] || h.Proto != tt.b[9] ||
				h.Src != binary.BigEndian.Uint32(tt.b[12:]) || h.Dst != binary.BigEndian.Uint32(tt.b[16:]) {
				t.Fatalf("header fields wrong: %+v", h)
			}
		})
	}
}

func TestParseIPv4FragmentOffset(t *testing.T) {
	for _, tt := range []struct {
		field uint16
		want  uint16
	}{{0x0000, 0}, {0x4000, 0}, {0x2000, 0}, {0x2001, 1}, {0x1fff, 0x1fff}, {0x00b9, 0xb9}} {
		b := packettest.IPv4{Src: "10.0.0.1", Dst: "10.0.0.2", TTL: 9, Proto: 17, Frag: tt.field}.Build()
		h, r := ParseIPv4(b)
		if r != fastpath.DropNone || h.FragOff != tt.want {
			t.Errorf("frag field %#04x: offset %d (%v), want %d", tt.field, h.FragOff, r, tt.want)
		}
	}
}

func TestChecksumMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		b := make([]byte, rng.IntN(130))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if i%7 == 0 { // long runs of 0xff stress the carries
			for j := range b {
				b[j] = 0xff
			}
		}
		if got, want := checksum(b, 0), packettest.RefChecksum(b); got != want {
			t.Fatalf("checksum(% x) = %#04x, want %#04x", b, got, want)
		}
	}
}

func TestDecrementTTLMatchesFullRecomputation(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	check := func(b []byte) {
		t.Helper()
		before := append([]byte(nil), b...)
		DecrementTTL(b)
		if b[8] != before[8]-1 {
			t.Fatalf("TTL %d -> %d", before[8], b[8])
		}
		want := append([]byte(nil), b...)
		binary.BigEndian.PutUint16(want[10:], 0)
		binary.BigEndian.PutUint16(want[10:], packettest.RefChecksum(want[:20]))
		if got, w := binary.BigEndian.Uint16(b[10:]), binary.BigEndian.Uint16(want[10:]); got != w {
			t.Fatalf("header % x: incremental checksum %#04x, full recomputation %#04x", before[:20], got, w)
		}
		if _, r := ParseIPv4(b); r != fastpath.DropNone {
			t.Fatalf("header invalid after decrement: %v", r)
		}
	}
	for ttl := 2; ttl <= 255; ttl++ {
		for i := 0; i < 200; i++ {
			b := packettest.UDP("10.244.1.2", "10.244.2.3", uint8(ttl), "x").Build()
			binary.BigEndian.PutUint32(b[12:], rng.Uint32())
			binary.BigEndian.PutUint32(b[16:], rng.Uint32())
			binary.BigEndian.PutUint16(b[4:], uint16(rng.Uint32()))
			binary.BigEndian.PutUint16(b[10:], 0)
			binary.BigEndian.PutUint16(b[10:], packettest.RefChecksum(b[:20]))
			check(b)
		}
	}
	// Headers whose checksum sits at the edges flanneld special-cases (>= 0xfeff) and at
	// 0x0000: search for them by varying the ID field.
	edges := map[uint16]bool{}
	for id := 0; id < 1<<16; id++ {
		b := packettest.UDP("10.244.1.2", "10.244.2.3", uint8(2+id%254), "x").Build()
		binary.BigEndian.PutUint16(b[4:], uint16(id))
		binary.BigEndian.PutUint16(b[10:], 0)
		sum := packettest.RefChecksum(b[:20])
		if sum < 0xfeff && sum > 0x0100 {
			continue
		}
		binary.BigEndian.PutUint16(b[10:], sum)
		edges[sum] = true
		check(b)
	}
	if !edges[0x0000] || !edges[0xfeff] {
		t.Fatalf("edge checksums not covered: %d distinct", len(edges))
	}
}
