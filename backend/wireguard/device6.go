package wireguard

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/tundev"
	"github.com/weftnet/weft/pkg/ip"
)

// metric6 is the metric of the IPv6Network route: the kernel's default for an IPv6 route
// written without one (IP6_RT_PRIO_USER), which flanneld's route gets.
const metric6 = 1024

// dev6 is the IPv6 side of a device (flannel-wg-v6 in Mode separate, else flannel-wg),
// as flanneld's ConfigureV6 sets it: the own IPv6 subnet's network address as a /128 and a route to the
// IPv6Network through the device. (tundev.Device keeps the IPv4 side only, so this side
// is read and written through netlink directly; gre's tun6 keeps the same IPv6 state for
// its TUN, and both belong in tundev.Device.) The zero
// dev6 (own invalid) is a device without IPv6: nothing to do.
type dev6 struct {
	name    string       // the device, for messages
	own     netip.Prefix // the own IPv6 subnet
	network netip.Prefix // the IPv6Network
}

func (d dev6) on() bool { return d.own.IsValid() }

// addr is the device's IPv6 address: the own subnet's network address as a /128.
func (d dev6) addr() netip.Prefix { return netip.PrefixFrom(d.own.Addr(), 128) }

// route is the route to the IPv6Network through the device index.
func (d dev6) route(index int) *netlink.Route {
	return &netlink.Route{LinkIndex: index, Dst: ip.IPNet(d.network), Priority: metric6}
}

// state reads what the device has: whether its address is there, the other addresses
// inside the IPv6Network (an old lease's), and whether the route is there.
func (d dev6) state(h *kernel.Handle, index int) (hasAddr bool, stale []netlink.Addr, hasRoute bool, err error) {
	link := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index}}
	addrs, err := kernel.RetryDump(func() ([]netlink.Addr, error) { return h.Netlink().AddrList(link, unix.AF_INET6) })
	if err != nil {
		return false, nil, false, fmt.Errorf("%s: list the IPv6 addresses of %s: %w", errPrefix, d.name, err)
	}
	for _, a := range addrs {
		p, ok := ip.FromIPNet(a.IPNet)
		switch {
		case ok && p == d.addr():
			hasAddr = true
		case ok && d.network.Contains(p.Addr()):
			stale = append(stale, a)
		}
	}
	filter := &netlink.Route{Table: unix.RT_TABLE_MAIN, Dst: ip.IPNet(d.network)}
	routes, err := kernel.RetryDump(func() ([]netlink.Route, error) {
		return h.Netlink().RouteListFiltered(netlink.FAMILY_V6, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
	})
	if err != nil {
		return false, nil, false, fmt.Errorf("%s: list the IPv6 routes to %s: %w", errPrefix, d.network, err)
	}
	want := d.route(index)
	for i := range routes {
		hasRoute = hasRoute || kernel.RouteMatches(want, &routes[i])
	}
	return hasAddr, stale, hasRoute, nil
}

// drift lists how the device's IPv6 side differs from the wanted state. It only reads.
func (d dev6) drift(h *kernel.Handle, index int) ([]tundev.Fault, error) {
	if !d.on() {
		return nil, nil
	}
	hasAddr, stale, hasRoute, err := d.state(h, index)
	if err != nil {
		return nil, err
	}
	var wrong []tundev.Fault
	if !hasAddr || len(stale) > 0 {
		wrong = append(wrong, tundev.Fault{Kind: "address", What: fmt.Sprintf("IPv6 address %s missing or others in %s", d.addr(), d.network)})
	}
	if !hasRoute {
		wrong = append(wrong, tundev.Fault{Kind: "route", What: fmt.Sprintf("route to %s missing", d.network)})
	}
	return wrong, nil
}

// ensure gives the device its IPv6 address (without duplicate address detection, so it
// is usable at once) and the route to the IPv6Network, and removes other addresses inside
// the IPv6Network. It writes nothing when all is in place.
func (d dev6) ensure(h *kernel.Handle, index int) error {
	if !d.on() {
		return nil
	}
	hasAddr, stale, hasRoute, err := d.state(h, index)
	if err != nil {
		return err
	}
	link := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index}}
	var errs []error
	for i := range stale {
		if err := h.Netlink().AddrDel(link, &stale[i]); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("%s: remove stale address %s from %s: %w", errPrefix, stale[i].IPNet, d.name, err))
		}
	}
	if !hasAddr {
		a := &netlink.Addr{IPNet: ip.IPNet(d.addr()), Flags: unix.IFA_F_NODAD}
		if err := h.Netlink().AddrReplace(link, a); err != nil {
			errs = append(errs, fmt.Errorf("%s: add address %s to %s: %w", errPrefix, d.addr(), d.name, err))
		}
	}
	if !hasRoute {
		if err := h.Netlink().RouteReplace(d.route(index)); err != nil {
			errs = append(errs, fmt.Errorf("%s: route %s via %s: %w", errPrefix, d.network, d.name, err))
		}
	}
	return errors.Join(errs...)
}

// dropIPv6 removes from a device that carries no IPv6 in this layout (flannel-wg in Mode
// separate) what one in which it did (Mode auto, an earlier run's) gave it: its global
// IPv6 addresses and its route to the IPv6Network, which flannel-wg-v6 has now. It
// reports whether it removed anything.
func dropIPv6(h *kernel.Handle, name string, index int, network netip.Prefix) (bool, error) {
	addrs, err := h.AddrsOf(index, kernel.IPv6)
	if err != nil {
		return false, fmt.Errorf("%s: %s: %w", errPrefix, name, err)
	}
	link := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: index}}
	for i := range addrs {
		if err := h.Netlink().AddrDel(link, &addrs[i]); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return false, fmt.Errorf("%s: remove IPv6 address %s from %s: %w", errPrefix, addrs[i].IPNet, name, err)
		}
	}
	filter := &netlink.Route{Table: unix.RT_TABLE_MAIN, Dst: ip.IPNet(network), LinkIndex: index}
	routes, err := kernel.RetryDump(func() ([]netlink.Route, error) {
		return h.Netlink().RouteListFiltered(netlink.FAMILY_V6, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST|netlink.RT_FILTER_OIF)
	})
	if err != nil {
		return false, fmt.Errorf("%s: list the IPv6 routes of %s: %w", errPrefix, name, err)
	}
	if len(routes) > 0 {
		if err := h.DeleteRoute(network, index); err != nil {
			return false, fmt.Errorf("%s: remove the route to %s via %s: %w", errPrefix, network, name, err)
		}
	}
	return len(addrs)+len(routes) > 0, nil
}
