package iface

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// matchIface resolves one --iface value: an address selects the interface holding it,
// which then also fixes the address; anything else is an interface name.
func matchIface(links []link, s string) (link, netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		a = a.Unmap()
		if l, ok := holding(links, a); ok {
			return l, a, nil
		}
		return link{}, netip.Addr{}, failf(ErrNotFound, "--iface %s: no interface has this address", s)
	}
	for _, l := range links {
		if l.iface.Name == s {
			return l, netip.Addr{}, nil
		}
	}
	return link{}, netip.Addr{}, failf(ErrNotFound, "--iface %s: no such interface", s)
}

// matchRegex is matchRegexFamilies for an IPv4-only network.
func matchRegex(links []link, re *regexp.Regexp) (link, netip.Addr, error) {
	m, err := matchRegexFamilies(links, re, true, false)
	return m.l, m.a4, err
}

// matchRegexFamilies resolves one --iface-regex for the families the network runs. The
// first usable address of any interface that matches (interfaces in order, then addresses
// in order) wins; only if none does, the first interface whose name matches. In dual stack,
// as flanneld, an interface where the regexp matches both an IPv4 and an IPv6 address comes
// first (both addresses are fixed); then IPv4 addresses, then IPv6 addresses, then names.
func matchRegexFamilies(links []link, re *regexp.Regexp, v4, v6 bool) (pick, error) {
	if v4 && v6 {
		for _, l := range links {
			a4, ok4 := firstMatch(re, usable(l.addrs))
			a6, ok6 := firstMatch(re, global6(l.addrs6))
			if ok4 && ok6 {
				return pick{l: l, a4: a4, a6: a6}, nil
			}
		}
	}
	if v4 {
		for _, l := range links {
			if a, ok := firstMatch(re, usable(l.addrs)); ok {
				return pick{l: l, a4: a}, nil
			}
		}
	}
	if v6 {
		for _, l := range links {
			if a, ok := firstMatch(re, global6(l.addrs6)); ok {
				return pick{l: l, a6: a}, nil
			}
		}
	}
	for _, l := range links {
		if re.MatchString(l.iface.Name) {
			return pick{l: l}, nil
		}
	}
	return pick{}, failf(ErrNotFound, "no interface matched --iface-regex %q (interfaces: %s)", re, describe(links, v4, v6))
}

func firstMatch(re *regexp.Regexp, addrs []netip.Addr) (netip.Addr, bool) {
	for _, a := range addrs {
		if re.MatchString(a.String()) {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// matchRoute resolves --iface-can-reach through the kernel's route lookup.
func matchRoute(k kernel, links []link, dst netip.Addr) (link, netip.Addr, error) {
	index, src, err := k.routeTo(dst)
	if err != nil {
		return link{}, netip.Addr{}, failf(ErrNotFound, "--iface-can-reach %s: no route: %w", dst, err)
	}
	l, ok := byIndex(links, index)
	if !ok {
		return link{}, netip.Addr{}, failf(ErrNotFound, "--iface-can-reach %s: route via interface index %d, which is not listed", dst, index)
	}
	return l, src, nil
}

// pickDefault is pickDefaultRoute for the IPv4 routes.
func pickDefault(rs []route) (int, error) { return pickDefaultRoute(rs, "default route") }

// pickDefaultRoute returns the output interface of the first default route that has one
// (for a multipath route, its first next hop's); label names the route in errors.
func pickDefaultRoute(rs []route, label string) (int, error) {
	sawDefault := false
	for _, r := range rs {
		if r.dst.IsValid() && r.dst.Bits() != 0 {
			continue
		}
		sawDefault = true
		if r.index > 0 {
			return r.index, nil
		}
		if len(r.nexthops) > 0 && r.nexthops[0] > 0 {
			return r.nexthops[0], nil
		}
	}
	if sawDefault {
		return 0, failf(ErrNotFound, "no %s with an output interface: use --iface", label)
	}
	return 0, failf(ErrNotFound, "no %s: use --iface", label)
}

// usable returns the global unicast IPv4 addresses, then the link-local ones, each in the
// given order; flanneld's GetInterfaceIP4Addrs.
func usable(addrs []netip.Addr) []netip.Addr {
	var global, ll []netip.Addr
	for _, a := range addrs {
		switch {
		case !a.Is4():
		case a.IsGlobalUnicast():
			global = append(global, a)
		case a.IsLinkLocalUnicast():
			ll = append(ll, a)
		}
	}
	return append(global, ll...)
}

// global6 returns the global unicast IPv6 addresses (unique local ones included) in the
// given order: flanneld's GetInterfaceIP6Addrs without its link-local fallback.
func global6(addrs []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if isGlobal6(a) {
			out = append(out, a)
		}
	}
	return out
}

func isGlobal6(a netip.Addr) bool {
	return a.Is6() && !a.Is4In6() && a.IsGlobalUnicast()
}

// linkLocalNote explains, for an interface without a global IPv6 address, that its
// link-local ones do not count.
func linkLocalNote(addrs []netip.Addr) string {
	var ll []string
	for _, a := range addrs {
		if a.Is6() && a.IsLinkLocalUnicast() {
			ll = append(ll, a.String())
		}
	}
	if len(ll) == 0 {
		return ""
	}
	return " (only link-local " + strings.Join(ll, " ") + ", which cannot be a tunnel endpoint)"
}

// holding returns the first interface with a (any address of its family, as flanneld's
// GetInterfaceByIP and GetInterfaceByIP6).
func holding(links []link, a netip.Addr) (link, bool) {
	for _, l := range links {
		addrs := l.addrs
		if a.Is6() {
			addrs = l.addrs6
		}
		for _, x := range addrs {
			if x == a {
				return l, true
			}
		}
	}
	return link{}, false
}

func byIndex(links []link, index int) (link, bool) {
	for _, l := range links {
		if l.iface.Index == index {
			return l, true
		}
	}
	return link{}, false
}

// describe lists interfaces with their usable addresses of the families the network runs,
// for an error message.
func describe(links []link, v4, v6 bool) string {
	parts := make([]string, len(links))
	for i, l := range links {
		var s []string
		if v4 {
			for _, a := range usable(l.addrs) {
				s = append(s, a.String())
			}
		}
		if v6 {
			for _, a := range global6(l.addrs6) {
				s = append(s, a.String())
			}
		}
		parts[i] = fmt.Sprintf("%s [%s]", l.iface.Name, strings.Join(s, " "))
	}
	return strings.Join(parts, ", ")
}

// kindError is an error whose text is its own message and which also matches a sentinel
// kind (ErrInvalid, ErrNotFound, ErrUnusable) under errors.Is.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// failf formats an error that errors.Is reports as kind; %w in format wraps a cause too.
func failf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}
