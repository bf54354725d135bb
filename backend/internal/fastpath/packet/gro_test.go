package packet

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/fastpath/packettest"
)

// groWrite is one planned write, reassembled: its virtio-net header and the bytes.
type groWrite struct {
	hdr  VirtioHdr
	data []byte
	pkts int
}

// planWrites runs the planner over copies of pkts and reassembles each write.
func planWrites(t *testing.T, pkts [][]byte) []groWrite {
	t.Helper()
	batch := make([]fastpath.Packet, len(pkts))
	for i, b := range pkts {
		buf := append(make([]byte, fastpath.Headroom), b...)
		batch[i] = fastpath.Packet{Buf: buf, Off: fastpath.Headroom, Len: len(b)}
	}
	var g GROPlanner
	g.Plan(batch)
	var out []groWrite
	total := 0
	for _, op := range g.Ops() {
		pieces := g.Pieces(op)
		h, ok := DecodeVirtioHdr(pieces[0])
		if !ok || len(pieces[0]) != VirtioHdrLen {
			t.Fatalf("write without a virtio-net header: %x", pieces[0])
		}
		var data []byte
		for _, p := range pieces[1:] {
			data = append(data, p...)
		}
		out = append(out, groWrite{hdr: h, data: data, pkts: op.Packets})
		total += op.Packets
	}
	if total != len(pkts) {
		t.Fatalf("writes carry %d packets, the batch has %d", total, len(pkts))
	}
	return out
}

// checkCoalesced verifies a coalesced write against the segments it was made of, with the
// reference checksums: the IPv4 header, the partial TCP checksum, the virtio-net header,
// flags, and the payloads in order.
func checkCoalesced(t *testing.T, w groWrite, segs [][]byte) {
	t.Helper()
	b := w.data
	first, last := segs[0], segs[len(segs)-1]
	thl := packettest.THL(first)
	if w.pkts != len(segs) {
		t.Fatalf("write carries %d packets, want %d", w.pkts, len(segs))
	}
	want := VirtioHdr{Flags: VnetNeedsCsum, GSOType: GSOTCPv4, HdrLen: uint16(20 + thl),
		GSOSize: uint16(len(packettest.TCPPayload(first))), CsumStart: 20, CsumOffset: 16}
	if w.hdr != want {
		t.Fatalf("virtio-net header %+v, want %+v", w.hdr, want)
	}
	if int(binary.BigEndian.Uint16(b[2:])) != len(b) || packettest.RefChecksum(b[:20]) != 0 {
		t.Fatal("coalesced IPv4 header: wrong total length or checksum")
	}
	mustEqualBytes(t, "IPv4 header but length and checksum", append(b[:2:2], b[4:10]...), append(first[:2:2], first[4:10]...))
	mustEqualBytes(t, "addresses", b[12:20], first[12:20])
	// Partial checksum: the field holds the pseudo header sum, uncomplemented.
	if got, want := binary.BigEndian.Uint16(b[36:]), ^packettest.RefChecksum(packettest.RefPseudo(b, 20)); got != want {
		t.Fatalf("partial TCP checksum %#04x, want the pseudo header sum %#04x", got, want)
	}
	wantFlags := packettest.TCPFlags(first) | packettest.TCPFlags(last)&tcpPSH
	if f := packettest.TCPFlags(b); f != wantFlags {
		t.Fatalf("flags %#02x, want %#02x", f, wantFlags)
	}
	mustEqualBytes(t, "TCP header but flags and checksum", append(b[20:33:33], b[34:36]...), append(first[20:33:33], first[34:36]...))
	mustEqualBytes(t, "TCP options", b[40:20+thl], first[40:20+thl])
	var payload []byte
	for _, s := range segs {
		payload = append(payload, packettest.TCPPayload(s)...)
	}
	mustEqualBytes(t, "payload", packettest.TCPPayload(b), payload)
	// What the kernel will do: complete the checksum over the superpacket.
	full := append([]byte(nil), b...)
	if !CompleteChecksum(full, 20, 16) || !packettest.RefTCPValid(full, 20) {
		t.Fatal("the completed checksum of the superpacket is wrong")
	}
}

// checkSingle verifies an unmodified write of packet p.
func checkSingle(t *testing.T, w groWrite, p []byte) {
	t.Helper()
	if w.hdr != (VirtioHdr{}) || w.pkts != 1 {
		t.Fatalf("single write with header %+v, %d packets", w.hdr, w.pkts)
	}
	mustEqualBytes(t, "single packet", w.data, p)
}

// segments returns n full segments of mss bytes of one flow, then the packets of extra.
func segments(n, mss int, mod func(i int, p *packettest.TCP)) [][]byte {
	var out [][]byte
	for i := 0; i < n; i++ {
		p := packettest.Flow(uint32(1000+i*mss), mss)
		p.ID = uint16(100 + i)
		if mod != nil {
			mod(i, &p)
		}
		out = append(out, p.Build())
	}
	return out
}

