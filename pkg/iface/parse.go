package iface

import (
	"errors"
	"net/netip"
	"regexp"
)

// parsed is Options after validation.
type parsed struct {
	v4, v6     bool // the families the network runs; at least one is true
	ifaces     []string
	regexes    []*regexp.Regexp
	canReach   netip.Addr // invalid when not given
	publicIP   netip.Addr // invalid when not given
	publicIPv6 netip.Addr // invalid when not given
}

func parse(o Options) (parsed, error) {
	p := parsed{v4: o.IPv4 || !o.IPv6, v6: o.IPv6}
	for _, s := range o.Ifaces {
		if s == "" {
			return parsed{}, failf(ErrInvalid, "--iface %q: empty value", s)
		}
		if a, err := netip.ParseAddr(s); err == nil {
			if err := p.checkIfaceAddr(a); err != nil {
				return parsed{}, failf(ErrInvalid, "--iface %s: %s", s, err)
			}
		}
		p.ifaces = append(p.ifaces, s)
	}
	for _, s := range o.Regexes {
		if s == "" {
			return parsed{}, failf(ErrInvalid, "--iface-regex %q: empty value", s)
		}
		re, err := regexp.Compile(s)
		if err != nil {
			return parsed{}, failf(ErrInvalid, "--iface-regex %q: invalid regexp: %w", s, err)
		}
		p.regexes = append(p.regexes, re)
	}
	var err error
	if o.CanReach != "" {
		if p.canReach, err = p.parseUnicast(o.CanReach); err != nil {
			return parsed{}, failf(ErrInvalid, "--iface-can-reach %q: %s", o.CanReach, err)
		}
	}
	if o.PublicIP != "" {
		if p.publicIP, err = parseIPv4(o.PublicIP); err != nil {
			return parsed{}, failf(ErrInvalid, "--public-ip %q: %s", o.PublicIP, err)
		}
	}
	if o.PublicIPv6 != "" {
		if p.publicIPv6, err = parseIPv6(o.PublicIPv6); err != nil {
			return parsed{}, failf(ErrInvalid, "--public-ipv6 %q: %s", o.PublicIPv6, err)
		}
	}
	return p, nil
}

// checkIfaceAddr checks an --iface address: of a family the network runs and, for IPv6,
// one that can be a tunnel endpoint. Any IPv4 address is accepted, as flanneld does.
func (p parsed) checkIfaceAddr(a netip.Addr) error {
	switch {
	case a.Unmap().Is4():
		if !p.v4 {
			return errors.New("not an IPv6 address (the network runs IPv6 only)")
		}
	case !p.v6:
		return errors.New("not an IPv4 address")
	case a.IsLinkLocalUnicast():
		return errors.New("a link-local IPv6 address cannot be a tunnel endpoint")
	case a.Zone() != "":
		return errors.New("an IPv6 zone belongs to link-local addresses only")
	}
	return nil
}

// parseUnicast parses an address of a family the network runs: parseIPv4 or parseIPv6.
func (p parsed) parseUnicast(s string) (netip.Addr, error) {
	switch {
	case !p.v6:
		return parseIPv4(s)
	case !p.v4:
		return parseIPv6(s)
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return netip.Addr{}, errors.New("not an IP address")
	case a.Unmap().Is4():
		return parseIPv4(s)
	default:
		return parseIPv6(s)
	}
}

// parseIPv4 accepts a unicast IPv4 address (an IPv4-mapped IPv6 form is unmapped).
func parseIPv4(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Unmap().Is4() {
		return netip.Addr{}, errors.New("not an IPv4 address")
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, errors.New("not a unicast IPv4 address")
	}
	return a, nil
}

// parseIPv6 accepts a global unicast IPv6 address (unique local ones included): one a
// tunnel endpoint can use. IPv4-mapped, link-local, zoned, loopback, multicast and
// unspecified addresses are refused.
func parseIPv6(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil || a.Is4():
		return netip.Addr{}, errors.New("not an IPv6 address")
	case a.Is4In6():
		return netip.Addr{}, errors.New("an IPv4-mapped address, not an IPv6 one")
	case a.IsLinkLocalUnicast():
		return netip.Addr{}, errors.New("a link-local address, not a routable one")
	case a.Zone() != "":
		return netip.Addr{}, errors.New("an IPv6 zone belongs to link-local addresses only")
	case !a.IsGlobalUnicast():
		return netip.Addr{}, errors.New("not a global unicast IPv6 address")
	}
	return a, nil
}
