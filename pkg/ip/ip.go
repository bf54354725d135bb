// Package ip holds small IPv4 helpers over net/netip used across weft: subnet arithmetic,
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
