package packet

import "encoding/binary"

// ICMP errors the fast path sends.
const (
	ICMPDestUnreachable = 3
	ICMPNetUnreachable  = 0 // code of ICMPDestUnreachable
	ICMPTimeExceeded    = 11
	ICMPTTLExceeded     = 0 // code of ICMPTimeExceeded

	icmpHeaderLen = 8
	// ICMPMaxLen bounds a generated ICMP error: RFC 1812 4.3.2.3 quotes as much of the
	// offending packet as fits in 576 bytes.
	ICMPMaxLen = 576
	// icmpTTL is the TTL of generated errors (the Linux default).
	icmpTTL = 64
	// tosInternetControl is the precedence Linux gives ICMP errors.
	tosInternetControl = 0xc0
)

// isICMPError reports whether an ICMP type is an error message (RFC 792/1812).
func isICMPError(t uint8) bool {
	switch t {
	case 3, 4, 5, 11, 12: // unreachable, source quench, redirect, time exceeded, parameter problem
		return true
	}
	return false
}

// isUnicast reports whether a is usable as a host address: not in 0.0.0.0/8, loopback
// 127.0.0.0/8, multicast 224.0.0.0/4 or reserved 240.0.0.0/4 (which holds the limited
// broadcast 255.255.255.255).
func isUnicast(a uint32) bool {
	switch first := a >> 24; {
	case first == 0, first == 127, first >= 224:
		return false
	}
	return true
}

// ICMPErrorAllowed reports whether RFC 1812 (4.3.2.7) allows an ICMP error about the
// packet b with the validated header h: not about a non-initial fragment, not about an
// ICMP error (or an ICMP packet too short to tell), not when the source is not a unicast
// host address, and not when the destination is multicast or broadcast.
func ICMPErrorAllowed(b []byte, h Header) bool {
	if h.FragOff != 0 || !isUnicast(h.Src) {
		return false
	}
	if first := h.Dst >> 24; first >= 224 {
		return false
	}
	if h.Proto == protoICMP && (h.Total <= h.HLen || isICMPError(b[h.HLen])) {
		return false
	}
	return true
}

// BuildICMPError writes into out an IPv4 ICMP error of type typ and code about the packet
// b (whose header h was validated), from src to the packet's source, and returns its
// length. It quotes b up to ICMPMaxLen bytes in total. out must hold ICMPMaxLen bytes;
// every byte of the result is written, so out may be reused without clearing.
func BuildICMPError(out, b []byte, h Header, src uint32, typ, code uint8) int {
	quote := min(h.Total, ICMPMaxLen-ipv4HeaderLen-icmpHeaderLen)
	n := ipv4HeaderLen + icmpHeaderLen + quote
	o := out[:n]

	o[0] = 0x45 // version 4, IHL 5
	o[1] = tosInternetControl
	binary.BigEndian.PutUint16(o[offTotalLen:], uint16(n))
	binary.BigEndian.PutUint32(o[4:], 0) // ID 0, no flags, offset 0
	o[offTTL] = icmpTTL
	o[offProto] = protoICMP
	binary.BigEndian.PutUint16(o[offChecksum:], 0)
	binary.BigEndian.PutUint32(o[offSrc:], src)
	binary.BigEndian.PutUint32(o[offDst:], h.Src)
	binary.BigEndian.PutUint16(o[offChecksum:], checksum(o[:ipv4HeaderLen], 0))

	m := o[ipv4HeaderLen:]
	m[0], m[1] = typ, code
	binary.BigEndian.PutUint16(m[2:], 0)
	binary.BigEndian.PutUint32(m[4:], 0) // unused
	copy(m[icmpHeaderLen:], b[:quote])
	binary.BigEndian.PutUint16(m[2:], checksum(m, 0))
	return n
}
