package iface

import (
	"fmt"
	"net"
	"net/netip"

	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend"
)

// link is one interface with its addresses, all of them, in kernel order, each family apart.
type link struct {
	iface  net.Interface
	addrs  []netip.Addr // IPv4
	addrs6 []netip.Addr // IPv6 (without temporary and DAD-failed ones)
}

// family is an address family of routes.
type family int

const (
	ipv4 family = 4
	ipv6 family = 6
)

// route is the part of a main-table route that default-route selection needs.
type route struct {
	dst      netip.Prefix // invalid when the kernel gave no destination (a default route)
	index    int          // output interface; 0 for multipath, blackhole, unreachable
	nexthops []int        // output interfaces of a multipath route's next hops
}

// kernel is the read-only view of the network namespace that choose needs. The netlink
// implementation lives in kernel_linux.go; tests use a fake.
type kernel interface {
	// links lists the interfaces in index order, with their IPv4 and IPv6 addresses.
	links() ([]link, error)
	// routeTo returns the output interface and preferred source address (invalid when the
	// kernel gives none) of the route the kernel would use to reach dst (either family).
	routeTo(dst netip.Addr) (index int, src netip.Addr, err error)
	// routes lists the routes of one family in the main table, in kernel order.
	routes(fam family) ([]route, error)
}

// pick is what a candidate selected: an interface, and the addresses the candidate fixed
// (invalid where it fixed none; finish then takes the interface's first).
type pick struct {
	l      link
	a4, a6 netip.Addr
}

// choose applies flanneld's precedence over the candidates in p, then records which
// interface holds each public IP (see backend.ExternalInterface.TunnelSource). It is pure
// given k.
func choose(k kernel, p parsed, log klog.Logger) (backend.ExternalInterface, error) {
	if !p.v4 && p.publicIP.IsValid() {
		log.Info("Ignoring --public-ip: the network runs IPv6 only", "publicIP", p.publicIP)
		p.publicIP = netip.Addr{}
	}
	if !p.v6 && p.publicIPv6.IsValid() {
		log.Info("Ignoring --public-ipv6: the network runs IPv4 only", "publicIPv6", p.publicIPv6)
		p.publicIPv6 = netip.Addr{}
	}
	links, err := k.links()
	if err != nil {
		return backend.ExternalInterface{}, fmt.Errorf("list interfaces: %w", err)
	}
	ext, err := chooseLink(k, links, p, log)
	if err != nil {
		return backend.ExternalInterface{}, err
	}
	if p.v4 {
		ext.PublicIPIface = holderName(links, ext, ext.PublicIP, ext.IfaceAddr)
	}
	if p.v6 {
		ext.PublicIPv6Iface = holderName(links, ext, ext.PublicIPv6, ext.IfaceAddrV6)
	}
	return ext, nil
}

// holderName names the interface holding public: the chosen one when public is its
// address ifaceAddr, else whichever holds it, else "".
func holderName(links []link, ext backend.ExternalInterface, public, ifaceAddr netip.Addr) string {
	if public == ifaceAddr {
		return ext.Iface.Name
	}
	if l, ok := holding(links, public); ok {
		return l.iface.Name
	}
	return ""
}

// chooseLink selects the interface and its addresses.
func chooseLink(k kernel, links []link, p parsed, log klog.Logger) (backend.ExternalInterface, error) {
	if len(p.ifaces) == 0 && len(p.regexes) == 0 && !p.canReach.IsValid() {
		return chooseDefault(k, links, p, log)
	}

	var tried []error
	try := func(label string, m pick, err error) (backend.ExternalInterface, bool) {
		if err == nil {
			var ext backend.ExternalInterface
			if ext, err = finish(label, m, p); err == nil {
				return ext, true
			}
		}
		log.Info("Interface candidate gives no usable interface", "reason", err)
		tried = append(tried, err)
		return backend.ExternalInterface{}, false
	}
	for _, s := range p.ifaces {
		l, addr, err := matchIface(links, s)
		if ext, ok := try("--iface "+s, p.fixed(l, addr), err); ok {
			return ext, nil
		}
	}
	for _, re := range p.regexes {
		m, err := matchRegexFamilies(links, re, p.v4, p.v6)
		if ext, ok := try(fmt.Sprintf("--iface-regex %q", re), m, err); ok {
			return ext, nil
		}
	}
	if p.canReach.IsValid() {
		l, src, err := matchRoute(k, links, p.canReach)
		if ext, ok := try(fmt.Sprintf("--iface-can-reach %s", p.canReach), p.fixed(l, src), err); ok {
			return ext, nil
		}
	}
	if len(tried) == 1 {
		return backend.ExternalInterface{}, tried[0]
	}
	return backend.ExternalInterface{}, &NoInterfaceError{Tried: tried}
}

