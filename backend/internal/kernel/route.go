package kernel

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/ip"
)

// EnsureRoute makes r present, as a Batch of its own does (Batch.EnsureRoute, with a
// Batch of r's family): if a route to the same destination with the same metric exists
// and differs, it is replaced; if r is already there, nothing is written. r.Dst must be
// an IPv4 or IPv6 network in the main table. It first tries to create r exclusively (`ip
// route add`), which is one request and needs no dump when nothing is in the way. To
// program many routes, use one Batch.
func (h *Handle) EnsureRoute(r *netlink.Route) error {
	f := IPv4
	if dst, ok := ip.FromIPNet(r.Dst); ok {
		f = FamilyOf(dst.Addr())
	}
	return h.NewFamilyBatch(f).EnsureRoute(r)
}

// DeleteRoute removes the main-table routes to dst (IPv4 or IPv6) whose output link is
// linkIndex (any link when linkIndex is 0). A missing route is not an error. It needs no dump: it asks the
// kernel to delete a route to dst (through linkIndex, of any scope, type and metric) until
// the kernel finds none.
func (h *Handle) DeleteRoute(dst netip.Prefix, linkIndex int) error {
	if err := h.check(); err != nil {
		return err
	}
	if !dst.IsValid() || !FamilyOf(dst.Addr()).has(dst.Addr()) {
		return fmt.Errorf("delete route: destination %v is not an IPv4 or IPv6 network", dst)
	}
	r := &netlink.Route{Dst: ip.IPNet(dst.Masked()), LinkIndex: linkIndex, Table: unix.RT_TABLE_MAIN, Scope: netlink.SCOPE_NOWHERE}
	for range maxRoutesPerDst {
		err := h.nl.RouteDel(r)
		if isGone(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("delete route %s: %w", describeRoute(r), err)
		}
	}
	return fmt.Errorf("delete routes to %s dev #%d: still there after %d deletions", dst, linkIndex, maxRoutesPerDst)
}

// maxRoutesPerDst bounds DeleteRoute's loop: routes to one destination differ by metric,
// TOS or link, and a node has a handful at most.
const maxRoutesPerDst = 64

// Routes lists the IPv4 main-table routes whose output link is linkIndex: RoutesOf
// with IPv4.
func (h *Handle) Routes(linkIndex int) ([]netlink.Route, error) { return h.RoutesOf(linkIndex, IPv4) }

// RoutesOf lists the main-table routes of family f whose output link is linkIndex (all
// links when linkIndex is 0), default routes left out, through the same dump as a Batch,
// retrying interrupted dumps. Use it with RouteMatches; a Batch checks many routes more
// cheaply.
func (h *Handle) RoutesOf(linkIndex int, f Family) ([]netlink.Route, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	if !f.valid() {
		return nil, fmt.Errorf("list routes: address family %d is neither IPv4 nor IPv6", uint8(f))
	}
	rs, err := RetryDump(func() ([]netlink.Route, error) {
		var rs []netlink.Route
		err := h.dumps.mainRoutes(f, func(e routeEntry, nexthops []byte) {
			if linkIndex == 0 || e.link == linkIndex {
				rs = append(rs, e.netlinkRoute(nexthops))
			}
		})
		return rs, err
	})
	if err != nil {
		return nil, fmt.Errorf("list %s routes: %w", f, err)
	}
	return rs, nil
}

// RouteMatches reports whether the kernel route have (as listed) is the route want (as
// passed to EnsureRoute): same destination, table, link, gateway, onlink flag, scope,
// metric, type and preferred source; want's zero Table, Type, Protocol and Src match the
// kernel's defaults or anything, and so does the zero metric of an IPv6 route (the
// kernel lists 1024). It is pure.
func RouteMatches(want, have *netlink.Route) bool {
	e := entryOf(have)
	return e.matches(want)
}

// routeEntry is what RouteMatches and a delete need of a listed route, in a fraction of
// netlink.Route's size and without its allocations: a Batch keeps thousands.
type routeEntry struct {
	dst       netip.Prefix // invalid when the route has no (parsable) destination
	gw, src   netip.Addr
	link      int
	table     int
	priority  int
	tos       int
	typ       int
	flags     int
	scope     netlink.Scope
	protocol  netlink.RouteProtocol
	multipath bool
}

