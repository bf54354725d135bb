package packettest

import (
	"encoding/binary"
	"net/netip"
)

// TCP describes a test TCP/IPv4 packet or superpacket.
type TCP struct {
	Src, Dst     string
	SPort, DPort uint16
	Seq, Ack     uint32
	Flags        uint8
	Window       uint16
	ID           uint16
	Frag         uint16 // IPv4 flags and fragment offset; 0 means DF, 0xffff no flags at all
	TOS, TTL     uint8  // TTL 0 means 64
	IPOptions    int    // bytes of IPv4 options (NOPs), a multiple of 4
	TCPOptions   []byte // a multiple of 4
	Payload      []byte
	Partial      bool // TCP checksum field holds the pseudo header sum (CHECKSUM_PARTIAL)
	BadCsum      bool // corrupt the TCP checksum
}

// Flow returns a segment of n bytes at sequence number seq of the flow the tests use:
// 10.244.2.3:40000 to 10.244.1.2:5201, ACK set.
func Flow(seq uint32, n int) TCP {
	return TCP{Src: "10.244.2.3", Dst: "10.244.1.2", SPort: 40000, DPort: 5201, Seq: seq, Ack: 777,
		Flags: FlagACK, Window: 512, ID: 100, TTL: 63, Payload: Pattern(int(seq), n)}
}

// Pattern returns n bytes that depend on their offset from start.
func Pattern(start, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((start + i) * 31 >> 3)
	}
	return b
}

// TSOption is a TCP timestamp option padded to 12 bytes.
func TSOption(val, ecr uint32) []byte {
	b := []byte{1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[4:], val)
	binary.BigEndian.PutUint32(b[8:], ecr)
	return b
}

// With returns p changed by fn.
func (p TCP) With(fn func(*TCP)) TCP { fn(&p); return p }

// Build returns the packet with correct checksums computed by the reference functions
// (or a partial TCP checksum, or a broken one, as asked).
func (p TCP) Build() []byte {
	ihl := ipv4HeaderLen + p.IPOptions
	thl := tcpMinHeader + len(p.TCPOptions)
	b := make([]byte, ihl+thl+len(p.Payload))
	b[0] = 0x40 | byte(ihl/4)
	b[1] = p.TOS
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], p.ID)
	frag := p.Frag
	if frag == 0 {
		frag = ipFlagDF
	}
	if frag == 0xffff { // "no flags at all"
		frag = 0
	}
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = p.TTL
	if b[8] == 0 {
		b[8] = 64
	}
	b[9] = ProtoTCP
	s, d := netip.MustParseAddr(p.Src).As4(), netip.MustParseAddr(p.Dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	for i := ipv4HeaderLen; i < ihl; i++ {
		b[i] = 1
	}
	binary.BigEndian.PutUint16(b[10:], RefChecksum(b[:ihl]))
	t := b[ihl:]
	binary.BigEndian.PutUint16(t[0:], p.SPort)
	binary.BigEndian.PutUint16(t[2:], p.DPort)
	binary.BigEndian.PutUint32(t[4:], p.Seq)
	binary.BigEndian.PutUint32(t[8:], p.Ack)
	t[12] = byte(thl/4) << 4
	t[13] = p.Flags
	binary.BigEndian.PutUint16(t[14:], p.Window)
	copy(t[tcpMinHeader:], p.TCPOptions)
	copy(t[thl:], p.Payload)
	if p.Partial {
		binary.BigEndian.PutUint16(t[16:], ^RefChecksum(RefPseudo(b, ihl)))
	} else {
		binary.BigEndian.PutUint16(t[16:], RefTCPChecksum(b, ihl))
	}
	if p.BadCsum {
		t[16] ^= 0x5a
	}
	return b
}

// RefPseudo returns the IPv4 pseudo header bytes for the transport segment of b, whose
// IPv4 header is ihl bytes long.
func RefPseudo(b []byte, ihl int) []byte {
	ph := make([]byte, 12)
	copy(ph, b[12:20])
	ph[9] = b[9]
	binary.BigEndian.PutUint16(ph[10:], uint16(len(b)-ihl))
	return ph
}

// RefTCPChecksum computes the TCP checksum of b independently: the reference sum over
// the pseudo header and the segment with the checksum field zeroed.
func RefTCPChecksum(b []byte, ihl int) uint16 {
	seg := append(RefPseudo(b, ihl), b[ihl:]...)
	seg[12+16], seg[12+17] = 0, 0
	return RefChecksum(seg)
}

// RefTCPValid reports whether b's TCP checksum is right, by the reference computation.
func RefTCPValid(b []byte, ihl int) bool {
	return RefChecksum(append(RefPseudo(b, ihl), b[ihl:]...)) == 0
}

// IHL returns the IPv4 header length of b in bytes.
func IHL(b []byte) int { return int(b[0]&0x0f) * 4 }

// THL returns the TCP header length of the TCP/IPv4 packet b in bytes.
func THL(b []byte) int { return int(b[IHL(b)+12]>>4) * 4 }

// TCPFlags returns the TCP flags of b.
func TCPFlags(b []byte) uint8 { return b[IHL(b)+13] }

// TCPSeq returns the TCP sequence number of b.
func TCPSeq(b []byte) uint32 { return binary.BigEndian.Uint32(b[IHL(b)+4:]) }

// TCPPayload returns the TCP payload of b.
func TCPPayload(b []byte) []byte { return b[IHL(b)+THL(b):] }
