package fastpath

import "encoding/binary"

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

// header is what the fast path needs from an IPv4 header. Addresses are big-endian
// integers, so lookups and comparisons need no conversion.
type header struct {
	hlen    int    // header length in bytes (IHL*4)
	total   int    // total length from the header; the packet is b[:total]
	ttl     uint8  //
	proto   uint8  //
	fragOff uint16 // fragment offset in 8-byte units (0 for an unfragmented or first fragment)
	src     uint32 //
	dst     uint32 //
}

// parseIPv4 checks that b starts with a well-formed IPv4 packet and decodes its header.
// Well-formed means: version 4; IHL at least 5; the header, with a correct checksum, lies
// within b; the total length covers the header and lies within b. Bytes after the total
// length are allowed (the caller trims them). The reason is DropNone when the packet is
// well-formed, DropNotIPv4 for another IP version, else DropMalformed.
func parseIPv4(b []byte) (header, DropReason) {
	if len(b) < 1 {
		return header{}, DropMalformed
	}
	if b[0]>>4 != 4 {
		return header{}, DropNotIPv4
	}
	hlen := int(b[0]&0x0f) * 4
	if hlen < ipv4HeaderLen || len(b) < hlen {
		return header{}, DropMalformed
	}
	total := int(binary.BigEndian.Uint16(b[offTotalLen:]))
	if total < hlen || total > len(b) {
		return header{}, DropMalformed
	}
	if checksum(b[:hlen], 0) != 0 {
		return header{}, DropMalformed
	}
	return header{
		hlen:    hlen,
		total:   total,
		ttl:     b[offTTL],
		proto:   b[offProto],
		fragOff: binary.BigEndian.Uint16(b[offFrag:]) & 0x1fff,
		src:     binary.BigEndian.Uint32(b[offSrc:]),
		dst:     binary.BigEndian.Uint32(b[offDst:]),
	}, DropNone
}

// decrementTTL lowers the TTL of the IPv4 header at b by one and updates its checksum
// incrementally (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')), where m is the 16-bit word
// holding TTL and protocol. The caller has checked that the TTL is above 1.
func decrementTTL(b []byte) {
	old := binary.BigEndian.Uint16(b[offTTL:])
	b[offTTL]--
	updated := old - 0x0100
	sum := uint32(^binary.BigEndian.Uint16(b[offChecksum:])) + uint32(^old) + uint32(updated)
	sum = (sum & 0xffff) + (sum >> 16)
	sum = (sum & 0xffff) + (sum >> 16)
	binary.BigEndian.PutUint16(b[offChecksum:], ^uint16(sum))
}
