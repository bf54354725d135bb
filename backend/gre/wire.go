package gre

import "encoding/binary"

// The GRE encapsulation weft speaks (RFC 2784, the base header only): four bytes, flags and
// version 0 (no checksum, key or sequence number), protocol type 0x0800 for an IPv4 and
// 0x86DD for an IPv6 inner packet (EtherTypes, RFC 7676). It is what a Linux "gre" device
// without key, csum or seq options sends, so kernel-mode and userspace-mode nodes
// interoperate.
const (
	// headerLen is the length of the GRE header weft sends and accepts.
	headerLen = 4
	// protoIPv4 is the GRE protocol type of an encapsulated IPv4 packet (an EtherType).
	protoIPv4 = 0x0800
	// protoIPv6 is the GRE protocol type of an encapsulated IPv6 packet.
	protoIPv6 = 0x86DD
	// ipProtoGRE is GRE's IP protocol number.
	ipProtoGRE = 47
	// overhead is what GRE over IPv4 adds to a packet: outer IPv4 20 + GRE 4.
	overhead = 20 + headerLen
	// overhead6 is what GRE over IPv6 (an IPv6-only network) adds: outer IPv6 40 + GRE 4.
	overhead6 = 40 + headerLen
)

// putHeader writes the GRE header for a payload of protocol type proto (protoIPv4 or
// protoIPv6) into b[:headerLen].
func putHeader(b []byte, proto uint16) {
	_ = b[headerLen-1]
	b[0], b[1] = 0, 0 // C, R, K, S, s, Recur, flags, version: all 0
	binary.BigEndian.PutUint16(b[2:], proto)
}

// protoOf returns the GRE protocol type for an inner packet by its IP version: protoIPv6
// for version 6, else protoIPv4 (the fast path sends only packets it parsed as IPv4 or
// IPv6).
func protoOf(inner []byte) uint16 {
	if len(inner) > 0 && inner[0]>>4 == 6 {
		return protoIPv6
	}
	return protoIPv4
}

// wireError says why a received datagram is not a GRE packet weft accepts. The fast path
// counts every one of them as malformed.
type wireError uint8

// Reasons a datagram is rejected by decodeDatagram.
const (
	wireOK           wireError = iota
	wireShort                  // shorter than the outer IPv4 header plus the GRE header
	wireOuterNotV4             // the outer header is not IPv4
	wireOuterHeader            // the outer IHL is below 5 or beyond the datagram
	wireNotGRE                 // the outer protocol is not 47
	wireFlags                  // a GRE flag is set (checksum, routing, key, sequence, ...)
	wireVersion                // a GRE version other than 0 (1 is PPTP's enhanced GRE)
	wireProtocol               // a protocol type other than IPv4 (0x0800) or IPv6 (0x86DD)
	wireInnerVersion           // the inner packet's IP version does not match the protocol type
)

var wireErrorNames = [...]string{
	wireOK:           "ok",
	wireShort:        "short",
	wireOuterNotV4:   "outer header not IPv4",
	wireOuterHeader:  "bad outer header length",
	wireNotGRE:       "outer protocol not GRE",
	wireFlags:        "GRE flags set",
	wireVersion:      "GRE version not 0",
	wireProtocol:     "GRE protocol type not IPv4 or IPv6",
	wireInnerVersion: "inner IP version not the GRE protocol type's",
}

func (e wireError) String() string {
	if int(e) < len(wireErrorNames) {
		return wireErrorNames[e]
	}
	return "unknown"
}

// decodeDatagram checks a datagram as a raw IPPROTO_GRE socket returns it (outer IPv4
// header, GRE header, payload) and returns the offset of the payload: the outer header
// length plus headerLen. Of the payload only the IP version is checked here (4 for
// protocol type 0x0800, 6 for 0x86DD; an empty payload passes); the fast path parses the
// rest. It is pure and does not allocate.
func decodeDatagram(b []byte) (int, wireError) {
	if len(b) < 20+headerLen {
		return 0, wireShort
	}
	if b[0]>>4 != 4 {
		return 0, wireOuterNotV4
	}
	ihl := int(b[0]&0x0f) * 4
	if ihl < 20 || len(b) < ihl+headerLen {
		return 0, wireOuterHeader
	}
	if b[9] != ipProtoGRE {
		return 0, wireNotGRE
	}
	off, werr := decodeGRE(b[ihl:])
	if werr != wireOK {
		return 0, werr
	}
	return ihl + off, wireOK
}

// decodeGRE checks a GRE header and the start of its payload, as a raw IPv6 socket
// returns a datagram (the kernel strips the outer IPv6 header and its extension headers;
// only the protocol, 47, is known to be GRE), and returns the payload's offset,
// headerLen. The checks are decodeDatagram's after the outer header. It is pure and does
// not allocate.
func decodeGRE(g []byte) (int, wireError) {
	if len(g) < headerLen {
		return 0, wireShort
	}
	// First 16 bits: C R K S s Recur(3) | Flags(5) Ver(3).
	switch {
	case g[0] != 0 || g[1]&0xf8 != 0:
		return 0, wireFlags
	case g[1]&0x07 != 0:
		return 0, wireVersion
	}
	var version byte
	switch binary.BigEndian.Uint16(g[2:]) {
	case protoIPv4:
		version = 4
	case protoIPv6:
		version = 6
	default:
		return 0, wireProtocol
	}
	if len(g) > headerLen && g[headerLen]>>4 != version {
		return 0, wireInnerVersion
	}
	return headerLen, wireOK
}
