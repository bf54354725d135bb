package fastpath

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// tcpPkt describes a test TCP/IPv4 packet or superpacket.
type tcpPkt struct {
	src, dst     string
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
	window       uint16
	id           uint16
	frag         uint16 // IPv4 flags and fragment offset; 0 means DF
	tos, ttl     uint8
	ipOptions    int    // bytes of IPv4 options (NOPs), a multiple of 4
	tcpOptions   []byte // a multiple of 4
	payload      []byte
	partial      bool // TCP checksum field holds the pseudo header sum (CHECKSUM_PARTIAL)
	badCsum      bool // corrupt the TCP checksum
}

func flow(seq uint32, n int) tcpPkt {
	return tcpPkt{src: "10.244.2.3", dst: "10.244.1.2", sport: 40000, dport: 5201, seq: seq, ack: 777,
		flags: tcpACK, window: 512, id: 100, ttl: 63, payload: pattern(int(seq), n)}
}

func pattern(start, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((start + i) * 31 >> 3)
	}
	return b
}

// tsOption is a TCP timestamp option padded to 12 bytes.
func tsOption(val, ecr uint32) []byte {
	b := []byte{1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[4:], val)
	binary.BigEndian.PutUint32(b[8:], ecr)
	return b
}

func (p tcpPkt) with(fn func(*tcpPkt)) tcpPkt { fn(&p); return p }

// build returns the packet with correct checksums computed by the reference functions
// (or a partial TCP checksum, or a broken one, as asked).
func (p tcpPkt) build() []byte {
	ihl := ipv4HeaderLen + p.ipOptions
	thl := tcpMinHeader + len(p.tcpOptions)
	b := make([]byte, ihl+thl+len(p.payload))
	b[0] = 0x40 | byte(ihl/4)
	b[1] = p.tos
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], p.id)
	frag := p.frag
	if frag == 0 {
		frag = ipFlagDF
	}
	if frag == 0xffff { // "no flags at all"
		frag = 0
	}
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8] = p.ttl
	if b[8] == 0 {
		b[8] = 64
	}
	b[9] = protoTCP
	s, d := netip.MustParseAddr(p.src).As4(), netip.MustParseAddr(p.dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	for i := ipv4HeaderLen; i < ihl; i++ {
		b[i] = 1
	}
	binary.BigEndian.PutUint16(b[10:], refChecksum(b[:ihl]))
	t := b[ihl:]
	binary.BigEndian.PutUint16(t[0:], p.sport)
	binary.BigEndian.PutUint16(t[2:], p.dport)
	binary.BigEndian.PutUint32(t[4:], p.seq)
	binary.BigEndian.PutUint32(t[8:], p.ack)
	t[12] = byte(thl/4) << 4
	t[13] = p.flags
	binary.BigEndian.PutUint16(t[14:], p.window)
	copy(t[tcpMinHeader:], p.tcpOptions)
	copy(t[thl:], p.payload)
	if p.partial {
		binary.BigEndian.PutUint16(t[16:], ^refChecksum(refPseudo(b, ihl)))
	} else {
		binary.BigEndian.PutUint16(t[16:], refTCPChecksum(b, ihl))
	}
	if p.badCsum {
		t[16] ^= 0x5a
	}
	return b
}

// refPseudo returns the IPv4 pseudo header bytes for the transport segment of b.
func refPseudo(b []byte, ihl int) []byte {
	ph := make([]byte, 12)
	copy(ph, b[12:20])
	ph[9] = b[9]
	binary.BigEndian.PutUint16(ph[10:], uint16(len(b)-ihl))
	return ph
}

// refTCPChecksum computes the TCP checksum of b independently: the reference sum over
// the pseudo header and the segment with the checksum field zeroed.
func refTCPChecksum(b []byte, ihl int) uint16 {
	seg := append(refPseudo(b, ihl), b[ihl:]...)
	seg[12+16], seg[12+17] = 0, 0
	return refChecksum(seg)
}

// refTCPValid reports whether b's TCP checksum is right, by the reference computation.
func refTCPValid(b []byte, ihl int) bool {
	return refChecksum(append(refPseudo(b, ihl), b[ihl:]...)) == 0
}

func ihlOf(b []byte) int        { return int(b[0]&0x0f) * 4 }
func thlOf(b []byte) int        { return int(b[ihlOf(b)+12]>>4) * 4 }
func tcpFlags(b []byte) uint8   { return b[ihlOf(b)+13] }
func tcpSeq(b []byte) uint32    { return binary.BigEndian.Uint32(b[ihlOf(b)+4:]) }
func payloadOf(b []byte) []byte { return b[ihlOf(b)+thlOf(b):] }

func mustEqualBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs:\n got %x\nwant %x", what, got, want)
	}
}