func TestGROCoalesces(t *testing.T) {
	const mss = 1400
	ts := func(i int, p *packettest.TCP) { p.TCPOptions = packettest.TSOption(42, 43) }
	tests := []struct {
		name   string
		pkts   [][]byte
		groups []int // packets per write, in order; a 1 is an unmodified packet
	}{
		{"five in order", segments(5, mss, nil), []int{5}},
		{"with timestamps", segments(5, mss-12, ts), []int{5}},
		{"last shorter", append(segments(4, mss, nil), packettest.Flow(1000+4*mss, 10).With(func(p *packettest.TCP) { p.ID = 104 }).Build()), []int{5}},
		{"short one ends the run", func() [][]byte {
			s := segments(2, mss, nil)
			s = append(s, packettest.Flow(1000+2*mss, 10).Build(), packettest.Flow(1000+2*mss+10, mss).Build())
			return s
		}(), []int{3, 1}},
		{"longer one does not join", func() [][]byte {
			s := segments(2, mss, nil)
			return append(s, packettest.Flow(1000+2*mss, mss+1).Build())
		}(), []int{2, 1}},
		{"PSH on the last", segments(4, mss, func(i int, p *packettest.TCP) {
			if i == 3 {
				p.Flags |= tcpPSH
			}
		}), []int{4}},
		{"PSH in the middle ends the run", segments(5, mss, func(i int, p *packettest.TCP) {
			if i == 2 {
				p.Flags |= tcpPSH
			}
		}), []int{3, 2}},
		{"PSH on the first", segments(3, mss, func(i int, p *packettest.TCP) {
			if i == 0 {
				p.Flags |= tcpPSH
			}
		}), []int{1, 2}},
		{"CWR on the first joins", segments(3, mss, func(i int, p *packettest.TCP) {
			if i == 0 {
				p.Flags |= tcpCWR
			}
		}), []int{3}},
		{"CWR on the second does not", segments(3, mss, func(i int, p *packettest.TCP) {
			if i == 1 {
				p.Flags |= tcpCWR
			}
		}), []int{1, 2}},
		{"ECE on all joins", segments(3, mss, func(i int, p *packettest.TCP) { p.Flags |= tcpECE }), []int{3}},
		{"ECE on some does not", segments(3, mss, func(i int, p *packettest.TCP) {
			if i == 1 {
				p.Flags |= tcpECE
			}
		}), []int{1, 1, 1}},
		{"ECN CE mark splits", segments(4, mss, func(i int, p *packettest.TCP) {
			p.TOS = 0x02 // ECT(0)
			if i == 2 {
				p.TOS = 0x03 // CE
			}
		}), []int{2, 1, 1}},
		{"sequence gap", segments(4, mss, func(i int, p *packettest.TCP) {
			if i >= 2 {
				p.Seq += 1
			}
		}), []int{2, 2}},
		{"reordered", func() [][]byte {
			s := segments(3, mss, nil)
			return [][]byte{s[1], s[0], s[2]}
		}(), []int{1, 1, 1}},
		{"retransmission", func() [][]byte {
			s := segments(3, mss, nil)
			return [][]byte{s[0], s[1], s[1], s[2]}
		}(), []int{2, 2}},
		{"ack changes", segments(4, mss, func(i int, p *packettest.TCP) { p.Ack += uint32(i / 2) }), []int{2, 2}},
		{"window changes", segments(4, mss, func(i int, p *packettest.TCP) { p.Window += uint16(i / 3) }), []int{3, 1}},
		{"TTL changes", segments(2, mss, func(i int, p *packettest.TCP) { p.TTL -= uint8(i) }), []int{1, 1}},
		{"timestamp changes", segments(4, mss-12, func(i int, p *packettest.TCP) { p.TCPOptions = packettest.TSOption(uint32(i/2), 0) }), []int{2, 2}},
		{"option length changes", segments(2, mss-12, func(i int, p *packettest.TCP) {
			if i == 1 {
				p.TCPOptions = packettest.TSOption(1, 1)
			}
		}), []int{1, 1}},
		{"DF clear, ids follow on", segments(3, mss, func(i int, p *packettest.TCP) { p.Frag = 0xffff }), []int{3}},
		{"DF clear, ids do not follow on", segments(3, mss, func(i int, p *packettest.TCP) { p.Frag = 0xffff; p.ID = 7 }), []int{1, 1, 1}},
		{"DF set, ids irrelevant", segments(3, mss, func(i int, p *packettest.TCP) { p.ID = 7 }), []int{3}},
		{"DF differs", segments(2, mss, func(i int, p *packettest.TCP) {
			if i == 1 {
				p.Frag = 0xffff
			}
		}), []int{1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := planWrites(t, tt.pkts)
			if len(ws) != len(tt.groups) {
				t.Fatalf("%d writes, want %d (%v)", len(ws), len(tt.groups), tt.groups)
			}
			next := 0
			for i, w := range ws {
				n := tt.groups[i]
				if n == 1 {
					checkSingle(t, w, tt.pkts[next])
				} else {
					checkCoalesced(t, w, tt.pkts[next:next+n])
				}
				next += n
			}
		})
	}
}

