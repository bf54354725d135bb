package packet

import (
	"encoding/binary"

	"github.com/weftnet/weft/backend/internal/fastpath"
)

// IPv4 header layout used by the fast path.
const (
	ipv4HeaderLen = 20 // without options
	ipv4MaxHeader = 60
	offTotalLen   = 2
	offFrag       = 6
	offTTL        = 8
	offProto      = 9
	offChecksum   = 10
	offSrc        = 12
	offDst        = 16

	protoICMP = 1
)

// Header is what the fast path needs from an IPv4 header. Addresses are big-endian
// integers, so lookups and comparisons need no conversion.
type Header struct {
	HLen    int    // header length in bytes (IHL*4)
	Total   int    // total length from the header; the packet is b[:Total]
	TTL     uint8  //
	Proto   uint8  //
	FragOff uint16 // fragment offset in 8-byte units (0 for an unfragmented or first fragment)
	Src     uint32 //
	Dst     uint32 //
}

// ParseIPv4 checks that b starts with a well-formed IPv4 packet and decodes its header.
// Well-formed means: version 4; IHL at least 5; the header, with a correct checksum, lies
// within b; the total length covers the header and lies within b. Bytes after the total
// length are allowed (the caller trims them). The reason is DropNone when the packet is
// well-formed, DropNotIPv4 for another IP version, else DropMalformed.
func ParseIPv4(b []byte) (Header, fastpath.DropReason) {
	if len(b) < 1 {
		return Header{}, fastpath.DropMalformed
	}
	if b[0]>>4 != 4 {
		return Header{}, fastpath.DropNotIPv4
	}
	hlen := int(b[0]&0x0f) * 4
	if hlen < ipv4HeaderLen || len(b) < hlen {
		return Header{}, fastpath.DropMalformed
	}
	total := int(binary.BigEndian.Uint16(b[offTotalLen:]))
	if total < hlen || total > len(b) {
		return Header{}, fastpath.DropMalformed
	}
	if checksum(b[:hlen], 0) != 0 {
		return Header{}, fastpath.DropMalformed
	}
	return Header{
		HLen:    hlen,
		Total:   total,
		TTL:     b[offTTL],
		Proto:   b[offProto],
		FragOff: binary.BigEndian.Uint16(b[offFrag:]) & 0x1fff,
		Src:     binary.BigEndian.Uint32(b[offSrc:]),
		Dst:     binary.BigEndian.Uint32(b[offDst:]),
	}, fastpath.DropNone
}

// DecrementTTL lowers the TTL of the IPv4 header at b by one and updates its checksum
// incrementally (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')), where m is the 16-bit word
// holding TTL and protocol. The caller has checked that the TTL is above 1.
func DecrementTTL(b []byte) {
	old := binary.BigEndian.Uint16(b[offTTL:])
	b[offTTL]--
	updated := old - 0x0100
	sum := uint32(^binary.BigEndian.Uint16(b[offChecksum:])) + uint32(^old) + uint32(updated)
	sum = (sum & 0xffff) + (sum >> 16)
	sum = (sum & 0xffff) + (sum >> 16)
	binary.BigEndian.PutUint16(b[offChecksum:], ^uint16(sum))
}
