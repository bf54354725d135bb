package kernel

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ListedRoute is a main-table route as a Batch's dump lists it, for a backend to
// decide whether it is a leftover of its own (see SweepRoutes).
type ListedRoute struct {
	Dst       netip.Prefix
	Gw        netip.Addr // the zero Addr for a route without a gateway
	LinkIndex int        // the output link; 0 for a multipath or blackhole route
	Priority  int        // the metric
	Type      int        // unix.RTN_*
	Protocol  netlink.RouteProtocol
	Onlink    bool // RTNH_F_ONLINK
	Multipath bool
}

func (e *routeEntry) listed() ListedRoute {
	return ListedRoute{Dst: e.dst, Gw: e.gw, LinkIndex: e.link, Priority: e.priority, Type: e.typ,
		Protocol: e.protocol, Onlink: e.flags&unix.RTNH_F_ONLINK != 0, Multipath: e.multipath}
}

// SweepRoutes deletes the main-table routes of b's family whose output link is linkIndex (every route
// when linkIndex is 0) for which stale reports true, each exactly (metric, gateway and
// all: other routes to the same destination stay), and returns those it deleted. A route
// whose delete fails stays in the Batch's view; the errors are joined. stale is the
// caller's decision, typically a pure function of the route and the peer set.
func (b *Batch) SweepRoutes(linkIndex int, stale func(ListedRoute) bool) ([]ListedRoute, error) {
	all, err := b.allRoutes()
	if err != nil {
		return nil, err
	}
	var deleted []ListedRoute
	var errs []error
	for dst, have := range all {
		var kept []routeEntry // a copy of have without the deleted, once one is
		for i, e := range have {
			l := e.listed()
			if (linkIndex != 0 && e.link != linkIndex) || !stale(l) {
				if kept != nil {
					kept = append(kept, e)
				}
				continue
			}
			if kept == nil {
				kept = append(make([]routeEntry, 0, len(have)), have[:i]...)
			}
			r := e.route()
			if err := b.h.nl.RouteDel(r); err != nil && !isGone(err) {
				kept = append(kept, e)
				errs = append(errs, fmt.Errorf("delete route %s: %w", describeRoute(r), err))
				continue
			}
			deleted = append(deleted, l)
		}
		if kept != nil {
			all[dst] = kept
		}
	}
	return deleted, errors.Join(errs...)
}

// ListedNeigh is a neighbour entry (of the Batch's family) as a Batch's dump lists it.
type ListedNeigh struct {
	Addr netip.Addr
	// LLAddr is the link-layer address's bytes, string(mac) ("" when the entry has none):
	// a string, so that listing thousands of entries allocates nothing. Compare it with
	// string(mac); net.HardwareAddr(LLAddr) prints it.
	LLAddr    string
	Permanent bool // NUD_PERMANENT: written by someone, not learned
}

// SweepNeighs deletes the neighbour entries of b's family on linkIndex for which stale reports
// true and returns those it deleted. A failed delete keeps the entry; the errors are
// joined.
func (b *Batch) SweepNeighs(linkIndex int, stale func(ListedNeigh) bool) ([]ListedNeigh, error) {
	m, err := b.neighsOn(linkIndex)
	if err != nil {
		return nil, err
	}
	var deleted []ListedNeigh
	var errs []error
	for a, e := range m {
		l := ListedNeigh{Addr: a, LLAddr: e.mac, Permanent: e.state&netlink.NUD_PERMANENT != 0}
		if !stale(l) {
			continue
		}
		if err := b.h.deleteNeigh(linkIndex, a); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(m, a)
		deleted = append(deleted, l)
	}
	return deleted, errors.Join(errs...)
}

// ListedFDB is a bridge forwarding entry as a Batch's dump lists it.
type ListedFDB struct {
	MAC       string     // the MAC's bytes, string(mac), as ListedNeigh.LLAddr
	Dst       netip.Addr // the remote (NDA_DST); the zero Addr when the entry names none
	Permanent bool       // NUD_PERMANENT: written by someone, not learned
	Self      bool       // NTF_SELF: the device's own table (a vxlan device's), not a bridge's
}

// SweepFDB deletes the forwarding entries on linkIndex for which stale reports true and
// returns those it deleted. A failed delete keeps the entry; the errors are joined.
func (b *Batch) SweepFDB(linkIndex int, stale func(ListedFDB) bool) ([]ListedFDB, error) {
	m, err := b.fdbOn(linkIndex)
	if err != nil {
		return nil, err
	}
	var deleted []ListedFDB
	var errs []error
	for mac, have := range m {
		var kept []neighEntry // a copy of have without the deleted, once one is
		for i, e := range have {
			l := ListedFDB{MAC: mac, Dst: e.ip, Permanent: e.state&netlink.NUD_PERMANENT != 0,
				Self: e.flags&netlink.NTF_SELF != 0}
			if !stale(l) {
				if kept != nil {
					kept = append(kept, e)
				}
				continue
			}
			if kept == nil {
				kept = append(make([]neighEntry, 0, len(have)), have[:i]...)
			}
			if err := b.h.deleteFDB(e.fdbNeigh(linkIndex)); err != nil {
				kept = append(kept, e)
				errs = append(errs, err)
				continue
			}
			deleted = append(deleted, l)
		}
		switch {
		case kept == nil:
		case len(kept) == 0:
			delete(m, mac)
		default:
			m[mac] = kept
		}
	}
	return deleted, errors.Join(errs...)
}
