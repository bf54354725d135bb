package iface

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
)

// link is one interface with its IPv4 addresses, all of them, in kernel order.
type link struct {
	iface net.Interface
	addrs []netip.Addr
}

// route is the part of an IPv4 main-table route that default-route selection needs.
type route struct {
	dst      netip.Prefix // invalid when the kernel gave no destination (a default route)
	index    int          // output interface; 0 for multipath, blackhole, unreachable
	nexthops []int        // output interfaces of a multipath route's next hops
}

// kernel is the read-only view of the network namespace that choose needs. The netlink
// implementation lives in kernel_linux.go; tests use a fake.
type kernel interface {
	// links lists the interfaces in index order, with their IPv4 addresses.
	links() ([]link, error)
	// routeTo returns the output interface and preferred source address (invalid when the
	// kernel gives none) of the route the kernel would use to reach dst.
	routeTo(dst netip.Addr) (index int, src netip.Addr, err error)
	// routes lists the IPv4 routes of the main table, in kernel order.
	routes() ([]route, error)
}

// choose applies flanneld's precedence over the candidates in p, then records which
// interface holds the public IP (see backend.ExternalInterface.TunnelSource). It is pure
// given k.
func choose(k kernel, p parsed, log klog.Logger) (backend.ExternalInterface, error) {
	links, err := k.links()
	if err != nil {
		return backend.ExternalInterface{}, fmt.Errorf("list interfaces: %w", err)
	}
	ext, err := chooseLink(k, links, p, log)
	if err != nil {
		return backend.ExternalInterface{}, err
	}
	if ext.PublicIP == ext.IfaceAddr {
		ext.PublicIPIface = ext.Iface.Name
	} else if l, ok := holding(links, ext.PublicIP); ok {
		ext.PublicIPIface = l.iface.Name
	}
	return ext, nil
}

// chooseLink selects the interface and its address.
func chooseLink(k kernel, links []link, p parsed, log klog.Logger) (backend.ExternalInterface, error) {
	if len(p.ifaces) == 0 && len(p.regexes) == 0 && !p.canReach.IsValid() {
		return chooseDefault(k, links, p, log)
	}

	var tried []error
	try := func(label string, l link, addr netip.Addr, err error) (backend.ExternalInterface, bool) {
		if err == nil {
			var ext backend.ExternalInterface
			if ext, err = finish(label, l, addr, p.publicIP); err == nil {
				return ext, true
			}
		}
		log.Info("Interface candidate gives no usable interface", "reason", err)
		tried = append(tried, err)
		return backend.ExternalInterface{}, false
	}
	for _, s := range p.ifaces {
		l, addr, err := matchIface(links, s)
		if ext, ok := try("--iface "+s, l, addr, err); ok {
			return ext, nil
		}
	}
	for _, re := range p.regexes {
		l, addr, err := matchRegex(links, re)
		if ext, ok := try(fmt.Sprintf("--iface-regex %q", re), l, addr, err); ok {
			return ext, nil
		}
	}
	if p.canReach.IsValid() {
		l, addr, err := matchRoute(k, links, p.canReach)
		if ext, ok := try(fmt.Sprintf("--iface-can-reach %s", p.canReach), l, addr, err); ok {
			return ext, nil
		}
	}
	if len(tried) == 1 {
		return backend.ExternalInterface{}, tried[0]
	}
	return backend.ExternalInterface{}, &NoInterfaceError{Tried: tried}
}

// chooseDefault is the case where no candidate is given: the interface holding --public-ip
// (flanneld passes --public-ip as --iface here), else the default route's interface.
func chooseDefault(k kernel, links []link, p parsed, log klog.Logger) (backend.ExternalInterface, error) {
	if p.publicIP.IsValid() {
		if l, ok := holding(links, p.publicIP); ok {
			return finish("--public-ip "+p.publicIP.String(), l, p.publicIP, p.publicIP)
		}
		log.Info("No interface holds the public IP; using the default route's interface", "publicIP", p.publicIP)
	}
	rs, err := k.routes()
	if err != nil {
		return backend.ExternalInterface{}, fmt.Errorf("list routes: %w", err)
	}
	index, err := pickDefault(rs)
	if err != nil {
		return backend.ExternalInterface{}, err
	}
	l, ok := byIndex(links, index)
	if !ok {
		return backend.ExternalInterface{}, failf(ErrNotFound, "default route: interface index %d is not listed", index)
	}
	return finish("default route", l, netip.Addr{}, p.publicIP)
}

// matchIface resolves one --iface value: an IPv4 address selects the interface holding it,
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

// matchRegex resolves one --iface-regex: the first usable address of any interface that
// matches (interfaces in order, then addresses in order) wins; only if none does, the first
// interface whose name matches.
func matchRegex(links []link, re *regexp.Regexp) (link, netip.Addr, error) {
	for _, l := range links {
		for _, a := range usable(l.addrs) {
			if re.MatchString(a.String()) {
				return l, a, nil
			}
		}
	}
	for _, l := range links {
		if re.MatchString(l.iface.Name) {
			return l, netip.Addr{}, nil
		}
	}
	return link{}, netip.Addr{}, failf(ErrNotFound, "no interface matched --iface-regex %q (interfaces: %s)", re, describe(links))
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

// pickDefault returns the output interface of the first default route that has one (for
// a multipath route, its first next hop's).
func pickDefault(rs []route) (int, error) {
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
		return 0, failf(ErrNotFound, "no default route with an output interface: use --iface")
	}
	return 0, failf(ErrNotFound, "no default route: use --iface")
}

// finish builds the result for the interface a candidate selected. addr is the address the
// candidate fixed, if any; else the interface's first usable one is taken.
func finish(label string, l link, addr, publicIP netip.Addr) (backend.ExternalInterface, error) {
	if !addr.IsValid() {
		u := usable(l.addrs)
		if len(u) == 0 {
			return backend.ExternalInterface{}, failf(ErrUnusable, "%s: interface %s has no IPv4 address", label, l.iface.Name)
		}
		addr = u[0]
	}
	if l.iface.MTU == 0 {
		return backend.ExternalInterface{}, failf(ErrUnusable, "%s: interface %s reports MTU 0", label, l.iface.Name)
	}
	if !publicIP.IsValid() {
		publicIP = addr
	}
	nif := l.iface
	return backend.ExternalInterface{Iface: &nif, IfaceAddr: addr, PublicIP: publicIP}, nil
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

// holding returns the first interface with a (any IPv4 address, as flanneld's
// GetInterfaceByIP).
func holding(links []link, a netip.Addr) (link, bool) {
	for _, l := range links {
		for _, x := range l.addrs {
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

// describe lists interfaces with their usable addresses for an error message.
func describe(links []link) string {
	parts := make([]string, len(links))
	for i, l := range links {
		addrs := usable(l.addrs)
		s := make([]string, len(addrs))
		for j, a := range addrs {
			s[j] = a.String()
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
