package hostgw

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/ip"
)

// table6 is the IPv6 main routing table for one pass, what kernel.Batch is for IPv4 (which
// handles IPv4 only): it is listed once, on first need, through the Handle's netlink
// socket, and kept up to date with the pass's own writes. It writes only what differs
// from the listing. It is used under the network's mutex, never after the Handle is
// closed (a closed netlink handle would act in the caller's namespace).
type table6 struct {
	h      *kernel.Handle
	routes map[netip.Prefix][]netlink.Route // main-table IPv6 routes by destination; nil until read
}

func newTable6(h *kernel.Handle) *table6 { return &table6{h: h} }

func (t *table6) all() (map[netip.Prefix][]netlink.Route, error) {
	if t.routes != nil {
		return t.routes, nil
	}
	rs, err := kernel.RetryDump(func() ([]netlink.Route, error) {
		return t.h.Netlink().RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list IPv6 routes: %w", err)
	}
	m := make(map[netip.Prefix][]netlink.Route, len(rs))
	for _, r := range rs {
		if dst, ok := ip.FromIPNet(r.Dst); ok && dst.Addr().Is6() {
			m[dst] = append(m[dst], r)
		}
	}
	t.routes = m
	return m, nil
}

func dst6(r *netlink.Route) (netip.Prefix, error) {
	dst, ok := ip.FromIPNet(r.Dst)
	if !ok || !dst.Addr().Is6() {
		return netip.Prefix{}, fmt.Errorf("route: destination %v is not an IPv6 network", r.Dst)
	}
	if r.Table != 0 && r.Table != unix.RT_TABLE_MAIN {
		return netip.Prefix{}, fmt.Errorf("route to %s: host-gw handles the main table only, not table %d", dst, r.Table)
	}
	return dst, nil
}

// HasRoute reports whether want is in place, as kernel.RouteMatches decides.
func (t *table6) HasRoute(want *netlink.Route) (bool, error) {
	dst, err := dst6(want)
	if err != nil {
		return false, err
	}
	all, err := t.all()
	if err != nil {
		return false, err
	}
	return hasMatch(all[dst], want), nil
}

func hasMatch(have []netlink.Route, want *netlink.Route) bool {
	for i := range have {
		if kernel.RouteMatches(want, &have[i]) {
			return true
		}
	}
	return false
}

// EnsureRoute makes r present: nothing is written when it is there; a route to the same
// destination with the same metric is replaced; else r is created exclusively.
func (t *table6) EnsureRoute(r *netlink.Route) error {
	dst, err := dst6(r)
	if err != nil {
		return fmt.Errorf("ensure %w", err)
	}
	all, err := t.all()
	if err != nil {
		return err
	}
	have := all[dst]
	if hasMatch(have, r) {
		return nil
	}
	sameMetric := false
	for _, h := range have {
		sameMetric = sameMetric || h.Priority == r.Priority
	}
	err = unix.EEXIST
	if !sameMetric {
		err = t.h.Netlink().RouteAdd(r)
	}
	if errors.Is(err, unix.EEXIST) {
		err = t.h.Netlink().RouteReplace(r)
	}
	if err != nil {
		return fmt.Errorf("write route %s via %s dev #%d: %w", dst, r.Gw, r.LinkIndex, err)
	}
	kept := have[:0:0]
	for _, h := range have {
		if h.Priority != r.Priority {
			kept = append(kept, h)
		}
	}
	w := *r
	w.Table, w.Type, w.Protocol = unix.RT_TABLE_MAIN, unix.RTN_UNICAST, unix.RTPROT_BOOT
	all[dst] = append(kept, w)
	return nil
}

// maxRoutesPerDst bounds DeleteRoute's loop: routes to one destination differ by metric or
// link, and a node has a handful at most.
const maxRoutesPerDst = 64

// DeleteRoute removes the main-table routes to dst through linkIndex (any link when 0).
// A missing route is not an error.
func (t *table6) DeleteRoute(dst netip.Prefix, linkIndex int) error {
	if !dst.Addr().Is6() {
		return fmt.Errorf("delete route: destination %v is not an IPv6 network", dst)
	}
	del := &netlink.Route{Dst: ip.IPNet(dst.Masked()), LinkIndex: linkIndex, Table: unix.RT_TABLE_MAIN}
	for range maxRoutesPerDst {
		err := t.h.Netlink().RouteDel(del)
		if gone(err) {
			if t.routes != nil {
				kept := t.routes[dst][:0:0]
				for _, r := range t.routes[dst] {
					if linkIndex != 0 && r.LinkIndex != linkIndex {
						kept = append(kept, r)
					}
				}
				t.routes[dst] = kept
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("delete route %s dev #%d: %w", dst, linkIndex, err)
		}
	}
	return fmt.Errorf("delete routes to %s dev #%d: still there after %d deletions", dst, linkIndex, maxRoutesPerDst)
}

func gone(err error) bool {
	return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EADDRNOTAVAIL)
}

// listed is r as kernel.ListedRoute, for staleRoute.
func listed(r *netlink.Route) kernel.ListedRoute {
	dst, _ := ip.FromIPNet(r.Dst)
	gw, _ := ip.FromNetIP(r.Gw)
	return kernel.ListedRoute{Dst: dst, Gw: gw, LinkIndex: r.LinkIndex, Priority: r.Priority, Type: r.Type,
		Protocol: r.Protocol, Onlink: r.Flags&unix.RTNH_F_ONLINK != 0, Multipath: len(r.MultiPath) > 0}
}

// SweepRoutes deletes the main-table IPv6 routes through linkIndex (any when 0) for which
// stale reports true, each exactly (destination, gateway, link and metric), and returns
// those it deleted, as kernel.Batch.SweepRoutes does for IPv4.
func (t *table6) SweepRoutes(linkIndex int, stale func(kernel.ListedRoute) bool) ([]kernel.ListedRoute, error) {
	all, err := t.all()
	if err != nil {
		return nil, err
	}
	var deleted []kernel.ListedRoute
	var errs []error
	for dst, have := range all {
		kept := have[:0:0]
		for _, r := range have {
			l := listed(&r)
			if (linkIndex != 0 && r.LinkIndex != linkIndex) || !stale(l) {
				kept = append(kept, r)
				continue
			}
			del := &netlink.Route{Dst: r.Dst, Gw: r.Gw, LinkIndex: r.LinkIndex, Priority: r.Priority,
				Table: unix.RT_TABLE_MAIN, Protocol: r.Protocol, Type: r.Type}
			if err := t.h.Netlink().RouteDel(del); err != nil && !gone(err) {
				kept = append(kept, r)
				errs = append(errs, fmt.Errorf("delete route %s via %s dev #%d: %w", dst, r.Gw, r.LinkIndex, err))
				continue
			}
			deleted = append(deleted, l)
		}
		all[dst] = kept
	}
	return deleted, errors.Join(errs...)
}

// directlyConnected6 reports whether the kernel reaches the IPv6 address addr without a
// gateway through the link linkIndex; an address of this host is not directly connected.
// (kernel.Handle.DirectlyConnected answers for IPv4 only.)
func directlyConnected6(h *kernel.Handle, addr netip.Addr, linkIndex int) (bool, error) {
	rs, err := h.Netlink().RouteGet(net.IP(addr.AsSlice()))
	if err != nil {
		return false, fmt.Errorf("route get %s: %w", addr, err)
	}
	for _, r := range rs {
		if r.Type == unix.RTN_LOCAL {
			return false, nil
		}
		return r.Gw == nil && r.LinkIndex == linkIndex, nil
	}
	return false, nil
}
