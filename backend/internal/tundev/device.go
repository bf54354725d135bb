package tundev

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend/internal/fastpath/tun"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/ip"
)

// Create creates the persistent TUN name if it is missing (adopting it if it exists), sets
// its MTU and brings it up. It acts in the network namespace of the calling thread (the
// TUN) and of h (the link settings), which must be the same. errPrefix starts every error
// message. Idempotent.
func Create(h *kernel.Handle, name string, mtu int, errPrefix string, log klog.Logger) (netlink.Link, error) {
	_, lookupErr := h.Netlink().LinkByName(name)
	existed := lookupErr == nil
	if err := tun.EnsurePersistent(name); err != nil {
		return nil, fmt.Errorf("%s: %w", errPrefix, err)
	}
	link, err := h.Netlink().LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("%s: look up %s after creating it: %w", errPrefix, name, err)
	}
	if existed {
		log.V(2).Info("Adopted existing TUN device", "device", name, "index", link.Attrs().Index)
	} else {
		log.Info("Created persistent TUN device", "device", name)
	}
	if err := setMTUAndUp(h, link, name, mtu, errPrefix); err != nil {
		return nil, err
	}
	return link, nil
}

func setMTUAndUp(h *kernel.Handle, link netlink.Link, name string, mtu int, errPrefix string) error {
	if link.Attrs().MTU != mtu {
		if err := h.Netlink().LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("%s: set %s MTU to %d: %w", errPrefix, name, mtu, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.Netlink().LinkSetUp(link); err != nil {
			return fmt.Errorf("%s: bring %s up: %w", errPrefix, name, err)
		}
	}
	return nil
}

// Device is the configuration a userspace backend's TUN must have while a Network is
// active. Only Index changes, when the device is re-created.
type Device struct {
	Name      string // the device's name, e.g. "flannel0"
	ErrPrefix string // starts every error message, e.g. "udp backend"
	Index     int    // the device's link index
	// Own is the own IPv4 subnet; its network address is the device's /32. The zero
	// Prefix, together with a zero Network, is a device that carries no IPv4 (an
	// IPv6-only network, whose IPv6 side the backend keeps): it gets no IPv4 address and
	// no IPv4 route, and any it has are removed.
	Own     netip.Prefix
	Network netip.Prefix // routed via the device; zero when Own is
	// Own6 is the own IPv6 subnet; its network address is the device's IPv6 address (a
	// /128). The zero Prefix, together with a zero Network6, is a device that carries no
	// IPv6: its IPv6 state is left as it is.
	Own6     netip.Prefix
	Network6 netip.Prefix // the IPv6Network, routed via the device; zero when Own6 is
	MTU      int
}

// has4 reports whether the device carries IPv4 (Own is set).
func (d Device) has4() bool { return d.Own.IsValid() }

// Addr is the device's address: the own subnet's network address as a /32, as flanneld
// assigns it (a /32 creates no connected or broadcast routes).
func (d Device) Addr() netip.Prefix { return netip.PrefixFrom(d.Own.Addr(), 32) }

// Route is the one route through the device: the whole Network (flanneld: scope
// universe, main table, no gateway).
func (d Device) Route() *netlink.Route {
	return &netlink.Route{LinkIndex: d.Index, Dst: ip.IPNet(d.Network), Scope: netlink.SCOPE_UNIVERSE}
}

// Families are the address families whose kernel changes concern the device: IPv4
// always (its link changes, and stray IPv4 state on a device without IPv4), and IPv6
// when it carries IPv6. For kernel.Handle.Subscribe.
func (d Device) Families() []kernel.Family {
	if d.has6() {
		return []kernel.Family{kernel.IPv4, kernel.IPv6}
	}
	return []kernel.Family{kernel.IPv4}
}

// Concerns reports whether a kernel change may concern the device: a change of the link
// (found by name too), of its addresses, of a main-table route through it, or of a route
// to the Network or the Network6 through anything else. For a kernel.Watcher's Relevant.
func (d Device) Concerns(c kernel.Change) bool {
	switch c.Kind {
	case kernel.LinkChange:
		return c.LinkIndex == d.Index || c.LinkName == d.Name
	case kernel.AddrChange:
		return c.LinkIndex == d.Index
	case kernel.RouteChange:
		return c.Table == unix.RT_TABLE_MAIN && (c.LinkIndex == d.Index ||
			(d.Network.IsValid() && c.Prefix == d.Network) || (d.Network6.IsValid() && c.Prefix == d.Network6))
	}
	return false
}

// Ensure makes the device up with the right MTU, addresses and routes, and removes routes
// through it to anything but the Network (left from an earlier network config); with
// IPv6 (Own6), its IPv6 side as well (ensure6). Idempotent; writes nothing when all is in
// place.
func (d Device) Ensure(h *kernel.Handle) error {
	link, err := h.Netlink().LinkByIndex(d.Index)
	if err != nil {
		return fmt.Errorf("%s: %s (index %d) is gone: %w", d.ErrPrefix, d.Name, d.Index, err)
	}
	if err := setMTUAndUp(h, link, d.Name, d.MTU, d.ErrPrefix); err != nil {
		return err
	}
	if d.has4() {
		if err := h.EnsureSoleAddr(d.Index, d.Addr()); err != nil {
			return fmt.Errorf("%s: %s address: %w", d.ErrPrefix, d.Name, err)
		}
		if err := h.EnsureRoute(d.Route()); err != nil {
			return fmt.Errorf("%s: %s route: %w", d.ErrPrefix, d.Name, err)
		}
	} else if err := d.removeAddrs(h); err != nil {
		return err
	}
	routes, err := h.Routes(d.Index)
	if err != nil {
		return fmt.Errorf("%s: %s routes: %w", d.ErrPrefix, d.Name, err)
	}
	for _, r := range routes {
		dst, ok := ip.FromIPNet(r.Dst)
		if !ok || (d.has4() && dst == d.Network) {
			continue
		}
		if err := h.DeleteRoute(dst, d.Index); err != nil {
			return fmt.Errorf("%s: remove stale route %s via %s: %w", d.ErrPrefix, dst, d.Name, err)
		}
	}
	if d.has6() {
		return d.ensure6(h)
	}
	return nil
}

// ErrGone is wrapped by Drift's error when the device (by its index) no longer exists.
var ErrGone = errors.New("device is gone")

// Fault is one way the device differs from the wanted state.
type Fault struct {
	Kind string // the repair kind for backend.Env.Repaired: "device", "address", "route"
	What string // for the log
}

// Drift lists how the device differs from the wanted state (nothing when it does not),
// its IPv6 side included (drift6), for a backend's repairs to log and count before they
// fix it. It only reads. When the device is gone the error wraps ErrGone.
func (d Device) Drift(h *kernel.Handle) ([]Fault, error) {
	link, err := h.Netlink().LinkByIndex(d.Index)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil, fmt.Errorf("%s: %s (index %d): %w", d.ErrPrefix, d.Name, d.Index, ErrGone)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: look up %s (index %d): %w", d.ErrPrefix, d.Name, d.Index, err)
	}
	var wrong []Fault
	if link.Attrs().Flags&net.FlagUp == 0 {
		wrong = append(wrong, Fault{"device", "link down"})
	}
	if link.Attrs().MTU != d.MTU {
		wrong = append(wrong, Fault{"device", fmt.Sprintf("MTU %d", link.Attrs().MTU)})
	}
	addrs, err := h.Addrs(d.Index)
	if err != nil {
		return nil, err
	}
	routes, err := h.Routes(d.Index)
	if err != nil {
		return nil, err
	}
	if !d.has4() {
		if len(addrs) != 0 {
			wrong = append(wrong, Fault{"address", fmt.Sprintf("%d IPv4 addresses, want none", len(addrs))})
		}
		if len(routes) != 0 {
			wrong = append(wrong, Fault{"route", fmt.Sprintf("%d IPv4 routes, want none", len(routes))})
		}
	} else {
		if len(addrs) != 1 || !AddrIs(addrs[0], d.Addr()) {
			wrong = append(wrong, Fault{"address", fmt.Sprintf("%d addresses, want only %s", len(addrs), d.Addr())})
		}
		found := false
		for i := range routes {
			found = found || kernel.RouteMatches(d.Route(), &routes[i])
		}
		if !found {
			wrong = append(wrong, Fault{"route", fmt.Sprintf("route to %s missing", d.Network)})
		}
	}
	if !d.has6() {
		return wrong, nil
	}
	wrong6, err := d.drift6(h)
	if err != nil {
		return nil, err
	}
	return append(wrong, wrong6...), nil
}

