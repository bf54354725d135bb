package packet

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packettest"
)

// Fuzz targets for the offload parsers: the virtio-net header and TCP segmentation (what
// the kernel hands a TUN with offloads), coalescing (packets from peers) and checksum
// completion. (The UDP_GRO control message is dgram's FuzzGROSegment.) Seeds live in
// testdata/fuzz/<Target>; run one with e.g.
//
//	go test -fuzz=FuzzTSOSplit -fuzztime=30s ./backend/internal/fastpath/packet/

// tsoSeed is a virtio-net header followed by a superpacket.
func tsoSeed(p packettest.TCP, mss int, mod func(*VirtioHdr)) []byte {
	p.Partial = true
	b := p.Build()
	h := tsoHdr(b, mss)
	if mod != nil {
		mod(&h)
	}
	out := make([]byte, VirtioHdrLen, VirtioHdrLen+len(b))
	h.Encode(out)
	return append(out, b...)
}

func FuzzTSOSplit(f *testing.F) {
	f.Add(tsoSeed(packettest.Flow(1, 5000), 1400, nil))
	f.Add(tsoSeed(packettest.Flow(1, 3000).With(func(p *packettest.TCP) { p.TCPOptions = packettest.TSOption(1, 2); p.Flags |= tcpPSH | tcpCWR }), 1000, nil))
	f.Add(tsoSeed(packettest.Flow(1, 100).With(func(p *packettest.TCP) { p.IPOptions = 4 }), 7, func(h *VirtioHdr) { h.GSOType |= GSOECN }))
	seed6 := tcp6(packettest.Flow(1, 4000).Build(), "fd00::1", "fd00::2")
	h6 := make([]byte, VirtioHdrLen)
	VirtioHdr{Flags: VnetNeedsCsum, GSOType: GSOTCPv6, HdrLen: 60, GSOSize: 1300, CsumStart: IPv6HeaderLen, CsumOffset: 16}.Encode(h6)
	f.Add(append(h6, seed6...))
	f.Fuzz(func(t *testing.T, in []byte) {
		h, ok := DecodeVirtioHdr(in)
		if !ok {
			return
		}
		super := in[VirtioHdrLen:]
		orig := append([]byte(nil), super...)
		var s TSOSplitter
		if s.Start(super, h) != fastpath.DropNone {
			if s.Pending() {
				t.Fatal("refused but pending")
			}
			return
		}
		v6 := super[0]>>4 == 6
		ihl := packettest.IHL(super)
		if v6 {
			ihl = IPv6HeaderLen
		}
		thl := int(super[ihl+12]>>4) * 4
		dst := make([]byte, 1600)
		var payload []byte
		for i := 0; s.Pending(); i++ {
			if i > fastpath.MaxPacket {
				t.Fatal("more segments than bytes")
			}
			n := s.Next(dst)
			if n == 0 {
				if s.Pending() {
					t.Fatal("abandoned but pending")
				}
				return // a segment larger than the slot
			}
			seg := dst[:n]
			switch {
			case n < ihl+thl:
				t.Fatalf("segment %d: shorter than its headers", i)
			case v6 && int(binary.BigEndian.Uint16(seg[offPayloadLen:])) != n-IPv6HeaderLen:
				t.Fatalf("segment %d: bad IPv6 payload length", i)
			case !v6 && (int(binary.BigEndian.Uint16(seg[2:])) != n || packettest.RefChecksum(seg[:ihl]) != 0):
				t.Fatalf("segment %d: bad IPv4 header", i)
			case v6 && !refTCP6Valid(seg), !v6 && !packettest.RefTCPValid(seg, ihl):
				t.Fatalf("segment %d: bad TCP checksum", i)
			}
			if len(seg)-ihl-thl > int(h.GSOSize) {
				t.Fatalf("segment %d: longer than the MSS", i)
			}
			payload = append(payload, seg[ihl+thl:]...)
		}
		if !bytes.Equal(payload, orig[ihl+thl:]) {
			t.Fatal("payload changed")
		}
		if !bytes.Equal(super, orig) {
			t.Fatal("the superpacket was modified")
		}
	})
}

