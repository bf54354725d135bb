package kernel

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/ip"
)

// EnsureRoute makes r present. If a route to the same destination (same table, same
// metric) exists and differs, it is replaced; if r is already there, nothing is written.
// r.Dst must be an IPv4 network; r.Table 0 means the main table. Protocol 0 in r accepts
// any protocol on an existing route.
func (h *Handle) EnsureRoute(r *netlink.Route) error {
	if err := h.check(); err != nil {
		return err
	}
	dst, ok := ip.FromIPNet(r.Dst)
	if !ok || !dst.Addr().Is4() {
		return fmt.Errorf("ensure route: destination %v is not an IPv4 network", r.Dst)
	}
	have, err := h.routesTo(dst, r.Table)
	if err != nil {
		return err
	}
	if containsRoute(have, r) {
		return nil
	}
	if err := h.nl.RouteReplace(r); err != nil {
		return fmt.Errorf("replace route %s: %w", describeRoute(r), err)
	}
	if have, err = h.routesTo(dst, r.Table); err != nil {
		return err
	}
	if !containsRoute(have, r) {
		return fmt.Errorf("route %s: %w", describeRoute(r), ErrNotApplied)
	}
	return nil
}

// DeleteRoute removes the main-table routes to dst whose output link is linkIndex (any
// link when linkIndex is 0). A missing route is not an error.
func (h *Handle) DeleteRoute(dst netip.Prefix, linkIndex int) error {
	if err := h.check(); err != nil {
		return err
	}
	have, err := h.routesTo(dst, 0)
	if err != nil {
		return err
	}
	for i := range have {
		r := &have[i]
		if linkIndex != 0 && r.LinkIndex != linkIndex {
			continue
		}
		if err := h.nl.RouteDel(r); err != nil && !isGone(err) {
			return fmt.Errorf("delete route %s: %w", describeRoute(r), err)
		}
	}
	return nil
}

// Routes lists the IPv4 main-table routes whose output link is linkIndex (all links when
// linkIndex is 0), retrying interrupted dumps. Use it with RouteMatches to check many
// routes with one dump.
func (h *Handle) Routes(linkIndex int) ([]netlink.Route, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	filter := &netlink.Route{LinkIndex: linkIndex, Table: unix.RT_TABLE_MAIN}
	mask := uint64(netlink.RT_FILTER_TABLE)
	if linkIndex != 0 {
		mask |= netlink.RT_FILTER_OIF
	}
	rs, err := RetryDump(func() ([]netlink.Route, error) {
		return h.nl.RouteListFiltered(unix.AF_INET, filter, mask)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	return rs, nil
}

// routesTo lists the IPv4 routes to exactly dst in table (0: main).
func (h *Handle) routesTo(dst netip.Prefix, table int) ([]netlink.Route, error) {
	if table == 0 {
		table = unix.RT_TABLE_MAIN
	}
	filter := &netlink.Route{Dst: ip.IPNet(dst), Table: table}
	rs, err := RetryDump(func() ([]netlink.Route, error) {
		return h.nl.RouteListFiltered(unix.AF_INET, filter, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes to %s: %w", dst, err)
	}
	return rs, nil
}

func containsRoute(have []netlink.Route, want *netlink.Route) bool {
	for i := range have {
		if RouteMatches(want, &have[i]) {
			return true
		}
	}
	return false
}

// RouteMatches reports whether the kernel route have (as listed) is the route want (as
// passed to EnsureRoute): same destination, table, link, gateway, onlink flag, scope,
// metric, type and preferred source; want's zero Table, Type, Protocol and Src match the
// kernel's defaults or anything. It is pure.
func RouteMatches(want, have *netlink.Route) bool {
	if !ipNetEqual(want.Dst, have.Dst) {
		return false
	}
	if tableOrMain(want.Table) != tableOrMain(have.Table) {
		return false
	}
	if want.LinkIndex != 0 && want.LinkIndex != have.LinkIndex {
		return false
	}
	if !ipEqual(want.Gw, have.Gw) || len(have.MultiPath) > 0 {
		return false
	}
	if want.Flags&unix.RTNH_F_ONLINK != have.Flags&unix.RTNH_F_ONLINK {
		return false
	}
	if want.Scope != have.Scope || want.Priority != have.Priority {
		return false
	}
	wantType := want.Type
	if wantType == 0 {
		wantType = unix.RTN_UNICAST
	}
	if wantType != have.Type {
		return false
	}
	if want.Protocol != 0 && want.Protocol != have.Protocol {
		return false
	}
	return want.Src == nil || ipEqual(want.Src, have.Src)
}

func tableOrMain(t int) int {
	if t == 0 {
		return unix.RT_TABLE_MAIN
	}
	return t
}

func ipEqual(a, b net.IP) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	return a.Equal(b)
}

func ipNetEqual(a, b *net.IPNet) bool {
	pa, okA := ip.FromIPNet(a)
	pb, okB := ip.FromIPNet(b)
	return okA == okB && pa == pb
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

// DirectlyConnected reports whether the kernel reaches addr without a gateway through the
// link linkIndex (for host-gw and vxlan DirectRouting: the peer is on the same L2 segment
// as that interface). An address of this host itself is not directly connected.
func (h *Handle) DirectlyConnected(addr netip.Addr, linkIndex int) (bool, error) {
	if err := h.check(); err != nil {
		return false, err
	}
	if !addr.Is4() {
		return false, fmt.Errorf("directly connected: %s is not an IPv4 address", addr)
	}
	rs, err := h.nl.RouteGet(net.IP(addr.AsSlice()))
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
