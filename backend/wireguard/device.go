package wireguard

import (
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/kernelmode"
	"github.com/weftnet/weft/pkg/ip"
)

// DeviceName is the WireGuard device in both implementations, as flanneld names it: a
// kernel "wireguard" link, or a persistent TUN that wireguard-go serves. Mode separate
// adds DeviceNameV6 for the IPv6 side.
const DeviceName = "flannel-wg"

// probeName is the throwaway link that tells whether the kernel can make WireGuard
// links when flannel-wg is not one already.
const probeName = "weft-wgprobe"

// tunFlags open the TUN as wireguard-go's own CreateTUN does (no packet-information
// header, a virtio-net header for TSO/GRO offloads). A persistent TUN is re-opened with
// the same flags after a restart.
const tunFlags = unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_VNET_HDR

// openTUN opens a queue of the TUN name, creating it if it is missing, and makes it
// persistent, so that it (with its address and route) outlives this process. It acts in
// the calling thread's network namespace. The file is non-blocking, ready for
// tun.CreateTUNFromFile.
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err == nil {
		ifr.SetUint16(tunFlags)
		if err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			err = fmt.Errorf("attach to TUN %s: %w", name, err)
		}
	}
	if err == nil {
		if err = unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 1); err != nil {
			err = fmt.Errorf("make TUN %s persistent: %w", name, err)
		}
	}
	if err == nil {
		err = unix.SetNonblock(fd, true)
	}
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun"), nil
}

func isTUN(l netlink.Link) bool {
	_, ok := l.(*netlink.Tuntap)
	return ok
}

func isWireGuard(l netlink.Link) bool { return l.Type() == "wireguard" }

// linkByName returns the link or nil when there is none.
func linkByName(h *kernel.Handle, name string) (netlink.Link, error) {
	l, err := h.Netlink().LinkByName(name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("look up %s: %w", name, err)
	}
	return l, nil
}

// probeKernel reports whether the kernel can make WireGuard links: nil when the device
// name is one already or a throwaway link of that kind can be created (and is deleted
// again), a *kernelmode.Error (ErrNoKernelWireGuard) when the kernel does not know it.
func probeKernel(h *kernel.Handle, name string) error {
	l, err := linkByName(h, name)
	if err != nil {
		return err
	}
	if l != nil && isWireGuard(l) {
		return nil
	}
	if old, _ := linkByName(h, probeName); old != nil {
		_ = h.Netlink().LinkDel(old)
	}
	err = h.Netlink().LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: probeName}})
	if kernelmode.IsMissingDriver(err) {
		return &kernelmode.Error{Driver: wgDriver, Device: name, Err: err}
	}
	if err != nil {
		return fmt.Errorf("create a wireguard link to probe the kernel: %w", err)
	}
	if l, err := linkByName(h, probeName); err == nil && l != nil {
		_ = h.Netlink().LinkDel(l)
	}
	return nil
}

// ensureDevice creates or adopts the device name for the implementation impl, with the
// MTU, up (kernel.EnsureLink). A device of that name of the other implementation (left by
// an earlier run) is deleted first, logged. It returns the link index and whether it
// created the link. The TUN is created in h's namespace.
func ensureDevice(h *kernel.Handle, name string, impl Implementation, mtu int, log klog.Logger) (index int, created bool, err error) {
	fits, create := isWireGuard, func() error {
		err := h.Netlink().LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}})
		if kernelmode.IsMissingDriver(err) {
			return &kernelmode.Error{Driver: wgDriver, Device: name, Err: err}
		}
		return err
	}
	if impl == ImplUserspace {
		fits, create = isTUN, func() error {
			return h.InNamespace(func() error {
				f, err := openTUN(name)
				if err != nil {
					return err
				}
				return f.Close()
			})
		}
	}
	l, created, _, err := h.EnsureLink(kernel.LinkSpec{
		Name: name, Kind: "WireGuard", MTU: mtu, Up: true,
		Create: create,
		Incompatible: func(l netlink.Link) string {
			if fits(l) {
				return ""
			}
			return fmt.Sprintf("a %s link, not the %s device (an earlier run's other implementation)", l.Type(), impl)
		},
	}, log)
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", errPrefix, err)
	}
	if created {
		log.Info("Created WireGuard device", "device", name, "implementation", impl)
	}
	return l.Attrs().Index, created, nil
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
	routes, err := h.RoutesOf(index, kernel.IPv6)
	if err != nil {
		return false, fmt.Errorf("%s: %s: %w", errPrefix, name, err)
	}
	hadRoute := false
	for _, r := range routes {
		if dst, ok := ip.FromIPNet(r.Dst); ok && dst == network {
			hadRoute = true
		}
	}
	if hadRoute {
		if err := h.DeleteRoute(network, index); err != nil {
			return false, fmt.Errorf("%s: remove the route to %s via %s: %w", errPrefix, network, name, err)
		}
	}
	return len(addrs) > 0 || hadRoute, nil
}
