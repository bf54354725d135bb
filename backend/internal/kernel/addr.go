package kernel

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/ip"
)

// EnsureSoleAddr makes p the only IPv4 address on the device linkIndex: p is added if
// missing and every other IPv4 address is removed (the device belongs to weft, and a stale
// address from an old lease would answer for a subnet that is no longer ours). Nothing is
// written when p is already the only one.
func (h *Handle) EnsureSoleAddr(linkIndex int, p netip.Prefix) error {
	if err := h.check(); err != nil {
		return err
	}
	if !p.Addr().Is4() {
		return fmt.Errorf("ensure address: %s is not IPv4", p)
	}
	link := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: linkIndex}}
	have, err := h.Addrs(linkIndex)
	if err != nil {
		return err
	}
	found := false
	for i := range have {
		a := &have[i]
		if got, ok := ip.FromIPNet(a.IPNet); ok && got == p {
			found = true
			continue
		}
		if err := h.nl.AddrDel(link, a); err != nil && !isGone(err) {
			return fmt.Errorf("remove stale address %s from link #%d: %w", a.IPNet, linkIndex, err)
		}
	}
	if found {
		return nil
	}
	if err := h.nl.AddrAdd(link, &netlink.Addr{IPNet: ip.IPNet(p)}); err != nil && !isExist(err) {
		return fmt.Errorf("add address %s to link #%d: %w", p, linkIndex, err)
	}
	return nil
}

// Addrs lists the IPv4 addresses of the device linkIndex, retrying interrupted dumps.
func (h *Handle) Addrs(linkIndex int) ([]netlink.Addr, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	link := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: linkIndex}}
	as, err := RetryDump(func() ([]netlink.Addr, error) { return h.nl.AddrList(link, unix.AF_INET) })
	if err != nil {
		return nil, fmt.Errorf("list addresses of link #%d: %w", linkIndex, err)
	}
	return as, nil
}
