// Package ip holds small address helpers over net/netip used across weft: subnet arithmetic
// (for both families through U128),
// conversions to and from uint32, and the addresses flannel derives from a subnet.
//
// It owns no state and does no I/O.
package ip

import (
	"fmt"
	"net"
	"net/netip"
)

// ToUint32 returns an IPv4 address as a big-endian integer. It panics on IPv6, which is a
// programming error: callers check Is4 first.
func ToUint32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// FromUint32 is the inverse of ToUint32.
func FromUint32(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// SubnetSize returns how many addresses an IPv4 prefix of the given length spans.
func SubnetSize(bits int) uint32 {
	if bits <= 0 {
		return 0 // 2^32 does not fit; callers never ask for /0 subnets
	}
	return 1 << (32 - bits)
}

// NextSubnet returns the subnet of the same length that follows p, and false when p is the
// last one of the address space.
func NextSubnet(p netip.Prefix) (netip.Prefix, bool) {
	v := ToUint32(p.Addr())
	step := SubnetSize(p.Bits())
	if v+step < v || step == 0 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(FromUint32(v+step), p.Bits()), true
}

// IsNetworkAddress reports whether p is written with its host bits zero (10.244.0.0/16, not
// 10.244.0.1/16).
func IsNetworkAddress(p netip.Prefix) bool {
	return p.IsValid() && p.Masked() == p
}

// Contains reports whether the whole of inner lies inside outer.
func Contains(outer, inner netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

// GatewayAddr returns the first host address of a subnet (10.244.5.1 for 10.244.5.0/24),
// the address flannel writes into FLANNEL_SUBNET and the pod bridge holds.
func GatewayAddr(p netip.Prefix) netip.Addr {
	return p.Masked().Addr().Next()
}

// ParseNetwork parses a CIDR that must be an IPv4 network address, naming what is wrong.
func ParseNetwork(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR network", s)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 network", s)
	}
	if !IsNetworkAddress(p) {
		return netip.Prefix{}, fmt.Errorf("%q is not a network address (did you mean %s?)", s, p.Masked())
	}
	return p, nil
}

// IPNet converts a prefix to the net.IPNet that netlink and older APIs take.
func IPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// FromIPNet converts a net.IPNet to a prefix; ok is false for a nil or malformed value.
func FromIPNet(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// FromNetIP converts a net.IP to an unmapped netip.Addr; ok is false for nil.
func FromNetIP(i net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(i)
	return a.Unmap(), ok
}

// U128 is an address of either family as a 128-bit unsigned integer (an IPv4 address in
// the low 32 bits), for subnet arithmetic that works the same for both families.
type U128 struct{ Hi, Lo uint64 }

// ToU128 returns a as a U128.
func ToU128(a netip.Addr) U128 {
	if a.Is4() {
		return U128{Lo: uint64(ToUint32(a))}
	}
	b := a.As16()
	var u U128
	for i := range 8 {
		u.Hi = u.Hi<<8 | uint64(b[i])
		u.Lo = u.Lo<<8 | uint64(b[8+i])
	}
	return u
}

// FromU128 is the inverse of ToU128, for an address of bitLen bits (32 or 128).
func FromU128(u U128, bitLen int) netip.Addr {
	if bitLen == 32 {
		return FromUint32(uint32(u.Lo))
	}
	var b [16]byte
	for i := range 8 {
		b[7-i] = byte(u.Hi >> (8 * i))
		b[15-i] = byte(u.Lo >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

// Cmp compares u and v.
func (u U128) Cmp(v U128) int {
	switch {
	case u.Hi != v.Hi:
		if u.Hi < v.Hi {
			return -1
		}
		return 1
	case u.Lo < v.Lo:
		return -1
	case u.Lo > v.Lo:
		return 1
	}
	return 0
}

// Add returns u+v and whether the sum overflowed 128 bits.
func (u U128) Add(v U128) (U128, bool) {
	lo := u.Lo + v.Lo
	carry := uint64(0)
	if lo < u.Lo {
		carry = 1
	}
	hi := u.Hi + v.Hi + carry
	return U128{hi, lo}, hi < u.Hi || (carry == 1 && hi == u.Hi)
}

// Sub returns u-v (wrapping).
func (u U128) Sub(v U128) U128 {
	lo := u.Lo - v.Lo
	borrow := uint64(0)
	if u.Lo < v.Lo {
		borrow = 1
	}
	return U128{u.Hi - v.Hi - borrow, lo}
}

// Size128 returns how many addresses a prefix of length bits spans in an address space of
// bitLen bits (2^(bitLen-bits)); it saturates to 2^128-1 for a /0 of IPv6.
func Size128(bits, bitLen int) U128 {
	n := bitLen - bits
	switch {
	case n >= 128:
		return U128{^uint64(0), ^uint64(0)}
	case n >= 64:
		return U128{Hi: 1 << (n - 64)}
	}
	return U128{Lo: 1 << n}
}

// LastAddr returns the last address of p (10.244.5.255 for 10.244.5.0/24).
func LastAddr(p netip.Prefix) netip.Addr {
	p = p.Masked()
	bl := p.Addr().BitLen()
	return FromU128(ToU128(p.Addr()).Or(HostMask(p.Bits(), bl)), bl)
}

// Or returns the bitwise or of u and v.
func (u U128) Or(v U128) U128 { return U128{u.Hi | v.Hi, u.Lo | v.Lo} }

// HostMask returns the host bits of a prefix of length bits in an address space of bitLen
// bits, set: 2^(bitLen-bits)-1.
func HostMask(bits, bitLen int) U128 {
	n := bitLen - bits
	switch {
	case n >= 128:
		return U128{^uint64(0), ^uint64(0)}
	case n >= 64:
		return U128{Hi: 1<<(n-64) - 1, Lo: ^uint64(0)}
	}
	return U128{Lo: 1<<n - 1}
}