// fixed makes the pick of a candidate that selected l through addr (invalid if none): addr
// is the interface address of its family if the network runs that family and, for IPv6,
// if it is global unicast (a kernel route's source may be link-local).
func (p parsed) fixed(l link, addr netip.Addr) pick {
	m := pick{l: l}
	switch {
	case !addr.IsValid():
	case addr.Is4():
		if p.v4 {
			m.a4 = addr
		}
	case p.v6 && isGlobal6(addr):
		m.a6 = addr
	}
	return m
}

// chooseDefault is the case where no candidate is given: the interface holding --public-ip,
// else the one holding --public-ipv6 (flanneld passes the public IP as --iface here), else
// the default route's interface.
func chooseDefault(k kernel, links []link, p parsed, log klog.Logger) (backend.ExternalInterface, error) {
	for _, pub := range []struct {
		flag string
		a    netip.Addr
	}{{"--public-ip", p.publicIP}, {"--public-ipv6", p.publicIPv6}} {
		if !pub.a.IsValid() {
			continue
		}
		if l, ok := holding(links, pub.a); ok {
			return finish(pub.flag+" "+pub.a.String(), p.fixed(l, pub.a), p)
		}
		log.Info("No interface holds the public IP", "flag", pub.flag, "publicIP", pub.a)
	}
	fam, label := ipv4, "default route"
	if !p.v4 {
		fam, label = ipv6, "IPv6 default route"
	}
	l, err := defaultLink(k, links, fam, label)
	if err != nil {
		return backend.ExternalInterface{}, err
	}
	if p.v4 && p.v6 {
		// As flanneld: both families leave through one interface.
		l6, err := defaultLink(k, links, ipv6, "IPv6 default route")
		switch {
		case err == nil && l6.iface.Index != l.iface.Index:
			return backend.ExternalInterface{}, failf(ErrNotFound,
				"default route: the IPv6 default route uses interface %s, the IPv4 one %s; dual stack needs one interface: use --iface",
				l6.iface.Name, l.iface.Name)
		case err != nil:
			log.Info("No usable IPv6 default route; using the IPv4 default route's interface for IPv6 too", "iface", l.iface.Name, "reason", err)
		}
	}
	return finish(label, pick{l: l}, p)
}

// defaultLink returns the interface of the first default route of fam.
func defaultLink(k kernel, links []link, fam family, label string) (link, error) {
	rs, err := k.routes(fam)
	if err != nil {
		return link{}, fmt.Errorf("list IPv%d routes: %w", fam, err)
	}
	index, err := pickDefaultRoute(rs, label)
	if err != nil {
		return link{}, err
	}
	l, ok := byIndex(links, index)
	if !ok {
		return link{}, failf(ErrNotFound, "%s: interface index %d is not listed", label, index)
	}
	return l, nil
}

// finish builds the result for the interface a candidate selected, with an address of
// every family the network runs: the one the candidate fixed, else the interface's first
// usable one. The public addresses are the options', else the interface addresses.
func finish(label string, m pick, p parsed) (backend.ExternalInterface, error) {
	var ext backend.ExternalInterface
	if p.v4 {
		if !m.a4.IsValid() {
			u := usable(m.l.addrs)
			if len(u) == 0 {
				return ext, failf(ErrUnusable, "%s: interface %s has no IPv4 address", label, m.l.iface.Name)
			}
			m.a4 = u[0]
		}
		ext.IfaceAddr, ext.PublicIP = m.a4, p.publicIP
		if !ext.PublicIP.IsValid() {
			ext.PublicIP = m.a4
		}
	}
	if p.v6 {
		if !m.a6.IsValid() {
			g := global6(m.l.addrs6)
			if len(g) == 0 {
				return backend.ExternalInterface{}, failf(ErrUnusable, "%s: interface %s has no global IPv6 address%s",
					label, m.l.iface.Name, linkLocalNote(m.l.addrs6))
			}
			m.a6 = g[0]
		}
		ext.IfaceAddrV6, ext.PublicIPv6 = m.a6, p.publicIPv6
		if !ext.PublicIPv6.IsValid() {
			ext.PublicIPv6 = m.a6
		}
	}
	if m.l.iface.MTU == 0 {
		return backend.ExternalInterface{}, failf(ErrUnusable, "%s: interface %s reports MTU 0", label, m.l.iface.Name)
	}
	nif := m.l.iface
	ext.Iface = &nif
	return ext, nil
}
