package packet

import (
	"bytes"
	"encoding/binary"

	"github.com/weftnet/weft/backend/internal/fastpath"
)

// TCP coalescing (GRO in userspace). Packets from peers are written to a TUN with
// IFF_VNET_HDR; consecutive segments of one TCP flow are written as one superpacket with
// a virtio-net header (GSO TCPv4, checksum partial), so the kernel's TCP stack handles
// one large packet where it would handle dozens. The rules follow the kernel's own GRO
// (net/ipv4/tcp_offload.c, inet_gro_receive), so what the pod's stack sees is what a
// NIC with GRO would give it:
//
//   - only IPv4 without options, not a fragment, TCP with payload, ACK set and none of
//     SYN, RST, FIN, URG;
//   - segments join a run when addresses, ports, acknowledgement number, TOS (and so ECN
//     marks), TTL, the DF bit, header length, TCP options, window and the other flags
//     are equal and the sequence number follows on; without DF the IPv4 identification
//     must also follow on;
//   - CWR only on the first segment of a run, PSH ends a run (it is set on the result),
//     a segment shorter than the first ends it, and a run stops at 64 segments or 64 KiB;
//   - every segment's TCP checksum is verified before it is merged (a run rewrites the
//     checksum as partial, which would otherwise hide a corrupted segment); a segment
//     that fails goes to the kernel alone, which drops it.
//
// Everything else goes to the kernel unmodified, one packet per write, in order with
// respect to the runs of its own flow.

// MaxGROSegs bounds the segments in one superpacket (the kernel's GRO limit too).
const MaxGROSegs = 64

// maxGROFlows is how many runs are open at once while a batch is planned; a new flow
// beyond it flushes the oldest run.
const maxGROFlows = 8

// groSeg is what groCandidate reads from a packet that may be coalesced.
type groSeg struct {
	thl     int    // TCP header length
	payload int    // TCP payload bytes
	seq     uint32 // sequence number
	flags   uint8  // TCP flags
}

// groCandidate reports whether b (exactly one IPv4 packet) is a TCP segment that may be
// coalesced, and decodes it.
func groCandidate(b []byte) (groSeg, bool) {
	if len(b) < ipv4HeaderLen+tcpMinHeader || b[0] != 0x45 || b[offProto] != protoTCP ||
		int(binary.BigEndian.Uint16(b[offTotalLen:])) != len(b) ||
		binary.BigEndian.Uint16(b[offFrag:])&(ipFlagMF|fragMask) != 0 {
		return groSeg{}, false
	}
	t := b[ipv4HeaderLen:]
	thl := int(t[tcpOffDoff]>>4) * 4
	flags := t[tcpOffFlags]
	if thl < tcpMinHeader || len(t) <= thl || flags&(tcpSYN|tcpRST|tcpFIN|tcpURG) != 0 || flags&tcpACK == 0 {
		return groSeg{}, false
	}
	return groSeg{thl: thl, payload: len(t) - thl, seq: binary.BigEndian.Uint32(t[tcpOffSeq:]), flags: flags}, true
}

// tcpFlowKey returns the addresses and ports of a TCP/IPv4 packet without options that is
// not a fragment, and false for anything else.
func tcpFlowKey(b []byte) (addrs uint64, ports uint32, ok bool) {
	if len(b) < ipv4HeaderLen+4 || b[0] != 0x45 || b[offProto] != protoTCP ||
		binary.BigEndian.Uint16(b[offFrag:])&(ipFlagMF|fragMask) != 0 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(b[offSrc:]), binary.BigEndian.Uint32(b[ipv4HeaderLen:]), true
}

// groRun is one flow's segments being gathered into a superpacket.
type groRun struct {
	addrs    uint64 // flow key: source and destination address
	ports    uint32 // flow key: source and destination port
	members  [MaxGROSegs]int32
	count    int    // segments in the run; members[:count] index the batch
	total    int    // IPv4 total length of the superpacket
	mss      int    // payload bytes of the first segment
	thl      int    // TCP header length
	nextSeq  uint32 // sequence number the next segment must have
	psh      bool   // a segment with PSH joined: the run is complete
	short    bool   // a segment shorter than the first joined: the run is complete
	verified bool   // the first segment's checksum was verified
}

