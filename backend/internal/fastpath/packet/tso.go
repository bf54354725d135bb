package packet

import (
	"encoding/binary"

	"github.com/weftnet/weft/backend/internal/fastpath"
)

// TCP segmentation (TSO in userspace). A TUN with TUN_F_TSO4 and TUN_F_TSO6 hands over
// TCP/IPv4 and TCP/IPv6 superpackets of up to 64 KiB, with a virtio-net header saying how
// to cut them. The fast path cuts them into the segments the kernel would have sent,
// because the wire format is one inner packet per datagram: each segment gets a copy of
// the IP and TCP headers with
//
//   - IPv4: total length, identification (first + index, as the kernel's GSO does) and
//     header checksum recomputed; options, if any, copied as they are;
//   - IPv6: payload length recomputed (the kernel's TCPv6 GSO packets carry no extension
//     headers; one that does is refused);
//   - TCP: sequence number (first + index * MSS); FIN and PSH kept on the last segment
//     only, CWR on the first only; every other flag, the options and the window copied;
//     the checksum computed in full over the segment and its pseudo header.
//
// A superpacket that is not one the kernel produces (another GSO type, a fragment, a
// transport header that is not where the checksum offsets say, a length that does not
// match) is refused and counted as malformed.

// TSOSplitter cuts one superpacket into segments, one per call of Next, so that a
// superpacket that does not fit in what is left of a batch continues in the next batch.
// The zero value holds nothing.
type TSOSplitter struct {
	pkt    []byte // the superpacket; nil when nothing is pending
	v6     bool   // an IPv6 superpacket
	ihl    int    // IP header length
	hdrLen int    // IPv4 + TCP header length
	mss    int    // payload bytes per segment
	off    int    // offset in pkt of the next segment's payload
	index  int    // number of segments cut so far
	seq    uint32 // sequence number of the first segment
	id     uint16 // IPv4 identification of the first segment
}

// Start checks the superpacket pkt described by h and makes it pending. It reports
// DropNone, or why pkt is refused (then nothing is pending). pkt must stay unchanged
// until the last segment is cut.
func (s *TSOSplitter) Start(pkt []byte, h VirtioHdr) fastpath.DropReason {
	*s = TSOSplitter{}
	if h.GSOSize == 0 {
		return fastpath.DropMalformed
	}
	var ihl int
	switch h.GSOType &^ GSOECN {
	case GSOTCPv4:
		if ihl = ipv4TCPHeaderLen(pkt); ihl == 0 {
			return fastpath.DropMalformed
		}
	case GSOTCPv6:
		if len(pkt) < IPv6HeaderLen || pkt[0]>>4 != 6 || pkt[offNextHeader] != protoTCP ||
			IPv6HeaderLen+int(binary.BigEndian.Uint16(pkt[offPayloadLen:])) != len(pkt) {
			return fastpath.DropMalformed
		}
		ihl = IPv6HeaderLen
	default:
		return fastpath.DropMalformed
	}
	if int(h.CsumStart) != ihl || h.CsumOffset != tcpOffCsum || len(pkt) < ihl+tcpMinHeader {
		return fastpath.DropMalformed
	}
	thl := int(pkt[ihl+tcpOffDoff]>>4) * 4
	if thl < tcpMinHeader || len(pkt) < ihl+thl {
		return fastpath.DropMalformed
	}
	*s = TSOSplitter{
		pkt:    pkt,
		v6:     h.GSOType&^GSOECN == GSOTCPv6,
		ihl:    ihl,
		hdrLen: ihl + thl,
		mss:    int(h.GSOSize),
		off:    ihl + thl,
		seq:    binary.BigEndian.Uint32(pkt[ihl+tcpOffSeq:]),
	}
	if !s.v6 {
		s.id = binary.BigEndian.Uint16(pkt[offID:])
	}
	return fastpath.DropNone
}

// ipv4TCPHeaderLen returns the IPv4 header length of pkt if it is a whole TCP/IPv4 packet
// that is not a fragment, else 0.
func ipv4TCPHeaderLen(pkt []byte) int {
	if len(pkt) < ipv4HeaderLen || pkt[0]>>4 != 4 {
		return 0
	}
	ihl := int(pkt[0]&0x0f) * 4
	if ihl < ipv4HeaderLen || int(binary.BigEndian.Uint16(pkt[offTotalLen:])) != len(pkt) ||
		pkt[offProto] != protoTCP || binary.BigEndian.Uint16(pkt[offFrag:])&(ipFlagMF|fragMask) != 0 {
		return 0
	}
	return ihl
}

// Pending reports whether segments remain to be cut.
func (s *TSOSplitter) Pending() bool { return s.pkt != nil }

// Next writes the next segment into dst and returns its length. When dst is too short
// it returns 0 and abandons the superpacket (a segment larger than a device-side slot
// cannot be sent as one datagram of the MTU).
func (s *TSOSplitter) Next(dst []byte) int {
	if s.pkt == nil {
		return 0
	}
	end := min(s.off+s.mss, len(s.pkt))
	n := s.hdrLen + end - s.off
	if n > len(dst) {
		*s = TSOSplitter{}
		return 0
	}
	seg := dst[:n]
	copy(seg, s.pkt[:s.hdrLen])
	copy(seg[s.hdrLen:], s.pkt[s.off:end])
	last := end == len(s.pkt)

	var pseudo uint32
	if s.v6 {
		binary.BigEndian.PutUint16(seg[offPayloadLen:], uint16(n-IPv6HeaderLen))
		pseudo = pseudoSum6(seg, protoTCP, n-s.ihl)
	} else {
		binary.BigEndian.PutUint16(seg[offTotalLen:], uint16(n))
		binary.BigEndian.PutUint16(seg[offID:], s.id+uint16(s.index))
		setIPv4Checksum(seg, s.ihl)
		pseudo = pseudoSum(seg, protoTCP, n-s.ihl)
	}

	t := seg[s.ihl:]
	binary.BigEndian.PutUint32(t[tcpOffSeq:], s.seq+uint32(s.index*s.mss))
	if !last {
		t[tcpOffFlags] &^= tcpFIN | tcpPSH
	}
	if s.index > 0 {
		t[tcpOffFlags] &^= tcpCWR
	}
	t[tcpOffCsum], t[tcpOffCsum+1] = 0, 0
	binary.BigEndian.PutUint16(t[tcpOffCsum:], checksum(t, pseudo))

	s.index++
	s.off = end
	if last {
		*s = TSOSplitter{}
	}
	return n
}

// CompleteChecksum finishes the partial checksum of a packet the kernel handed over with
// VIRTIO_NET_HDR_F_NEEDS_CSUM (CHECKSUM_PARTIAL): the field at start+offset holds the
// pseudo header sum, and the checksum is that of everything from start on, as the
// kernel's skb_checksum_help computes it (a result of 0 is sent as 0xffff, which UDP
// needs and TCP accepts). It reports false when the offsets lie outside b, or the field
// does not lie on a 16-bit word of the checksummed part (no protocol puts it there).
func CompleteChecksum(b []byte, start, offset int) bool {
	at := start + offset
	if start < 0 || offset < 0 || offset%2 != 0 || at+2 > len(b) || start > len(b) {
		return false
	}
	c := checksum(b[start:], 0)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[at:], c)
	return true
}
