package packet

import (
	"encoding/binary"

	"github.com/weftnet/weft/backend/internal/fastpath"
)

// IPv6 header layout used by the fast path (RFC 8200, section 3).
const (
	// IPv6HeaderLen is the length of the fixed IPv6 header.
	IPv6HeaderLen = 40
	offPayloadLen = 4
	offNextHeader = 6
	offHopLimit   = 7
	offSrc6       = 8
	offDst6       = 24
)

// Header6 is what the fast path needs from an IPv6 header. Addresses are big-endian
// 128-bit integers split in two halves, so lookups need no conversion.
type Header6 struct {
	Total        int   // 40 + payload length; the packet is b[:Total]
	HopLimit     uint8 //
	SrcHi, SrcLo uint64
	DstHi, DstLo uint64
	NextHeader   uint8 // the first next-header value (not followed through extensions)
}

// ParseIPv6 checks that b starts with a well-formed IPv6 packet and decodes its fixed
// header. Well-formed means: version 6; the 40-byte header lies within b; the payload
// length is not 0 with a hop-by-hop header (a jumbogram, RFC 2675, which the fast path
// does not carry) and header plus payload lie within b. Bytes after them are allowed (the
// caller trims them). The reason is DropNone when the packet is well-formed, DropNotIPv4
// for another IP version (the caller dispatches on the version first), else
// DropMalformed. It does not allocate.
func ParseIPv6(b []byte) (Header6, fastpath.DropReason) {
	if len(b) < 1 {
		return Header6{}, fastpath.DropMalformed
	}
	if b[0]>>4 != 6 {
		return Header6{}, fastpath.DropNotIPv4
	}
	if len(b) < IPv6HeaderLen {
		return Header6{}, fastpath.DropMalformed
	}
	plen := int(binary.BigEndian.Uint16(b[offPayloadLen:]))
	if plen == 0 && b[6] == 0 { // hop-by-hop options with a zero length: a jumbogram
		return Header6{}, fastpath.DropMalformed
	}
	total := IPv6HeaderLen + plen
	if total > len(b) {
		return Header6{}, fastpath.DropMalformed
	}
	return Header6{
		Total:      total,
		HopLimit:   b[offHopLimit],
		NextHeader: b[6],
		SrcHi:      binary.BigEndian.Uint64(b[offSrc6:]),
		SrcLo:      binary.BigEndian.Uint64(b[offSrc6+8:]),
		DstHi:      binary.BigEndian.Uint64(b[offDst6:]),
		DstLo:      binary.BigEndian.Uint64(b[offDst6+8:]),
	}, fastpath.DropNone
}

// DecrementHopLimit lowers the hop limit of the IPv6 header at b by one. IPv6 has no
// header checksum. The caller has checked that the hop limit is above 1.
func DecrementHopLimit(b []byte) { b[offHopLimit]-- }
