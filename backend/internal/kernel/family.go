package kernel

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Family is an IP address family, as the kernel numbers it: IPv4 (AF_INET) or IPv6
// (AF_INET6). A Batch works on one family's routes and neighbours; Subscribe and
// ParseChange report the address, route and neighbour changes of the families asked for.
type Family uint8

// The families this package programs.
const (
	IPv4 Family = unix.AF_INET
	IPv6 Family = unix.AF_INET6
)

// FamilyOf returns the family of addr (IPv4 for an IPv4-mapped IPv6 address too, as the
// kernel does not route those as IPv6).
func FamilyOf(addr netip.Addr) Family {
	if addr.Unmap().Is4() {
		return IPv4
	}
	return IPv6
}

func (f Family) String() string {
	switch f {
	case IPv4:
		return "IPv4"
	case IPv6:
		return "IPv6"
	}
	return fmt.Sprintf("Family(%d)", uint8(f))
}

// valid reports whether f is IPv4 or IPv6.
func (f Family) valid() bool { return f == IPv4 || f == IPv6 }

// bits is the length of f's addresses in bits.
func (f Family) bits() int {
	if f == IPv6 {
		return 128
	}
	return 32
}

// has reports whether addr is a valid address of f.
func (f Family) has(addr netip.Addr) bool {
	switch f {
	case IPv4:
		return addr.Is4()
	case IPv6:
		return addr.Is6() && !addr.Is4In6()
	}
	return false
}

// unspecified is f's 0.0.0.0 or ::, the destination of a default route.
func (f Family) unspecified() netip.Addr {
	if f == IPv6 {
		return netip.IPv6Unspecified()
	}
	return netip.IPv4Unspecified()
}

// addr parses an address attribute of f: 4 or 16 bytes; the zero Addr for anything else.
func (f Family) addr(v []byte) netip.Addr {
	switch {
	case f == IPv4 && len(v) == 4:
		return netip.AddrFrom4([4]byte(v))
	case f == IPv6 && len(v) == 16:
		return netip.AddrFrom16([16]byte(v))
	}
	return netip.Addr{}
}

// defaultMetric is the metric the kernel gives a route of f written without one: 0 for
// IPv4, IP6_RT_PRIO_USER (1024) for IPv6.
func (f Family) defaultMetric() int {
	if f == IPv6 {
		return 1024
	}
	return 0
}

// families is a set of Families, for Subscribe and ParseChange.
type families uint8

const (
	hasIPv4 families = 1 << iota
	hasIPv6
)

// familySet makes the set of fs; none means IPv4 only (what this package reported before
// it knew IPv6, and what its IPv4 callers expect). An invalid Family is left out of the
// set and reported.
func familySet(fs []Family) (families, error) {
	if len(fs) == 0 {
		return hasIPv4, nil
	}
	var s families
	var err error
	for _, f := range fs {
		switch f {
		case IPv4:
			s |= hasIPv4
		case IPv6:
			s |= hasIPv6
		default:
			err = fmt.Errorf("address family %d is neither IPv4 nor IPv6", uint8(f))
		}
	}
	return s, err
}

// has reports whether the set holds the family numbered af (AF_INET, AF_INET6).
func (s families) has(af uint8) bool {
	switch Family(af) {
	case IPv4:
		return s&hasIPv4 != 0
	case IPv6:
		return s&hasIPv6 != 0
	}
	return false
}

func (s families) String() string {
	switch s {
	case hasIPv4:
		return "IPv4"
	case hasIPv6:
		return "IPv6"
	case hasIPv4 | hasIPv6:
		return "IPv4 and IPv6"
	}
	return "no"
}
