package packet

import (
	"bytes"
	"encoding/binary"

	"github.com/weftnet/weft/backend/internal/fastpath"
)

// TCP coalescing (GRO in userspace). Packets from peers are written to a TUN with
// IFF_VNET_HDR; consecutive segments of one TCP flow are written as one superpacket with
// a virtio-net header (GSO TCPv4 or TCPv6, checksum partial), so the kernel's TCP stack
// handles one large packet where it would handle dozens. The rules follow the kernel's own
// GRO (net/ipv4/tcp_offload.c, inet_gro_receive, ipv6_gro_receive), so what the pod's
// stack sees is what a NIC with GRO would give it:
//
//   - only IPv4 without options and not a fragment, or IPv6 without extension headers;
//     TCP with payload, ACK set and none of SYN, RST, FIN, URG;
//   - segments join a run when addresses, ports, acknowledgement number, TOS (and so ECN
//     marks), TTL, the DF bit, header length, TCP options, window and the other flags
//     are equal and the sequence number follows on; without DF the IPv4 identification
//     must also follow on; for IPv6, traffic class, flow label and hop limit are equal;
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
	ihl     int    // IP header length: ipv4HeaderLen, or IPv6HeaderLen for IPv6
	thl     int    // TCP header length
	payload int    // TCP payload bytes
	seq     uint32 // sequence number
	flags   uint8  // TCP flags
}

// groCandidate reports whether b (exactly one IP packet) is a TCP segment that may be
// coalesced, and decodes it.
func groCandidate(b []byte) (groSeg, bool) {
	ihl := tcpHeaderAt(b)
	if ihl == 0 || len(b) < ihl+tcpMinHeader {
		return groSeg{}, false
	}
	if ihl == ipv4HeaderLen && int(binary.BigEndian.Uint16(b[offTotalLen:])) != len(b) ||
		ihl == IPv6HeaderLen && IPv6HeaderLen+int(binary.BigEndian.Uint16(b[offPayloadLen:])) != len(b) {
		return groSeg{}, false
	}
	t := b[ihl:]
	thl := int(t[tcpOffDoff]>>4) * 4
	flags := t[tcpOffFlags]
	if thl < tcpMinHeader || len(t) <= thl || flags&(tcpSYN|tcpRST|tcpFIN|tcpURG) != 0 || flags&tcpACK == 0 {
		return groSeg{}, false
	}
	return groSeg{ihl: ihl, thl: thl, payload: len(t) - thl, seq: binary.BigEndian.Uint32(t[tcpOffSeq:]), flags: flags}, true
}

// tcpHeaderAt returns where the TCP header of b starts if b is TCP over IPv4 without
// options and not a fragment (20), or over IPv6 without extension headers (40); else 0.
func tcpHeaderAt(b []byte) int {
	switch {
	case len(b) >= ipv4HeaderLen && b[0] == 0x45:
		if b[offProto] != protoTCP || binary.BigEndian.Uint16(b[offFrag:])&(ipFlagMF|fragMask) != 0 {
			return 0
		}
		return ipv4HeaderLen
	case len(b) >= IPv6HeaderLen && b[0]>>4 == 6:
		if b[offNextHeader] != protoTCP {
			return 0
		}
		return IPv6HeaderLen
	}
	return 0
}

// flowKey is a TCP flow: its addresses (IPv4: the first word only) and ports.
type flowKey struct {
	addrs [4]uint64
	ports uint32
	v6    bool
}

// tcpFlowKey returns the flow of a TCP packet that tcpHeaderAt accepts, and false for
// anything else.
func tcpFlowKey(b []byte) (flowKey, bool) {
	ihl := tcpHeaderAt(b)
	if ihl == 0 || len(b) < ihl+4 {
		return flowKey{}, false
	}
	k := flowKey{ports: binary.BigEndian.Uint32(b[ihl:]), v6: ihl == IPv6HeaderLen}
	if k.v6 {
		for i := range k.addrs {
			k.addrs[i] = binary.BigEndian.Uint64(b[offSrc6+8*i:])
		}
	} else {
		k.addrs[0] = binary.BigEndian.Uint64(b[offSrc:])
	}
	return k, true
}

// tcpValid reports whether the TCP segment at b[ihl:] (IPv4 or IPv6 as tcpHeaderAt
// says), exactly to the end of b, carries a correct checksum.
func tcpValid(b []byte, ihl int) bool {
	if ihl == IPv6HeaderLen {
		return checksum(b[ihl:], pseudoSum6(b, protoTCP, len(b)-ihl)) == 0
	}
	return tcpChecksumValid(b, ihl)
}

