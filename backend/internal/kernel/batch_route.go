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
	dst, err := batchRouteDst(want)
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

func batchRouteDst(r *netlink.Route) (netip.Prefix, error) {
	dst, ok := ip.FromIPNet(r.Dst)
	if !ok || !dst.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("route: destination %v is not an IPv4 network", r.Dst)
	}
	if tableOrMain(r.Table) != unix.RT_TABLE_MAIN {
		return netip.Prefix{}, fmt.Errorf("route to %s: a Batch handles the main table only, not table %d", dst, r.Table)
	}
	return dst, nil
}

// EnsureRoute makes r present, checking it against the dump: if a route to the same
// destination with the same metric exists and differs, it is replaced; if r is already
// there, nothing is written. r.Dst must be an IPv4 network in the main table (r.Table 0);
// Protocol 0 in r accepts any protocol on an existing route.
func (b *Batch) EnsureRoute(r *netlink.Route) error {
	if err := b.h.check(); err != nil {
		return err
	}
	dst, err := batchRouteDst(r)
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
	}
	if err != nil {
		return fmt.Errorf("replace route %s: %w", describeRoute(r), err)
	}
	// The kernel replaced any route to dst with the same metric and TOS.
	kept := have[:0:0]
	for _, h := range have {
		if h.priority != r.Priority || h.tos != r.Tos {
			kept = append(kept, h)
		}
	}
	b.routes[dst] = append(kept, written(r))
	return nil
}

// errExist stands for "the dump shows an entry there": write with replace at once.
var errExist = fmt.Errorf("batch: %w", unix.EEXIST)

// sameMetric reports whether have holds a route that a route add of r would collide with.
func sameMetric(have []routeEntry, r *netlink.Route) bool {
	for _, h := range have {
		if h.priority == r.Priority && h.tos == r.Tos {
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
	return e
}

// DeleteRoute removes the main-table routes to dst whose output link is linkIndex (any
// link when linkIndex is 0), as Handle.DeleteRoute does.
func (b *Batch) DeleteRoute(dst netip.Prefix, linkIndex int) error {
	if b.routes == nil { // nothing read: no need to read the table to delete
		return b.h.DeleteRoute(dst, linkIndex)
	}
	if err := b.h.check(); err != nil {
		return err
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