func entryOf(r *netlink.Route) routeEntry {
	e := routeEntry{link: r.LinkIndex, table: r.Table, priority: r.Priority, tos: r.Tos, typ: r.Type,
		flags: r.Flags, scope: r.Scope, protocol: r.Protocol, multipath: len(r.MultiPath) > 0}
	e.dst, _ = ip.FromIPNet(r.Dst)
	e.gw, _ = ip.FromNetIP(r.Gw)
	e.src, _ = ip.FromNetIP(r.Src)
	return e
}

// matches is RouteMatches(want, the route e was made of).
func (e *routeEntry) matches(want *netlink.Route) bool {
	if d, _ := ip.FromIPNet(want.Dst); d != e.dst {
		return false
	}
	if tableOrMain(want.Table) != tableOrMain(e.table) {
		return false
	}
	if want.LinkIndex != 0 && want.LinkIndex != e.link {
		return false
	}
	if gw, _ := ip.FromNetIP(want.Gw); gw != e.gw || e.multipath {
		return false
	}
	if want.Flags&unix.RTNH_F_ONLINK != e.flags&unix.RTNH_F_ONLINK {
		return false
	}
	if want.Scope != e.scope || metricOf(want) != e.priority {
		return false
	}
	wantType := want.Type
	if wantType == 0 {
		wantType = unix.RTN_UNICAST
	}
	if wantType != e.typ {
		return false
	}
	if want.Protocol != 0 && want.Protocol != e.protocol {
		return false
	}
	src, _ := ip.FromNetIP(want.Src)
	return !src.IsValid() || src == e.src
}

// netlinkRoute is e as a netlink.Route, with the nexthops of a multipath route parsed from
// its RTA_MULTIPATH attribute.
func (e *routeEntry) netlinkRoute(nexthops []byte) netlink.Route {
	r := *e.route()
	r.Flags = e.flags
	if e.src.IsValid() {
		r.Src = net.IP(e.src.AsSlice())
	}
	if e.multipath {
		r.MultiPath = parseNexthops(FamilyOf(e.dst.Addr()), nexthops)
	}
	return r
}

// route is a netlink.Route that names e for a delete.
func (e *routeEntry) route() *netlink.Route {
	r := &netlink.Route{LinkIndex: e.link, Table: e.table, Priority: e.priority, Tos: e.tos, Type: e.typ,
		Scope: e.scope, Protocol: e.protocol}
	if e.dst.IsValid() {
		r.Dst = ip.IPNet(e.dst)
	}
	if e.gw.IsValid() {
		r.Gw = net.IP(e.gw.AsSlice())
	}
	return r
}

// metricOf is the metric the kernel lists for r once written: r.Priority, or the
// family's default when r has none.
func metricOf(r *netlink.Route) int {
	if r.Priority == 0 {
		if dst, ok := ip.FromIPNet(r.Dst); ok {
			return FamilyOf(dst.Addr()).defaultMetric()
		}
	}
	return r.Priority
}

func tableOrMain(t int) int {
	if t == 0 {
		return unix.RT_TABLE_MAIN
	}
	return t
}

func describeRoute(r *netlink.Route) string {
	s := fmt.Sprint(r.Dst)
	if r.Gw != nil {
		s += " via " + r.Gw.String()
	}
	s += fmt.Sprintf(" dev #%d", r.LinkIndex)
	if r.Flags&unix.RTNH_F_ONLINK != 0 {
		s += " onlink"
	}
	return s
}

// DirectlyConnected reports whether the kernel reaches addr (IPv4 or IPv6) without a
// gateway through the link linkIndex (for host-gw and vxlan DirectRouting: the peer is on the same L2 segment
// as that interface). An address of this host itself is not directly connected.
func (h *Handle) DirectlyConnected(addr netip.Addr, linkIndex int) (bool, error) {
	if err := h.check(); err != nil {
		return false, err
	}
	if !addr.IsValid() || !FamilyOf(addr).has(addr) {
		return false, fmt.Errorf("directly connected: %s is not an IPv4 or IPv6 address", addr)
	}
	rs, err := h.nl.RouteGet(net.IP(addr.AsSlice()))
	if err != nil {
		return false, fmt.Errorf("route get %s: %w", addr, err)
	}
	if len(rs) == 0 {
		return false, nil
	}
	r := rs[0] // the route the kernel would use
	return r.Type != unix.RTN_LOCAL && r.Gw == nil && r.LinkIndex == linkIndex, nil
}
