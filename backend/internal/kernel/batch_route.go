package kernel

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/ip"
)

// HasRoute reports whether the route want (as passed to EnsureRoute, main table) is in
// place, as RouteMatches decides.
func (b *Batch) HasRoute(want *netlink.Route) (bool, error) {
	dst, err := b.routeDst(want)
	if err != nil {
		return false, err
	}
	have, err := b.routesTo(dst)
	if err != nil {
		return false, err
	}
	return containsEntry(have, want), nil
}

func containsEntry(have []routeEntry, want *netlink.Route) bool {
	for i := range have {
		if have[i].matches(want) {
			return true
		}
	}
	return false
}

func (b *Batch) routeDst(r *netlink.Route) (netip.Prefix, error) {
	dst, ok := ip.FromIPNet(r.Dst)
	if !ok || !b.family.has(dst.Addr()) {
		return netip.Prefix{}, fmt.Errorf("route: destination %v is not an %s network", r.Dst, b.family)
	}
	if tableOrMain(r.Table) != unix.RT_TABLE_MAIN {
		return netip.Prefix{}, fmt.Errorf("route to %s: a Batch handles the main table only, not table %d", dst, r.Table)
	}
	return dst, nil
}

// EnsureRoute makes r present, checking it against the dump: if a route to the same
// destination with the same metric exists and differs, it is replaced; if r is already
// there, nothing is written. r.Dst must be a network of b's family in the main table
// (r.Table 0); Protocol 0 in r accepts any protocol on an existing route. An IPv6 route
// written without a metric gets the kernel's 1024.
//
// The kernel refuses to replace an IPv6 route by one whose onlink gateway the old route
// resolves through another device (EINVAL, "device mismatch": someone moved the route to
// another device): then the routes to r's destination with r's metric are deleted and r
// is added.
func (b *Batch) EnsureRoute(r *netlink.Route) error {
	if err := b.check(); err != nil {
		return err
	}
	dst, err := b.routeDst(r)
	if err != nil {
		return fmt.Errorf("ensure %w", err)
	}
	if b.routes == nil {
		if err := b.h.nl.RouteAdd(r); err == nil {
			return nil // created; a dump made later in this batch lists it
		} else if !isExist(err) {
			return fmt.Errorf("add route %s: %w", describeRoute(r), err)
		}
	}
	have, err := b.routesTo(dst)
	if err != nil {
		return err
	}
	if containsEntry(have, r) {
		return nil
	}
	err = errExist // a route to dst with r's metric may be there: replace it
	if !sameMetric(have, r) {
		err = b.h.nl.RouteAdd(r)
	}
	if isExist(err) {
		err = b.h.nl.RouteReplace(r)
		if errors.Is(err, unix.EINVAL) && b.family == IPv6 && sameMetric(have, r) {
			err = b.readdRoute(have, r)
		}
	}
	if err != nil {
		return fmt.Errorf("replace route %s: %w", describeRoute(r), err)
	}
	// The kernel replaced any route to dst with the same metric and TOS.
	kept := have[:0:0]
	for _, h := range have {
		if h.priority != metricOf(r) || h.tos != r.Tos {
			kept = append(kept, h)
		}
	}
	b.routes[dst] = append(kept, written(r))
	return nil
}

// readdRoute deletes the listed routes have that r would replace (same metric and TOS)
// and adds r: the way to move an IPv6 route with an onlink gateway to another device.
func (b *Batch) readdRoute(have []routeEntry, r *netlink.Route) error {
	var errs []error
	for _, h := range have {
		if h.priority == metricOf(r) && h.tos == r.Tos {
			if err := b.h.nl.RouteDel(h.route()); err != nil && !isGone(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(append(errs, b.h.nl.RouteAdd(r))...)
}

// errExist stands for "the dump shows an entry there": write with replace at once.
var errExist = fmt.Errorf("batch: %w", unix.EEXIST)

// sameMetric reports whether have holds a route that a route add of r would collide with.
func sameMetric(have []routeEntry, r *netlink.Route) bool {
	for _, h := range have {
		if h.priority == metricOf(r) && h.tos == r.Tos {
			return true
		}
	}
	return false
}

// written is r as the kernel lists it after writing it, as far as RouteMatches looks.
func written(r *netlink.Route) routeEntry {
	e := entryOf(r)
	if e.typ == 0 {
		e.typ = unix.RTN_UNICAST
	}
	e.table = unix.RT_TABLE_MAIN
	e.priority = metricOf(r)
	return e
}

// DeleteRoute removes the main-table routes to dst (of b's family) whose output link is
// linkIndex (any link when linkIndex is 0), as Handle.DeleteRoute does.
func (b *Batch) DeleteRoute(dst netip.Prefix, linkIndex int) error {
	if err := b.check(); err != nil {
		return err
	}
	if !b.family.has(dst.Addr()) {
		return fmt.Errorf("delete route: destination %v is not an %s network", dst, b.family)
	}
	if b.routes == nil { // nothing read: no need to read the table to delete
		return b.h.DeleteRoute(dst, linkIndex)
	}
	var kept []routeEntry
	var errs []error
	for _, e := range b.routes[dst] {
		if linkIndex != 0 && e.link != linkIndex {
			kept = append(kept, e)
			continue
		}
		r := e.route()
		if err := b.h.nl.RouteDel(r); err != nil && !isGone(err) {
			kept = append(kept, e)
			errs = append(errs, fmt.Errorf("delete route %s: %w", describeRoute(r), err))
		}
	}
	b.routes[dst] = kept
	return errors.Join(errs...)
}