// TestGROPassesThrough: what GRO does not handle is written alone and unmodified.
func TestGROPassesThrough(t *testing.T) {
	const mss = 1000
	for _, tt := range []struct {
		name string
		mod  func(p *packettest.TCP)
	}{
		{"SYN", func(p *packettest.TCP) { p.Flags |= tcpSYN }},
		{"FIN", func(p *packettest.TCP) { p.Flags |= tcpFIN }},
		{"RST", func(p *packettest.TCP) { p.Flags |= tcpRST }},
		{"URG", func(p *packettest.TCP) { p.Flags |= tcpURG }},
		{"no ACK", func(p *packettest.TCP) { p.Flags = tcpPSH }},
		{"no payload", func(p *packettest.TCP) { p.Payload = nil }},
		{"IPv4 options", func(p *packettest.TCP) { p.IPOptions = 4 }},
		{"more fragments", func(p *packettest.TCP) { p.Frag = ipFlagMF }},
		{"fragment offset", func(p *packettest.TCP) { p.Frag = 0x0010 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pkts := segments(3, mss, func(i int, p *packettest.TCP) { tt.mod(p) })
			ws := planWrites(t, pkts)
			if len(ws) != 3 {
				t.Fatalf("%d writes, want 3 single ones", len(ws))
			}
			for i, w := range ws {
				checkSingle(t, w, pkts[i])
			}
		})
	}
	t.Run("UDP and ICMP", func(t *testing.T) {
		u := packettest.UDP("10.244.2.3", "10.244.1.2", 63, "datagram").Build()
		ws := planWrites(t, [][]byte{u, u})
		checkSingle(t, ws[0], u)
		checkSingle(t, ws[1], u)
	})
}

// TestGROVerifiesChecksums: a segment with a wrong TCP checksum is never merged (the
// partial checksum of a merged packet would hide it); it reaches the kernel unmodified.
func TestGROVerifiesChecksums(t *testing.T) {
	const mss = 1000
	t.Run("bad second", func(t *testing.T) {
		pkts := segments(4, mss, func(i int, p *packettest.TCP) { p.BadCsum = i == 1 })
		ws := planWrites(t, pkts)
		if len(ws) != 3 {
			t.Fatalf("%d writes, want 3", len(ws))
		}
		checkSingle(t, ws[0], pkts[0])
		checkSingle(t, ws[1], pkts[1])
		checkCoalesced(t, ws[2], pkts[2:])
	})
	t.Run("bad first", func(t *testing.T) {
		pkts := segments(4, mss, func(i int, p *packettest.TCP) { p.BadCsum = i == 0 })
		ws := planWrites(t, pkts)
		if len(ws) != 2 {
			t.Fatalf("%d writes, want 2", len(ws))
		}
		checkSingle(t, ws[0], pkts[0])
		checkCoalesced(t, ws[1], pkts[1:])
	})
}

// TestGROFlows: runs of several flows at once; order kept within each flow.
func TestGROFlows(t *testing.T) {
	const mss = 1000
	a := segments(3, mss, nil)
	b := segments(3, mss, func(i int, p *packettest.TCP) { p.SPort = 40001 })
	t.Run("interleaved", func(t *testing.T) {
		ws := planWrites(t, [][]byte{a[0], b[0], a[1], b[1], a[2], b[2]})
		if len(ws) != 2 {
			t.Fatalf("%d writes, want 2", len(ws))
		}
		checkCoalesced(t, ws[0], a)
		checkCoalesced(t, ws[1], b)
	})
	t.Run("pure ACK of the flow flushes its run first", func(t *testing.T) {
		ack := packettest.Flow(5000, 0).Build()
		ws := planWrites(t, [][]byte{a[0], a[1], ack, a[2]})
		if len(ws) != 3 {
			t.Fatalf("%d writes, want 3", len(ws))
		}
		checkCoalesced(t, ws[0], a[:2])
		checkSingle(t, ws[1], ack)
		checkSingle(t, ws[2], a[2])
	})
	t.Run("UDP between does not break a run", func(t *testing.T) {
		u := packettest.UDP("10.244.2.3", "10.244.1.2", 63, "x").Build()
		ws := planWrites(t, [][]byte{a[0], u, a[1], a[2]})
		if len(ws) != 2 {
			t.Fatalf("%d writes, want 2", len(ws))
		}
		checkSingle(t, ws[0], u)
		checkCoalesced(t, ws[1], a)
	})
	t.Run("more flows than runs", func(t *testing.T) {
		var pkts [][]byte
		for f := 0; f < maxGROFlows+2; f++ {
			pkts = append(pkts, segments(2, mss, func(i int, p *packettest.TCP) { p.SPort = uint16(1000 + f) })...)
		}
		// Each flow's two segments are adjacent, so every flow still coalesces.
		ws := planWrites(t, pkts)
		if len(ws) != maxGROFlows+2 {
			t.Fatalf("%d writes, want %d", len(ws), maxGROFlows+2)
		}
		// Round robin over too many flows: each segment flushes the oldest run.
		var rr [][]byte
		for i := 0; i < 2; i++ {
			for f := 0; f < maxGROFlows+1; f++ {
				rr = append(rr, pkts[2*f+i])
			}
		}
		if ws := planWrites(t, rr); len(ws) != len(rr) {
			t.Fatalf("round robin over %d flows: %d writes, want %d", maxGROFlows+1, len(ws), len(rr))
		}
	})
}

