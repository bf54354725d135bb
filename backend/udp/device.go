package udp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/ip"
)

// DeviceName is the TUN device, named as flanneld names it.
const DeviceName = "flannel0"

// socketBuffer is the receive and send buffer asked for on the UDP socket, so a burst
// from many peers is not dropped while the forwarder is busy.
const socketBuffer = 4 << 20

// ensureDevice creates the persistent TUN flannel0 if it is missing (adopting it if it
// exists), sets its MTU and brings it up. It acts in the network namespace of the calling
// thread (the TUN) and of h (the link settings), which must be the same. Idempotent.
func ensureDevice(h *kernel.Handle, mtu int, log klog.Logger) (netlink.Link, error) {
	_, lookupErr := h.Netlink().LinkByName(DeviceName)
	existed := lookupErr == nil
	if err := fastpath.EnsurePersistentTUN(DeviceName); err != nil {
		return nil, fmt.Errorf("udp backend: %w", err)
	}
	link, err := h.Netlink().LinkByName(DeviceName)
	if err != nil {
		return nil, fmt.Errorf("udp backend: look up %s after creating it: %w", DeviceName, err)
	}
	if !existed {
		log.Info("Created persistent TUN device", "device", DeviceName)
	} else {
		log.V(2).Info("Adopted existing TUN device", "device", DeviceName, "index", link.Attrs().Index)
	}
	if link.Attrs().MTU != mtu {
		if err := h.Netlink().LinkSetMTU(link, mtu); err != nil {
			return nil, fmt.Errorf("udp backend: set %s MTU to %d: %w", DeviceName, mtu, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.Netlink().LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("udp backend: bring %s up: %w", DeviceName, err)
		}
	}
	return link, nil
}

// deviceState is the configuration flannel0 must have while a Network is active.
type deviceState struct {
	index   int          // flannel0's link index
	own     netip.Prefix // the own subnet; its network address is flannel0's /32
	network netip.Prefix // routed via flannel0
	mtu     int
}

// addr is flannel0's address: the own subnet's network address as a /32, as flanneld
// assigns it (a /32 creates no connected or broadcast routes).
func (d deviceState) addr() netip.Prefix { return netip.PrefixFrom(d.own.Addr(), 32) }

// route is the one route through flannel0: the whole Network (flanneld: scope universe,
// main table, no gateway).
func (d deviceState) route() *netlink.Route {
	return &netlink.Route{LinkIndex: d.index, Dst: ip.IPNet(d.network), Scope: netlink.SCOPE_UNIVERSE}
}

// ensure makes flannel0 up with the right MTU, address and route, and removes routes
// through it to anything but the Network (left from an earlier network config).
// Idempotent; writes nothing when all is in place.
func (d deviceState) ensure(h *kernel.Handle) error {
	link, err := h.Netlink().LinkByIndex(d.index)
	if err != nil {
		return fmt.Errorf("udp backend: %s (index %d) is gone: %w", DeviceName, d.index, err)
	}
	if link.Attrs().MTU != d.mtu {
		if err := h.Netlink().LinkSetMTU(link, d.mtu); err != nil {
			return fmt.Errorf("udp backend: set %s MTU to %d: %w", DeviceName, d.mtu, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.Netlink().LinkSetUp(link); err != nil {
			return fmt.Errorf("udp backend: bring %s up: %w", DeviceName, err)
		}
	}
	if err := h.EnsureSoleAddr(d.index, d.addr()); err != nil {
		return fmt.Errorf("udp backend: %s address: %w", DeviceName, err)
	}
	if err := h.EnsureRoute(d.route()); err != nil {
		return fmt.Errorf("udp backend: %s route: %w", DeviceName, err)
	}
	routes, err := h.Routes(d.index)
	if err != nil {
		return fmt.Errorf("udp backend: %s routes: %w", DeviceName, err)
	}
	for _, r := range routes {
		dst, ok := ip.FromIPNet(r.Dst)
		if !ok || dst == d.network {
			continue
		}
		if err := h.DeleteRoute(dst, d.index); err != nil {
			return fmt.Errorf("udp backend: remove stale route %s via %s: %w", dst, DeviceName, err)
		}
	}
	return nil
}

// errDeviceGone: flannel0 (by its index) no longer exists.
var errDeviceGone = errors.New("device is gone")

// fault is one way flannel0 differs from the wanted state.
type fault struct {
	kind string // the repair kind reported to backend.Env.Repaired: "device", "address", "route"
	what string // for the log
}

// drift lists how flannel0 differs from the wanted state (nothing when it does not), for
// Run's repairs to log and count before they fix it. It only reads.
func (d deviceState) drift(h *kernel.Handle) ([]fault, error) {
	link, err := h.Netlink().LinkByIndex(d.index)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil, fmt.Errorf("udp backend: %s (index %d): %w", DeviceName, d.index, errDeviceGone)
	}
	if err != nil {
		return nil, fmt.Errorf("udp backend: look up %s (index %d): %w", DeviceName, d.index, err)
	}
	var wrong []fault
	if link.Attrs().Flags&net.FlagUp == 0 {
		wrong = append(wrong, fault{"device", "link down"})
	}
	if link.Attrs().MTU != d.mtu {
		wrong = append(wrong, fault{"device", fmt.Sprintf("MTU %d", link.Attrs().MTU)})
	}
	addrs, err := h.Addrs(d.index)
	if err != nil {
		return nil, err
	}
	if len(addrs) != 1 || !addrIs(addrs[0], d.addr()) {
		wrong = append(wrong, fault{"address", fmt.Sprintf("%d addresses, want only %s", len(addrs), d.addr())})
	}
	routes, err := h.Routes(d.index)
	if err != nil {
		return nil, err
	}
	found := false
	for i := range routes {
		if kernel.RouteMatches(d.route(), &routes[i]) {
			found = true
		}
	}
	if !found {
		wrong = append(wrong, fault{"route", fmt.Sprintf("route to %s missing", d.network)})
	}
	return wrong, nil
}

func addrIs(a netlink.Addr, p netip.Prefix) bool {
	got, ok := ip.FromIPNet(a.IPNet)
	return ok && got == p
}

// allowLocalSource sets accept_local on the device, in the network namespace of the
// calling thread. The forwarder writes ICMP errors into the TUN from the device's own
// address (the own subnet's network address, as flanneld does); without accept_local the
// kernel drops such packets as martians.
func allowLocalSource(dev string) error {
	path := "/proc/sys/net/ipv4/conf/" + dev + "/accept_local"
	cur, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(cur)) == "1" {
		return nil
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("udp backend: enable accept_local on %s (for ICMP errors from its address): %w", dev, err)
	}
	return nil
}

// setSocketBuffers asks for large socket buffers, past net.core.[rw]mem_max when the
// process may (CAP_NET_ADMIN), else as large as the limits allow. Failure is logged only.
func setSocketBuffers(sock *net.UDPConn, log klog.Logger) {
	rc, err := sock.SyscallConn()
	if err != nil {
		return
	}
	var errs []error
	_ = rc.Control(func(fd uintptr) {
		for _, o := range [...]struct{ force, plain int }{
			{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF},
			{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF},
		} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.force, socketBuffer) == nil {
				continue
			}
			if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o.plain, socketBuffer); err != nil {
				errs = append(errs, err)
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		log.Info("Could not enlarge the UDP socket buffers", "err", err)
	}
}
