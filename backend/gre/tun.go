package gre

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend/internal/fastpath"
	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/pkg/ip"
)

// TUNName is the TUN device of userspace mode.
const TUNName = "weft-gre0"

// ensureTUN creates the persistent TUN device if it is missing (adopting it if it exists),
// sets its MTU and brings it up. It acts in the network namespace of the calling thread
// (the TUN) and of h (the link settings), which must be the same. Idempotent.
func ensureTUN(h *kernel.Handle, mtu int, log klog.Logger) (netlink.Link, error) {
	_, lookupErr := h.Netlink().LinkByName(TUNName)
	existed := lookupErr == nil
	if err := fastpath.EnsurePersistentTUN(TUNName); err != nil {
		return nil, fmt.Errorf("gre backend: %w", err)
	}
	link, err := h.Netlink().LinkByName(TUNName)
	if err != nil {
		return nil, fmt.Errorf("gre backend: look up %s after creating it: %w", TUNName, err)
	}
	if existed {
		log.V(2).Info("Adopted existing TUN device", "device", TUNName, "index", link.Attrs().Index)
	} else {
		log.Info("Created persistent TUN device", "device", TUNName)
	}
	if err := setMTUAndUp(h, link, mtu); err != nil {
		return nil, err
	}
	return link, nil
}

func setMTUAndUp(h *kernel.Handle, link netlink.Link, mtu int) error {
	name := link.Attrs().Name
	if link.Attrs().MTU != mtu {
		if err := h.Netlink().LinkSetMTU(link, mtu); err != nil {
			return fmt.Errorf("gre backend: set %s MTU to %d: %w", name, mtu, err)
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := h.Netlink().LinkSetUp(link); err != nil {
			return fmt.Errorf("gre backend: bring %s up: %w", name, err)
		}
	}
	return nil
}

// tunState is the configuration the TUN must have while a userspace Network is active:
// up, the MTU, the own subnet's network address as a /32 and one route, the whole Network.
type tunState struct {
	index   int
	own     netip.Prefix
	network netip.Prefix
	mtu     int
}

func (d tunState) addr() netip.Prefix { return netip.PrefixFrom(d.own.Addr(), 32) }

func (d tunState) route() *netlink.Route {
	return &netlink.Route{LinkIndex: d.index, Dst: ip.IPNet(d.network), Scope: netlink.SCOPE_UNIVERSE}
}

// ensure makes the TUN right and removes routes through it to anything but the Network
// (left from an earlier network config). Idempotent; writes nothing when all is in place.
func (d tunState) ensure(h *kernel.Handle) error {
	link, err := h.Netlink().LinkByIndex(d.index)
	if err != nil {
		return fmt.Errorf("gre backend: %s (index %d) is gone: %w", TUNName, d.index, err)
	}
	if err := setMTUAndUp(h, link, d.mtu); err != nil {
		return err
	}
	if err := h.EnsureSoleAddr(d.index, d.addr()); err != nil {
		return fmt.Errorf("gre backend: %s address: %w", TUNName, err)
	}
	if err := h.EnsureRoute(d.route()); err != nil {
		return fmt.Errorf("gre backend: %s route: %w", TUNName, err)
	}
	routes, err := h.Routes(d.index)
	if err != nil {
		return fmt.Errorf("gre backend: %s routes: %w", TUNName, err)
	}
	for _, r := range routes {
		if dst, ok := ip.FromIPNet(r.Dst); ok && dst != d.network {
			if err := h.DeleteRoute(dst, d.index); err != nil {
				return fmt.Errorf("gre backend: remove stale route %s via %s: %w", dst, TUNName, err)
			}
		}
	}
	return nil
}

// errTUNGone: the TUN (by its index) no longer exists.
var errTUNGone = errors.New("device is gone")

// drift describes how the TUN differs from the wanted state ("" when it does not).
func (d tunState) drift(h *kernel.Handle) (string, error) {
	link, err := h.Netlink().LinkByIndex(d.index)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return "", fmt.Errorf("gre backend: %s (index %d): %w", TUNName, d.index, errTUNGone)
	}
	if err != nil {
		return "", fmt.Errorf("gre backend: look up %s (index %d): %w", TUNName, d.index, err)
	}
	var wrong []string
	if link.Attrs().Flags&net.FlagUp == 0 {
		wrong = append(wrong, "link down")
	}
	if link.Attrs().MTU != d.mtu {
		wrong = append(wrong, fmt.Sprintf("MTU %d", link.Attrs().MTU))
	}
	addrs, err := h.Addrs(d.index)
	if err != nil {
		return "", err
	}
	if len(addrs) != 1 || !addrIs(addrs[0], d.addr()) {
		wrong = append(wrong, fmt.Sprintf("%d addresses, want only %s", len(addrs), d.addr()))
	}
	routes, err := h.Routes(d.index)
	if err != nil {
		return "", err
	}
	found := false
	for i := range routes {
		found = found || kernel.RouteMatches(d.route(), &routes[i])
	}
	if !found {
		wrong = append(wrong, fmt.Sprintf("route to %s missing", d.network))
	}
	return strings.Join(wrong, ", "), nil
}

func addrIs(a netlink.Addr, p netip.Prefix) bool {
	got, ok := ip.FromIPNet(a.IPNet)
	return ok && got == p
}

// allowLocalSource sets accept_local on the device, in the network namespace of the
// calling thread. The forwarder writes ICMP errors into the TUN from the device's own
// address; without accept_local the kernel drops them as martians.
func allowLocalSource(dev string) error {
	path := "/proc/sys/net/ipv4/conf/" + dev + "/accept_local"
	cur, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(cur)) == "1" {
		return nil
	}
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("gre backend: enable accept_local on %s (for ICMP errors from its address): %w", dev, err)
	}
	return nil
}
