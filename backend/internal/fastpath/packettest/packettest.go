// Package packettest builds IPv4 packets (UDP, TCP, ICMP echo) for the fast path's tests
// and checks them with reference checksums computed the slow way the RFCs describe.
//
// It owns nothing of the product: it imports no package of the fast path, so that every
// one of them, internal tests included, can check its results against it without an
// import cycle and without grading its own code with itself. It is imported only by tests
// and never compiled into a binary.
package packettest

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers.
const (
	ProtoICMP = 1
	ProtoTCP  = 6
	ProtoUDP  = 17
)

// TCP flags.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagPSH = 0x08
	FlagACK = 0x10
	FlagURG = 0x20
	FlagECE = 0x40
	FlagCWR = 0x80
)

// Header lengths and IPv4 flags the builders use.
const (
	ipv4HeaderLen = 20
	tcpMinHeader  = 20
	ipFlagDF      = 0x4000
)

// RefChecksum is an independent Internet checksum: 16-bit words summed in a wide integer,
// reduced modulo 0xffff the way RFC 1071 describes it arithmetically (the ones' complement
// sum is the sum modulo 2^16-1, with 0xffff standing for a non-zero multiple), then
// complemented.
func RefChecksum(b []byte) uint16 {
	var sum uint64
	for i := 0; i < len(b); i += 2 {
		w := uint64(b[i]) << 8
		if i+1 < len(b) {
			w |= uint64(b[i+1])
		}
		sum += w
	}
	if sum == 0 {
		return 0xffff
	}
	folded := sum % 0xffff
	if folded == 0 {
		folded = 0xffff
	}
	return ^uint16(folded)
}

// HeaderValid reports whether the IPv4 header at b has a correct checksum, by the
// reference computation.
func HeaderValid(b []byte) bool {
	hlen := int(b[0]&0x0f) * 4
	return RefChecksum(b[:hlen]) == 0
}

// FixHeaderChecksum makes the header checksum of b right where the header length allows,
// so that a fuzzer gets past the checksum test to the decisions behind it.
func FixHeaderChecksum(b []byte) {
	if len(b) < 20 {
		return
	}
	hlen := int(b[0]&0x0f) * 4
	if hlen < 20 || hlen > len(b) {
		return
	}
	binary.BigEndian.PutUint16(b[10:], 0)
	binary.BigEndian.PutUint16(b[10:], RefChecksum(b[:hlen]))
}

// IsICMPError reports whether an ICMP type is an error message (RFC 792/1812):
// unreachable, source quench, redirect, time exceeded, parameter problem.
func IsICMPError(t uint8) bool {
	switch t {
	case 3, 4, 5, 11, 12:
		return true
	}
	return false
}

// Addr4 returns the IPv4 address s as a big-endian integer.
func Addr4(s string) uint32 {
	a := netip.MustParseAddr(s).As4()
	return binary.BigEndian.Uint32(a[:])
}

// AddrOf returns the big-endian integer v as an address.
func AddrOf(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// IPv4 describes a test IPv4 packet.
type IPv4 struct {
	Src, Dst string
	TTL      uint8
	Proto    uint8
	Frag     uint16 // flags and fragment offset field
	Options  int    // bytes of options (multiple of 4)
	Payload  []byte
	Fix      func([]byte) // applied after the checksum, to break the packet
}

// Post returns p with fn applied after any earlier Fix.
func (p IPv4) Post(fn func([]byte)) IPv4 {
	prev := p.Fix
	p.Fix = func(b []byte) {
		if prev != nil {
			prev(b)
		}
		fn(b)
	}
	return p
}

// Build returns the packet with a correct header checksum (then Fix applied). The
// identification is 0x1234.
func (p IPv4) Build() []byte {
	hlen := ipv4HeaderLen + p.Options
	b := make([]byte, hlen+len(p.Payload))
	b[0] = 0x40 | byte(hlen/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], 0x1234)
	binary.BigEndian.PutUint16(b[6:], p.Frag)
	b[8] = p.TTL
	b[9] = p.Proto
	s, d := netip.MustParseAddr(p.Src).As4(), netip.MustParseAddr(p.Dst).As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	for i := 0; i < p.Options; i++ {
		b[ipv4HeaderLen+i] = 1 // NOP options
	}
	copy(b[hlen:], p.Payload)
	binary.BigEndian.PutUint16(b[10:], RefChecksum(b[:hlen]))
	if p.Fix != nil {
		p.Fix(b)
	}
	return b
}

// WithICMPType returns p with the first payload byte (the ICMP type) set to typ.
func (p IPv4) WithICMPType(typ byte) IPv4 {
	p.Payload = append([]byte{typ}, p.Payload[1:]...)
	return p
}

// WithVersion returns p, without options, with the IP version field set to v.
func (p IPv4) WithVersion(v byte) IPv4 {
	p.Options = 0
	return p.Post(func(b []byte) { b[0] = v<<4 | b[0]&0x0f })
}

// WithBadChecksum returns p with a wrong header checksum.
func (p IPv4) WithBadChecksum() IPv4 {
	return p.Post(func(b []byte) { binary.BigEndian.PutUint16(b[10:], ^binary.BigEndian.Uint16(b[10:])+1) })
}

// UDP returns a test packet carrying a UDP header (port 40000 to 5001, checksum 0) and
// data.
func UDP(src, dst string, ttl uint8, data string) IPv4 {
	payload := make([]byte, 8+len(data))
	binary.BigEndian.PutUint16(payload[0:], 40000)
	binary.BigEndian.PutUint16(payload[2:], 5001)
	binary.BigEndian.PutUint16(payload[4:], uint16(len(payload)))
	copy(payload[8:], data)
	return IPv4{Src: src, Dst: dst, TTL: ttl, Proto: ProtoUDP, Payload: payload}
}

// ICMPEcho returns an ICMP echo request with identifier id and 8 bytes of data, TTL 64,
// with correct checksums.
func ICMPEcho(src, dst string, id uint16) []byte {
	m := make([]byte, 8, 16)
	m[0] = 8
	binary.BigEndian.PutUint16(m[4:], id)
	m = append(m, "weftping"...)
	binary.BigEndian.PutUint16(m[2:], RefChecksum(m))
	return IPv4{Src: src, Dst: dst, TTL: 64, Proto: ProtoICMP, Payload: m}.Build()
}