// groInput encodes packets for FuzzGRO: each with a 2-byte length.
func groInput(pkts ...[]byte) []byte {
	var b []byte
	for _, p := range pkts {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return b
}

func FuzzGRO(f *testing.F) {
	f.Add(groInput(segments(5, 1000, nil)...))
	f.Add(groInput(segments(4, 500, func(i int, p *packettest.TCP) {
		p.TCPOptions = packettest.TSOption(1, 2)
		if i == 3 {
			p.Flags |= tcpPSH
		}
	})...))
	f.Add(groInput(append(segments(2, 100, nil), packettest.UDP("10.244.2.3", "10.244.1.2", 63, "u").Build(), packettest.Flow(5000, 0).Build())...))
	f.Add(groInput(append(segments6(3, 700, nil), segments(2, 700, nil)...)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		var pkts [][]byte
		for len(in) >= 2 && len(pkts) < 128 {
			n := min(int(binary.BigEndian.Uint16(in)), len(in)-2)
			pkts = append(pkts, append([]byte(nil), in[2:2+n]...))
			in = in[2+n:]
		}
		orig := make([][]byte, len(pkts))
		for i := range pkts {
			orig[i] = append([]byte(nil), pkts[i]...)
		}
		ws := planWrites(t, pkts)
		for _, w := range ws {
			if w.pkts == 1 && w.hdr == (VirtioHdr{}) {
				// Unmodified, in order within its flow: find it among the originals.
				found := false
				for _, o := range orig {
					found = found || bytes.Equal(o, w.data)
				}
				if !found {
					t.Fatal("a single write is no packet of the batch")
				}
				continue
			}
			b := w.data
			ihl := ipv4HeaderLen
			switch {
			case w.hdr.GSOSize == 0 || len(b) > fastpath.MaxPacket:
				t.Fatalf("bad coalesced write: %+v, %d bytes", w.hdr, len(b))
			case w.hdr.GSOType == GSOTCPv4:
				if int(binary.BigEndian.Uint16(b[2:])) != len(b) || packettest.RefChecksum(b[:20]) != 0 {
					t.Fatalf("bad coalesced IPv4 header: %+v", w.hdr)
				}
			case w.hdr.GSOType == GSOTCPv6:
				ihl = IPv6HeaderLen
				if IPv6HeaderLen+int(binary.BigEndian.Uint16(b[offPayloadLen:])) != len(b) {
					t.Fatalf("bad coalesced IPv6 header: %+v", w.hdr)
				}
			default:
				t.Fatalf("bad GSO type: %+v", w.hdr)
			}
			full := append([]byte(nil), b...)
			if !CompleteChecksum(full, ihl, 16) {
				t.Fatal("bad checksum offsets")
			}
			if ihl == IPv6HeaderLen && !refTCP6Valid(full) || ihl == ipv4HeaderLen && !packettest.RefTCPValid(full, ihl) {
				t.Fatal("the coalesced write's checksum does not complete to a correct one")
			}
			// Cut again, the segments carry the same payload as the packets merged.
			var s TSOSplitter
			if s.Start(b, w.hdr) != fastpath.DropNone {
				t.Fatal("a coalesced write does not cut")
			}
			segs := 0
			dst := make([]byte, fastpath.MaxPacket)
			for s.Pending() {
				if s.Next(dst) == 0 {
					t.Fatal("cut failed")
				}
				segs++
			}
			if segs != w.pkts {
				t.Fatalf("%d segments cut from a write of %d packets", segs, w.pkts)
			}
		}
	})
}

func FuzzCompleteChecksum(f *testing.F) {
	f.Add(packettest.Flow(5, 33).With(func(p *packettest.TCP) { p.Partial = true }).Build(), uint16(20), uint16(16))
	f.Add(packettest.UDP("10.244.1.2", "10.244.2.3", 64, "x").Build(), uint16(20), uint16(6))
	f.Fuzz(func(t *testing.T, b []byte, start, off uint16) {
		at := int(start) + int(off)
		var partial uint16 // the pseudo header sum the field held
		if at+2 <= len(b) {
			partial = binary.BigEndian.Uint16(b[at:])
		}
		if !CompleteChecksum(b, int(start), int(off)) {
			if at+2 <= len(b) && int(start) <= len(b) && off%2 == 0 {
				t.Fatal("refused offsets inside the packet")
			}
			return
		}
		// With the pseudo header sum added back, the data now sums to zero.
		if c := checksum(b[start:], uint32(partial)); c != 0 && c != 0xffff {
			t.Fatalf("completed checksum does not verify: %#04x", c)
		}
	})
}