// groRun is one flow's segments being gathered into a superpacket.
type groRun struct {
	key      flowKey
	members  [MaxGROSegs]int32
	count    int    // segments in the run; members[:count] index the batch
	total    int    // length of the superpacket, IP header included
	ihl      int    // IP header length
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
	if r.key.v6 {
		// IPv6: version, traffic class (with the ECN bits), flow label and hop limit equal.
		if binary.BigEndian.Uint32(b) != binary.BigEndian.Uint32(head) || b[offHopLimit] != head[offHopLimit] {
			return false
		}
	} else {
		// IPv4: TOS (with the ECN bits), flags (DF), TTL equal; without DF the
		// identification follows on.
		if b[1] != head[1] || b[offFrag] != head[offFrag] || b[offTTL] != head[offTTL] {
			return false
		}
		if head[offFrag]&(ipFlagDF>>8) == 0 &&
			binary.BigEndian.Uint16(b[offID:]) != binary.BigEndian.Uint16(head[offID:])+uint16(r.count) {
			return false
		}
	}
	ht, bt := head[r.ihl:], b[r.ihl:]
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
		if key, ok := tcpFlowKey(b); ok {
			if k := g.find(key); k >= 0 {
				g.flush(k)
			}
		}
		g.single(i)
		return
	}
	key, _ := tcpFlowKey(b)
	if k := g.find(key); k >= 0 {
		r := &g.runs[k]
		head := g.pkts[r.members[0]].Bytes()
		if groCanAppend(r, head, b, s) {
			if !r.verified {
				if !tcpValid(head, r.ihl) {
					g.flush(k) // the first segment goes alone; b may start a new run
					g.open(i, s, key)
					return
				}
				r.verified = true
			}
			if !tcpValid(b, r.ihl) {
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
	g.open(i, s, key)
}

// open starts a run with packet i.
func (g *GROPlanner) open(i int, s groSeg, key flowKey) {
	if g.nruns == maxGROFlows {
		g.flush(0)
	}
	r := &g.runs[g.nruns]
	g.nruns++
	*r = groRun{
		key:     key,
		count:   1,
		total:   s.ihl + s.thl + s.payload,
		ihl:     s.ihl,
		mss:     s.payload,
		thl:     s.thl,
		nextSeq: s.seq + uint32(s.payload),
		psh:     s.flags&tcpPSH != 0,
	}
	r.members[0] = int32(i)
}

func (g *GROPlanner) find(key flowKey) int {
	for k := 0; k < g.nruns; k++ {
		if g.runs[k].key == key {
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
		gso, pseudo := uint8(GSOTCPv4), uint32(0)
		if r.key.v6 {
			binary.BigEndian.PutUint16(head[offPayloadLen:], uint16(r.total-IPv6HeaderLen))
			gso, pseudo = GSOTCPv6, pseudoSum6(head, protoTCP, r.total-r.ihl)
		} else {
			binary.BigEndian.PutUint16(head[offTotalLen:], uint16(r.total))
			setIPv4Checksum(head, ipv4HeaderLen)
			pseudo = pseudoSum(head, protoTCP, r.total-r.ihl)
		}
		t := head[r.ihl:]
		if r.psh {
			t[tcpOffFlags] |= tcpPSH
		}
		// Checksum partial: the field holds the pseudo header sum, the kernel (or nobody,
		// for a local socket) completes it.
		binary.BigEndian.PutUint16(t[tcpOffCsum:], uint16(pseudo))
		h := &g.hdrs[len(g.ops)]
		VirtioHdr{
			Flags:      VnetNeedsCsum,
			GSOType:    gso,
			HdrLen:     uint16(r.ihl + r.thl),
			GSOSize:    uint16(r.mss),
			CsumStart:  uint16(r.ihl),
			CsumOffset: tcpOffCsum,
		}.Encode(h[:])
		g.ops = append(g.ops, GROOp{start: len(g.bufs), n: 1 + r.count, Packets: r.count})
		g.bufs = append(g.bufs, h[:], head)
		for _, m := range r.members[1:r.count] {
			g.bufs = append(g.bufs, g.pkts[m].Bytes()[r.ihl+r.thl:])
		}
	}
	copy(g.runs[k:g.nruns], g.runs[k+1:g.nruns])
	g.nruns--
}
