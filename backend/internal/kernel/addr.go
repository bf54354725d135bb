package kernel

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/weftnet/weft/pkg/ip"
)

// EnsureSoleAddr makes p the only address of its family (IPv4 or IPv6) on the device
// linkIndex: p is added if missing and every other address of that family is removed (the
// device belongs to weft, and a stale address from an old lease would answer for a subnet
// that is no longer ours). Nothing is written when p is already the only one.
//
// For IPv6, link-local addresses (which the kernel gives every device) are not weft's and
// stay; p is added without duplicate address detection (nodad: it is unique by
// construction, and a tentative address could not be a source for a second or so), and
// a copy of p whose detection failed earlier is replaced.
func (h *Handle) EnsureSoleAddr(linkIndex int, p netip.Prefix) error {
	if err := h.check(); err != nil {
		return err
	}
	f := FamilyOf(p.Addr())
	if !p.IsValid() || !f.has(p.Addr()) {
		return fmt.Errorf("ensure address: %s is not an IPv4 or IPv6 prefix", p)
	}
	link := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: linkIndex}}
	have, err := h.AddrsOf(linkIndex, f)
	if err != nil {
		return err
	}
	found := false
	for i := range have {
		a := &have[i]
		if got, ok := ip.FromIPNet(a.IPNet); ok && got == p && a.Flags&unix.IFA_F_DADFAILED == 0 {
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
	add := &netlink.Addr{IPNet: ip.IPNet(p)}
	if f == IPv6 {
		add.Flags = unix.IFA_F_NODAD
	}
	if err := h.nl.AddrAdd(link, add); err != nil && !isExist(err) {
		return fmt.Errorf("add address %s to link #%d: %w", p, linkIndex, err)
	}
	return nil
}

// Addrs lists the IPv4 addresses of the device linkIndex, retrying interrupted dumps.
func (h *Handle) Addrs(linkIndex int) ([]netlink.Addr, error) { return h.AddrsOf(linkIndex, IPv4) }

// AddrsOf lists the addresses of family f on the device linkIndex, retrying interrupted
// dumps. IPv6 link-local addresses, which the kernel gives every device, are left out.
func (h *Handle) AddrsOf(linkIndex int, f Family) ([]netlink.Addr, error) {
	if err := h.check(); err != nil {
		return nil, err
	}
	if !f.valid() {
		return nil, fmt.Errorf("list addresses of link #%d: address family %d is neither IPv4 nor IPv6", linkIndex, uint8(f))
	}
	link := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: linkIndex}}
	as, err := RetryDump(func() ([]netlink.Addr, error) { return h.nl.AddrList(link, int(f)) })
	if err != nil {
		return nil, fmt.Errorf("list %s addresses of link #%d: %w", f, linkIndex, err)
	}
	if f == IPv6 {
		kept := as[:0]
		for _, a := range as {
			if p, ok := ip.FromIPNet(a.IPNet); ok && !p.Addr().IsLinkLocalUnicast() {
				kept = append(kept, a)
			}
		}
		as = kept
	}
	return as, nil
}
