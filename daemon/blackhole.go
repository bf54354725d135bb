package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/ip"
)

// --ip-blackhole-route is flanneld's flag for CNIs that route each pod with a route of its
// own and have no bridge holding the node's subnet (Canal: flannel for the tunnels, Calico
// for the pods). There, a packet to an address of the node's subnet that no pod holds
// matches no route but the default one and leaves the node. The route
// `blackhole <own subnet>` drops it instead.
//
// flanneld installs that route (main table, metric 0) one --iptables-resync period after it
// starts, checks it every period, and never removes it. weft keeps the route and its purpose
// and differs where flanneld's version hurts:
//
//   - metric blackholeMetric instead of 0. At metric 0 the route collides with the link route
//     of a bridge holding the subnet (cni0 with <subnet>.1/24, metric 0): added after the
//     bridge's address, the kernel refuses it (file exists); added before, the bridge's
//     route is listed behind it and the blackhole wins, cutting the node off its own pods.
//     At a high metric it takes only what no other route to the subnet takes.
//   - installed at once, re-checked every --iptables-resync period (put back if deleted);
//   - removed when the lease moves to another subnet, or at the next start without the
//     flag. A route is weft's when it is a main-table blackhole route with blackholeMetric to
//     a subnet of the Network; nothing else is ever deleted.

// blackholeMetric is the metric of weft's blackhole route: high, so that any other route to
// the node's subnet (a bridge's link route, a CNI's own) wins over it. With its type and
// table it also marks the route as weft's.
const blackholeMetric = 60000

// routeTable is the part of netlink the blackhole route needs: *netlink.Handle in tests,
// currentNS in weftd.
type routeTable interface {
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	RouteAdd(route *netlink.Route) error
	RouteDel(route *netlink.Route) error
}

// currentNS is a routeTable for the network namespace weftd runs in.
type currentNS struct{}

func (currentNS) RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error) {
	return netlink.RouteListFiltered(family, filter, filterMask)
}
func (currentNS) RouteAdd(r *netlink.Route) error { return netlink.RouteAdd(r) }
func (currentNS) RouteDel(r *netlink.Route) error { return netlink.RouteDel(r) }

// blackholeRoute is weft's blackhole route to subnet.
func blackholeRoute(subnet netip.Prefix) *netlink.Route {
	return &netlink.Route{Dst: ip.IPNet(subnet), Type: unix.RTN_BLACKHOLE, Table: unix.RT_TABLE_MAIN, Priority: blackholeMetric}
}

// blackholeOwned returns the destination of r if r is weft's blackhole route to a subnet of
// network (see above).
func blackholeOwned(r netlink.Route, network netip.Prefix) (netip.Prefix, bool) {
	dst, ok := ip.FromIPNet(r.Dst)
	if !ok || r.Type != unix.RTN_BLACKHOLE || r.Priority != blackholeMetric ||
		(r.Table != 0 && r.Table != unix.RT_TABLE_MAIN) {
		return netip.Prefix{}, false
	}
	return dst, ip.Contains(network, dst)
}

// blackholePlan decides, from the main table's blackhole routes, whether weft's route to want
// must be added and which of weft's routes must go. An invalid want (the flag is off) keeps
// none.
func blackholePlan(have []netlink.Route, network, want netip.Prefix) (add bool, remove []netip.Prefix) {
	add = want.IsValid()
	for _, r := range have {
		dst, ok := blackholeOwned(r, network)
		switch {
		case !ok:
		case dst == want:
			add = false
		default:
			remove = append(remove, dst)
		}
	}
	return add, remove
}

// syncBlackhole makes weft's blackhole routes under network be exactly the one to want
// (none when want is invalid), and reports what it changed. It is idempotent: with the
// routes in place it only lists them.
func syncBlackhole(rt routeTable, network, want netip.Prefix) (added bool, removed []netip.Prefix, err error) {
	var have []netlink.Route
	filter := &netlink.Route{Table: unix.RT_TABLE_MAIN, Type: unix.RTN_BLACKHOLE}
	for try := 0; ; try++ {
		have, err = rt.RouteListFiltered(family(network), filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_TYPE)
		if !errors.Is(err, netlink.ErrDumpInterrupted) || try == 3 {
			break
		}
	}
	if err != nil {
		return false, nil, fmt.Errorf("list blackhole routes: %w", err)
	}
	add, remove := blackholePlan(have, network, want)
	var errs []error
	for _, dst := range remove {
		if err := rt.RouteDel(blackholeRoute(dst)); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove blackhole route %s: %w", dst, err))
			continue
		}
		removed = append(removed, dst)
	}
	if add {
		if err := rt.RouteAdd(blackholeRoute(want)); err != nil {
			errs = append(errs, fmt.Errorf("add blackhole route %s metric %d: %w", want, blackholeMetric, err))
		} else {
			added = true
		}
	}
	return added, removed, errors.Join(errs...)
}

// keepBlackhole keeps weft's blackhole route to the node's subnet while ctx lasts, checking
// it every --iptables-resync period, with --ip-blackhole-route; without it, it removes once
// the routes an earlier run left. A failure is logged and retried at the next check; it
// never ends the session.
func (d *Daemon) keepBlackhole(ctx context.Context, rt routeTable, network, subnet netip.Prefix) error {
	if !d.cfg.BlackholeRoute {
		subnet = netip.Prefix{}
	}
	installed, lastErr := false, ""
	check := func() {
		added, removed, err := syncBlackhole(rt, network, subnet)
		for _, dst := range removed {
			why := "the node's subnet is another one now"
			if !subnet.IsValid() {
				why = "--ip-blackhole-route is off"
			}
			d.log.Info("Removed a blackhole route weft had added", "subnet", dst, "metric", blackholeMetric, "why", why)
		}
		switch {
		case added && installed:
			d.log.Info("The blackhole route for this node's subnet was gone; put it back", "subnet", subnet, "metric", blackholeMetric)
			d.metrics.Repaired("blackhole")
		case added:
			d.log.Info("Added a blackhole route for this node's subnet (--ip-blackhole-route)", "subnet", subnet, "metric", blackholeMetric)
		}
		if subnet.IsValid() && (added || err == nil) {
			installed = true // in place now: a later add is a repair
		}
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if msg != "" && msg != lastErr {
			d.log.Error(err, "Cannot keep the blackhole routes in order; retrying", "subnet", subnet)
		}
		lastErr = msg
	}
	check()
	if !subnet.IsValid() {
		return nil
	}
	period := d.cfg.IPTablesSync
	if period <= 0 {
		period = 5 * time.Second
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			check()
		}
	}
}

// family is the netlink address family of p.
func family(p netip.Prefix) int {
	if p.Addr().Is6() {
		return netlink.FAMILY_V6
	}
	return netlink.FAMILY_V4
}
