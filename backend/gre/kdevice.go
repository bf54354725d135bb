package gre

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"k8s.io/klog/v2"

	"github.com/weftnet/weft/backend/internal/kernel"
	"github.com/weftnet/weft/backend/internal/kernelmode"
)

// DeviceName is the kernel GRE device of kernel mode.
const DeviceName = "weft.gre"

// kernelTTL is the outer TTL of the kernel device, the same as the raw socket's default,
// so both modes put the same outer header on the wire. A fixed TTL keeps path MTU
// discovery on (DF set), as the raw socket does.
const kernelTTL = 64

// deviceSpec is the wanted kernel GRE device: point-to-multipoint (no remote), plain GRE
// (no key, checksum or sequence numbers), sourced from the external interface's address.
type deviceSpec struct {
	name  string
	local netip.Addr
	mtu   int
}

// link is the netlink description used to create the device:
// ip link add weft.gre type gre local <source> ttl 64.
func (s deviceSpec) link() *netlink.Gretun {
	return &netlink.Gretun{
		LinkAttrs: netlink.LinkAttrs{Name: s.name, MTU: s.mtu},
		Local:     net.IP(s.local.AsSlice()),
		Ttl:       kernelTTL,
		PMtuDisc:  1,
	}
}

// incompatible says why an existing link cannot be adopted as the device s describes, or
// returns "" when it can (MTU and up state are then corrected in place). It is pure.
func incompatible(s deviceSpec, l netlink.Link) string {
	g, ok := l.(*netlink.Gretun)
	if !ok || l.Type() != "gre" {
		return fmt.Sprintf("link type is %q, not gre", l.Type())
	}
	var diffs []string
	diff := func(what string, have, want any) {
		diffs = append(diffs, fmt.Sprintf("%s %v (want %v)", what, have, want))
	}
	if local, _ := netip.AddrFromSlice(g.Local); local.Unmap() != s.local {
		diff("local", g.Local, s.local)
	}
	if len(g.Remote) != 0 && !g.Remote.IsUnspecified() {
		diff("remote", g.Remote, "any")
	}
	if g.IKey != 0 || g.OKey != 0 {
		diff("key", fmt.Sprintf("%d/%d", g.IKey, g.OKey), "none")
	}
	if g.IFlags != 0 || g.OFlags != 0 {
		diff("flags", fmt.Sprintf("%#x/%#x", g.IFlags, g.OFlags), "none")
	}
	if g.Ttl != kernelTTL {
		diff("ttl", g.Ttl, kernelTTL)
	}
	if g.Link != 0 {
		diff("dev", g.Link, "none")
	}
	if g.EncapType != 0 {
		diff("encap", g.EncapType, "none")
	}
	if g.FlowBased {
		diff("external", true, false)
	}
	return strings.Join(diffs, ", ")
}

// ensureKernelDevice creates, adopts or re-creates the GRE device, sets its MTU and, with
// up, brings it up. It returns the link index and whether it wrote anything. When the
// kernel has no GRE driver it returns a *kernelmode.Error matching ErrNoKernelGRE. With
// nothing to correct it writes nothing.
func ensureKernelDevice(h *kernel.Handle, s deviceSpec, up bool, log klog.Logger) (idx int, changed bool, err error) {
	l, created, changed, err := h.EnsureLink(kernel.LinkSpec{
		Name: s.name, Kind: "GRE", MTU: s.mtu, Up: up,
		New:          func() netlink.Link { return s.link() },
		Incompatible: func(l netlink.Link) string { return incompatible(s, l) },
		CreateError: func(err error) error {
			if kernelmode.IsMissingDriver(err) {
				return &kernelmode.Error{Driver: greDriver, Device: s.name, Err: err}
			}
			return fmt.Errorf("create gre device %s (local %s): %w", s.name, s.local, err)
		},
	}, log)
	if err != nil {
		return 0, changed, err
	}
	if created {
		log.Info("Created GRE device", "device", s.name, "local", s.local, "ttl", kernelTTL, "mtu", s.mtu)
	}
	return l.Attrs().Index, changed, nil
}

// deleteLinkIf deletes the link name if it exists and is of the kind "is" accepts (a
// device of the other mode, left from an earlier run). It reports whether it deleted one.
func deleteLinkIf(h *kernel.Handle, name string, is func(netlink.Link) bool) (bool, error) {
	l, err := h.Netlink().LinkByName(name)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look up %s: %w", name, err)
	case !is(l):
		return false, nil
	}
	if err := h.Netlink().LinkDel(l); err != nil {
		return false, fmt.Errorf("delete %s: %w", name, err)
	}
	return true, nil
}

func isGRELink(l netlink.Link) bool {
	_, ok := l.(*netlink.Gretun)
	return ok
}

func isTUNLink(l netlink.Link) bool {
	_, ok := l.(*netlink.Tuntap)
	return ok
}