// groCanAppend reports whether the segment b (decoded as s) may follow the run r whose
// first segment is head. It does not check the checksum.
func groCanAppend(r *groRun, head, b []byte, s groSeg) bool {
	if r.psh || r.short || r.count >= MaxGROSegs || s.thl != r.thl || s.seq != r.nextSeq ||
		s.payload > r.mss || r.total+s.payload > fastpath.MaxPacket || s.flags&tcpCWR != 0 {
		return false
	}
	// IPv4: TOS (with the ECN bits), flags (DF), TTL equal; without DF the
	// identification follows on.
	if b[1] != head[1] || b[offFrag] != head[offFrag] || b[offTTL] != head[offTTL] {
		return false
	}
	if head[offFrag]&(ipFlagDF>>8) == 0 &&
		binary.BigEndian.Uint16(b[offID:]) != binary.BigEndian.Uint16(head[offID:])+uint16(r.count) {
		return false
	}
	ht, bt := head[ipv4HeaderLen:], b[ipv4HeaderLen:]
	// Acknowledgement number equal.
	if binary.BigEndian.Uint32(ht[tcpOffAck:]) != binary.BigEndian.Uint32(bt[tcpOffAck:]) {
		return false
	}
	// Data offset, reserved bits, flags and window equal, except PSH (may end the run)
	// and CWR (may be on the first segment only; checked above for b).
	const ignore = uint32(tcpPSH|tcpCWR) << 16
	if (binary.BigEndian.Uint32(ht[tcpOffDoff:])^binary.BigEndian.Uint32(bt[tcpOffDoff:]))&^ignore != 0 {
		return false
	}
	// TCP options byte for byte (timestamps included, as the kernel requires).
	return bytes.Equal(ht[tcpMinHeader:r.thl], bt[tcpMinHeader:r.thl])
}

// GROOp is one write to the TUN: its pieces (GROPlanner.Pieces, bufs[start:start+n])
// gathered (a virtio-net header, then the packet or the first segment, then the payloads
// of the following segments), carrying Packets packets of the batch.
type GROOp struct {
	start, n int
	Packets  int
}

// GROPlanner turns a batch of packets into writes, coalescing what it may. It keeps its
// scratch between batches, so planning does not allocate once it has seen the largest
// batch.
type GROPlanner struct {
	runs  [maxGROFlows]groRun
	nruns int
	pkts  []fastpath.Packet
	hdrs  [][VirtioHdrLen]byte // one virtio-net header per op
	bufs  [][]byte             // the pieces of all ops, in order
	ops   []GROOp
}

// Plan fills ops and bufs for pkts (read them with Ops and Pieces). It rewrites the
// headers of the first segment of each coalesced run in place; pkts must stay unchanged
// until the writes are done.
func (g *GROPlanner) Plan(pkts []fastpath.Packet) {
	g.pkts = pkts
	g.nruns = 0
	g.ops = g.ops[:0]
	g.bufs = g.bufs[:0]
	if cap(g.hdrs) < len(pkts) {
		g.hdrs = make([][VirtioHdrLen]byte, len(pkts))
	}
	g.hdrs = g.hdrs[:cap(g.hdrs)]
	for i := range pkts {
		g.add(i)
	}
	for g.nruns > 0 {
		g.flush(0)
	}
	g.pkts = nil
}

// Ops returns the writes the last Plan planned, in order.
func (g *GROPlanner) Ops() []GROOp { return g.ops }

// Pieces returns the buffers op gathers, in order: a virtio-net header of VirtioHdrLen
// bytes, then at most MaxGROSegs pieces of packets.
func (g *GROPlanner) Pieces(op GROOp) [][]byte { return g.bufs[op.start : op.start+op.n] }

