package vxlan

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

// batch6 is kernel.Batch for IPv6 (the kernel package handles IPv4 only): the routes,
// neighbours and FDB entries of flannel-v6.<VNI>, checked against one dump of each kind
// per pass and written only where they differ. It goes through the Handle's netlink
// socket, so it acts in the Handle's namespace from any thread. Each table is dumped on
// first use and then kept up to date with the batch's own writes; the next pass, with a
// new batch, sees everyone else's. It is not safe for concurrent use.
type batch6 struct {
	h      *kernel.Handle
	routes map[netip.Prefix][]netlink.Route     // main-table IPv6 routes by destination; nil until needed
	neighs map[int]map[netip.Addr]netlink.Neigh // IPv6 neighbours per link, by address
	fdb    map[int]map[string][]netlink.Neigh   // forwarding entries per link, by MAC
}

func newBatch6(h *kernel.Handle) *batch6 {
	return &batch6{h: h, neighs: map[int]map[netip.Addr]netlink.Neigh{}, fdb: map[int]map[string][]netlink.Neigh{}}
}

// gone reports whether a delete failed only because the entry is not there.
func gone(err error) bool {
	return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV)
}

func (b *batch6) allRoutes() (map[netip.Prefix][]netlink.Route, error) {
	if b.routes != nil {
		return b.routes, nil
	}
	rs, err := kernel.RetryDump(func() ([]netlink.Route, error) {
		return b.h.Netlink().RouteListFiltered(unix.AF_INET6, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list IPv6 routes: %w", err)
	}
	b.routes = map[netip.Prefix][]netlink.Route{}
	for _, r := range rs {
		dst := netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		if p, ok := ip.FromIPNet(r.Dst); ok {
			dst = p
		}
		b.routes[dst] = append(b.routes[dst], r)
	}
	return b.routes, nil
}

func routeDst6(r *netlink.Route) (netip.Prefix, error) {
	dst, ok := ip.FromIPNet(r.Dst)
	if !ok || !dst.Addr().Is6() {
		return netip.Prefix{}, fmt.Errorf("route: destination %v is not an IPv6 network", r.Dst)
	}
	return dst, nil
}

// HasRoute reports whether want is in place, as kernel.RouteMatches decides.
func (b *batch6) HasRoute(want *netlink.Route) (bool, error) {
	dst, err := routeDst6(want)
	if err != nil {
		return false, err
	}
	all, err := b.allRoutes()
	if err != nil {
		return false, err
	}
	for i := range all[dst] {
		if kernel.RouteMatches(want, &all[dst][i]) {
			return true, nil
		}
	}
	return false, nil
}

// EnsureRoute makes r present: nothing is written when it is; a route to the same
// destination with the same metric is replaced.
func (b *batch6) EnsureRoute(r *netlink.Route) error {
	ok, err := b.HasRoute(r)
	if err != nil || ok {
		return err
	}
	dst, _ := routeDst6(r)
	err = b.h.Netlink().RouteReplace(r)
	if errors.Is(err, unix.EINVAL) {
		// The kernel refuses an onlink gateway that an existing route resolves through
		// another device ("device mismatch"): the route being replaced itself, when
		// someone moved it. Delete the routes to dst with r's metric, then add.
		var errs []error
		for _, h := range b.routes[dst] {
			if h.Priority == r.Priority {
				if err := b.h.Netlink().RouteDel(&h); err != nil && !gone(err) {
					errs = append(errs, err)
				}
			}
		}
		err = errors.Join(append(errs, b.h.Netlink().RouteAdd(r))...)
	}
	if err != nil {
		return fmt.Errorf("replace route %s via %s dev #%d: %w", dst, r.Gw, r.LinkIndex, err)
	}
	var kept []netlink.Route
	for _, h := range b.routes[dst] {
		if h.Priority != r.Priority {
			kept = append(kept, h)
		}
	}
	w := *r
	w.Table, w.Type = unix.RT_TABLE_MAIN, unix.RTN_UNICAST
	b.routes[dst] = append(kept, w)
	return nil
}

// DeleteRoute removes the main-table routes to dst whose output link is linkIndex (any
// link when 0).
func (b *batch6) DeleteRoute(dst netip.Prefix, linkIndex int) error {
	all, err := b.allRoutes()
	if err != nil {
		return err
	}
	var kept []netlink.Route
	var errs []error
	for _, r := range all[dst] {
		if linkIndex != 0 && r.LinkIndex != linkIndex {
			kept = append(kept, r)
			continue
		}
		if err := b.h.Netlink().RouteDel(&r); err != nil && !gone(err) {
			kept = append(kept, r)
			errs = append(errs, fmt.Errorf("delete route %s dev #%d: %w", dst, r.LinkIndex, err))
		}
	}
	all[dst] = kept
	return errors.Join(errs...)
}

// SweepRoutes deletes the main-table IPv6 routes on linkIndex (every link when 0) that
// stale picks, each exactly, and returns them.
func (b *batch6) SweepRoutes(linkIndex int, stale func(kernel.ListedRoute) bool) ([]kernel.ListedRoute, error) {
	all, err := b.allRoutes()
	if err != nil {
		return nil, err
	}
	var deleted []kernel.ListedRoute
	var errs []error
	for dst, have := range all {
		var kept []netlink.Route
		for _, r := range have {
			l := kernel.ListedRoute{Dst: dst, LinkIndex: r.LinkIndex, Priority: r.Priority, Type: r.Type,
				Protocol: r.Protocol, Onlink: r.Flags&unix.RTNH_F_ONLINK != 0, Multipath: len(r.MultiPath) > 0}
			l.Gw, _ = ip.FromNetIP(r.Gw)
			if (linkIndex != 0 && r.LinkIndex != linkIndex) || !stale(l) {
				kept = append(kept, r)
				continue
			}
			if err := b.h.Netlink().RouteDel(&r); err != nil && !gone(err) {
				kept = append(kept, r)
				errs = append(errs, fmt.Errorf("delete route %s dev #%d: %w", dst, r.LinkIndex, err))
				continue
			}
			deleted = append(deleted, l)
		}
		all[dst] = kept
	}
	return deleted, errors.Join(errs...)
}

func (b *batch6) neighsOn(link int) (map[netip.Addr]netlink.Neigh, error) {
	if m, ok := b.neighs[link]; ok {
		return m, nil
	}
	ns, err := kernel.RetryDump(func() ([]netlink.Neigh, error) { return b.h.Netlink().NeighList(link, unix.AF_INET6) })
	if err != nil {
		return nil, fmt.Errorf("list IPv6 neighbours on link #%d: %w", link, err)
	}
	m := map[netip.Addr]netlink.Neigh{}
	for _, n := range ns {
		if a, ok := ip.FromNetIP(n.IP); ok {
			m[a] = n
		}
	}
	b.neighs[link] = m
	return m, nil
}

func permanentNeigh6(link int, addr netip.Addr, mac net.HardwareAddr) *netlink.Neigh {
	return &netlink.Neigh{LinkIndex: link, Family: unix.AF_INET6, State: netlink.NUD_PERMANENT,
		Type: unix.RTN_UNICAST, IP: net.IP(addr.AsSlice()), HardwareAddr: mac}
}

// HasNeigh reports whether the permanent neighbour addr -> mac is on linkIndex.
func (b *batch6) HasNeigh(linkIndex int, addr netip.Addr, mac net.HardwareAddr) (bool, error) {
	m, err := b.neighsOn(linkIndex)
	if err != nil {
		return false, err
	}
	n, ok := m[addr]
	return ok && equalMAC(n.HardwareAddr, mac) && n.State&netlink.NUD_PERMANENT != 0, nil
}

// EnsureNeigh makes the permanent neighbour addr -> mac on linkIndex (ip -6 neigh
// replace … nud permanent) unless it is there.
func (b *batch6) EnsureNeigh(linkIndex int, addr netip.Addr, mac net.HardwareAddr) error {
	if !addr.Is6() {
		return fmt.Errorf("ensure neighbour: %s is not an IPv6 address", addr)
	}
	if ok, err := b.HasNeigh(linkIndex, addr, mac); err != nil || ok {
		return err
	}
	n := permanentNeigh6(linkIndex, addr, mac)
	if err := b.h.Netlink().NeighSet(n); err != nil {
		return fmt.Errorf("set neighbour %s lladdr %s on link #%d: %w", addr, mac, linkIndex, err)
	}
	b.neighs[linkIndex][addr] = *n
	return nil
}

// DeleteNeigh removes the IPv6 neighbour addr on linkIndex; a missing one is fine.
func (b *batch6) DeleteNeigh(linkIndex int, addr netip.Addr) error {
	n := &netlink.Neigh{LinkIndex: linkIndex, Family: unix.AF_INET6, IP: net.IP(addr.AsSlice())}
	if err := b.h.Netlink().NeighDel(n); err != nil && !gone(err) {
		return fmt.Errorf("delete neighbour %s on link #%d: %w", addr, linkIndex, err)
	}
	if m, ok := b.neighs[linkIndex]; ok {
		delete(m, addr)
	}
	return nil
}

// SweepNeighs deletes the IPv6 neighbours on linkIndex that stale picks.
func (b *batch6) SweepNeighs(linkIndex int, stale func(kernel.ListedNeigh) bool) ([]kernel.ListedNeigh, error) {
	m, err := b.neighsOn(linkIndex)
	if err != nil {
		return nil, err
	}
	var deleted []kernel.ListedNeigh
	var errs []error
	for a, n := range m {
		l := kernel.ListedNeigh{Addr: a, LLAddr: string(n.HardwareAddr), Permanent: n.State&netlink.NUD_PERMANENT != 0}
		if !stale(l) {
			continue
		}
		if err := b.DeleteNeigh(linkIndex, a); err != nil {
			errs = append(errs, err)
			continue
		}
		deleted = append(deleted, l)
	}
	return deleted, errors.Join(errs...)
}