func TestGROLimits(t *testing.T) {
	t.Run("segments", func(t *testing.T) {
		pkts := segments(MaxGROSegs+6, 100, nil)
		ws := planWrites(t, pkts)
		if len(ws) != 2 || ws[0].pkts != MaxGROSegs || ws[1].pkts != 6 {
			t.Fatalf("writes %d, first %d packets", len(ws), ws[0].pkts)
		}
		checkCoalesced(t, ws[0], pkts[:MaxGROSegs])
		checkCoalesced(t, ws[1], pkts[MaxGROSegs:])
	})
	t.Run("64 KiB", func(t *testing.T) {
		pkts := segments(50, 1400, nil)
		ws := planWrites(t, pkts)
		for i, w := range ws {
			if len(w.data) > fastpath.MaxPacket {
				t.Fatalf("write %d is %d bytes", i, len(w.data))
			}
		}
		if len(ws) != 2 || ws[0].pkts != (fastpath.MaxPacket-40)/1400 {
			t.Fatalf("%d writes, first with %d packets", len(ws), ws[0].pkts)
		}
	})
}

// TestGROThenTSO: cutting a coalesced superpacket gives back the segments.
func TestGROThenTSO(t *testing.T) {
	pkts := segments(7, 1388, func(i int, p *packettest.TCP) { p.TCPOptions = packettest.TSOption(9, 8) })
	ws := planWrites(t, pkts)
	if len(ws) != 1 {
		t.Fatalf("%d writes", len(ws))
	}
	segs := splitAll(t, ws[0].data, ws[0].hdr, 1600)
	for i := range segs {
		mustEqualBytes(t, fmt.Sprintf("segment %d", i), segs[i], pkts[i])
	}
}

func TestGRODoesNotAllocate(t *testing.T) {
	batch := make([]fastpath.Packet, 0, 128)
	for f := 0; f < 3; f++ {
		for _, b := range segments(40, 1400, func(i int, p *packettest.TCP) { p.SPort = uint16(f) }) {
			buf := append(make([]byte, fastpath.Headroom), b...)
			batch = append(batch, fastpath.Packet{Buf: buf, Off: fastpath.Headroom, Len: len(b)})
		}
	}
	heads := make([][]byte, len(batch))
	for i := range batch {
		heads[i] = append([]byte(nil), batch[i].Bytes()[:40]...)
	}
	restore := func() {
		for i := range batch {
			copy(batch[i].Bytes(), heads[i])
		}
	}
	var g GROPlanner
	g.Plan(batch) // grows the scratch once
	allocs := testing.AllocsPerRun(20, func() {
		restore()
		g.Plan(batch)
		if len(g.Ops()) != 3 {
			t.Fatalf("%d writes, want 3", len(g.Ops()))
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per batch", allocs)
	}
}

func BenchmarkGROPlan(b *testing.B) {
	var batch []fastpath.Packet
	for _, s := range segments(46, 1420, nil) {
		buf := append(make([]byte, fastpath.Headroom), s...)
		batch = append(batch, fastpath.Packet{Buf: buf, Off: fastpath.Headroom, Len: len(s)})
	}
	// plan rewrites the first segment's header: restore the headers before each run.
	heads := make([][]byte, len(batch))
	for i := range batch {
		heads[i] = append([]byte(nil), batch[i].Bytes()[:40]...)
	}
	var g GROPlanner
	b.SetBytes(46 * 1460)
	for b.Loop() {
		for i := range batch {
			copy(batch[i].Bytes(), heads[i])
		}
		g.Plan(batch)
		if len(g.Ops()) != 1 {
			b.Fatalf("%d writes", len(g.Ops()))
		}
	}
}