func (g *GROPlanner) add(i int) {
	b := g.pkts[i].Bytes()
	s, ok := groCandidate(b)
	if !ok {
		// Keep the order within a TCP flow: whatever its run holds goes first.
		if addrs, ports, ok := tcpFlowKey(b); ok {
			if k := g.find(addrs, ports); k >= 0 {
				g.flush(k)
			}
		}
		g.single(i)
		return
	}
	addrs, ports, _ := tcpFlowKey(b)
	if k := g.find(addrs, ports); k >= 0 {
		r := &g.runs[k]
		head := g.pkts[r.members[0]].Bytes()
		if groCanAppend(r, head, b, s) {
			if !r.verified {
				if !tcpChecksumValid(head, ipv4HeaderLen) {
					g.flush(k) // the first segment goes alone; b may start a new run
					g.open(i, s, addrs, ports)
					return
				}
				r.verified = true
			}
			if !tcpChecksumValid(b, ipv4HeaderLen) {
				g.flush(k)
				g.single(i)
				return
			}
			r.members[r.count] = int32(i)
			r.count++
			r.total += s.payload
			r.nextSeq += uint32(s.payload)
			r.psh = s.flags&tcpPSH != 0
			r.short = s.payload < r.mss
			return
		}
		g.flush(k)
	}
	g.open(i, s, addrs, ports)
}

// open starts a run with packet i.
func (g *GROPlanner) open(i int, s groSeg, addrs uint64, ports uint32) {
	if g.nruns == maxGROFlows {
		g.flush(0)
	}
	r := &g.runs[g.nruns]
	g.nruns++
	*r = groRun{
		addrs:   addrs,
		ports:   ports,
		count:   1,
		total:   ipv4HeaderLen + s.thl + s.payload,
		mss:     s.payload,
		thl:     s.thl,
		nextSeq: s.seq + uint32(s.payload),
		psh:     s.flags&tcpPSH != 0,
	}
	r.members[0] = int32(i)
}

func (g *GROPlanner) find(addrs uint64, ports uint32) int {
	for k := 0; k < g.nruns; k++ {
		if g.runs[k].addrs == addrs && g.runs[k].ports == ports {
			return k
		}
	}
	return -1
}

// single plans packet i as a write of its own, unmodified.
func (g *GROPlanner) single(i int) {
	h := &g.hdrs[len(g.ops)]
	*h = [VirtioHdrLen]byte{}
	g.ops = append(g.ops, GROOp{start: len(g.bufs), n: 2, Packets: 1})
	g.bufs = append(g.bufs, h[:], g.pkts[i].Bytes())
}

// flush plans run k as one write and removes it from the open runs.
func (g *GROPlanner) flush(k int) {
	r := &g.runs[k]
	if r.count == 1 {
		g.single(int(r.members[0]))
	} else {
		head := g.pkts[r.members[0]].Bytes()
		binary.BigEndian.PutUint16(head[offTotalLen:], uint16(r.total))
		setIPv4Checksum(head, ipv4HeaderLen)
		t := head[ipv4HeaderLen:]
		if r.psh {
			t[tcpOffFlags] |= tcpPSH
		}
		// Checksum partial: the field holds the pseudo header sum, the kernel (or nobody,
		// for a local socket) completes it.
		binary.BigEndian.PutUint16(t[tcpOffCsum:], uint16(pseudoSum(head, protoTCP, r.total-ipv4HeaderLen)))
		h := &g.hdrs[len(g.ops)]
		VirtioHdr{
			Flags:      VnetNeedsCsum,
			GSOType:    GSOTCPv4,
			HdrLen:     uint16(ipv4HeaderLen + r.thl),
			GSOSize:    uint16(r.mss),
			CsumStart:  ipv4HeaderLen,
			CsumOffset: tcpOffCsum,
		}.Encode(h[:])
		g.ops = append(g.ops, GROOp{start: len(g.bufs), n: 1 + r.count, Packets: r.count})
		g.bufs = append(g.bufs, h[:], head)
		for _, m := range r.members[1:r.count] {
			g.bufs = append(g.bufs, g.pkts[m].Bytes()[ipv4HeaderLen+r.thl:])
		}
	}
	copy(g.runs[k:g.nruns], g.runs[k+1:g.nruns])
	g.nruns--
}
