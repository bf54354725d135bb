package tundev

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/ip"
)

// The IPv6 side of a Device (Own6), as flanneld's ConfigureV6 gives its devices: the own
// IPv6 subnet's network address as a /128 (which makes no prefix route), added without
// duplicate address detection so that it is usable at once, and one route, the whole
// IPv6Network through the device with the kernel's default metric for IPv6. The device
// belongs to weft: other global IPv6 addresses on it (an old lease's) and IPv6 routes
// through it that the kernel did not make are removed. Link-local addresses and the
// kernel's own routes (fe80::/64, multicast) stay.

// metric6 is the IPv6 route's metric: the kernel's default for an IPv6 route written
// without one (IP6_RT_PRIO_USER), which flanneld's route gets.
const metric6 = 1024

// has6 reports whether the device carries IPv6 (Own6 is set).
func (d Device) has6() bool { return d.Own6.IsValid() }

// Addr6 is the device's IPv6 address: the own IPv6 subnet's network address as a /128.
func (d Device) Addr6() netip.Prefix { return netip.PrefixFrom(d.Own6.Addr(), 128) }

// Route6 is the IPv6 route through the device: the whole Network6, no gateway, main
// table, metric 1024.
func (d Device) Route6() *netlink.Route {
	return &netlink.Route{LinkIndex: d.Index, Dst: ip.IPNet(d.Network6), Priority: metric6, Scope: netlink.SCOPE_UNIVERSE}
}

// drift6 lists how the IPv6 side differs: the address missing (or its duplicate address
// detection failed), other global addresses, the route missing, other routes through the
// device. It only reads.
func (d Device) drift6(h *kernel.Handle) ([]Fault, error) {
	addrs, err := h.AddrsOf(d.Index, kernel.IPv6)
	if err != nil {
		return nil, fmt.Errorf("%s: %s IPv6 addresses: %w", d.ErrPrefix, d.Name, err)
	}
	var wrong []Fault
	found := false
	for _, a := range addrs {
		if AddrIs(a, d.Addr6()) && a.Flags&unix.IFA_F_DADFAILED == 0 {
			found = true
		} else {
			wrong = append(wrong, Fault{"address", "stale IPv6 address " + a.IPNet.String()})
		}
	}
	if !found {
		wrong = append(wrong, Fault{"address", fmt.Sprintf("IPv6 address %s missing", d.Addr6())})
	}
	routes, err := h.RoutesOf(d.Index, kernel.IPv6)
	if err != nil {
		return nil, fmt.Errorf("%s: %s IPv6 routes: %w", d.ErrPrefix, d.Name, err)
	}
	found = false
	for i := range routes {
		if kernel.RouteMatches(d.Route6(), &routes[i]) {
			found = true
		} else if dst, ok := d.stale6(&routes[i]); ok {
			wrong = append(wrong, Fault{"route", "stale route to " + dst.String()})
		}
	}
	if !found {
		wrong = append(wrong, Fault{"route", fmt.Sprintf("route to %s missing", d.Network6)})
	}
	return wrong, nil
}

// ensure6 puts the IPv6 address and route in place and removes the other global
// addresses and the stale routes. It writes nothing when all is in place.
func (d Device) ensure6(h *kernel.Handle) error {
	if err := h.EnsureSoleAddr(d.Index, d.Addr6()); err != nil {
		return fmt.Errorf("%s: %s IPv6 address: %w", d.ErrPrefix, d.Name, err)
	}
	if err := h.EnsureRoute(d.Route6()); err != nil {
		return fmt.Errorf("%s: %s IPv6 route: %w", d.ErrPrefix, d.Name, err)
	}
	routes, err := h.RoutesOf(d.Index, kernel.IPv6)
	if err != nil {
		return fmt.Errorf("%s: %s IPv6 routes: %w", d.ErrPrefix, d.Name, err)
	}
	for i := range routes {
		if dst, ok := d.stale6(&routes[i]); ok {
			if err := h.DeleteRoute(dst, d.Index); err != nil {
				return fmt.Errorf("%s: remove stale route %s via %s: %w", d.ErrPrefix, dst, d.Name, err)
			}
		}
	}
	return nil
}

// stale6 reports whether r, an IPv6 route through the device, is one to remove, with its
// destination: any but the route to the Network6 (whatever its gateway or metric) and the
// kernel's own.
func (d Device) stale6(r *netlink.Route) (netip.Prefix, bool) {
	dst, ok := ip.FromIPNet(r.Dst)
	kernels := r.Protocol == unix.RTPROT_KERNEL || dst.Addr().IsLinkLocalUnicast() || dst.Addr().IsMulticast()
	return dst, ok && !kernels && dst != d.Network6
}