// removeAddrs removes every IPv4 address of a device that carries no IPv4.
func (d Device) removeAddrs(h *kernel.Handle) error {
	addrs, err := h.Addrs(d.Index)
	if err != nil {
		return fmt.Errorf("%s: %s addresses: %w", d.ErrPrefix, d.Name, err)
	}
	link := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: d.Index}}
	for i := range addrs {
		if err := h.Netlink().AddrDel(link, &addrs[i]); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return fmt.Errorf("%s: remove IPv4 address %s from %s: %w", d.ErrPrefix, addrs[i].IPNet, d.Name, err)
		}
	}
	return nil
}

// AddrIs reports whether a is exactly the prefix p.
func AddrIs(a netlink.Addr, p netip.Prefix) bool {
	got, ok := ip.FromIPNet(a.IPNet)
	return ok && got == p
}

// Open creates the TUN d.Name, or adopts the one that exists, by attaching a queue to it
// with opts, configures it as Activate does (Ensure, AllowLocalSource) and returns d with
// its Index and the queue, for PlaneConfig.Queue. It is the way to a device that is not
// persistent (opts.Persist false), which exists only while a queue is attached to it: the
// queue that makes it is the one that forwards on it. It acts in the calling thread's
// network namespace, which must be h's. On error nothing stays open.
func Open(h *kernel.Handle, d Device, opts tun.Options, log klog.Logger) (Device, *tun.Device, error) {
	_, lookupErr := h.Netlink().LinkByName(d.Name)
	existed := lookupErr == nil
	queue, err := d.attach(h, opts, func(f func() error) error { return f() })
	if err != nil {
		return d, nil, fmt.Errorf("%s: open %s: %w", d.ErrPrefix, d.Name, err)
	}
	if existed {
		log.V(2).Info("Adopted existing TUN device", "device", d.Name, "index", d.Index)
	} else {
		log.Info("Created TUN device", "device", d.Name, "persistent", opts.Persist)
	}
	return d, queue, nil
}

// Activate creates or adopts the device d.Name with Create, points d at it, configures it
// with Ensure and enables accept_local with AllowLocalSource, returning d with its Index.
// It acts in the calling thread's network namespace, which must be h's.
func Activate(h *kernel.Handle, d Device, log klog.Logger) (Device, error) {
	link, err := Create(h, d.Name, d.MTU, d.ErrPrefix, log)
	if err != nil {
		return d, err
	}
	d.Index = link.Attrs().Index
	if err := d.Ensure(h); err != nil {
		return d, err
	}
	if err := AllowLocalSource(d.Name, d.ErrPrefix); err != nil {
		return d, err
	}
	return d, nil
}
