package gre

import "encoding/binary"

// The GRE encapsulation weft speaks (RFC 2784, the base header only): four bytes, flags and
// version 0 (no checksum, key or sequence number), protocol type 0x0800 (IPv4). It is what
// a Linux "gre" device without key, csum or seq options sends, so kernel-mode and
// userspace-mode nodes interoperate.
const (
	// headerLen is the length of the GRE header weft sends and accepts.
	headerLen = 4
	// protoIPv4 is the GRE protocol type of an encapsulated IPv4 packet (an EtherType).
	protoIPv4 = 0x0800
	// ipProtoGRE is GRE's IP protocol number.
	ipProtoGRE = 47
	// overhead is what GRE over IPv4 adds to a packet: outer IPv4 20 + GRE 4.
	overhead = 20 + headerLen
)

// putHeader writes the GRE header for an IPv4 payload into b[:headerLen].
func putHeader(b []byte) {
	_ = b[headerLen-1]
	b[0], b[1] = 0, 0 // C, R, K, S, s, Recur, flags, version: all 0
	binary.BigEndian.PutUint16(b[2:], protoIPv4)
}

// wireError says why a received datagram is not a GRE packet weft accepts. The fast path
// counts every one of them as malformed.
type wireError uint8

// Reasons a datagram is rejected by decodeDatagram.
const (
	wireOK          wireError = iota
	wireShort                 // shorter than the outer IPv4 header plus the GRE header
	wireOuterNotV4            // the outer header is not IPv4
	wireOuterHeader           // the outer IHL is below 5 or beyond the datagram
	wireNotGRE                // the outer protocol is not 47
	wireFlags                 // a GRE flag is set (checksum, routing, key, sequence, ...)
	wireVersion               // a GRE version other than 0 (1 is PPTP's enhanced GRE)
	wireProtocol              // a protocol type other than IPv4 (0x0800)
)

var wireErrorNames = [...]string{
	wireOK:          "ok",
	wireShort:       "short",
	wireOuterNotV4:  "outer header not IPv4",
	wireOuterHeader: "bad outer header length",
	wireNotGRE:      "outer protocol not GRE",
	wireFlags:       "GRE flags set",
	wireVersion:     "GRE version not 0",
	wireProtocol:    "GRE protocol type not IPv4",
}

func (e wireError) String() string {
	if int(e) < len(wireErrorNames) {
		return wireErrorNames[e]
	}
	return "unknown"
}

// decodeDatagram checks a datagram as a raw IPPROTO_GRE socket returns it (outer IPv4
// header, GRE header, payload) and returns the offset of the payload: the outer header
// length plus headerLen. The payload itself is not checked here; the fast path parses it
// as IPv4. It is pure and does not allocate.
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
	g := b[ihl:]
	// First 16 bits: C R K S s Recur(3) | Flags(5) Ver(3).
	switch {
	case g[0] != 0 || g[1]&0xf8 != 0:
		return 0, wireFlags
	case g[1]&0x07 != 0:
		return 0, wireVersion
	case binary.BigEndian.Uint16(g[2:]) != protoIPv4:
		return 0, wireProtocol
	}
	return ihl + headerLen, wireOK
}
